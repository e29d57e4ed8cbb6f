package controller

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

func ptr[T any](v T) *T { return &v }

func svc(ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "serve"}, Spec: corev1.ServiceSpec{Ports: ports}}
}

func srcSlice(name string, managedBy string, ips ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "serve"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	if managedBy != "" {
		s.Labels[discoveryv1.LabelManagedBy] = managedBy
	}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
			NodeName: ptr("member1-control-plane"), TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "serve-1"},
			Hostname: ptr("serve-1"),
		})
	}
	return s
}

func TestDesiredWorksSeed(t *testing.T) {
	ex := []exporter{{cluster: "member1", clusterID: "member1", service: svc(corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP}),
		slices: []*discoveryv1.EndpointSlice{srcSlice("serve-abc", "", "10.10.0.5")}}}
	im := []importer{{cluster: "member2", ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}}
	works, err := desiredWorks("default", "serve", mcs.DefaultDerivedPrefix, ex, im)
	if err != nil {
		t.Fatal(err)
	}
	if len(works) != 2 {
		t.Fatalf("%d works, want the derived Service and one slice", len(works))
	}
	for _, w := range works {
		if w.namespace != "karmada-es-member2" {
			t.Errorf("work %s in %s, want karmada-es-member2", w.name, w.namespace)
		}
		md := w.manifest()["metadata"].(map[string]any)
		labels := md["labels"].(map[string]any)
		if labels["karmada.io/managed"] != "true" {
			t.Errorf("%s: manifest lacks Karmada's managed label: %v", w.name, labels)
		}
		if md["annotations"].(map[string]any)["work.karmada.io/conflict-resolution"] != "overwrite" {
			t.Errorf("%s: no conflict-resolution annotation", w.name)
		}
		u, err := w.toWork("default", "serve")
		if err != nil {
			t.Fatal(err)
		}
		if f := u.Finalizers; len(f) != 1 || f[0] != executionFinalizer {
			t.Errorf("%s: finalizers %v", w.name, f)
		}
		switch w.manifest()["kind"] {
		case "Service":
			spec := w.manifest()["spec"].(map[string]any)
			if md["name"] != "derived-serve" || spec["type"] != "ClusterIP" || spec["selector"] != nil {
				t.Errorf("derived Service %v", w.manifest())
			}
		case "EndpointSlice":
			if labels[discoveryv1.LabelServiceName] != "derived-serve" || labels[mcs.LabelServiceName] != "serve" ||
				labels[mcs.LabelSourceCluster] != "member1" || labels[discoveryv1.LabelManagedBy] != ManagedBy {
				t.Errorf("slice labels %v", labels)
			}
			ep := w.manifest()["endpoints"].([]any)[0].(map[string]any)
			if ep["nodeName"] != nil || ep["targetRef"] != nil || ep["hostname"] != "serve-1" {
				t.Errorf("mirrored endpoint %v: want hostname kept, nodeName and targetRef dropped", ep)
			}
		default:
			t.Errorf("unexpected kind %v", w.manifest()["kind"])
		}
	}
	// Deterministic: same input, same names and hashes (a restart converges without churn).
	again, _ := desiredWorks("default", "serve", mcs.DefaultDerivedPrefix, ex, im)
	for i := range works {
		if works[i].name != again[i].name || works[i].hash != again[i].hash {
			t.Errorf("work %d not deterministic", i)
		}
	}
}

func TestDesiredWorksNoExporterOrImporter(t *testing.T) {
	im := []importer{{cluster: "member2"}}
	if w, _ := desiredWorks("default", "serve", "derived-", nil, im); len(w) != 0 {
		t.Errorf("no valid exporter: %d works, want none", len(w))
	}
	ex := []exporter{{cluster: "member1", clusterID: "member1", service: svc()}}
	if w, _ := desiredWorks("default", "serve", "derived-", ex, nil); len(w) != 0 {
		t.Errorf("no importer: %d works, want none", len(w))
	}
}

func TestExportable(t *testing.T) {
	for _, tc := range []struct {
		managedBy string
		want      bool
	}{
		{"endpointslice-controller.k8s.io", true},
		{"", true},
		{ManagedBy, false},
		{"endpointslice-controller.karmada.io", false},
		{"endpointslice-dispatch-controller.karmada.io", false},
	} {
		if got := exportable(srcSlice("s", tc.managedBy)); got != tc.want {
			t.Errorf("managed-by %q: exportable=%v, want %v", tc.managedBy, got, tc.want)
		}
	}
	s := srcSlice("s", "")
	s.Labels[mcs.LabelSourceCluster] = "member2"
	if exportable(s) {
		t.Error("a slice carrying a source-cluster label (an import) must not be re-exported")
	}
}

