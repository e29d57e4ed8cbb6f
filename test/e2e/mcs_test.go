//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

var (
	seGVR        = schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceexports"}
	siGVR        = schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceimports"}
	siV1beta1GVR = schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1beta1", Resource: "serviceimports"}
	workGVR      = schema.GroupVersionResource{Group: "work.karmada.io", Version: "v1alpha1", Resource: "works"}
)

const ourManager = "mcs-controller.coredns-mcs.io"

// readyIPs returns the ready endpoint addresses of the slices selected in ns, sorted.
func readyIPs(ctx context.Context, c kubernetes.Interface, ns, selector string) ([]string, []discoveryv1.EndpointSlice, error) {
	list, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, nil, err
	}
	var ips []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				ips = append(ips, e.Addresses...)
			}
		}
	}
	slices.Sort(ips)
	return ips, list.Items, nil
}

// servePodIPs returns the IPs of member1's Running, ready serve pods.
func servePodIPs(ctx context.Context, m1 kubernetes.Interface) ([]string, error) {
	pods, err := m1.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=serve"})
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
			ips = append(ips, p.Status.PodIP)
		}
	}
	slices.Sort(ips)
	return ips, nil
}

// condition returns the status and reason of a condition on an unstructured object.
func condition(u *unstructured.Unstructured, t string) (string, string, string) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == t {
			s, _ := m["status"].(string)
			r, _ := m["reason"].(string)
			msg, _ := m["message"].(string)
			return s, r, msg
		}
	}
	return "", "", ""
}

func expectConditions(t *testing.T, ctxName, ns, name string, want map[string]string) {
	t.Helper()
	expectConditionsWithin(t, 30*time.Second, ctxName, ns, name, want)
}

