//go:build envtest

package controlplane_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/controller"
	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

var (
	seGVR = mcsv1beta1.SchemeGroupVersion.WithResource("serviceexports")
	siGVR = mcsv1beta1.SchemeGroupVersion.WithResource("serviceimports")
	// The Karmada control plane serves Karmada's v1alpha1 copy of the MCS CRDs (as in the seed).
	siTemplateGVR = schema.GroupVersionResource{Group: mcs.Group, Version: "v1alpha1", Resource: "serviceimports"}
)

var ctx = context.Background()

func ptr[T any](v T) *T { return &v }

// serve creates Service ns/name in member c, with one EndpointSlice of the given pod IPs (there is
// no EndpointSlice controller here: the test writes what it would).
func serve(t *testing.T, c *cluster, ns, name string, headless bool, port int32, ips ...string) {
	t.Helper()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: port, Protocol: corev1.ProtocolTCP}}}}
	if headless {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	if _, err := c.kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	setEndpoints(t, c, ns, name, ips...)
}

// setEndpoints writes the one source EndpointSlice of ns/name in c.
func setEndpoints(t *testing.T, c *cluster, ns, name string, ips ...string) {
	t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-src", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for i, ip := range ips {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Hostname: ptr(fmt.Sprintf("%s-%d", name, i)),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
	}
	cur, err := c.kube.DiscoveryV1().EndpointSlices(ns).Get(ctx, es.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = c.kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{})
	} else if err == nil {
		es.ResourceVersion = cur.ResourceVersion
		_, err = c.kube.DiscoveryV1().EndpointSlices(ns).Update(ctx, es, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func export(t *testing.T, c *cluster, ns, name string) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": seGVR.GroupVersion().String(), "kind": "ServiceExport",
		"metadata": map[string]any{"namespace": ns, "name": name}}}
	if _, err := c.dyn.Resource(seGVR).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func unexport(t *testing.T, c *cluster, ns, name string) {
	t.Helper()
	if err := c.dyn.Resource(seGVR).Namespace(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// importedIPs are the endpoint addresses of our mirrored slices of ns/name in c, sorted.
func importedIPs(c *cluster, ns, name string) ([]string, error) {
	list, err := c.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: mcs.LabelServiceName + "=" + name})
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, s := range list.Items {
		if s.Labels[discoveryv1.LabelManagedBy] != controller.ManagedBy {
			continue
		}
		for _, e := range s.Endpoints {
			ips = append(ips, e.Addresses...)
		}
	}
	sort.Strings(ips)
	return ips, nil
}

// expectImported waits until member c imports exactly ips for ns/name.
func expectImported(t *testing.T, c *cluster, ns, name string, ips ...string) {
	t.Helper()
	sort.Strings(ips)
	eventually(t, 30*time.Second, fmt.Sprintf("%s imports %s/%s from %v", c.name, ns, name, ips), func() error {
		got, err := importedIPs(c, ns, name)
		if err != nil {
			return err
		}
		if !slices.Equal(got, ips) {
			return fmt.Errorf("imported endpoints %v", got)
		}
		return nil
	})
}

// expectDerived waits for the derived Service name in c (Karmada applies Works in no set order:
// the slices may come first).
func expectDerived(t *testing.T, c *cluster, ns, name string) *corev1.Service {
	t.Helper()
	var svc *corev1.Service
	eventually(t, 30*time.Second, c.name+" has "+ns+"/"+name, func() error {
		var err error
		svc, err = c.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		return err
	})
	return svc
}

