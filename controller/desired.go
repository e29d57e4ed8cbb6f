package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// karmadaSliceManagers are managed-by values of slices Karmada's own MCS controllers write.
var karmadaSliceManagers = map[string]bool{
	"endpointslice-controller.karmada.io":          true,
	"endpointslice-dispatch-controller.karmada.io": true,
}

// exportable reports whether a member's EndpointSlice is an original of the exported Service,
// never a slice that we or Karmada wrote (re-exporting those would loop endpoints between clusters).
func exportable(s *discoveryv1.EndpointSlice) bool {
	m := s.Labels[labelSliceManagedBy]
	return m != ManagedBy && !karmadaSliceManagers[m] && s.Labels[mcs.LabelSourceCluster] == ""
}

// exporter is one member's export of a service.
type exporter struct {
	cluster   string // Karmada cluster name
	clusterID string // the id other clusters see (ClusterProperty cluster.clusterset.k8s.io, else the name)
	service   *corev1.Service
	slices    []*discoveryv1.EndpointSlice
	// The ServiceExport's exportedLabels and exportedAnnotations (v1beta1): the only metadata
	// an automatic ServiceImport carries.
	exportedLabels, exportedAnnotations map[string]string
}

// importer is one member that imports a service: a ServiceImport of that name exists there
// (placed by the user's template or written by hand), or, without a template, the namespace
// exists there and the controller writes the ServiceImport itself (auto).
type importer struct {
	cluster string
	// name is the derived Service's name in this member: the default (observation.derived), or
	// the one the user's ServiceImport names in its multicluster.kubernetes.io/derived-service
	// annotation (custom).
	name   string
	custom bool
	// ports of the member's own ServiceImport, if it lists any (never set for auto).
	ports []corev1.ServicePort
	// auto: the controller writes this member's ServiceImport, of version siGVR, whose spec.ips
	// are the ClusterIPs of derived, the member's derived Service (nil until Karmada applied it).
	auto    bool
	siGVR   schema.GroupVersionResource
	derived *corev1.Service
	// taken: a Service of the derived name exists in the member and is not ours (the user's, or
	// another controller's): nothing is written there, nothing of it overwritten.
	taken bool
	// families: the IP families it imports with (the export's it serves; nil: unknown, the
	// export's primary); noFamily: it serves none of them, and nothing is written there.
	families []corev1.IPFamily
	noFamily bool
	// served: the IP families of the importer's Service CIDRs (nil: unknown).
	served []corev1.IPFamily
}

// desiredWorks computes every Work the service ns/name needs: per importer, the derived Service,
// one mirrored EndpointSlice per source slice of every valid exporter and, for automatic
// imports, the ServiceImport (once the derived Service has its ClusterIP, so that the import is
// never written without its spec.ips).
func desiredWorks(ns, name, prefix string, exporters []exporter, importers []importer) ([]workObject, error) {
	if len(exporters) == 0 {
		return nil, nil
	}
	var out []workObject
	for _, imp := range importers {
		if imp.taken || imp.noFamily {
			continue
		}
		derived := imp.name
		if derived == "" {
			derived = mcs.DerivedServiceName(prefix, ns, name)
		}
		// A name of the user's choosing is part of the Works' names: when it changes, new Works
		// write the new objects and the old Works, deleted, take the old ones with them
		// (Karmada does not delete an object a Work's manifest stops naming).
		as := ""
		if imp.custom {
			as = "@" + derived
		}
		svc := derivedService(ns, name, derived, exporters, imp)
		w, err := newWork(imp.cluster, workName("svc", ns, name, as), "", svc, true)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
		if imp.auto {
			if si := serviceImport(ns, name, exporters, imp); si != nil {
				// Never over an existing (the user's) import: Karmada refuses, and the controller
				// then sees the user's import and withdraws this Work.
				w, err := newWork(imp.cluster, workName("si", ns, name, ""), "", si, false)
				if err != nil {
					return nil, err
				}
				out = append(out, w)
			}
		}
		for _, ex := range exporters {
			for _, src := range ex.slices {
				if !sliceFamilyServed(src.AddressType, imp.families) {
					continue // addresses the importer has no family for (families.go)
				}
				es := mirrorSlice(ns, name, derived, ex.clusterID, src, ex.service.Spec.PublishNotReadyAddresses)
				w, err := newWork(imp.cluster, workName("eps", ns, name, ex.cluster+"/"+src.Name+as), ex.cluster, es, true)
				if err != nil {
					return nil, err
				}
				out = append(out, w)
			}
		}
	}
	return out, nil
}