func expectConditionsWithin(t *testing.T, timeout time.Duration, ctxName, ns, name string, want map[string]string) {
	t.Helper()
	dyn := env.Dynamic(t, ctxName)
	clusterset.Eventually(t, timeout, fmt.Sprintf("ServiceExport %s/%s conditions in %s", ns, name, ctxName), func() error {
		u, err := dyn.Resource(seGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for typ, w := range want {
			status, reason, msg := condition(u, typ)
			if got := status + "/" + reason; got != w {
				return fmt.Errorf("%s = %s (%s), want %s", typ, got, msg, w)
			}
		}
		return nil
	})
}

// deleteSeed removes the seed's objects from Karmada and waits until the members are clean: the
// derived objects gone from member2 (the controller, stopped after this cleanup, removes them)
// and the workload gone from member1, so the next test starts from nothing.
func deleteSeed(t testing.TB) {
	t.Helper()
	// The export first: without it the template's deletion would turn the import automatic. The
	// templates go before their policies: a policy deleted first (in the same kubectl delete)
	// can leave its propagated object behind in the member (Karmada keeps what a deleted policy
	// propagated), and a ServiceExport left in member1 keeps derived-serve imported.
	for _, kind := range []string{"serviceexport", "serviceimport"} {
		env.Run(clusterset.Karmada, "", "-n", "default", "delete", "--ignore-not-found", kind+".v1alpha1.multicluster.x-k8s.io", "serve")
	}
	for _, f := range []string{"02-export.yaml", "03-import.yaml", "01-workload.yaml"} {
		env.Run(clusterset.Karmada, "", "delete", "--ignore-not-found", "-f", env.Seed(f))
	}
	// The templates gone from Karmada (their bindings' finalizers removed): a test applying the
	// seed next would otherwise update a template on its way out, which then disappears.
	dyn := env.Dynamic(t, clusterset.Karmada)
	clusterset.Eventually(t, time.Minute, "the seed's MCS templates gone from Karmada", func() error {
		for _, gvr := range []schema.GroupVersionResource{seGVR, siGVR} {
			if u, err := dyn.Resource(gvr).Namespace("default").Get(context.Background(), "serve", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("%s serve: %s", gvr.Resource, objState(u, err))
			}
		}
		return nil
	})
	// Whatever Karmada left behind in the members all the same (member3: the Pull test's import).
	for _, m := range []string{clusterset.Member1, clusterset.Member2, clusterset.Member3} {
		for _, kind := range []string{"serviceexport", "serviceimport"} {
			env.Run(m, "", "-n", "default", "delete", "--ignore-not-found", "--wait=false", kind+".v1alpha1.multicluster.x-k8s.io", "serve")
		}
	}
	expectGone(t, env.Client(t, clusterset.Member2), "derived-serve")
	expectGone(t, env.Client(t, clusterset.Member1), "derived-serve")
	expectNoWorks(t, "mcs.coredns-mcs.io/service-namespace=default,mcs.coredns-mcs.io/service-name=serve")
	m1 := env.Client(t, clusterset.Member1)
	// Two minutes: after a test that froze member1's apiserver, kwok in member1 may take a
	// minute to relist before it finishes a pod's deletion (seen once in a clean-clone run:
	// "failed to apply stage", then the delete 60 s later).
	clusterset.Eventually(t, 2*time.Minute, "serve gone from member1", func() error {
		ctx := context.Background()
		pods, err := m1.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=serve"})
		if err != nil || len(pods.Items) > 0 {
			return fmt.Errorf("%d pods (err=%v)", len(pods.Items), err)
		}
		if _, err := m1.CoreV1().Services("default").Get(ctx, "serve", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Service serve still there (err=%v)", err)
		}
		return nil
	})
}

func applySeed(t testing.TB) {
	t.Helper()
	env.PropagateMCSCRDs(t)
	t.Cleanup(func() { deleteSeed(t) })
	for _, f := range []string{"01-workload.yaml", "02-export.yaml", "03-import.yaml"} {
		env.KubectlT(t, clusterset.Karmada, "", "apply", "-f", env.Seed(f))
	}
}

// TestSeedFlow is the seed's YAML applied unchanged, with our controller and Karmada's built-in
// MCS controllers off: member2 gets derived-serve with member1's endpoints, and coredns-mcs in
// member2 answers serve.default.svc.clusterset.local.
func TestSeedFlow(t *testing.T) {
	ctx := context.Background()
	ctrl := env.StartController(t)
	dns := env.StartMemberDNS(t, clusterset.Member2)
	applySeed(t)
	m1, m2 := env.Client(t, clusterset.Member1), env.Client(t, clusterset.Member2)
	svcCIDR := netip.MustParsePrefix(env.Vars["CMCS_MEMBER2_SERVICE_CIDR"])

	var derived *corev1.Service
	clusterset.Eventually(t, 60*time.Second, "derived-serve in member2", func() error {
		var err error
		derived, err = m2.CoreV1().Services("default").Get(ctx, "derived-serve", metav1.GetOptions{})
		return err
	})
	if derived.Spec.Type != corev1.ServiceTypeClusterIP || len(derived.Spec.Selector) != 0 {
		t.Errorf("derived-serve: type %s, selector %v; want ClusterIP without selector", derived.Spec.Type, derived.Spec.Selector)
	}
	if len(derived.Spec.Ports) != 1 || derived.Spec.Ports[0].Port != 80 || derived.Spec.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("derived-serve ports %+v, want 80/TCP", derived.Spec.Ports)
	}
	ip, err := netip.ParseAddr(derived.Spec.ClusterIP)
	if err != nil || !svcCIDR.Contains(ip) {
		t.Fatalf("derived-serve ClusterIP %q not in member2's service CIDR %s", derived.Spec.ClusterIP, svcCIDR)
	}

	expectSlices := func(timeout time.Duration, what string) []discoveryv1.EndpointSlice {
		t.Helper()
		var items []discoveryv1.EndpointSlice
		clusterset.Eventually(t, timeout, what, func() error {
			want, err := servePodIPs(ctx, m1)
			if err != nil {
				return err
			}
			got, list, err := readyIPs(ctx, m2, "default", "kubernetes.io/service-name=derived-serve")
			if err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("member2 slices list %v, member1's serve pods are %v", got, want)
			}
			items = list
			return nil
		})
		return items
	}
	items := expectSlices(30*time.Second, "member2's derived-serve slices list member1's serve pods")
	for _, s := range items {
		l := s.Labels
		if l["multicluster.kubernetes.io/service-name"] != "serve" || l["multicluster.kubernetes.io/source-cluster"] != "member1" ||
			l["endpointslice.kubernetes.io/managed-by"] != ourManager {
			t.Errorf("slice %s labels %v", s.Name, l)
		}
	}
	if _, err := m1.CoreV1().Services("default").Get(ctx, "derived-serve", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("derived-serve in member1 (not an importer): err=%v, want NotFound", err)
	}
	expectConditions(t, clusterset.Member1, "default", "serve", map[string]string{"Valid": "True/Valid", "Ready": "True/Exported"})
	expectConditions(t, clusterset.Karmada, "default", "serve", map[string]string{"Valid": "True/Valid", "Ready": "True/Exported"})
	// The template places the import: the controller writes no ServiceImport (none in member1,
	// the user's in member2), and reports on the user's: status.clusters and Ready.
	expectUserImportKept(t, clusterset.Member2, "default", "serve")
	if _, err := env.Dynamic(t, clusterset.Member1).Resource(siGVR).Namespace("default").Get(ctx, "serve", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ServiceImport serve in member1 (the template places it in member2 only): err=%v, want NotFound", err)
	}
	clusterset.Eventually(t, 30*time.Second, "member2's ServiceImport: status.clusters [member1]", func() error {
		si, err := env.Dynamic(t, clusterset.Member2).Resource(siGVR).Namespace("default").Get(ctx, "serve", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := importClusters(si); !slices.Equal(got, []string{"member1"}) {
			return fmt.Errorf("status.clusters %v", got)
		}
		return nil
	})
	r := clusterset.Dig(t, dns.Addr, "serve.default.svc.clusterset.local.", "A")
	if r.Status != "NOERROR" || !slices.Equal(r.Answers, []string{derived.Spec.ClusterIP}) {
		t.Errorf("dig serve.default.svc.clusterset.local: %s %v, want %s", r.Status, r.Answers, derived.Spec.ClusterIP)
	}

	t.Run("scale to 3", func(t *testing.T) {
		env.KubectlT(t, clusterset.Karmada, "", "-n", "default", "scale", "deployment", "serve", "--replicas=3")
		clusterset.Eventually(t, 60*time.Second, "member1 has 3 ready serve endpoints", func() error {
			ips, _, err := readyIPs(ctx, m1, "default", "kubernetes.io/service-name=serve")
			if err != nil || len(ips) != 3 {
				return fmt.Errorf("%v %v", ips, err)
			}
			return nil
		})
		start := time.Now()
		expectSlices(2*time.Second, "member2 follows within 2s")
		t.Logf("member2's slices followed member1's in %s", time.Since(start))
	})

	t.Run("scale to 0", func(t *testing.T) {
		env.KubectlT(t, clusterset.Karmada, "", "-n", "default", "scale", "deployment", "serve", "--replicas=0")
		expectSlices(60*time.Second, "member2 has no ready endpoint")
		clusterset.Eventually(t, 10*time.Second, "NODATA with the no-ready-endpoints EDE", func() error {
			r := clusterset.Dig(t, dns.Addr, "serve.default.svc.clusterset.local.", "A")
			if r.Status != "NOERROR" || len(r.Answers) != 0 || !strings.Contains(r.EDE, "no ready endpoints") {
				return fmt.Errorf("%s %v EDE %q", r.Status, r.Answers, r.EDE)
			}
			return nil
		})
		env.KubectlT(t, clusterset.Karmada, "", "-n", "default", "scale", "deployment", "serve", "--replicas=1")
		expectSlices(60*time.Second, "back to one endpoint")
	})

	t.Run("source Service deleted", func(t *testing.T) {
		env.KubectlT(t, clusterset.Karmada, "", "-n", "default", "delete", "service", "serve")
		expectConditions(t, clusterset.Member1, "default", "serve", map[string]string{"Valid": "False/NoService"})
		clusterset.Eventually(t, 30*time.Second, "member2 has no endpoint left", func() error {
			ips, _, err := readyIPs(ctx, m2, "default", "kubernetes.io/service-name=derived-serve")
			if err != nil || len(ips) > 0 {
				return fmt.Errorf("%v (err=%v)", ips, err)
			}
			return nil
		})
		kept, err := m2.CoreV1().Services("default").Get(ctx, "derived-serve", metav1.GetOptions{})
		if err != nil || kept.Spec.ClusterIP != derived.Spec.ClusterIP {
			t.Fatalf("derived-serve while the import lives: %v (err=%v), want it kept with ClusterIP %s", kept, err, derived.Spec.ClusterIP)
		}
		env.KubectlT(t, clusterset.Karmada, "", "apply", "-f", env.Seed("01-workload.yaml"))
		expectConditions(t, clusterset.Member1, "default", "serve", map[string]string{"Valid": "True/Valid", "Ready": "True/Exported"})
		expectSlices(60*time.Second, "endpoints back")
		back, err := m2.CoreV1().Services("default").Get(ctx, "derived-serve", metav1.GetOptions{})
		if err != nil || back.Spec.ClusterIP != derived.Spec.ClusterIP {
			t.Errorf("derived-serve ClusterIP changed: %v (err=%v), want %s", back.Spec.ClusterIP, err, derived.Spec.ClusterIP)
		}
	})

	t.Run("unexport and re-export", func(t *testing.T) {
		env.KubectlT(t, clusterset.Karmada, "", "delete", "-f", env.Seed("02-export.yaml"))
		expectGone(t, m2, "derived-serve")
		env.KubectlT(t, clusterset.Karmada, "", "apply", "-f", env.Seed("02-export.yaml"))
		expectSlices(60*time.Second, "re-exported")
		clusterset.Eventually(t, 30*time.Second, "derived-serve back", func() error {
			_, err := m2.CoreV1().Services("default").Get(ctx, "derived-serve", metav1.GetOptions{})
			return err
		})
	})

	// Without a template the import is automatic (KEP-1645): the controller writes the
	// ServiceImports, in member2 (keeping its derived Service and ClusterIP) and in member1 too;
	// with the template back, the user's placement decides again and ours go.
	t.Run("ServiceImport template deleted and re-applied", func(t *testing.T) {
		before, err := m2.CoreV1().Services("default").Get(ctx, "derived-serve", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		env.KubectlT(t, clusterset.Karmada, "", "delete", "-f", env.Seed("03-import.yaml"))
		for _, m := range []string{clusterset.Member1, clusterset.Member2} {
			clusterset.Eventually(t, 60*time.Second, m+": the controller's own ServiceImport serve", func() error {
				si, err := env.Dynamic(t, m).Resource(siGVR).Namespace("default").Get(ctx, "serve", metav1.GetOptions{})
				if err != nil {
					return err
				}
				if si.GetLabels()["app.kubernetes.io/managed-by"] != ourManager {
					return fmt.Errorf("labels %v: not ours yet", si.GetLabels())
				}
				return nil
			})
		}
		autoImportOf(t, clusterset.Member2, "default", "serve")
		autoImportOf(t, clusterset.Member1, "default", "serve")
		if after, err := m2.CoreV1().Services("default").Get(ctx, "derived-serve", metav1.GetOptions{}); err != nil || after.Spec.ClusterIP != before.Spec.ClusterIP {
			t.Errorf("member2's derived-serve ClusterIP %v (err=%v), want %s kept", after.Spec.ClusterIP, err, before.Spec.ClusterIP)
		}

		env.KubectlT(t, clusterset.Karmada, "", "apply", "-f", env.Seed("03-import.yaml"))
		expectGone(t, m1, "derived-serve")
		clusterset.Eventually(t, 90*time.Second, "member2's ServiceImport is the template's again", func() error {
			si, err := env.Dynamic(t, clusterset.Member2).Resource(siGVR).Namespace("default").Get(ctx, "serve", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if si.GetLabels()["app.kubernetes.io/managed-by"] == ourManager {
				return fmt.Errorf("still ours")
			}
			return nil
		})
		clusterset.Eventually(t, 60*time.Second, "member1's automatic ServiceImport gone with the template back", func() error {
			if _, err := env.Dynamic(t, clusterset.Member1).Resource(siGVR).Namespace("default").Get(ctx, "serve", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there (err=%v)", err)
			}
			return nil
		})
		expectSlices(90*time.Second, "re-imported")
	})

	// Write conflicts (a status or Work write racing Karmada's) are routine: retried quietly,
	// never logged as errors.
	if n := strings.Count(ctrl.Log(), "the object has been modified"); n > 0 {
		t.Errorf("the controller logged %d write conflicts as errors", n)
	}
	if t.Failed() {
		t.Logf("controller log:\n%s", ctrl.Log())
	}
}

// expectGone waits until the derived Service and every slice of it are gone from default.
func expectGone(t testing.TB, c kubernetes.Interface, derived string) {
	t.Helper()
	expectGoneNS(t, c, "default", derived)
}

// TestInvalidExports: exports without a Service or of an ExternalName Service are Valid=False
// with the KEP reason, and nothing is written to the importer.
func TestInvalidExports(t *testing.T) {
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	env.StartController(t)
	ns := uniqueNS("invalid-exports")
	t.Cleanup(func() {
		for _, c := range []string{clusterset.Member1, clusterset.Member2} {
			env.Run(c, "", "delete", "namespace", ns, "--ignore-not-found", "--wait=false")
		}
	})
	for _, c := range []string{clusterset.Member1, clusterset.Member2} {
		env.KubectlT(t, c, "", "create", "namespace", ns)
	}
	env.KubectlT(t, clusterset.Member1, fmt.Sprintf(`apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: ghost, namespace: %[1]s}
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: %[1]s}
spec: {type: ExternalName, externalName: example.invalid}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: ext, namespace: %[1]s}
`, ns), "apply", "-f", "-")
	env.KubectlT(t, clusterset.Member2, fmt.Sprintf(`apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: ghost, namespace: %[1]s}
spec: {type: ClusterSetIP, ports: [{port: 80, protocol: TCP}]}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: ext, namespace: %[1]s}
spec: {type: ClusterSetIP, ports: [{port: 80, protocol: TCP}]}
`, ns), "apply", "-f", "-")
	expectConditions(t, clusterset.Member1, ns, "ghost", map[string]string{"Valid": "False/NoService", "Ready": "False/Failed"})
	expectConditions(t, clusterset.Member1, ns, "ext", map[string]string{"Valid": "False/InvalidServiceType", "Ready": "False/Failed"})
	m2 := env.Client(t, clusterset.Member2)
	for _, name := range []string{"derived-ghost", "derived-ext"} {
		if _, err := m2.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s in member2: err=%v, want NotFound", name, err)
		}
	}
	works, err := env.Dynamic(t, clusterset.Karmada).Resource(workGVR).Namespace("karmada-es-member2").List(ctx,
		metav1.ListOptions{LabelSelector: "mcs.coredns-mcs.io/service-namespace=" + ns})
	if err != nil || len(works.Items) != 0 {
		t.Errorf("Works for invalid exports: %d (err=%v), want none", len(works.Items), err)
	}
}

// TestControllerSIGKILL kills the controller with SIGKILL five times while the seed is applied and
// scaled: the end state is the same as without kills, with no orphan Work, Service or slice.
func TestControllerSIGKILL(t *testing.T) {
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	ctrl := env.StartController(t)
	steps := []func(){
		func() { env.KubectlT(t, clusterset.Karmada, "", "apply", "-f", env.Seed("01-workload.yaml")) },
		func() { env.KubectlT(t, clusterset.Karmada, "", "apply", "-f", env.Seed("02-export.yaml")) },
		func() { env.KubectlT(t, clusterset.Karmada, "", "apply", "-f", env.Seed("03-import.yaml")) },
		func() {
			env.KubectlT(t, clusterset.Karmada, "", "-n", "default", "scale", "deployment", "serve", "--replicas=2")
		},
		func() { time.Sleep(500 * time.Millisecond) },
	}
	t.Cleanup(func() { deleteSeed(t) })
	for i, step := range steps {
		step()
		time.Sleep(time.Duration(200+150*i) * time.Millisecond) // let it get halfway through
		ctrl.Kill()
		ctrl.Restart()
	}

	m1, m2 := env.Client(t, clusterset.Member1), env.Client(t, clusterset.Member2)
	var sourceSlices int
	clusterset.Eventually(t, 90*time.Second, "converged after 5 SIGKILLs", func() error {
		want, err := servePodIPs(ctx, m1)
		if err != nil || len(want) != 2 {
			return fmt.Errorf("member1 serve pods %v (err=%v)", want, err)
		}
		got, _, err := readyIPs(ctx, m2, "default", "kubernetes.io/service-name=derived-serve")
		if err != nil || !slices.Equal(got, want) {
			return fmt.Errorf("member2 lists %v, want %v (err=%v)", got, want, err)
		}
		if _, err := m2.CoreV1().Services("default").Get(ctx, "derived-serve", metav1.GetOptions{}); err != nil {
			return err
		}
		src, err := m1.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=serve"})
		if err != nil {
			return err
		}
		sourceSlices = len(src.Items)
		// Exactly the derived Service and one mirrored slice per source slice in our Works,
		// counted by manifest (whichever Work layout runs): nothing orphaned.
		works, err := env.Dynamic(t, clusterset.Karmada).Resource(workGVR).Namespace("").List(ctx,
			metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=" + ourManager})
		if err != nil {
			return err
		}
		kinds := map[string]int{}
		var names []string
		for _, w := range works.Items {
			names = append(names, w.GetNamespace()+"/"+w.GetName())
			for _, kind := range manifestKinds(w) {
				kinds[kind]++
			}
		}
		if len(kinds) != 2 || kinds["Service"] != 1 || kinds["EndpointSlice"] != sourceSlices {
			return fmt.Errorf("Works %v hold %v, want 1 Service + %d EndpointSlices", names, kinds, sourceSlices)
		}
		mirrored, err := m2.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "endpointslice.kubernetes.io/managed-by=" + ourManager})
		if err != nil || len(mirrored.Items) != sourceSlices {
			return fmt.Errorf("%d mirrored slices in member2, want %d (err=%v)", len(mirrored.Items), sourceSlices, err)
		}
		return nil
	})
	expectConditions(t, clusterset.Member1, "default", "serve", map[string]string{"Valid": "True/Valid", "Ready": "True/Exported"})
}