// exportCondition reads a condition of the ServiceExport ns/name in c: "status/reason".
func exportCondition(c *cluster, ns, name, typ string) string {
	u, err := c.dyn.Resource(seGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	cond := meta.FindStatusCondition(mcs.ExportFrom(u).Status.Conditions, typ)
	if cond == nil {
		return "none"
	}
	return string(cond.Status) + "/" + cond.Reason
}

func expectExportCondition(t *testing.T, c *cluster, ns, name, typ, want string) {
	t.Helper()
	eventually(t, 30*time.Second, fmt.Sprintf("%s's ServiceExport %s/%s %s=%s", c.name, ns, name, typ, want), func() error {
		if got := exportCondition(c, ns, name, typ); got != want {
			return fmt.Errorf("%s is %s", typ, got)
		}
		return nil
	})
}

// ourWorks counts the controller's Works of namespace ns.
func ourWorks(ns string) ([]string, error) {
	list, err := karmadaAPI.WorkV1alpha1().Works(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		LabelSelector: "mcs.coredns-mcs.io/service-namespace=" + ns})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, w := range list.Items {
		names = append(names, w.Namespace+"/"+w.Name)
	}
	sort.Strings(names)
	return names, nil
}

func expectNoWorks(t *testing.T, ns string) {
	t.Helper()
	eventually(t, 60*time.Second, "no Work of "+ns+" left", func() error {
		names, err := ourWorks(ns)
		if err == nil && len(names) > 0 {
			err = fmt.Errorf("Works %v", names)
		}
		return err
	})
}

