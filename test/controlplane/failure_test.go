//go:build envtest

package controlplane_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/controller"
)

// setClusterReady sets the Ready condition Karmada's cluster status controller would write.
func setClusterReady(t *testing.T, name string, ready bool, since time.Time) {
	t.Helper()
	cl, err := karmadaAPI.ClusterV1alpha1().Clusters().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	status := metav1.ConditionTrue
	if !ready {
		status = metav1.ConditionFalse
	}
	meta.RemoveStatusCondition(&cl.Status.Conditions, clusterv1alpha1.ClusterConditionReady)
	cl.Status.Conditions = append(cl.Status.Conditions, metav1.Condition{Type: clusterv1alpha1.ClusterConditionReady, Status: status,
		Reason: "Test", Message: "set by the test", LastTransitionTime: metav1.NewTime(since)})
	if _, err := karmadaAPI.ClusterV1alpha1().Clusters().UpdateStatus(ctx, cl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// Drain: a member not Ready past the grace loses its endpoints in every importer, the derived
// Service (its ClusterIP) stays; Ready again, they come back.
func TestDrain(t *testing.T) {
	startController(t, controller.Options{FailureGrace: time.Second})
	ns := namespace(t, "drain")
	m1, m2 := members["member1"], members["member2"]
	serve(t, m1, ns, "pay", false, 443, "10.10.4.5")
	serve(t, m2, ns, "pay", false, 443, "10.12.4.5")
	export(t, m1, ns, "pay")
	export(t, m2, ns, "pay")
	expectImported(t, m2, ns, "pay", "10.10.4.5", "10.12.4.5")
	before := expectDerived(t, m2, ns, "derived-pay")

	setClusterReady(t, "member1", false, time.Now().Add(-time.Minute))
	t.Cleanup(func() { setClusterReady(t, "member1", true, time.Now()) })
	expectImported(t, m2, ns, "pay", "10.12.4.5")
	after, err := m2.kube.CoreV1().Services(ns).Get(ctx, "derived-pay", metav1.GetOptions{})
	if err != nil || after.UID != before.UID || after.Spec.ClusterIP != before.Spec.ClusterIP {
		t.Errorf("derived-pay changed during the drain: %v (ClusterIP %s → %s)", err, before.Spec.ClusterIP, after.Spec.ClusterIP)
	}

	setClusterReady(t, "member1", true, time.Now())
	expectImported(t, m2, ns, "pay", "10.10.4.5", "10.12.4.5")
	unexport(t, m1, ns, "pay")
	unexport(t, m2, ns, "pay")
	expectNoWorks(t, ns)
}

// Restart: the controller stopped in the middle of a flow, the export changed meanwhile; a new
// controller converges from what it finds, without recreating what exists.
func TestRestart(t *testing.T) {
	stop := startController(t, controller.Options{})
	ns := namespace(t, "restart")
	m1, m2 := members["member1"], members["member2"]
	serve(t, m1, ns, "cart", false, 80, "10.10.5.5")
	export(t, m1, ns, "cart")
	expectImported(t, m2, ns, "cart", "10.10.5.5")
	works, err := ourWorks(ns)
	if err != nil {
		t.Fatal(err)
	}
	derived := expectDerived(t, m2, ns, "derived-cart")
	stop()

	setEndpoints(t, m1, ns, "cart", "10.10.5.6", "10.10.5.7")
	serve(t, m1, ns, "late", false, 80, "10.10.5.9") // exported while no controller runs
	export(t, m1, ns, "late")
	startController(t, controller.Options{})
	expectImported(t, m2, ns, "cart", "10.10.5.6", "10.10.5.7")
	expectImported(t, m2, ns, "late", "10.10.5.9")
	now, err := ourWorks(ns)
	if err != nil {
		t.Fatal(err)
	}
	cart := 0
	for _, w := range now {
		if strings.Contains(w, "-restart-cart") {
			cart++
		}
	}
	if cart != len(works) {
		t.Errorf("Works of cart after the restart: %d, before: %d (%v)", cart, len(works), now)
	}
	again, err := m2.kube.CoreV1().Services(ns).Get(ctx, "derived-cart", metav1.GetOptions{})
	if err != nil || again.UID != derived.UID {
		t.Errorf("derived-cart recreated by the restart: %v", err)
	}
	unexport(t, m1, ns, "cart")
	unexport(t, m1, ns, "late")
	expectNoWorks(t, ns)
}

// A member that is not synced (cut off when the controller starts, or never reachable: a Cluster
// whose endpoint answers nothing) holds back only what depends on it: what it exported stays
// imported (nothing is deleted on the strength of a cache that is not there), and every other
// member's services keep flowing. Once it is back, everything converges.
func TestUnsyncedMemberHoldsOnlyItsOwn(t *testing.T) {
	stop := startController(t, controller.Options{})
	ns := namespace(t, "unsynced")
	m1, m2 := members["member1"], members["member2"]
	serve(t, m1, ns, "from1", false, 80, "10.10.7.5")
	export(t, m1, ns, "from1")
	expectImported(t, m2, ns, "from1", "10.10.7.5")
	stop()

	// member1 cut off, and a third Cluster that never answers.
	m1.proxy.setCut(true)
	t.Cleanup(func() { m1.proxy.setCut(false) })
	dead := &clusterv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "member9"}, Spec: clusterv1alpha1.ClusterSpec{
		SyncMode: clusterv1alpha1.Push, APIEndpoint: "https://127.0.0.1:1",
		SecretRef: &clusterv1alpha1.LocalSecretReference{Namespace: "karmada-cluster", Name: "member1"}}}
	if _, err := karmadaAPI.ClusterV1alpha1().Clusters().Create(ctx, dead, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = karmadaAPI.ClusterV1alpha1().Clusters().Delete(ctx, "member9", metav1.DeleteOptions{}) })
	mgrStart := time.Now()
	startControllerUnsynced(t, controller.Options{})

	// member2's own export flows to member2 meanwhile (automatic import), and its endpoints follow.
	serve(t, m2, ns, "from2", false, 80, "10.12.7.5")
	export(t, m2, ns, "from2")
	expectImported(t, m2, ns, "from2", "10.12.7.5")
	setEndpoints(t, m2, ns, "from2", "10.12.7.6")
	expectImported(t, m2, ns, "from2", "10.12.7.6")
	t.Logf("member2's export imported %s after the controller started with member1 cut off", time.Since(mgrStart).Round(100*time.Millisecond))
	// member1's export is still imported: its Works are held.
	if got, err := importedIPs(m2, ns, "from1"); err != nil || !slices.Equal(got, []string{"10.10.7.5"}) {
		t.Errorf("member1's endpoints in member2 while member1 is unknown: %v (%v), want them held", got, err)
	}

	// member1 back: it syncs, and its export is followed again.
	m1.proxy.setCut(false)
	setEndpoints(t, m1, ns, "from1", "10.10.7.6")
	expectImported(t, m2, ns, "from1", "10.10.7.6")
	unexport(t, m1, ns, "from1")
	unexport(t, m2, ns, "from2")
	// member9 is still unknown: Works it holds nothing of go.
	expectNoWorks(t, ns)
}