// TestDirectExport: a ServiceExport created in the member itself (no Karmada template) is
// exported to a member that imports it; deleting it in the member removes the derived objects.
func TestDirectExport(t *testing.T) {
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	env.StartController(t)
	ns := uniqueNS("direct-export")
	m2 := env.Client(t, clusterset.Member2)
	exportEcho(t, ns, "10.10.7.7")
	clusterset.Eventually(t, 30*time.Second, "derived-echo with 10.10.7.7 in member2", func() error {
		ips, _, err := readyIPs(ctx, m2, ns, "kubernetes.io/service-name=derived-echo")
		if err != nil || !slices.Equal(ips, []string{"10.10.7.7"}) {
			return fmt.Errorf("%v (err=%v)", ips, err)
		}
		_, err = m2.CoreV1().Services(ns).Get(ctx, "derived-echo", metav1.GetOptions{})
		return err
	})
	expectConditions(t, clusterset.Member1, ns, "echo", map[string]string{"Valid": "True/Valid", "Ready": "True/Exported"})
	// member2's hand-written import is left the user's; member1 imports automatically.
	expectUserImportKept(t, clusterset.Member2, ns, "echo")
	autoImportOf(t, clusterset.Member1, ns, "echo")
	env.KubectlT(t, clusterset.Member1, "", "-n", ns, "delete", "serviceexports.v1alpha1.multicluster.x-k8s.io", "echo")
	expectGoneNS(t, m2, ns, "derived-echo")
}

