package mcsctl

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	karmadafake "github.com/karmada-io/karmada/pkg/generated/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// The seed as a fleet of fakes: member1 exports default/serve (one ready endpoint), member2
// imports it (derived-serve 10.13.0.7, one ready endpoint), Karmada has the Works, applied.
type seed struct {
	m1, m2 *fake.Clientset
	f      *Fleet
}

func newSeed(t *testing.T) *seed {
	t.Helper()
	ready := true
	m1 := fake.NewClientset(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "serve", Namespace: "default"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.11.0.5", ClusterIPs: []string{"10.11.0.5"}, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "serve-x", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "serve"}},
			AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.10.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}}},
	)
	m2 := fake.NewClientset(
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "derived-serve", Namespace: "default"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.13.0.7", ClusterIPs: []string{"10.13.0.7"}, Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}}},
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "imp", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "derived-serve"}},
			AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.10.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}}},
	)
	export := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
		"metadata": map[string]any{"name": "serve", "namespace": "default"},
		"status": map[string]any{"conditions": []any{
			map[string]any{"type": "Valid", "status": "True", "reason": "Valid", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
			map[string]any{"type": "Ready", "status": "True", "reason": "Exported", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
			map[string]any{"type": "Conflict", "status": "False", "reason": "NoConflicts", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}}}}}
	imp := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
		"metadata": map[string]any{"name": "serve", "namespace": "default"},
		"spec":     map[string]any{"type": "ClusterSetIP", "ips": []any{"10.13.0.7"}, "ports": []any{map[string]any{"port": int64(80), "protocol": "TCP"}}},
		"status":   map[string]any{"clusters": []any{map[string]any{"cluster": "member1"}}}}}
	members := map[string]*Member{
		"member1": fakeMember(t, "member1", m1, export),
		"member2": fakeMember(t, "member2", m2, imp),
	}
	applied := metav1.Condition{Type: workv1alpha1.WorkApplied, Status: metav1.ConditionTrue, Reason: "AppliedSuccessful", LastTransitionTime: metav1.Now()}
	work := func(name string) *workv1alpha1.Work {
		return &workv1alpha1.Work{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "karmada-es-member2",
			Labels: map[string]string{mcs.LabelWorkNamespace: "default", mcs.LabelWorkName: "serve"}},
			Status: workv1alpha1.WorkStatus{Conditions: []metav1.Condition{applied}}}
	}
	status, _ := json.Marshal(mcs.FleetStatus{Version: "v9", Updated: metav1.Now(), Members: []mcs.MemberStatus{
		{Name: "member1", Mode: "Push", Ready: true, Synced: true, ClusterID: "member1"},
		{Name: "member2", Mode: "Push", Ready: true, Synced: true, ClusterID: "member2"}}})
	karmada := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: mcs.StatusConfigMap, Namespace: "karmada-system"},
		Data: map[string]string{mcs.StatusKey: string(status)}})
	cluster := func(name string) *clusterv1alpha1.Cluster {
		return &clusterv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: clusterv1alpha1.ClusterSpec{SyncMode: clusterv1alpha1.Push},
			Status: clusterv1alpha1.ClusterStatus{Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue}}}}
	}
	f := &Fleet{Karmada: karmada, KarmadaClusters: karmadafake.NewSimpleClientset(cluster("member1"), cluster("member2"), work("mcs-svc-serve-1"), work("mcs-eps-serve-2")),
		ControllerNamespace: "karmada-system", DerivedPrefix: "derived-",
		Member: func(name string) (*Member, error) { return members[name], nil }}
	return &seed{m1: m1, m2: m2, f: f}
}