func TestUnionPortsAndNames(t *testing.T) {
	a := exporter{service: svc(corev1.ServicePort{Name: "http", Port: 80}, corev1.ServicePort{Port: 9000, Protocol: corev1.ProtocolUDP})}
	b := exporter{service: svc(corev1.ServicePort{Name: "http", Port: 8080}, corev1.ServicePort{Name: "grpc", Port: 9090})}
	got := unionPorts([]exporter{a, b})
	if len(got) != 3 || got[0].Port != 80 || got[0].Protocol != corev1.ProtocolTCP || got[2].Name != "grpc" {
		t.Errorf("union %+v: want http/80 (oldest wins), 9000/UDP, grpc/9090", got)
	}
	long := strings.Repeat("x", 60)
	d := mcs.DerivedServiceName("derived-", "default", long)
	if len(d) > 63 {
		t.Errorf("derived name %q too long", d)
	}
	if n := workName("eps", strings.Repeat("n", 63), strings.Repeat("s", 253), "member1/"+long); len(n) > 253 {
		t.Errorf("work name %d characters", len(n))
	}
	// The earlier naming (mcs-<kind>-<ns>-<name>) gave team-a/api and team/a-api one Work.
	if a, b := workName("svc", "team-a", "api", ""), workName("svc", "team", "a-api", ""); a == b {
		t.Errorf("team-a/api and team/a-api share the Work name %q", a)
	}
	if sn := sliceName(d, "member1.eu", "src"); strings.Contains(sn, ".") || len(sn) > 253 {
		t.Errorf("slice name %q", sn)
	}
}

func TestDerivedServiceHeadless(t *testing.T) {
	headless := svc(corev1.ServicePort{Name: "web", Port: 80})
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	got := derivedService("default", "web", "derived-web", []exporter{{service: headless}}, importer{})
	if got.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("derived Service of a headless export: clusterIP %q, want None", got.Spec.ClusterIP)
	}
	got = derivedService("default", "serve", "derived-serve", []exporter{{service: svc(corev1.ServicePort{Port: 80})}}, importer{})
	if got.Spec.ClusterIP != "" {
		t.Errorf("derived Service of a ClusterIP export: clusterIP %q, want it allocated by the importer", got.Spec.ClusterIP)
	}
}

func TestConflicts(t *testing.T) {
	http := func(port int32) corev1.ServicePort {
		return corev1.ServicePort{Name: "http", Port: port, Protocol: corev1.ProtocolTCP}
	}
	with := func(s *corev1.Service, f func(*corev1.ServiceSpec)) *corev1.Service { f(&s.Spec); return s }
	for _, tc := range []struct {
		name   string
		second *corev1.Service
		reason string
	}{
		{"agree", svc(http(80)), ""},
		{"extra port (mcs-api v0.5: not identical)", svc(http(80), corev1.ServicePort{Name: "metrics", Port: 9090}), "PortConflict"},
		{"same name, other port", svc(http(8080)), "PortConflict"},
		{"same port, other name", svc(corev1.ServicePort{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP}), "PortConflict"},
		{"headless", with(svc(http(80)), func(s *corev1.ServiceSpec) { s.ClusterIP = corev1.ClusterIPNone }), "TypeConflict"},
		{"affinity", with(svc(http(80)), func(s *corev1.ServiceSpec) { s.SessionAffinity = corev1.ServiceAffinityClientIP }), "SessionAffinityConflict"},
		{"explicit None affinity", with(svc(http(80)), func(s *corev1.ServiceSpec) { s.SessionAffinity = corev1.ServiceAffinityNone }), ""},
		{"traffic policy", with(svc(http(80)), func(s *corev1.ServiceSpec) { s.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal) }), "InternalTrafficPolicyConflict"},
		{"traffic distribution", with(svc(http(80)), func(s *corev1.ServiceSpec) { s.TrafficDistribution = ptr("PreferClose") }), "TrafficDistributionConflict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ex := []exporter{{cluster: "member1", service: svc(http(80))}, {cluster: "member2", service: tc.second}}
			cf := conflicts(ex)
			switch {
			case tc.reason == "" && len(cf) != 0:
				t.Fatalf("conflicts %+v, want none", cf)
			case tc.reason != "" && (len(cf) != 1 || cf[0].reason != tc.reason):
				t.Fatalf("conflicts %+v, want one %s", cf, tc.reason)
			case tc.reason != "" && !(strings.Contains(cf[0].message, "member2") && strings.Contains(cf[0].message, "member1") || strings.Contains(cf[0].message, "older")):
				t.Errorf("message %q names neither cluster", cf[0].message)
			}
			// The union never holds two ports with one name or one protocol/number.
			ports := unionPorts(ex)
			names, nums := map[string]bool{}, map[string]bool{}
			for _, p := range ports {
				num := fmt.Sprintf("%s/%d", p.Protocol, p.Port)
				if names[p.Name] || nums[num] {
					t.Fatalf("union %+v repeats a port", ports)
				}
				names[p.Name], nums[num] = true, true
			}
			if ports[0].Port != 80 || ports[0].Name != "http" {
				t.Errorf("union %+v: the oldest export's http/80 must win", ports)
			}
		})
	}
}