// expectNoWorks waits until no Work of the controller matches selector (its labels
// mcs.coredns-mcs.io/service-namespace and service-name) on the Karmada control plane.
func expectNoWorks(t testing.TB, selector string) {
	t.Helper()
	dyn := env.Dynamic(t, clusterset.Karmada)
	// 3 minutes: after a test restarted a member's apiserver, Karmada's execution controller
	// removes a deleted Work's finalizer only once its cache of that member has caught up (seen
	// once taking over 90 s in CI); the message says whether a leftover is being deleted.
	clusterset.Eventually(t, 3*time.Minute, "the controller's Works "+selector+" gone", func() error {
		works, err := dyn.Resource(workGVR).Namespace("").List(context.Background(), metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		if len(works.Items) > 0 {
			var names []string
			for _, w := range works.Items {
				state := "not deleted"
				if w.GetDeletionTimestamp() != nil {
					state = fmt.Sprintf("deleting since %s, finalizers %v", w.GetDeletionTimestamp().Format(time.TimeOnly), w.GetFinalizers())
				}
				names = append(names, w.GetNamespace()+"/"+w.GetName()+" ("+state+")")
			}
			return fmt.Errorf("left: %v", names)
		}
		return nil
	})
}

// expectGoneNS waits until the derived Service and every slice of it are gone from ns.
func expectGoneNS(t testing.TB, c kubernetes.Interface, ns, derived string) {
	t.Helper()
	expectGoneWithin(t, 30*time.Second, c, ns, derived)
}

func expectGoneWithin(t testing.TB, timeout time.Duration, c kubernetes.Interface, ns, derived string) {
	t.Helper()
	ctx := context.Background()
	clusterset.Eventually(t, timeout, ns+"/"+derived+" and its slices gone", func() error {
		if _, err := c.CoreV1().Services(ns).Get(ctx, derived, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Service %s still there (err=%v)", derived, err)
		}
		list, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + derived})
		if err != nil || len(list.Items) > 0 {
			return fmt.Errorf("%d slices left (err=%v)", len(list.Items), err)
		}
		return nil
	})
}