func fakeMember(t *testing.T, name string, kube *fake.Clientset, objs ...runtime.Object) *Member {
	t.Helper()
	kube.Discovery().(*fakediscovery.FakeDiscovery).Resources = []*metav1.APIResourceList{{GroupVersion: mcsv1alpha1.SchemeGroupVersion.String(),
		APIResources: []metav1.APIResource{{Name: "serviceexports", Namespaced: true, Kind: "ServiceExport"}, {Name: "serviceimports", Namespaced: true, Kind: "ServiceImport"}}}}
	s := runtime.NewScheme()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(s, map[schema.GroupVersionResource]string{
		mcsv1alpha1.SchemeGroupVersion.WithResource("serviceexports"): "ServiceExportList",
		mcsv1alpha1.SchemeGroupVersion.WithResource("serviceimports"): "ServiceImportList",
	}, objs...)
	return &Member{Name: name, Kube: kube, Dyn: dyn}
}

func TestExplainWhole(t *testing.T) {
	s := newSeed(t)
	var out bytes.Buffer
	b, err := Explain(context.Background(), s.f, &out, "default/serve", nil)
	if err != nil || b != nil {
		t.Fatalf("Explain: break %v, err %v\n%s", b, err, out.String())
	}
	for _, want := range []string{"member1", "1/1 endpoints ready", "member2", "derived-serve 10.13.0.7", "2 Works in karmada-es-member2, 2 applied",
		"should answer A [10.13.0.7]", "OK: default/serve is exported by member1 and imported by member2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explain output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestExplainServiceDeleted(t *testing.T) {
	s := newSeed(t)
	if err := s.m1.CoreV1().Services("default").Delete(context.Background(), "serve", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	b, err := Explain(context.Background(), s.f, &out, "default/serve", nil)
	if err != nil || b == nil || b.Step != stepService || b.Member != "member1" || !strings.Contains(b.Why, "does not exist") {
		t.Fatalf("Explain: break %+v, err %v; want the exported Service in member1\n%s", b, err, out.String())
	}
	t.Logf("kubectl mcs explain default/serve:\n%s", out.String())
	if last := lastLine(out.String()); !strings.HasPrefix(last, "BREAKS at exported Service in member1:") {
		t.Errorf("last line %q", last)
	}
}

func TestExplainWorkNotApplied(t *testing.T) {
	s := newSeed(t)
	ctx := context.Background()
	w, _ := s.f.KarmadaClusters.WorkV1alpha1().Works("karmada-es-member2").Get(ctx, "mcs-eps-serve-2", metav1.GetOptions{})
	w.Status.Conditions = []metav1.Condition{{Type: workv1alpha1.WorkApplied, Status: metav1.ConditionFalse, Reason: "AppliedFailed", Message: "conflict"}}
	if _, err := s.f.KarmadaClusters.WorkV1alpha1().Works("karmada-es-member2").UpdateStatus(ctx, w, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	b, _ := Explain(ctx, s.f, &out, "default/serve", nil)
	if b == nil || b.Step != stepWorks || b.Member != "member2" || !strings.Contains(b.Why, "AppliedFailed") {
		t.Fatalf("break %+v; want the Works in member2\n%s", b, out.String())
	}
}

func TestStatus(t *testing.T) {
	s := newSeed(t)
	var out bytes.Buffer
	if err := Status(context.Background(), s.f, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	t.Logf("kubectl mcs status:\n%s", got)
	for _, want := range []string{"Controller: v9", "member1  Push", "default/serve", "member1 (1)", "member2 (derived-serve 10.13.0.7, 1)", "True"} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
}

func TestStatusStaleAndKarmadaMCS(t *testing.T) {
	s := newSeed(t)
	st, _ := json.Marshal(mcs.FleetStatus{Version: "v9", Updated: metav1.NewTime(time.Now().Add(-time.Hour)), KarmadaMCS: []string{"Work karmada-es-member1/x"}})
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: mcs.StatusConfigMap, Namespace: "karmada-system"}, Data: map[string]string{mcs.StatusKey: string(st)}}
	if _, err := s.f.Karmada.CoreV1().ConfigMaps("karmada-system").Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := Status(context.Background(), s.f, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "STALE") || !strings.Contains(out.String(), "WARNING: Karmada's own MCS controllers") {
		t.Errorf("status does not say stale and warn:\n%s", out.String())
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}
