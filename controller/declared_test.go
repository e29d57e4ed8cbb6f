package controller

import (
	"testing"
	"time"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func binding(kind, name string, clusters []string, status ...workv1alpha2.AggregatedStatusItem) *workv1alpha2.ResourceBinding {
	rb := &workv1alpha2.ResourceBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: name + "-" + kind, ResourceVersion: "7",
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "karmada"}}, Labels: map[string]string{"a": "b"}},
		Spec: workv1alpha2.ResourceBindingSpec{Resource: workv1alpha2.ObjectReference{APIVersion: "multicluster.x-k8s.io/v1alpha1", Kind: kind,
			Namespace: "team", Name: name}}}
	for _, c := range clusters {
		rb.Spec.Clusters = append(rb.Spec.Clusters, workv1alpha2.TargetCluster{Name: c, Replicas: 3})
	}
	rb.Status.AggregatedStatus = status
	return rb
}

func newTestDeclared(t *testing.T, timeout time.Duration, rbs ...*workv1alpha2.ResourceBinding) *declared {
	t.Helper()
	d := &declared{timeout: timeout, since: map[string]time.Time{}, withdrawn: map[string]string{}}
	d.inf = cache.NewSharedIndexInformer(&cache.ListWatch{}, &workv1alpha2.ResourceBinding{}, 0, cache.Indexers{
		resourceBindingIndex: func(obj any) ([]string, error) {
			rb := obj.(*workv1alpha2.ResourceBinding)
			if mcsKind(rb.Spec.Resource) == "" {
				return nil, nil
			}
			return []string{rb.Spec.Resource.Kind + "/" + rb.Spec.Resource.Namespace + "/" + rb.Spec.Resource.Name}, nil
		}})
	for _, rb := range rbs {
		trimmed, _ := trimBinding(rb)
		if err := d.inf.GetIndexer().Add(trimmed); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// Bindings of other kinds are kept as their name; those of the MCS kinds keep what is read.
func TestTrimBinding(t *testing.T) {
	deploy := binding("Deployment", "web", []string{"member1"})
	deploy.Spec.Resource.APIVersion = "apps/v1"
	out, _ := trimBinding(deploy)
	rb := out.(*workv1alpha2.ResourceBinding)
	if rb.Name != "web-Deployment" || rb.Spec.Resource.Kind != "" || len(rb.Spec.Clusters) != 0 || rb.Labels != nil || rb.ManagedFields != nil {
		t.Errorf("a Deployment's binding kept %+v", rb)
	}
	se := binding("ServiceExport", "api", []string{"member1"}, workv1alpha2.AggregatedStatusItem{ClusterName: "member1", AppliedMessage: "denied"})
	out, _ = trimBinding(se)
	rb = out.(*workv1alpha2.ResourceBinding)
	if rb.Spec.Resource.Name != "api" || len(rb.Spec.Clusters) != 1 || rb.Spec.Clusters[0].Name != "member1" ||
		len(rb.Status.AggregatedStatus) != 1 || rb.Status.AggregatedStatus[0].AppliedMessage != "denied" || rb.ManagedFields != nil {
		t.Errorf("a ServiceExport's binding kept %+v", rb)
	}
}

// Targets: every scheduled cluster, since when it was first seen, and a failed apply; a cluster
// that leaves the binding is forgotten; gone() withdraws on failure and after the timeout only.
func TestDeclaredTargets(t *testing.T) {
	now := time.Now()
	d := newTestDeclared(t, 30*time.Second,
		binding("ServiceExport", "api", []string{"member1", "member2"},
			workv1alpha2.AggregatedStatusItem{ClusterName: "member1", Applied: false, AppliedMessage: "admission denied"},
			workv1alpha2.AggregatedStatusItem{ClusterName: "member2", Applied: false}),
		binding("ServiceImport", "api", []string{"member3"}))
	got := map[string]declaredTarget{}
	for _, tg := range d.targets("ServiceExport", "team", "api", now) {
		got[tg.cluster] = tg
	}
	if len(got) != 2 || got["member1"].failed != "admission denied" || got["member2"].failed != "" || !got["member2"].since.Equal(now) {
		t.Fatalf("targets %+v", got)
	}
	if reason, _, _ := d.gone(got["member1"], now); reason != withdrawnFailed {
		t.Errorf("member1 (apply failed): %q", reason)
	}
	if reason, _, wait := d.gone(got["member2"], now.Add(10*time.Second)); reason != "" || wait != 20*time.Second {
		t.Errorf("member2 after 10 s: %q, wait %v", reason, wait)
	}
	if reason, _, _ := d.gone(got["member2"], now.Add(31*time.Second)); reason != withdrawnTimeout {
		t.Errorf("member2 after 31 s: %q", reason)
	}
	// Seen later, the first sighting is kept.
	for _, tg := range d.targets("ServiceExport", "team", "api", now.Add(5*time.Second)) {
		if !tg.since.Equal(now) {
			t.Errorf("%s: since moved to %v", tg.cluster, tg.since)
		}
	}
	if !d.scheduledTo("team/api", "member2") || d.scheduledTo("team/api", "member3") || d.scheduledTo("team/web", "member1") {
		t.Error("scheduledTo")
	}
	if imp := d.targets("ServiceImport", "team", "api", now); len(imp) != 1 || imp[0].cluster != "member3" {
		t.Errorf("import targets %+v", imp)
	}
	// member2 leaves the binding: forgotten, and counted anew if it comes back.
	trimmed, _ := trimBinding(binding("ServiceExport", "api", []string{"member1"}))
	if err := d.inf.GetIndexer().Update(trimmed); err != nil {
		t.Fatal(err)
	}
	if tg := d.targets("ServiceExport", "team", "api", now.Add(time.Minute)); len(tg) != 1 || tg[0].cluster != "member1" {
		t.Fatalf("after member2 left: %+v", tg)
	}
	trimmed, _ = trimBinding(binding("ServiceExport", "api", []string{"member1", "member2"}))
	_ = d.inf.GetIndexer().Update(trimmed)
	for _, tg := range d.targets("ServiceExport", "team", "api", now.Add(time.Minute)) {
		if tg.cluster == "member2" && !tg.since.Equal(now.Add(time.Minute)) {
			t.Errorf("member2 back: since %v, want the new sighting", tg.since)
		}
	}
	// member1's object lands, then leaves while member1 is still scheduled (its namespace being
	// deleted, say): the timeout counts from when it left, not from the first sighting.
	d.landed("ServiceExport", "team", "api", "member1")
	left := now.Add(10 * time.Minute)
	for _, tg := range d.targets("ServiceExport", "team", "api", left) {
		if tg.cluster != "member1" {
			continue
		}
		if !tg.since.Equal(left) {
			t.Errorf("member1 left after landing: since %v, want %v", tg.since, left)
		}
		if reason, _, _ := d.gone(tg, left.Add(time.Second)); reason != "" {
			t.Errorf("member1 left a second ago: withdrawn (%s)", reason)
		}
	}
	// A target in a member not known yet keeps its clock: forgetting its withdrawal is all.
	d.forgetWithdrawal("ServiceExport", "team", "api", "member2")
	for _, tg := range d.targets("ServiceExport", "team", "api", left) {
		if tg.cluster == "member2" && !tg.since.Equal(now.Add(time.Minute)) {
			t.Errorf("member2 after forgetWithdrawal: since %v, want %v kept", tg.since, now.Add(time.Minute))
		}
	}
	// Withdrawals are news once per reason.
	if !d.withdraw("ServiceExport", "team", "api", "member1", withdrawnFailed) || d.withdraw("ServiceExport", "team", "api", "member1", withdrawnFailed) {
		t.Error("withdraw: want news once")
	}
	if keys := d.keys("team"); len(keys) != 1 || keys[0] != "team/api" { // export and import binding: listed once
		t.Errorf("keys %v", keys)
	}
	var off *declared
	if off.enabled() || off.targets("ServiceExport", "team", "api", now) != nil || off.scheduledTo("team/api", "member1") || !off.ready() {
		t.Error("a nil declared (off) must count nothing and never hold reconciles")
	}
}