// TestClusterIDAndPullMode: a member's ClusterProperty cluster.clusterset.k8s.io (two labels here)
// becomes the source-cluster of its mirrored slices; a Pull-mode cluster whose mcs-agent never
// reported is named in the controller's fleet status as waiting for its agent, and costs the
// other members nothing.
func TestClusterIDAndPullMode(t *testing.T) {
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	ns := uniqueNS("cluster-id")
	env.KubectlT(t, clusterset.Member1, "", "apply", "-f", filepath.Join(env.Root, "test", "testdata", "clusterproperty-crd.yaml"))
	clusterset.Eventually(t, 30*time.Second, "ClusterProperty CRD established", func() error {
		_, err := env.Run(clusterset.Member1, "", "get", "clusterproperties.about.k8s.io")
		return err
	})
	env.KubectlT(t, clusterset.Member1, `apiVersion: about.k8s.io/v1alpha1
kind: ClusterProperty
metadata: {name: cluster.clusterset.k8s.io}
spec: {value: member-one.eu}
`, "apply", "-f", "-")
	m2 := env.Client(t, clusterset.Member2)
	// Started before the cleanup below is registered, so it is stopped after it (cleanups run
	// last-in first-out) and removes what it wrote. It reads the cluster id when it connects.
	env.StartController(t)
	t.Cleanup(func() {
		env.Run(clusterset.Member1, "", "delete", "crd", "clusterproperties.about.k8s.io", "--ignore-not-found")
		env.Run(clusterset.Karmada, "", "delete", "cluster", "pull-demo", "--ignore-not-found", "--wait=false")
	})
	exportEcho(t, ns, "10.10.8.8")
	clusterset.Eventually(t, 30*time.Second, "mirrored slice labelled with the ClusterProperty's id", func() error {
		_, items, err := readyIPs(ctx, m2, ns, "kubernetes.io/service-name=derived-echo")
		if err != nil || len(items) != 1 {
			return fmt.Errorf("%d slices (err=%v)", len(items), err)
		}
		if got := items[0].Labels["multicluster.kubernetes.io/source-cluster"]; got != "member-one.eu" {
			return fmt.Errorf("source-cluster %q, want member-one.eu", got)
		}
		return nil
	})

	env.KubectlT(t, clusterset.Karmada, `apiVersion: cluster.karmada.io/v1alpha1
kind: Cluster
metadata: {name: pull-demo}
spec: {syncMode: Pull}
`, "apply", "-f", "-")
	clusterset.Eventually(t, 30*time.Second, "the fleet status names pull-demo as waiting for its mcs-agent", func() error {
		out, err := env.Run(clusterset.Karmada, "", "get", "configmap", "-n", "karmada-system", mcs.StatusConfigMap, "-o", "jsonpath={.data.status\\.json}")
		if err != nil {
			return err
		}
		var st mcs.FleetStatus
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return err
		}
		for _, m := range st.Members {
			if m.Name == "pull-demo" && m.Mode == "Pull" && !m.Synced && strings.Contains(m.NotServed, "mcs-agent") {
				return nil
			}
		}
		return fmt.Errorf("members %+v", st.Members)
	})
	// The other members' services go on: member1's new endpoint reaches member2.
	echoIn(t, clusterset.Member1, ns, "10.10.8.9", 8080)
	clusterset.Eventually(t, 30*time.Second, "member2 follows member1's new endpoint", func() error {
		ips, _, err := readyIPs(ctx, m2, ns, "kubernetes.io/service-name=derived-echo")
		if err != nil || !slices.Equal(ips, []string{"10.10.8.9"}) {
			return fmt.Errorf("endpoints %v (err=%v)", ips, err)
		}
		return nil
	})
}