// Zone hints travel with the mirrored slices (node hints and names do not: they name the source
// cluster's nodes); an exporter publishing not-ready addresses has every endpoint Ready, as
// Kubernetes' own EndpointSlice controller does; the derived Service carries the oldest export's
// trafficDistribution and publishNotReadyAddresses.
func TestMirrorTopologyAndNotReady(t *testing.T) {
	src := srcSlice("serve-abc", "", "10.10.0.1", "10.10.0.2")
	src.Endpoints[0].Zone = ptr("zone-a")
	src.Endpoints[0].NodeName = ptr("node-1")
	src.Endpoints[0].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}}, ForNodes: []discoveryv1.ForNode{{Name: "node-1"}}}
	src.Endpoints[1].Conditions = discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(false)}

	es := mirrorSlice("default", "serve", "derived-serve", "member1", src, false)
	e0, e1 := es.Endpoints[0], es.Endpoints[1]
	if e0.Hints == nil || len(e0.Hints.ForZones) != 1 || e0.Hints.ForZones[0].Name != "zone-a" || len(e0.Hints.ForNodes) != 0 {
		t.Errorf("hints %+v, want zone-a only", e0.Hints)
	}
	if e0.Zone == nil || *e0.Zone != "zone-a" || e0.NodeName != nil {
		t.Errorf("zone %v node %v, want zone-a and no node", e0.Zone, e0.NodeName)
	}
	if *e1.Conditions.Ready {
		t.Error("a not-ready endpoint mirrored ready without publishNotReadyAddresses")
	}
	es = mirrorSlice("default", "serve", "derived-serve", "member1", src, true)
	if e1 := es.Endpoints[1]; !*e1.Conditions.Ready || *e1.Conditions.Serving {
		t.Errorf("publishNotReadyAddresses: conditions %+v, want ready (serving as it was)", e1.Conditions)
	}
	if *src.Endpoints[1].Conditions.Ready {
		t.Error("the source slice was changed")
	}

	exp := svc(corev1.ServicePort{Name: "http", Port: 80})
	exp.Spec.TrafficDistribution = ptr("PreferSameZone")
	exp.Spec.PublishNotReadyAddresses = true
	d := derivedService("default", "serve", "derived-serve", []exporter{{service: exp}}, importer{})
	if d.Spec.TrafficDistribution == nil || *d.Spec.TrafficDistribution != "PreferSameZone" || !d.Spec.PublishNotReadyAddresses {
		t.Errorf("derived Service: trafficDistribution %v, publishNotReadyAddresses %v", d.Spec.TrafficDistribution, d.Spec.PublishNotReadyAddresses)
	}
}

// An importer that chose the derived Service's name (its ServiceImport's derived-service
// annotation) gets that Service and slices of it, in Works named apart from the default ones (so
// a change of name replaces the objects instead of leaving the old ones behind).
func TestDesiredWorksChosenName(t *testing.T) {
	ex := []exporter{{cluster: "member1", clusterID: "member1", service: svc(corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP}),
		slices: []*discoveryv1.EndpointSlice{srcSlice("serve-abc", "", "10.10.0.5")}}}
	def, err := desiredWorks("default", "serve", mcs.DefaultDerivedPrefix, ex, []importer{{cluster: "member2", name: "derived-serve"}})
	if err != nil {
		t.Fatal(err)
	}
	chosen, err := desiredWorks("default", "serve", mcs.DefaultDerivedPrefix, ex, []importer{{cluster: "member2", name: "serve", custom: true}})
	if err != nil {
		t.Fatal(err)
	}
	if len(chosen) != 2 || len(def) != 2 {
		t.Fatalf("%d and %d works, want a Service and a slice each", len(def), len(chosen))
	}
	for i, w := range chosen {
		md := w.manifest()["metadata"].(map[string]any)
		labels, _ := md["labels"].(map[string]any)
		switch kind := w.manifest()["kind"]; kind {
		case "Service":
			if md["name"] != "serve" {
				t.Errorf("derived Service named %v, want serve", md["name"])
			}
		case "EndpointSlice":
			if labels["kubernetes.io/service-name"] != "serve" || labels["multicluster.kubernetes.io/service-name"] != "serve" {
				t.Errorf("slice labels %v", labels)
			}
		}
		if w.name == def[i].name {
			t.Errorf("Work %s has the default name's Work name", w.name)
		}
	}
}
