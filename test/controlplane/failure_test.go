//go:build envtest

package controlplane_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

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
	// Converged (every Work applied, the automatic imports' included, which wait for the derived
	// Services' ClusterIPs) before the Works are counted.
	expectExportCondition(t, m1, ns, "cart", "Ready", "True/Exported")
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
		if strings.Contains(w, "-cart-") {
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

// A member that accepts requests and never answers (frozen) stalls nothing else: its status
// writes wait in its own writer, off the reconcile workers. With one worker, the default member
// request timeout (15 s) and six of its exports needing a status write, another member's new
// export is imported within the 30 s expectImported allows (written inline, the writes would
// hold that worker 6 × 15 s). Thawed, everything converges.
func TestHungMemberStallsNothingElse(t *testing.T) {
	startController(t, controller.Options{Workers: 1})
	ns := namespace(t, "hung")
	m1, m2 := members["member1"], members["member2"]
	names := []string{"h0", "h1", "h2", "h3", "h4", "h5"}
	for i, n := range names {
		serve(t, m1, ns, n, false, 80, fmt.Sprintf("10.10.8.%d", i+1))
		export(t, m1, ns, n)
	}
	for i, n := range names {
		expectImported(t, m2, ns, n, fmt.Sprintf("10.10.8.%d", i+1))
	}

	m1.proxy.setFrozen(true)
	t.Cleanup(func() { m1.proxy.setFrozen(false) })
	// Conflicting exports from member2: every export of member1 needs a status write (Conflict),
	// each of which hangs.
	for i, n := range names {
		serve(t, m2, ns, n, true, 80, fmt.Sprintf("10.12.8.%d", i+1))
		export(t, m2, ns, n)
	}
	start := time.Now()
	serve(t, m2, ns, "fresh", false, 80, "10.12.8.99")
	export(t, m2, ns, "fresh")
	expectImported(t, m2, ns, "fresh", "10.12.8.99")
	t.Logf("member2's export imported %s after it was made, with member1 hanging", time.Since(start).Round(100*time.Millisecond))
	// member1's writes wait, and the metric says for whom.
	eventually(t, 30*time.Second, "status writes pending for member1", func() error {
		if v := gauge(t, "coredns_mcs_controller_status_pending", "cluster", "member1"); v < 1 {
			return fmt.Errorf("coredns_mcs_controller_status_pending{cluster=member1} = %v", v)
		}
		return nil
	})

	m1.proxy.setFrozen(false)
	for _, n := range names {
		expectExportCondition(t, m1, ns, n, "Conflict", "True/TypeConflict")
	}
	eventually(t, 30*time.Second, "member1's status writes drained", func() error {
		if v := gauge(t, "coredns_mcs_controller_status_pending", "cluster", "member1"); v != 0 {
			return fmt.Errorf("coredns_mcs_controller_status_pending{cluster=member1} = %v", v)
		}
		return nil
	})
	for _, n := range names {
		unexport(t, m1, ns, n)
		unexport(t, m2, ns, n)
	}
	unexport(t, m2, ns, "fresh")
	expectNoWorks(t, ns)
}

// A member that claims another member's cluster id (its ClusterProperty) has its exports
// refused: no endpoints of it are merged into the other's, its export says why, the first
// member's export is imported as before. An invalid id is refused the same way.
func TestClusterIDConflictRefused(t *testing.T) {
	ns := namespace(t, "dupid")
	m1, m2 := members["member1"], members["member2"]
	setClusterProperty(t, m2, "member1")
	startController(t, controller.Options{})
	serve(t, m1, ns, "db", true, 5432, "10.10.12.1")
	serve(t, m2, ns, "db", true, 5432, "10.12.12.1")
	export(t, m1, ns, "db")
	export(t, m2, ns, "db")
	expectExportCondition(t, m2, ns, "db", "Valid", "False/ClusterIDConflict")
	expectExportCondition(t, m1, ns, "db", "Valid", "True/Valid")
	expectImported(t, m1, ns, "db", "10.10.12.1")
	time.Sleep(time.Second)
	expectImported(t, m1, ns, "db", "10.10.12.1") // and never member2's
	eventually(t, 30*time.Second, "a Warning event on member2's Cluster", func() error {
		evs, err := karmada.kube.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=member2,reason=ClusterIDConflict"})
		if err != nil || len(evs.Items) == 0 {
			return fmt.Errorf("no event (%v)", err)
		}
		if !strings.Contains(evs.Items[0].Message, "member1") {
			return fmt.Errorf("event %q does not name member1", evs.Items[0].Message)
		}
		return nil
	})

	setClusterProperty(t, m2, "Not_A_Label")
	expectExportCondition(t, m2, ns, "db", "Valid", "False/InvalidClusterID")

	deleteClusterProperty(t, m2)
	expectExportCondition(t, m2, ns, "db", "Valid", "True/Valid")
	expectImported(t, m1, ns, "db", "10.10.12.1", "10.12.12.1")
	unexport(t, m1, ns, "db")
	unexport(t, m2, ns, "db")
	expectNoWorks(t, ns)
}

var clusterPropertyGVR = schema.GroupVersionResource{Group: "about.k8s.io", Version: "v1alpha1", Resource: "clusterproperties"}

func setClusterProperty(t *testing.T, c *cluster, value string) {
	t.Helper()
	ri := c.dyn.Resource(clusterPropertyGVR)
	cur, err := ri.Get(ctx, "cluster.clusterset.k8s.io", metav1.GetOptions{})
	if err == nil {
		_ = unstructured.SetNestedField(cur.Object, value, "spec", "value")
		_, err = ri.Update(ctx, cur, metav1.UpdateOptions{})
	} else {
		_, err = ri.Create(ctx, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty",
			"metadata": map[string]any{"name": "cluster.clusterset.k8s.io"}, "spec": map[string]any{"value": value}}}, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteClusterProperty(t, c) })
}