// uniqueNS names a namespace for one test run (an earlier run's may still be terminating).
func uniqueNS(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, time.Now().UnixNano()%1000000)
}

// memberNamespace creates namespace ns in both members. Its cleanup deletes every ServiceExport
// there, then every ServiceImport, waits until the controller (started before, so stopped after)
// has removed the derived Services from both members and its Works of ns are gone, then deletes
// the namespaces: the next test starts with nothing of this one's left.
func memberNamespace(t *testing.T, ns, derived string) {
	t.Helper()
	memberNamespaceIn(t, ns, derived, clusterset.Member1, clusterset.Member2)
}

// memberNamespaceIn is memberNamespace in the members given.
func memberNamespaceIn(t *testing.T, ns, derived string, members ...string) {
	t.Helper()
	t.Cleanup(func() {
		for _, kind := range []string{"serviceexports", "serviceimports"} {
			for _, c := range members {
				env.Run(c, "", "-n", ns, "delete", kind+".v1alpha1.multicluster.x-k8s.io", "--all")
			}
		}
		// Generous: a member whose apiserver a test restarted may hold Karmada up for a while
		// (Karmada deletes an object only once its cache of the member has it again).
		for _, c := range members {
			expectGoneWithin(t, 90*time.Second, env.Client(t, c), ns, derived)
		}
		expectNoWorks(t, "mcs.coredns-mcs.io/service-namespace="+ns)
		for _, c := range members {
			env.Run(c, "", "delete", "namespace", ns, "--ignore-not-found", "--wait=false")
		}
	})
	for _, c := range members {
		env.KubectlT(t, c, "", "create", "namespace", ns)
	}
}