// derivedService is the selector-less ClusterIP Service that kube-proxy in the importer programs
// from the mirrored slices. Its ClusterIP is allocated by the importer and kept by Karmada's
// execution controller on every update.
func derivedService(ns, name, derived string, exporters []exporter, imp importer) *corev1.Service {
	ports := imp.ports
	if len(ports) == 0 {
		ports = unionPorts(exporters)
	}
	svc := &corev1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name: derived, Namespace: ns,
			Labels: map[string]string{labelManagedBy: ManagedBy, mcs.LabelServiceName: name},
		},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: ports},
	}
	if derived != mcs.DefaultDerivedPrefix+name {
		svc.Annotations = map[string]string{mcs.AnnotationDerivedService: derived}
	}
	// A headless export is imported headless: no ClusterIP, DNS answers with the endpoints
	// (the oldest exporter decides; exporters are ordered oldest first).
	first := exporters[0].service.Spec
	if importType(first) == "Headless" {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	// A dual-stack-capable export gets a ClusterIP of every family the importer has (the
	// ServiceImport then carries one ClusterSetIP per family); the primary family is the export's.
	// Where the importer's families are known, only those it shares with the export.
	//
	// Where the importer's families are known, the manifest names all of them, the primary
	// first: the apiserver gives a PreferDualStack Service every family of its cluster, and a
	// later apply of a manifest naming fewer is refused ("must be 'SingleStack' to release the
	// secondary IP family"), which Karmada meets whenever it applies the Work again (a bundle's,
	// at every slice change). Where unknown, the primary only: naming a family the importer
	// lacks is refused.
	families := first.IPFamilies
	if imp.families != nil {
		families = imp.families
	}
	if len(families) > 0 && svc.Spec.ClusterIP != corev1.ClusterIPNone {
		svc.Spec.IPFamilies = families[:1]
		if p := first.IPFamilyPolicy; p != nil && *p != corev1.IPFamilyPolicySingleStack {
			prefer := corev1.IPFamilyPolicyPreferDualStack
			svc.Spec.IPFamilyPolicy = &prefer
			for _, f := range imp.served {
				if !slices.Contains(svc.Spec.IPFamilies, f) {
					svc.Spec.IPFamilies = append(svc.Spec.IPFamilies, f)
				}
			}
		}
	}
	// The oldest exporter's session affinity and traffic distribution (kube-proxy in the
	// importer follows the zone hints of the mirrored slices for it).
	if first.SessionAffinity == corev1.ServiceAffinityClientIP {
		svc.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		svc.Spec.SessionAffinityConfig = first.SessionAffinityConfig.DeepCopy()
	}
	if first.TrafficDistribution != nil {
		td := *first.TrafficDistribution
		svc.Spec.TrafficDistribution = &td
	}
	// Not-ready endpoints published (see mirrorSlice), as the oldest export says.
	svc.Spec.PublishNotReadyAddresses = first.PublishNotReadyAddresses
	return svc
}