// seedImport is the seed's import of ns/name into c: a ServiceImport template on Karmada (so no
// automatic imports) and the ServiceImport Karmada's propagation puts in c.
func seedImport(t *testing.T, ns, name string, c *cluster) {
	t.Helper()
	tmpl := &unstructured.Unstructured{Object: map[string]any{"apiVersion": siTemplateGVR.GroupVersion().String(), "kind": "ServiceImport",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     map[string]any{"type": "ClusterSetIP", "ports": []any{map[string]any{"port": int64(80), "protocol": "TCP"}}}}}
	if _, err := karmada.dyn.Resource(siTemplateGVR).Namespace(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	si := tmpl.DeepCopy()
	si.SetAPIVersion(siGVR.GroupVersion().String())
	if _, err := c.dyn.Resource(siGVR).Namespace(ns).Create(ctx, si, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// The seed: a ServiceImport template on Karmada (so no automatic imports), the user's
// ServiceImport in member2 (what Karmada's propagation puts there), an export in member1.
func TestSeedFlow(t *testing.T) {
	startController(t, controller.Options{})
	ns := namespace(t, "seed")
	m1, m2 := members["member1"], members["member2"]
	seedImport(t, ns, "serve", m2)
	serve(t, m1, ns, "serve", false, 80, "10.10.0.5", "10.10.0.6")
	export(t, m1, ns, "serve")

	expectImported(t, m2, ns, "serve", "10.10.0.5", "10.10.0.6")
	derived := expectDerived(t, m2, ns, "derived-serve")
	if derived.Spec.ClusterIP == "" || derived.Spec.ClusterIP == corev1.ClusterIPNone || derived.Spec.Selector != nil {
		t.Fatalf("derived-serve in member2: %+v", derived.Spec)
	}
	expectExportCondition(t, m1, ns, "serve", "Valid", "True/Valid")
	expectExportCondition(t, m1, ns, "serve", "Ready", "True/Exported")
	expectExportCondition(t, m1, ns, "serve", "Conflict", "False/NoConflicts")
	eventually(t, 30*time.Second, "member2's ServiceImport lists member1", func() error {
		u, err := m2.dyn.Resource(siGVR).Namespace(ns).Get(ctx, "serve", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cl := mcs.ImportFrom(u).Status.Clusters; len(cl) != 1 || cl[0].Cluster != "member1" {
			return fmt.Errorf("status.clusters %v", cl)
		}
		return nil
	})
	// Not imported where no ServiceImport is (member1 has none; the template turns automatic
	// imports off).
	if ips, _ := importedIPs(m1, ns, "serve"); len(ips) > 0 {
		t.Errorf("member1 imports %v without a ServiceImport", ips)
	}

	// Endpoints follow; the export going takes everything with it.
	setEndpoints(t, m1, ns, "serve", "10.10.0.7")
	expectImported(t, m2, ns, "serve", "10.10.0.7")
	unexport(t, m1, ns, "serve")
	expectNoWorks(t, ns)
	if _, err := m2.kube.CoreV1().Services(ns).Get(ctx, "derived-serve", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("derived-serve still in member2 after the export went: %v", err)
	}

	// The reconcilers are controller-runtime's: its standard metrics count them, beside ours.
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && (f.GetName() == "controller_runtime_reconcile_total" || f.GetName() == "workqueue_adds_total") {
					counts[f.GetName()+"/"+l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
		if f.GetName() == "coredns_mcs_controller_reconciles_total" {
			for _, m := range f.GetMetric() {
				counts[f.GetName()] += m.GetCounter().GetValue()
			}
		}
	}
	for _, k := range []string{"controller_runtime_reconcile_total/mcs-service", "controller_runtime_reconcile_total/mcs-cluster",
		"coredns_mcs_controller_reconciles_total"} {
		if counts[k] == 0 {
			t.Errorf("%s: 0 reconciles counted (%v)", k, counts)
		}
	}
}

// Without a template, every member with the namespace imports automatically and gets its
// ServiceImport from the controller, with the derived Service's ClusterIP as spec.ips.
func TestAutomaticImports(t *testing.T) {
	startController(t, controller.Options{})
	ns := namespace(t, "auto")
	m1, m2 := members["member1"], members["member2"]
	serve(t, m1, ns, "api", false, 8080, "10.10.1.5")
	export(t, m1, ns, "api")
	for _, c := range []*cluster{m1, m2} {
		expectImported(t, c, ns, "api", "10.10.1.5")
		eventually(t, 30*time.Second, c.name+"'s automatic ServiceImport carries the ClusterSetIP", func() error {
			u, err := c.dyn.Resource(siGVR).Namespace(ns).Get(ctx, "api", metav1.GetOptions{})
			if err != nil {
				return err
			}
			derived, err := c.kube.CoreV1().Services(ns).Get(ctx, "derived-api", metav1.GetOptions{})
			if err != nil {
				return err
			}
			si := mcs.ImportFrom(u)
			if si.Labels["app.kubernetes.io/managed-by"] != controller.ManagedBy || !slices.Equal(si.Spec.IPs, derived.Spec.ClusterIPs) {
				return fmt.Errorf("ServiceImport %+v, derived ClusterIPs %v", si.Spec, derived.Spec.ClusterIPs)
			}
			return nil
		})
	}
	unexport(t, m1, ns, "api")
	expectNoWorks(t, ns)
	for _, c := range []*cluster{m1, m2} {
		if _, err := c.dyn.Resource(siGVR).Namespace(ns).Get(ctx, "api", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s: automatic ServiceImport left after the export went: %v", c.name, err)
		}
	}
}

// Exports that disagree: the oldest wins, every export says Conflict with the reason.
func TestConflicts(t *testing.T) {
	startController(t, controller.Options{})
	ns := namespace(t, "conflict")
	m1, m2 := members["member1"], members["member2"]
	serve(t, m1, ns, "db", false, 5432, "10.10.2.5")
	export(t, m1, ns, "db")
	expectExportCondition(t, m1, ns, "db", "Ready", "True/Exported")
	serve(t, m2, ns, "db", true, 5432, "10.12.2.5") // headless: a TypeConflict
	export(t, m2, ns, "db")
	for _, c := range []*cluster{m1, m2} {
		expectExportCondition(t, c, ns, "db", "Conflict", "True/TypeConflict")
		// The user who must act is told where they look: a Warning event on their export.
		eventually(t, 30*time.Second, c.name+": a Warning event TypeConflict on ServiceExport db", func() error {
			evs, err := c.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=db,involvedObject.kind=ServiceExport"})
			if err != nil {
				return err
			}
			for _, e := range evs.Items {
				if e.Type == corev1.EventTypeWarning && e.Reason == "TypeConflict" {
					return nil
				}
			}
			return fmt.Errorf("%d events, none a Warning TypeConflict", len(evs.Items))
		})
	}
	// Both exports' endpoints are imported; the type is the oldest's (ClusterSetIP).
	expectImported(t, m2, ns, "db", "10.10.2.5", "10.12.2.5")
	if derived := expectDerived(t, m2, ns, "derived-db"); derived.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Errorf("derived-db is headless, want the oldest export's type (a ClusterIP)")
	}
	unexport(t, m2, ns, "db")
	expectExportCondition(t, m1, ns, "db", "Conflict", "False/NoConflicts")
	unexport(t, m1, ns, "db")
	expectNoWorks(t, ns)
}

// A headless export is imported headless, with hostnames kept for per-pod DNS names.
func TestHeadless(t *testing.T) {
	startController(t, controller.Options{})
	ns := namespace(t, "headless")
	m1, m2 := members["member1"], members["member2"]
	serve(t, m1, ns, "web", true, 80, "10.10.3.5", "10.10.3.6")
	export(t, m1, ns, "web")
	expectImported(t, m2, ns, "web", "10.10.3.5", "10.10.3.6")
	if derived := expectDerived(t, m2, ns, "derived-web"); derived.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Fatalf("derived-web: ClusterIP %q, want headless", derived.Spec.ClusterIP)
	}
	list, _ := m2.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: mcs.LabelServiceName + "=web"})
	var hosts []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.Hostname != nil {
				hosts = append(hosts, *e.Hostname)
			}
		}
		if s.Labels[mcs.LabelSourceCluster] != "member1" {
			t.Errorf("slice %s: source cluster %q", s.Name, s.Labels[mcs.LabelSourceCluster])
		}
	}
	sort.Strings(hosts)
	if !slices.Equal(hosts, []string{"web-0", "web-1"}) {
		t.Errorf("hostnames %v", hosts)
	}
	eventually(t, 30*time.Second, "member2's automatic import is headless", func() error {
		u, err := m2.dyn.Resource(siGVR).Namespace(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if si := mcs.ImportFrom(u); si.Spec.Type != mcsv1beta1.Headless || len(si.Spec.IPs) != 0 {
			return fmt.Errorf("spec %+v", si.Spec)
		}
		return nil
	})
	unexport(t, m1, ns, "web")
	expectNoWorks(t, ns)
}