func deleteClusterProperty(t *testing.T, c *cluster) {
	_ = c.dyn.Resource(clusterPropertyGVR).Delete(ctx, "cluster.clusterset.k8s.io", metav1.DeleteOptions{})
}

// A Cluster whose secretRef points outside the namespaces credentials are read from is refused:
// the Secret is not read, its token never sent (a loopback server records every request), a
// Warning event says why, and the other members are unaffected.
func TestSecretRefOutsideRefused(t *testing.T) {
	var requests atomic.Int32
	trap := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer trap.Close()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "someone-elses"},
		Data: map[string][]byte{"token": []byte("a-token-that-must-stay-here")}}
	if _, err := karmada.kube.CoreV1().Secrets("default").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	evil := &clusterv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: "evil"}, Spec: clusterv1alpha1.ClusterSpec{
		SyncMode: clusterv1alpha1.Push, APIEndpoint: trap.URL, InsecureSkipTLSVerification: true,
		SecretRef: &clusterv1alpha1.LocalSecretReference{Namespace: "default", Name: "someone-elses"}}}
	if _, err := karmadaAPI.ClusterV1alpha1().Clusters().Create(ctx, evil, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = karmadaAPI.ClusterV1alpha1().Clusters().Delete(ctx, "evil", metav1.DeleteOptions{}) })

	startControllerUnsynced(t, controller.Options{})
	eventually(t, 30*time.Second, "a Warning event SecretRefNotAllowed on Cluster evil", func() error {
		evs, err := karmada.kube.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=evil,reason=SecretRefNotAllowed"})
		if err != nil || len(evs.Items) == 0 {
			return fmt.Errorf("no event (%v)", err)
		}
		return nil
	})
	ns := namespace(t, "secretref")
	serve(t, members["member1"], ns, "web", false, 80, "10.10.13.1")
	export(t, members["member1"], ns, "web")
	expectImported(t, members["member2"], ns, "web", "10.10.13.1")
	if n := requests.Load(); n != 0 {
		t.Errorf("%d requests reached the Cluster's apiEndpoint", n)
	}
	unexport(t, members["member1"], ns, "web")
	expectNoWorks(t, ns)
}

// gauge reads a gauge of this process's controller-runtime registry (the controllers under test
// run in it) by one label.
func gauge(t *testing.T, name, label, value string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}
