package controller

import (
	"testing"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func cluster(status string, since time.Time) *clusterv1alpha1.Cluster {
	cl := &clusterv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "member1"}}
	if status != "" {
		cl.Status.Conditions = []metav1.Condition{{Type: clusterv1alpha1.ClusterConditionReady, Status: metav1.ConditionStatus(status),
			LastTransitionTime: metav1.NewTime(since)}}
	}
	return cl
}

func TestClusterReady(t *testing.T) {
	since := time.Now().Add(-time.Minute).Truncate(time.Second)
	if ok, _ := clusterReady(cluster("True", since)); !ok {
		t.Error("Ready=True read as not ready")
	}
	if ok, _ := clusterReady(cluster("", since)); !ok {
		t.Error("a cluster without a Ready condition (just joined) must not count as failed")
	}
	for _, st := range []string{"False", "Unknown"} {
		ok, at := clusterReady(cluster(st, since))
		if ok || !at.Equal(since) {
			t.Errorf("Ready=%s: ready=%v since=%v, want false since %v", st, ok, at, since)
		}
	}
}

func TestDrained(t *testing.T) {
	for _, tc := range []struct {
		policy  string
		notFor  time.Duration // not Ready for this long; 0 = Ready
		drained bool
	}{
		{MemberFailureDrain, 0, false},
		{MemberFailureDrain, 30 * time.Second, false},
		{MemberFailureDrain, 61 * time.Second, true},
		{MemberFailureKeep, 10 * time.Minute, false},
	} {
		c := &Controller{opts: Options{MemberFailure: tc.policy, FailureGrace: time.Minute}, notReady: map[string]time.Time{}}
		if tc.notFor > 0 {
			c.notReady["member1"] = time.Now().Add(-tc.notFor)
		}
		if got := c.drained("member1"); got != tc.drained {
			t.Errorf("%s, not Ready for %v: drained=%v, want %v", tc.policy, tc.notFor, got, tc.drained)
		}
	}
}

func TestMemberFailurePolicyValidated(t *testing.T) {
	if _, err := New(nil, Options{MemberFailure: "evict"}); err == nil {
		t.Error("an unknown member failure policy must be refused")
	}
}
