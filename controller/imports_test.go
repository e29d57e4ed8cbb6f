package controller

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

var siV1beta1 = schema.GroupVersionResource{Group: mcs.Group, Version: "v1beta1", Resource: "serviceimports"}

func derivedWithIPs(ips ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "derived-serve"}}
	s.Spec.ClusterIPs = ips
	if len(ips) > 0 {
		s.Spec.ClusterIP = ips[0]
	}
	for _, ip := range ips {
		if strings.Contains(ip, ":") {
			s.Spec.IPFamilies = append(s.Spec.IPFamilies, corev1.IPv6Protocol)
		} else {
			s.Spec.IPFamilies = append(s.Spec.IPFamilies, corev1.IPv4Protocol)
		}
	}
	return s
}

func siWork(t *testing.T, works []workObject, cluster string) map[string]any {
	t.Helper()
	for _, w := range works {
		if w.cluster == cluster && w.manifest()["kind"] == "ServiceImport" {
			return w.manifest()
		}
	}
	return nil
}

func TestAutomaticServiceImport(t *testing.T) {
	s := svc(corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, AppProtocol: ptr("kubernetes.io/h2c")})
	s.Labels = map[string]string{"from-service": "never"}
	s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(600))}}
	s.Spec.TrafficDistribution = ptr("PreferClose")
	s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyCluster)
	s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	s.Spec.IPFamilyPolicy = ptr(corev1.IPFamilyPolicyPreferDualStack)
	ex := []exporter{{cluster: "member1", clusterID: "member1", service: s,
		slices:              []*discoveryv1.EndpointSlice{srcSlice("serve-abc", "", "10.10.0.5")},
		exportedLabels:      map[string]string{"team": "web"},
		exportedAnnotations: map[string]string{"owner": "alice"}}}
	im := []importer{
		{cluster: "member1", auto: true, siGVR: siV1beta1, derived: derivedWithIPs("10.11.0.7")},
		{cluster: "member2", auto: true, siGVR: siV1beta1, derived: derivedWithIPs("10.13.0.9", "fd00::9")},
		{cluster: "member3", auto: true, siGVR: siV1beta1},            // derived Service not applied yet
		{cluster: "member4", ports: []corev1.ServicePort{{Port: 80}}}, // the user's own ServiceImport
	}
	works, err := desiredWorks("default", "serve", mcs.DefaultDerivedPrefix, ex, im)
	if err != nil {
		t.Fatal(err)
	}
	if siWork(t, works, "member3") != nil {
		t.Error("a ServiceImport was written before the member's derived Service had a ClusterIP")
	}
	if siWork(t, works, "member4") != nil {
		t.Error("a ServiceImport was written where the user has one")
	}
	for cluster, want := range map[string][]any{"member1": {"10.11.0.7"}, "member2": {"10.13.0.9", "fd00::9"}} {
		si := siWork(t, works, cluster)
		if si == nil {
			t.Fatalf("no ServiceImport for %s", cluster)
		}
		if si["apiVersion"] != "multicluster.x-k8s.io/v1beta1" {
			t.Errorf("%s: apiVersion %v", cluster, si["apiVersion"])
		}
		spec := si["spec"].(map[string]any)
		if got := spec["ips"].([]any); len(got) != len(want) || got[0] != want[0] || got[len(got)-1] != want[len(want)-1] {
			t.Errorf("%s: ips %v, want %v", cluster, got, want)
		}
		if fams := spec["ipFamilies"].([]any); len(fams) != len(want) {
			t.Errorf("%s: ipFamilies %v, want one per ClusterIP %v", cluster, fams, want)
		}
		if spec["type"] != "ClusterSetIP" || spec["sessionAffinity"] != "ClientIP" || spec["trafficDistribution"] != "PreferClose" ||
			spec["internalTrafficPolicy"] != "Cluster" {
			t.Errorf("%s: spec %v", cluster, spec)
		}
		if to := spec["sessionAffinityConfig"].(map[string]any)["clientIP"].(map[string]any)["timeoutSeconds"]; to != float64(600) {
			t.Errorf("%s: session affinity timeout %v", cluster, to)
		}
		port := spec["ports"].([]any)[0].(map[string]any)
		if port["name"] != "http" || port["port"] != float64(80) || port["protocol"] != "TCP" || port["appProtocol"] != "kubernetes.io/h2c" {
			t.Errorf("%s: port %v", cluster, port)
		}
		md := si["metadata"].(map[string]any)
		if md["annotations"].(map[string]any)["work.karmada.io/conflict-resolution"] != nil {
			t.Errorf("%s: a ServiceImport Work must never overwrite an existing (the user's) import", cluster)
		}
		labels := md["labels"].(map[string]any)
		if labels["team"] != "web" || labels["from-service"] != nil || labels[labelManagedBy] != ManagedBy {
			t.Errorf("%s: labels %v: want the exportedLabels (and ours), never the Service's", cluster, labels)
		}
		if md["annotations"].(map[string]any)["owner"] != "alice" {
			t.Errorf("%s: annotations %v", cluster, md["annotations"])
		}
	}
	// Where Karmada cannot carry v1beta1, the import is v1alpha1, without the fields it lacks.
	im[0].siGVR.Version = "v1alpha1"
	works, err = desiredWorks("default", "serve", mcs.DefaultDerivedPrefix, ex, im[:1])
	if err != nil {
		t.Fatal(err)
	}
	if si := siWork(t, works, "member1"); si == nil || si["apiVersion"] != "multicluster.x-k8s.io/v1alpha1" {
		t.Errorf("v1alpha1 import: %v", si)
	} else if spec := si["spec"].(map[string]any); spec["ipFamilies"] != nil || spec["trafficDistribution"] != nil || spec["internalTrafficPolicy"] != nil ||
		spec["ips"] == nil || spec["sessionAffinity"] != "ClientIP" {
		t.Errorf("v1alpha1 import spec %v", spec)
	}
	// The derived Service asks for every family the importer has, primary first.
	for _, w := range works {
		if w.manifest()["kind"] == "Service" {
			spec := w.manifest()["spec"].(map[string]any)
			if spec["ipFamilyPolicy"] != "PreferDualStack" || len(spec["ipFamilies"].([]any)) != 1 {
				t.Errorf("derived Service in %s: ipFamilyPolicy %v ipFamilies %v", w.cluster, spec["ipFamilyPolicy"], spec["ipFamilies"])
			}
		}
	}
}