// serviceImport is the automatic ServiceImport of ns/name for an importer, rendered in the
// importer's version (mcs-api v1beta1 fields; v1alpha1 loses what Karmada's CRD of it lacks):
// type, merged ports, the oldest export's session affinity, traffic policy and distribution,
// spec.ips and ipFamilies from the importer's derived Service, and, as metadata, only the oldest
// export's exportedLabels and exportedAnnotations. Nil while a ClusterSetIP import's derived
// Service has no ClusterIP.
func serviceImport(ns, name string, exporters []exporter, imp importer) map[string]any {
	first := exporters[0]
	fs := first.service.Spec
	si := &mcsv1beta1.ServiceImport{
		TypeMeta:   metav1.TypeMeta{Kind: "ServiceImport"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{}},
		Spec:       mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.ServiceImportType(importType(fs))},
	}
	d := imp.derived
	switch {
	case si.Spec.Type == mcsv1beta1.ClusterSetIP && d != nil && len(d.Spec.ClusterIPs) > 0 && d.Spec.ClusterIP != corev1.ClusterIPNone:
		si.Spec.IPs, si.Spec.IPFamilies = d.Spec.ClusterIPs, d.Spec.IPFamilies
	case si.Spec.Type == mcsv1beta1.ClusterSetIP:
		return nil
	case len(fs.IPFamilies) > 0:
		si.Spec.IPFamilies = fs.IPFamilies[:1]
	}
	for _, p := range unionPorts(exporters) {
		si.Spec.Ports = append(si.Spec.Ports, mcsv1beta1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, AppProtocol: p.AppProtocol})
	}
	si.Spec.SessionAffinity = corev1.ServiceAffinity(affinity(fs))
	if si.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		timeout := affinityTimeout(fs)
		si.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
	}
	si.Spec.InternalTrafficPolicy = fs.InternalTrafficPolicy
	si.Spec.TrafficDistribution = fs.TrafficDistribution
	maps.Copy(si.Labels, first.exportedLabels)
	si.Labels[labelManagedBy] = ManagedBy
	if len(first.exportedAnnotations) > 0 {
		si.Annotations = maps.Clone(first.exportedAnnotations)
	}
	u, err := mcs.Unstructured(si, imp.siGVR.GroupVersion())
	if err != nil {
		return nil
	}
	return u.Object
}

// unionPorts merges the exporters' Service ports, oldest exporter first, by name then by
// protocol and port: a port whose name, or whose protocol and number, an older exporter already
// has is left out (the older one wins; see conflicts).
func unionPorts(exporters []exporter) []corev1.ServicePort {
	var out []corev1.ServicePort
	seen := map[string]bool{}
	for _, ex := range exporters {
		for _, p := range ex.service.Spec.Ports {
			proto := protocolOf(p)
			byNum := fmt.Sprintf("p/%s/%d", proto, p.Port)
			if seen["n/"+p.Name] || seen[byNum] {
				continue
			}
			seen["n/"+p.Name], seen[byNum] = true, true
			out = append(out, corev1.ServicePort{Name: p.Name, Protocol: proto, Port: p.Port, AppProtocol: p.AppProtocol})
		}
	}
	return out
}

func protocolOf(p corev1.ServicePort) corev1.Protocol {
	if p.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return p.Protocol
}

// conflict is a property on which an exporter disagrees with the oldest export (which wins).
type conflict struct {
	reason  string // the KEP-1645 / mcs-api condition reason
	message string
}

