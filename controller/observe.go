package controller

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// observation is what the caches say about one exported service, and who imports it: the
// input of desiredWorks and of the conditions. It is read from the caches only (no request).
type observation struct {
	ns, name  string
	derived   string // the derived Service's default name (an importer may choose another: importer.name)
	members   []*member
	states    []*exportState // every member's ServiceExport, valid or not
	exporters []exporter     // the valid exports, oldest first
	// drained: members whose export's endpoints are withdrawn (the member failure policy).
	drained   []string
	importers []importer // by cluster name
	// auto: the controller writes the ServiceImports (no template on the Karmada control plane).
	auto bool
	// autoWait: automatic imports are held back this long still (see autoImportDelay).
	autoWait time.Duration
	// declaredWait: when the first declared export or import (declared.go) times out.
	declaredWait time.Duration
	// unknown: Push-mode members whose caches are not synced (see Controller.fleet); heldFor:
	// those of them this service's Works are held for (see Controller.heldBy).
	unknown map[string]bool
	heldFor []string
	// taken: importers where the derived Service's name is another's (see findTaken), and those
	// names (the default one, or the one an importer chose).
	taken, takenNames []string
	// noFamily: importers that serve none of the export's IP families (families.go).
	noFamily []string
	// refused: members whose exports are refused for their cluster id, and why (clusterid.go).
	refused map[string]string
}

// exportState is what one member says about an exported service.
type exportState struct {
	m     *member
	obj   *mcsv1beta1.ServiceExport
	valid metav1.Condition
	// exported: the export is valid and its endpoints are among the desired Works.
	exported bool
}

// autoImportDelay is how old the first export of a service without a template must be before the
// controller imports it automatically: a template applied with the export (the seed's 02 and 03)
// may reach us just after the export does, and importing automatically in between would write
// imports only to withdraw them.
const autoImportDelay = 3 * time.Second