func TestAutomaticHeadlessImport(t *testing.T) {
	s := svc(corev1.ServicePort{Name: "tcp", Port: 8080})
	s.Spec.ClusterIP = corev1.ClusterIPNone
	s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	ex := []exporter{{cluster: "member1", clusterID: "member1", service: s}}
	works, err := desiredWorks("default", "serve", mcs.DefaultDerivedPrefix, ex,
		[]importer{{cluster: "member2", auto: true, siGVR: siV1beta1}})
	if err != nil {
		t.Fatal(err)
	}
	si := siWork(t, works, "member2")
	if si == nil {
		t.Fatal("a headless import needs no ClusterIP: its ServiceImport is written at once")
	}
	if spec := si["spec"].(map[string]any); spec["type"] != "Headless" || spec["ips"] != nil {
		t.Errorf("headless spec %v", spec)
	}
}

func TestLabelAndAnnotationConflicts(t *testing.T) {
	a := exporter{cluster: "member1", service: svc(corev1.ServicePort{Port: 80}), exportedLabels: map[string]string{"team": "web"}}
	b := exporter{cluster: "member2", service: svc(corev1.ServicePort{Port: 80}), exportedLabels: map[string]string{"team": "db"}}
	cf := conflicts([]exporter{a, b})
	if len(cf) != 1 || cf[0].reason != "LabelsConflict" || !strings.Contains(cf[0].message, "member2") || !strings.Contains(cf[0].message, "team=web") {
		t.Fatalf("labels: %+v", cf)
	}
	b.exportedLabels = map[string]string{"team": "web"}
	b.exportedAnnotations = map[string]string{"x": "1"}
	if cf := conflicts([]exporter{a, b}); len(cf) != 1 || cf[0].reason != "AnnotationsConflict" {
		t.Fatalf("annotations: %+v", cf)
	}
	b.exportedAnnotations = nil
	b.service.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol}
	if cf := conflicts([]exporter{a, b}); len(cf) != 1 || cf[0].reason != "IPFamilyConflict" {
		t.Fatalf("ip family: %+v", cf)
	}
	b.service.Spec.IPFamilies = nil
	if cf := conflicts([]exporter{a, b}); len(cf) != 0 {
		t.Fatalf("agreeing exports: %+v", cf)
	}
}

func TestImportReady(t *testing.T) {
	ex := []exporter{{cluster: "member1", clusterID: "member1", service: svc(), slices: []*discoveryv1.EndpointSlice{srcSlice("a", "")}}}
	for _, tc := range []struct {
		name      string
		exporters []exporter
		drained   []string
		pending   []string
		status    metav1.ConditionStatus
		says      string
	}{
		{"nobody exports", nil, nil, nil, metav1.ConditionFalse, "no cluster exports default/serve"},
		{"drained", nil, []string{"member1"}, nil, metav1.ConditionFalse, "member1 are withdrawn"},
		{"pending", ex, nil, []string{"member2"}, metav1.ConditionFalse, "waiting for Karmada"},
		{"no ready endpoint", ex, nil, nil, metav1.ConditionTrue, "no endpoint is ready"},
		{"name taken", ex, nil, nil, metav1.ConditionFalse, "derived-serve exists in member2"},
	} {
		o := &observation{ns: "default", name: "serve", derived: "derived-serve", exporters: tc.exporters, drained: tc.drained}
		if tc.name == "name taken" {
			o.taken = []string{"member2"}
		}
		c := importReady(o, "member2", tc.pending)
		if c.Status != tc.status || !strings.Contains(c.Message, tc.says) {
			t.Errorf("%s: %s %q, want %s containing %q", tc.name, c.Status, c.Message, tc.status, tc.says)
		}
	}
}