// conflicts compares every exporter with the oldest one (exporters are ordered oldest first) and
// returns the first disagreement of each exporter, in the order the KEP lists the properties;
// nil when they all agree.
func conflicts(exporters []exporter) []conflict {
	if len(exporters) < 2 {
		return nil
	}
	first := exporters[0]
	fs := first.service.Spec
	merged := unionPorts(exporters)
	var out []conflict
	add := func(ex exporter, reason, what, theirs, ours string) {
		out = append(out, conflict{reason, fmt.Sprintf("%s: %s of %s (%s) conflicts with %s's (%s), the oldest export, which is used",
			ex.cluster, what, ex.service.Namespace+"/"+ex.service.Name, theirs, first.cluster, ours)})
	}
	for _, ex := range exporters[1:] {
		es := ex.service.Spec
		port := portConflict(es.Ports, merged)
		theirs, oldest := portDifference(es.Ports, fs.Ports)
		switch {
		case importType(es) != importType(fs):
			add(ex, "TypeConflict", "the type", importType(es), importType(fs))
		case port != "":
			out = append(out, conflict{"PortConflict", fmt.Sprintf("%s: port %s of %s conflicts with an older export's; the oldest export's port is used",
				ex.cluster, port, ex.service.Namespace+"/"+ex.service.Name)})
		case theirs != "" || oldest != "":
			// mcs-api v0.5: the ports must be identical in every exported Service. Compatible
			// ones are still all imported (the union).
			out = append(out, conflict{"PortConflict", fmt.Sprintf("%s: the ports of %s are not identical to %s's, the oldest export (only in %s: %s; only in %s: %s); the import exposes the union",
				ex.cluster, ex.service.Namespace+"/"+ex.service.Name, first.cluster, ex.cluster, theirs, first.cluster, oldest)})
		case affinity(es) != affinity(fs):
			add(ex, "SessionAffinityConflict", "the session affinity", affinity(es), affinity(fs))
		case affinity(fs) == string(corev1.ServiceAffinityClientIP) && affinityTimeout(es) != affinityTimeout(fs):
			add(ex, "SessionAffinityConfigConflict", "the session affinity timeout", fmt.Sprint(affinityTimeout(es)), fmt.Sprint(affinityTimeout(fs)))
		case !maps.Equal(ex.exportedLabels, first.exportedLabels):
			add(ex, "LabelsConflict", "the exportedLabels", showMap(ex.exportedLabels), showMap(first.exportedLabels))
		case !maps.Equal(ex.exportedAnnotations, first.exportedAnnotations):
			add(ex, "AnnotationsConflict", "the exportedAnnotations", showMap(ex.exportedAnnotations), showMap(first.exportedAnnotations))
		case trafficPolicy(es) != trafficPolicy(fs):
			add(ex, "InternalTrafficPolicyConflict", "the internal traffic policy", trafficPolicy(es), trafficPolicy(fs))
		case trafficDistribution(es) != trafficDistribution(fs):
			add(ex, "TrafficDistributionConflict", "the traffic distribution", trafficDistribution(es), trafficDistribution(fs))
		case ipFamily(es) != ipFamily(fs):
			add(ex, "IPFamilyConflict", "the primary IP family", ipFamily(es), ipFamily(fs))
		}
	}
	return out
}

// portConflict names the first port that shares a name, or a protocol and number, with a merged
// port but differs in the other.
func portConflict(ports, merged []corev1.ServicePort) string {
	for _, p := range ports {
		proto := protocolOf(p)
		for _, w := range merged {
			switch {
			case w.Name == p.Name && (w.Port != p.Port || w.Protocol != proto):
				return fmt.Sprintf("%q %s/%d (used: %s/%d)", p.Name, proto, p.Port, w.Protocol, w.Port)
			case w.Protocol == proto && w.Port == p.Port && w.Name != p.Name:
				return fmt.Sprintf("%s/%d named %q (used: %q)", proto, p.Port, p.Name, w.Name)
			}
		}
	}
	return ""
}

// portDifference lists the ports (name, protocol, number) only in ports and only in oldest,
// each "" when there are none.
func portDifference(ports, oldest []corev1.ServicePort) (onlyPorts, onlyOldest string) {
	set := func(ps []corev1.ServicePort) map[string]bool {
		m := map[string]bool{}
		for _, p := range ps {
			m[fmt.Sprintf("%q %s/%d", p.Name, protocolOf(p), p.Port)] = true
		}
		return m
	}
	a, b := set(ports), set(oldest)
	minus := func(x, y map[string]bool) string {
		var out []string
		for k := range x {
			if !y[k] {
				out = append(out, k)
			}
		}
		if len(out) == 0 {
			return ""
		}
		sort.Strings(out)
		return strings.Join(out, ", ")
	}
	onlyPorts, onlyOldest = minus(a, b), minus(b, a)
	if onlyPorts != "" && onlyOldest == "" {
		onlyOldest = "none"
	} else if onlyOldest != "" && onlyPorts == "" {
		onlyPorts = "none"
	}
	return onlyPorts, onlyOldest
}