// exportEcho creates, in a new namespace ns, a ServiceImport in member2, then Service echo with
// one ready endpoint ip and a ServiceExport in member1, all directly in the members (no Karmada
// template: member1 imports it automatically, member2 through its own import, written first so
// that it is the user's); memberNamespace's cleanup removes them.
func exportEcho(t *testing.T, ns, ip string) {
	t.Helper()
	memberNamespace(t, ns, "derived-echo")
	importEcho(t, ns)
	echoIn(t, clusterset.Member1, ns, ip, 8080)
}

// echoIn writes, in member, Service echo with one port and one ready endpoint, and its
// ServiceExport.
func echoIn(t *testing.T, member, ns, ip string, port int) {
	t.Helper()
	serviceIn(t, member, ns, "echo", ip, port)
}

// serviceIn writes, in member, Service name with one port (http) and one ready endpoint ip in
// EndpointSlice <name>-manual, and its ServiceExport.
func serviceIn(t testing.TB, member, ns, name, ip string, port int) {
	t.Helper()
	env.KubectlT(t, member, exportYAML(ns, name, "", fmt.Sprintf("[{name: http, port: %d, protocol: TCP}]", port), "IPv4",
		fmt.Sprintf("[{addresses: [%q], conditions: {ready: true}}]", ip)), "apply", "-f", "-")
}

// exportYAML is what a member holds for an export, for kubectl apply: Service name in ns with
// the spec fields given (YAML flow-map entries, may be empty) and ports (a YAML flow sequence),
// its EndpointSlice <name>-manual of addrType with those ports and endpoints (a YAML flow
// sequence), and its ServiceExport.
func exportYAML(ns, name, spec, ports, addrType, endpoints string) string {
	if spec != "" {
		spec += ", "
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[2]s, namespace: %[1]s}
spec: {%[3]sports: %[4]s}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %[2]s-manual, namespace: %[1]s, labels: {kubernetes.io/service-name: %[2]s}}
addressType: %[5]s
ports: %[4]s
endpoints: %[6]s
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: %[2]s, namespace: %[1]s}
`, ns, name, spec, ports, addrType, endpoints)
}

// importEcho imports echo (http 8080) into member2.
func importEcho(t *testing.T, ns string) {
	t.Helper()
	env.KubectlT(t, clusterset.Member2, fmt.Sprintf(`apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: echo, namespace: %s}