// Services whose Works had one name under the earlier naming (mcs-<kind>-<ns>-<name>) are both
// imported.
func TestWorkNamesDoNotCollide(t *testing.T) {
	startController(t, controller.Options{})
	a, b := namespace(t, "team-a"), namespace(t, "team")
	m1, m2 := members["member1"], members["member2"]
	serve(t, m1, a, "api", false, 80, "10.10.9.1")
	export(t, m1, a, "api")
	serve(t, m1, b, "a-api", false, 80, "10.10.9.2")
	export(t, m1, b, "a-api")
	expectImported(t, m2, a, "api", "10.10.9.1")
	expectImported(t, m2, b, "a-api", "10.10.9.2")
	expectExportCondition(t, m1, a, "api", "Ready", "True/Exported")
	expectExportCondition(t, m1, b, "a-api", "Ready", "True/Exported")
	unexport(t, m1, a, "api")
	unexport(t, m1, b, "a-api")
	expectNoWorks(t, a)
	expectNoWorks(t, b)
}

// Works written under the earlier naming are retired when the controller takes over: their
// objects stay (the derived Service keeps its UID and ClusterIP), the old Works go, nothing is
// left twice.
func TestOldWorkNamesRetired(t *testing.T) {
	ns := namespace(t, "upgrade")
	m1, m2 := members["member1"], members["member2"]
	serve(t, m1, ns, "legacy", false, 80, "10.10.10.1")
	// What the previous version wrote for member1's export of legacy, imported by member2 (the
	// user's ServiceImport there): a derived Service Work and a slice Work, old names.
	si := &unstructured.Unstructured{Object: map[string]any{"apiVersion": siGVR.GroupVersion().String(), "kind": "ServiceImport",
		"metadata": map[string]any{"namespace": ns, "name": "legacy"},
		"spec":     map[string]any{"type": "ClusterSetIP", "ports": []any{map[string]any{"port": int64(80), "protocol": "TCP"}}}}}
	if _, err := m2.dyn.Resource(siGVR).Namespace(ns).Create(ctx, si, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc := map[string]any{"apiVersion": "v1", "kind": "Service", "metadata": map[string]any{"name": "derived-legacy", "namespace": ns,
		"labels":      map[string]any{"app.kubernetes.io/managed-by": controller.ManagedBy, mcs.LabelServiceName: "legacy", "karmada.io/managed": "true"},
		"annotations": map[string]any{"work.karmada.io/conflict-resolution": "overwrite"}},
		"spec": map[string]any{"type": "ClusterIP", "ports": []any{map[string]any{"name": "http", "port": int64(80), "protocol": "TCP"}}}}
	oldWork(t, "member2", "mcs-svc-"+ns+"-legacy", ns, "legacy", "", svc)
	expectDerived(t, m2, ns, "derived-legacy")
	before, err := m2.kube.CoreV1().Services(ns).Get(ctx, "derived-legacy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	startController(t, controller.Options{})
	export(t, m1, ns, "legacy")
	expectImported(t, m2, ns, "legacy", "10.10.10.1")
	eventually(t, 30*time.Second, "the old Work retired", func() error {
		names, err := ourWorks(ns)
		if err != nil {
			return err
		}
		for _, n := range names {
			if n == "karmada-es-member2/mcs-svc-"+ns+"-legacy" {
				return fmt.Errorf("still there: %v", names)
			}
		}
		return nil
	})
	after, err := m2.kube.CoreV1().Services(ns).Get(ctx, "derived-legacy", metav1.GetOptions{})
	if err != nil || after.UID != before.UID || after.Spec.ClusterIP != before.Spec.ClusterIP {
		t.Fatalf("derived-legacy after the upgrade: %v (UID %s → %s, ClusterIP %s → %s)", err, before.UID, after.UID, before.Spec.ClusterIP, after.Spec.ClusterIP)
	}
	// It stays: a moment later too (the retired Work took nothing with it).
	time.Sleep(time.Second)
	if _, err := m2.kube.CoreV1().Services(ns).Get(ctx, "derived-legacy", metav1.GetOptions{}); err != nil {
		t.Fatalf("derived-legacy gone after the old Work was retired: %v", err)
	}
	unexport(t, m1, ns, "legacy")
	expectNoWorks(t, ns)
}

// oldWork writes a Work as the previous version did: our labels, the execution finalizer, one
// manifest.
func oldWork(t *testing.T, cluster, name, ns, svc, source string, manifest map[string]any) {
	t.Helper()
	raw, err := json.Marshal(manifest)
	if err != nil {
		t.Fatal(err)
	}
	w := &workv1alpha1.Work{
		ObjectMeta: metav1.ObjectMeta{Namespace: "karmada-es-" + cluster, Name: name,
			Labels: map[string]string{"app.kubernetes.io/managed-by": controller.ManagedBy,
				"mcs.coredns-mcs.io/service-namespace": ns, "mcs.coredns-mcs.io/service-name": svc},
			Annotations: map[string]string{"mcs.coredns-mcs.io/manifest-hash": "from-the-previous-version"},
			Finalizers:  []string{executionFinalizer}},
		Spec: workv1alpha1.WorkSpec{Workload: workv1alpha1.WorkloadTemplate{
			Manifests: []workv1alpha1.Manifest{{RawExtension: runtime.RawExtension{Raw: raw}}}}},
	}
	if source != "" {
		w.Labels["mcs.coredns-mcs.io/source-cluster"] = source
	}
	if _, err := karmadaAPI.WorkV1alpha1().Works(w.Namespace).Create(ctx, w, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A Service of the derived name that the controller did not write is never overwritten nor
// deleted: that member does not import, the export says why, the others import.
func TestDerivedServiceNotTakenOver(t *testing.T) {
	startController(t, controller.Options{})
	ns := namespace(t, "taken")
	m1, m2 := members["member1"], members["member2"]
	mine := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "derived-x", Labels: map[string]string{"owner": "me"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "mine"}, Ports: []corev1.ServicePort{{Port: 9999}}}}
	mine, err := m2.kube.CoreV1().Services(ns).Create(ctx, mine, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// member2 imports x through its own ServiceImport (member1 automatically).
	si := &unstructured.Unstructured{Object: map[string]any{"apiVersion": siGVR.GroupVersion().String(), "kind": "ServiceImport",
		"metadata": map[string]any{"namespace": ns, "name": "x"},
		"spec":     map[string]any{"type": "ClusterSetIP", "ports": []any{map[string]any{"port": int64(80), "protocol": "TCP"}}}}}
	if _, err := m2.dyn.Resource(siGVR).Namespace(ns).Create(ctx, si, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	serve(t, m1, ns, "x", false, 80, "10.10.11.1")
	export(t, m1, ns, "x")
	expectImported(t, m1, ns, "x", "10.10.11.1")
	expectExportCondition(t, m1, ns, "x", "Ready", "False/DerivedServiceTaken")
	if got := exportMessage(m1, ns, "x", "Ready"); !strings.Contains(got, "member2") || !strings.Contains(got, "derived-x") {
		t.Errorf("Ready message %q: want it to name member2 and derived-x", got)
	}
	if ips, _ := importedIPs(m2, ns, "x"); len(ips) > 0 {
		t.Errorf("member2 imports %v beside the user's derived-x", ips)
	}
	// The user's ServiceImport in member2 says why, and a Warning event on it too.
	eventually(t, 30*time.Second, "member2's ServiceImport x: Ready=False naming derived-x, and a Warning event", func() error {
		u, err := m2.dyn.Resource(siGVR).Namespace(ns).Get(ctx, "x", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cond := meta.FindStatusCondition(mcs.ImportFrom(u).Status.Conditions, "Ready")
		if cond == nil || cond.Status != metav1.ConditionFalse || !strings.Contains(cond.Message, "derived-x") {
			return fmt.Errorf("Ready %+v", cond)
		}
		evs, err := m2.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=x,involvedObject.kind=ServiceImport,reason=DerivedServiceTaken"})
		if err != nil || len(evs.Items) == 0 {
			return fmt.Errorf("no Warning event on the ServiceImport (%v)", err)
		}
		return nil
	})
	unexport(t, m1, ns, "x")
	expectNoWorks(t, ns)
	after, err := m2.kube.CoreV1().Services(ns).Get(ctx, "derived-x", metav1.GetOptions{})
	if err != nil || after.UID != mine.UID || after.Spec.Selector["app"] != "mine" || after.Labels["app.kubernetes.io/managed-by"] != "" {
		t.Fatalf("the user's derived-x after the export came and went: %v %+v", err, after)
	}
}

// exportMessage reads a condition's message of the ServiceExport ns/name in c.
func exportMessage(c *cluster, ns, name, typ string) string {
	u, err := c.dyn.Resource(seGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	if cond := meta.FindStatusCondition(mcs.ExportFrom(u).Status.Conditions, typ); cond != nil {
		return cond.Message
	}
	return ""
}