// showMap renders a label or annotation set in a stable order.
func showMap(m map[string]string) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

func ipFamily(s corev1.ServiceSpec) string {
	if len(s.IPFamilies) == 0 {
		return string(corev1.IPv4Protocol)
	}
	return string(s.IPFamilies[0])
}

func importType(s corev1.ServiceSpec) string {
	if s.ClusterIP == corev1.ClusterIPNone {
		return "Headless"
	}
	return "ClusterSetIP"
}

func affinity(s corev1.ServiceSpec) string {
	if s.SessionAffinity == "" {
		return string(corev1.ServiceAffinityNone)
	}
	return string(s.SessionAffinity)
}

func affinityTimeout(s corev1.ServiceSpec) int32 {
	if s.SessionAffinityConfig != nil && s.SessionAffinityConfig.ClientIP != nil && s.SessionAffinityConfig.ClientIP.TimeoutSeconds != nil {
		return *s.SessionAffinityConfig.ClientIP.TimeoutSeconds
	}
	return corev1.DefaultClientIPServiceAffinitySeconds
}

func trafficPolicy(s corev1.ServiceSpec) string {
	if s.InternalTrafficPolicy == nil {
		return string(corev1.ServiceInternalTrafficPolicyCluster)
	}
	return string(*s.InternalTrafficPolicy)
}

func trafficDistribution(s corev1.ServiceSpec) string {
	if s.TrafficDistribution == nil {
		return ""
	}
	return *s.TrafficDistribution
}

// mirrorSlice copies a source slice for the importer: the derived Service's name for kube-proxy,
// the KEP-1645 labels for DNS, and the endpoints with their conditions, hostnames, zones and zone
// hints (kube-proxy in the importer follows them for a trafficDistribution). Node names, node
// hints and targetRefs point into the source cluster, so they are dropped. An exporter whose
// Service publishes not-ready addresses has every endpoint Ready, as Kubernetes' EndpointSlice
// controller does for such a Service in its own cluster (serving and terminating stay as they
// are): the importer's DNS and kube-proxy then answer them too.
func mirrorSlice(ns, name, derived, clusterID string, src *discoveryv1.EndpointSlice, publishNotReady bool) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      sliceName(derived, clusterID, src.Name),
			Namespace: ns,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: derived,
				mcs.LabelServiceName:         name,
				mcs.LabelSourceCluster:       clusterID,
				labelSliceManagedBy:          ManagedBy,
			},
		},
		AddressType: src.AddressType,
		Ports:       src.Ports,
	}
	for _, e := range src.Endpoints {
		conds := e.Conditions
		if publishNotReady {
			ready := true
			conds.Ready = &ready
		}
		var hints *discoveryv1.EndpointHints
		if e.Hints != nil && len(e.Hints.ForZones) > 0 {
			hints = &discoveryv1.EndpointHints{ForZones: e.Hints.ForZones}
		}
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
			Addresses:  e.Addresses,
			Conditions: conds,
			Hostname:   e.Hostname,
			Zone:       e.Zone,
			Hints:      hints,
		})
	}
	return es
}

func shortHash(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:n]
}

// sliceName is a stable, valid name for a mirrored slice: one per source cluster and slice.
func sliceName(derived, clusterID, src string) string {
	base := derived + "-" + strings.ReplaceAll(clusterID, ".", "-")
	if len(base) > 200 {
		base = base[:200]
	}
	return base + "-" + shortHash(clusterID+"/"+src, 10)
}

// sortExporters orders exporters oldest ServiceExport first (conflict resolution and session
// affinity follow the oldest), then by cluster name.
func sortExporters(ex []exporter, created map[string]metav1.Time) {
	sort.SliceStable(ex, func(i, j int) bool {
		a, b := created[ex[i].cluster], created[ex[j].cluster]
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return ex[i].cluster < ex[j].cluster
	})
}