spec: {type: ClusterSetIP, ports: [{name: http, port: 8080, protocol: TCP}]}
`, ns), "apply", "-f", "-")
}

// TestHeadlessStatefulSet: a headless Service of a 3-replica StatefulSet in member1, exported and
// imported as Headless into member2: coredns-mcs in member2 answers the 3 pod IPs, each pod by
// <pod>.member1.<svc>.<ns>.svc.clusterset.local, and SRV with those targets.
func TestHeadlessStatefulSet(t *testing.T) {
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	env.StartController(t)
	dns := env.StartMemberDNS(t, clusterset.Member2)
	ns := uniqueNS("headless")
	m1, m2 := env.Client(t, clusterset.Member1), env.Client(t, clusterset.Member2)
	memberNamespace(t, ns, "derived-web")
	env.KubectlT(t, clusterset.Member1, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: web, namespace: %[1]s}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web, namespace: %[1]s}
spec:
  serviceName: web
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: jeremyot/serve:0a40de8, ports: [{containerPort: 8080}]}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: web, namespace: %[1]s}
`, ns), "apply", "-f", "-")
	env.KubectlT(t, clusterset.Member2, fmt.Sprintf(`apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: web, namespace: %[1]s}
spec: {type: Headless, ports: [{name: web, port: 80, protocol: TCP}]}
`, ns), "apply", "-f", "-")

	podIP := map[string]string{}
	clusterset.Eventually(t, 90*time.Second, "3 ready StatefulSet pods in member1, mirrored into member2", func() error {
		pods, err := m1.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				podIP[p.Name] = p.Status.PodIP
			}
		}
		if len(podIP) != 3 {
			return fmt.Errorf("running pods %v", podIP)
		}
		ips, _, err := readyIPs(ctx, m2, ns, "kubernetes.io/service-name=derived-web")
		if err != nil || len(ips) != 3 {
			return fmt.Errorf("member2 lists %v (err=%v)", ips, err)
		}
		// Karmada applies the Works in no set order: the slices may come before the Service.
		if _, err := m2.CoreV1().Services(ns).Get(ctx, "derived-web", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("derived-web: %v", err)
		}
		return nil
	})
	derived, err := m2.CoreV1().Services(ns).Get(ctx, "derived-web", metav1.GetOptions{})
	if err != nil || derived.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Fatalf("derived-web: %v (err=%v), want a headless Service", derived, err)
	}
	var all []string
	for _, ip := range podIP {
		all = append(all, ip)
	}
	slices.Sort(all)
	svcName := "web." + ns + ".svc.clusterset.local."
	clusterset.Eventually(t, 10*time.Second, "dig "+svcName, func() error {
		r := clusterset.Dig(t, dns.Addr, svcName, "A")
		got := slices.Clone(r.Answers)
		slices.Sort(got)
		if r.Status != "NOERROR" || !slices.Equal(got, all) {
			return fmt.Errorf("%s %v, want %v", r.Status, got, all)
		}
		return nil
	})
	var targets []string
	for pod, ip := range podIP {
		name := pod + ".member1." + svcName
		targets = append(targets, name)
		r := clusterset.Dig(t, dns.Addr, name, "A")
		if r.Status != "NOERROR" || !slices.Equal(r.Answers, []string{ip}) {
			t.Errorf("dig %s: %s %v, want %s", name, r.Status, r.Answers, ip)
		}
	}
	r := clusterset.Dig(t, dns.Addr, "_web._tcp."+svcName, "SRV")
	var gotTargets []string
	for _, a := range r.Answers {
		f := strings.Fields(a)
		gotTargets = append(gotTargets, f[len(f)-1])
		if f[2] != "8080" {
			t.Errorf("SRV %q: want the endpoints' port 8080", a)
		}
	}
	slices.Sort(gotTargets)
	slices.Sort(targets)
	if r.Status != "NOERROR" || !slices.Equal(gotTargets, targets) {
		t.Errorf("SRV _web._tcp.%s: %s %v, want targets %v", svcName, r.Status, r.Answers, targets)
	}
}

// manifestKinds lists the kinds of a Work's manifests (a bundle holds several, other Works one).
func manifestKinds(w unstructured.Unstructured) []string {
	manifests, _, _ := unstructured.NestedSlice(w.Object, "spec", "workload", "manifests")
	out := make([]string, 0, len(manifests))
	for _, m := range manifests {
		kind, _ := m.(map[string]any)["kind"].(string)
		out = append(out, kind)
	}
	return out
}