// observe reads service ns/name from the caches of members and of the Karmada control plane.
func (c *Controller) observe(ctx context.Context, ns, name string, members []*member) *observation {
	key := ns + "/" + name
	o := &observation{ns: ns, name: name, members: members, derived: mcs.DerivedServiceName(c.opts.DerivedPrefix, ns, name),
		refused: c.refusedIDs(members)}
	userImport := map[string]bool{}
	created := map[string]metav1.Time{}
	for _, m := range members {
		if se, ok := m.export(key); ok && c.drained(m.name) {
			// Not Ready past the grace: its endpoints leave every importer; the derived Service
			// stays, so its ClusterIP survives the outage.
			o.drained = append(o.drained, m.name)
		} else if ok {
			st := &exportState{m: m, obj: se}
			o.states = append(o.states, st)
			created[m.name] = se.CreationTimestamp
			if ex, valid := c.exporterOf(ctx, o, m, se); valid.Status == metav1.ConditionTrue {
				o.exporters = append(o.exporters, ex)
				st.exported = true
				st.valid = valid
			} else {
				st.valid = valid
			}
		}
		// A ServiceImport the controller did not write (placed by the user's template, or by
		// hand) makes its member an importer; ours only count below, in automatic mode.
		if si, ok := m.serviceImport(key); ok && si.Labels[labelManagedBy] != ManagedBy {
			derived, err := mcs.DerivedServiceOf(c.opts.DerivedPrefix, ns, name, si.Annotations)
			if err != nil {
				c.warnOnce(m, si, "InvalidDerivedServiceName", err.Error())
			}
			o.importers = append(o.importers, importer{cluster: m.name, ports: importPorts(si), name: derived, custom: derived != o.derived})
			userImport[m.name] = true
		}
	}
	sortExporters(o.exporters, created)
	// Exports scheduled by Karmada that have not landed yet (declared.go), after the members' own.
	now := time.Now()
	declaredEx, declaredSince, wait := c.declaredExporters(ctx, o, now)
	o.exporters = append(o.exporters, declaredEx...)
	o.declaredWait = wait

	// Automatic imports (KEP-1645): with no ServiceImport template on the Karmada control plane,
	// every member that has the namespace imports the service, exporters included, and gets its
	// ServiceImport from us; they go when the last export does.
	o.auto = !c.importTemplates.has(key) && (len(o.states) > 0 || len(o.drained) > 0 || len(declaredEx) > 0)
	var oldest time.Time
	for _, t := range created {
		if oldest.IsZero() || t.Time.Before(oldest) {
			oldest = t.Time
		}
	}
	for _, t := range declaredSince {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if wait := autoImportDelay - now.Sub(oldest); o.auto && len(o.drained) == 0 && wait > 0 {
		o.auto, o.autoWait = false, wait
	}
	if o.auto {
		o.importers = append(o.importers, c.autoImporters(members, ns, name, userImport)...)
	} else if declaredIm, wait := c.declaredImporters(ctx, o, userImport, now); len(declaredIm) > 0 {
		// Importers scheduled by the ServiceImport template that have no ServiceImport yet.
		o.importers = append(o.importers, declaredIm...)
		if o.declaredWait == 0 || wait < o.declaredWait {
			o.declaredWait = wait
		}
	}
	sort.Slice(o.importers, func(i, j int) bool { return o.importers[i].cluster < o.importers[j].cluster })
	c.findTaken(o)
	c.findFamilies(o)
	return o
}

// findTaken marks the importers where a Service of the derived name exists that the controller
// did not write, and keeps the derived Service where it is ours.
func (c *Controller) findTaken(o *observation) {
	byName := map[string]*member{}
	for _, m := range o.members {
		byName[m.name] = m
	}
	for i := range o.importers {
		im, m := &o.importers[i], byName[o.importers[i].cluster]
		if m == nil {
			continue
		}
		svc, ok := m.service(o.ns + "/" + im.name)
		switch {
		case !ok:
			im.derived = nil
		case svc.Labels[labelManagedBy] == ManagedBy:
			im.derived = svc
		default:
			im.derived, im.taken = nil, true
			o.taken = append(o.taken, im.cluster)
			o.takenNames = append(o.takenNames, im.name)
		}
	}
}

// exporterOf validates one member's export and, if valid, reads what it exports.
func (c *Controller) exporterOf(ctx context.Context, o *observation, m *member, se *mcsv1beta1.ServiceExport) (exporter, metav1.Condition) {
	key := se.Namespace + "/" + se.Name
	svc, ok := m.service(key)
	switch {
	case !ok:
		return exporter{}, condition(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonNoService,
			fmt.Sprintf("Service %s not found in cluster %s", key, m.name))
	case svc.Labels[labelManagedBy] == ManagedBy:
		// A derived Service (an import that chose the service's own name): exporting it would
		// send imported endpoints back round the clusterset.
		return exporter{}, condition(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonNoService,
			fmt.Sprintf("Service %s in cluster %s is the derived Service of an import (written by the controller), not a Service of the cluster", key, m.name))
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return exporter{}, condition(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonInvalidServiceType,
			"Service "+key+" is of type ExternalName, which cannot be exported")
	}
	if why, refused := o.refused[m.name]; refused {
		reason := ReasonClusterIDConflict
		if validClusterID(m.clusterID()) != nil {
			reason = ReasonInvalidClusterID
		}
		return exporter{}, condition(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionFalse, mcsv1beta1.ServiceExportConditionReason(reason),
			"not imported anywhere: "+why)
	}
	ex := exporter{cluster: m.name, clusterID: m.clusterID(), service: svc}
	// Keys of Kubernetes, Karmada and the MCS API never travel to the importers.
	var droppedL, droppedA []string
	ex.exportedLabels, droppedL = mcs.WithoutReserved(se.Spec.ExportedLabels)
	ex.exportedAnnotations, droppedA = mcs.WithoutReserved(se.Spec.ExportedAnnotations)
	if len(droppedL)+len(droppedA) > 0 {
		klog.FromContext(ctx).V(1).Info("reserved exported labels or annotations not propagated", "cluster", m.name, "serviceExport", key,
			"labels", droppedL, "annotations", droppedA)
	}
	objs, _ := m.slices.GetIndexer().ByIndex(byServiceIndex, key)
	for _, o := range objs {
		if s := o.(*discoveryv1.EndpointSlice); exportable(s) {
			ex.slices = append(ex.slices, s)
		}
	}
	sort.Slice(ex.slices, func(i, j int) bool { return ex.slices[i].Name < ex.slices[j].Name })
	return ex, condition(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonValid,
		"Service "+key+" is exported")
}

// autoImporters are the members that import ns/name automatically: every member serving the
// ServiceImport API that has the namespace and no ServiceImport of its own for the service.
func (c *Controller) autoImporters(members []*member, ns, name string, userImport map[string]bool) []importer {
	var out []importer
	for _, m := range members {
		served := m.importGVR()
		if served.Empty() || userImport[m.name] || !m.hasNamespace(ns) {
			continue
		}
		// v1beta1 where both the member and the Karmada control plane serve it (Karmada maps
		// a Work's manifests with the control plane's API); v1alpha1, which lacks ipFamilies,
		// internalTrafficPolicy and trafficDistribution, otherwise.
		siGVR := mcs.ImportVersions[1]
		if served == mcs.ImportVersions[0] && c.importTemplates.v1beta1.Load() {
			siGVR = served
		}
		out = append(out, importer{cluster: m.name, auto: true, siGVR: siGVR, name: mcs.DerivedServiceName(c.opts.DerivedPrefix, ns, name)})
	}
	return out
}

// importPorts are the ports a user's ServiceImport lists (TCP where none is said).
func importPorts(si *mcsv1beta1.ServiceImport) []corev1.ServicePort {
	var out []corev1.ServicePort
	for _, p := range si.Spec.Ports {
		sp := corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, AppProtocol: p.AppProtocol}
		if sp.Protocol == "" {
			sp.Protocol = corev1.ProtocolTCP
		}
		if sp.Port > 0 {
			out = append(out, sp)
		}
	}
	return out
}

// derivedIn is the derived Service's name in cluster.
func (o *observation) derivedIn(cluster string) string {
	for _, im := range o.importers {
		if im.cluster == cluster && im.name != "" {
			return im.name
		}
	}
	return o.derived
}
