//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// richEcho writes, in member, Service echo (ClientIP affinity for 600 s, PreferClose, dual-stack
// capable, an appProtocol, labels of its own) with one ready endpoint, and a v1beta1
// ServiceExport carrying exportedLabels team=<team> and an exportedAnnotation (and labels of its
// own, and exported keys under reserved prefixes, which must not travel).
func richEcho(t *testing.T, member, ns, ip, team string) {
	t.Helper()
	env.KubectlT(t, member, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: echo, namespace: %[1]s, labels: {from-service: "yes"}}
spec:
  ipFamilyPolicy: PreferDualStack
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  trafficDistribution: PreferClose
  ports: [{name: http, port: 8080, protocol: TCP, appProtocol: kubernetes.io/h2c}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-manual
  namespace: %[1]s
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- addresses: [%[2]q]
  conditions: {ready: true}
---
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceExport
metadata: {name: echo, namespace: %[1]s, labels: {from-export: "yes"}}
spec:
  exportedLabels: {team: %[3]s, multicluster.x-k8s.io/claimed-by: member}
  exportedAnnotations: {example.com/owner: alice, multicluster.kubernetes.io/derived-service: kubernetes, work.karmada.io/conflict-resolution: overwrite}
`, ns, ip, team), "apply", "-f", "-")
}

// autoImport waits for the controller's ServiceImport ns/echo in member and checks it against
// the member's derived-echo: spec.ips is its ClusterIP. It returns the import (v1beta1).
func autoImport(t *testing.T, member, ns string) *unstructured.Unstructured {
	t.Helper()
	return autoImportOf(t, member, ns, "echo")
}

func autoImportOf(t *testing.T, member, ns, name string) *unstructured.Unstructured {
	t.Helper()
	ctx := context.Background()
	dyn, kc := env.Dynamic(t, member), env.Client(t, member)
	var si *unstructured.Unstructured
	clusterset.Eventually(t, 60*time.Second, "ServiceImport "+ns+"/"+name+" in "+member+" with spec.ips = derived-"+name+"'s ClusterIP", func() error {
		var err error
		si, err = dyn.Resource(siGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if si.GetLabels()["app.kubernetes.io/managed-by"] != ourManager {
			return fmt.Errorf("not the controller's (labels %v)", si.GetLabels())
		}
		if v1b, err := dyn.Resource(siV1beta1GVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{}); err == nil {
			si = v1b // every field, where the member serves v1beta1
		}
		svc, err := kc.CoreV1().Services(ns).Get(ctx, "derived-"+name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		ips, _, _ := unstructured.NestedStringSlice(si.Object, "spec", "ips")
		if len(ips) == 0 || !slices.Equal(ips, svc.Spec.ClusterIPs) {
			return fmt.Errorf("spec.ips %v, derived-echo's ClusterIPs %v", ips, svc.Spec.ClusterIPs)
		}
		return nil
	})
	return si
}

func nested(u *unstructured.Unstructured, path ...string) string {
	v, _, _ := unstructured.NestedFieldNoCopy(u.Object, path...)
	return fmt.Sprint(v)
}

func importClusters(u *unstructured.Unstructured) []string {
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "clusters")
	var out []string
	for _, r := range raw {
		out = append(out, fmt.Sprint(r.(map[string]any)["cluster"]))
	}
	return out
}

// TestAutomaticImports: a service exported directly in member1 with no ServiceImport anywhere
// (no template on Karmada, none in a member) gets ServiceImports in member1 and member2, each
// with spec.ips = that member's derived ClusterIP, the export's type, ports (appProtocol),
// session affinity and timeout, traffic distribution and IP families, the exportedLabels and
// exportedAnnotations (and no label of the Service or the ServiceExport), status.clusters and a
// Ready condition; coredns-mcs in member2 answers the name with member2's ClusterSetIP. member2
// exporting it too with other exportedLabels: LabelsConflict on both exports, member1's labels
// kept. Unexported everywhere: both imports gone. A namespace created later gets its import.
func TestAutomaticImports(t *testing.T) {
	ctx := context.Background()
	env.UseMCSAPICRDs(t) // exportedLabels, ipFamilies, trafficDistribution, conditions: v1beta1
	beta := env.Vars["CMCS_MCS_CRDS"] == "mcs-api"
	t.Logf("ServiceImport v1beta1 on the Karmada control plane: %v", beta)
	env.StartController(t)
	dns := env.StartMemberDNS(t, clusterset.Member2)
	ns := uniqueNS("auto")
	memberNamespace(t, ns, "derived-echo")
	richEcho(t, clusterset.Member1, ns, "10.10.11.1", "web")

	imports := map[string]*unstructured.Unstructured{}
	for _, m := range []string{clusterset.Member1, clusterset.Member2} {
		si := autoImport(t, m, ns)
		imports[m] = si
		want := map[string]string{
			"spec.type":            "ClusterSetIP",
			"spec.sessionAffinity": "ClientIP",
			"spec.sessionAffinityConfig.clientIP.timeoutSeconds": "600",
			"metadata.labels.team":                               "web",
			"metadata.labels.from-service":                       "<nil>",
			"metadata.labels.from-export":                        "<nil>",
			"metadata.annotations.example\\.com/owner":           "alice",
			// Reserved keys (Karmada's, the MCS API's) never travel (issue #14).
			"metadata.labels.multicluster\\.x-k8s\\.io/claimed-by":                "<nil>",
			"metadata.annotations.multicluster\\.kubernetes\\.io/derived-service": "<nil>",
			"metadata.annotations.work\\.karmada\\.io/conflict-resolution":        "<nil>",
		}
		// Karmada maps a Work's manifests with its control plane's API: v1beta1 imports (and
		// their fields) only where it serves v1beta1 (CMCS_MCS_CRDS=mcs-api; hack/test.sh runs
		// this test on such a clusterset too).
		if beta {
			want["spec.trafficDistribution"] = "PreferClose"
			want["spec.internalTrafficPolicy"] = "Cluster"
			// member1's Service CIDRs are dual-stack, member2's IPv4 only: each imports the
			// dual-stack-capable export with the families it has (mcs-api v0.5.2).
			want["spec.ipFamilies"] = "[IPv4]"
			if m == clusterset.Member1 {
				want["spec.ipFamilies"] = "[IPv4 IPv6]"
			}
		} else {
			want["spec.trafficDistribution"] = "<nil>"
		}
		for path, want := range want {
			p := strings.Split(strings.ReplaceAll(path, "\\.", "\x00"), ".")
			for i := range p {
				p[i] = strings.ReplaceAll(p[i], "\x00", ".")
			}
			if got := nested(si, p...); got != want {
				t.Errorf("%s: ServiceImport %s = %s, want %s", m, path, got, want)
			}
		}
		ports, _, _ := unstructured.NestedSlice(si.Object, "spec", "ports")
		if len(ports) != 1 || fmt.Sprint(ports[0]) != "map[appProtocol:kubernetes.io/h2c name:http port:8080 protocol:TCP]" {
			t.Errorf("%s: ports %v", m, ports)
		}
	}
	if a, b := nested(imports[clusterset.Member1], "spec", "ips"), nested(imports[clusterset.Member2], "spec", "ips"); a == b {
		t.Errorf("member1 and member2 imports share spec.ips %s; each member's own derived ClusterIP expected", a)
	}
	for _, m := range []string{clusterset.Member1, clusterset.Member2} {
		clusterset.Eventually(t, 30*time.Second, m+": ServiceImport status.clusters [member1], Ready=True", func() error {
			si, err := env.Dynamic(t, m).Resource(siV1beta1GVR).Namespace(ns).Get(ctx, "echo", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if got := importClusters(si); !slices.Equal(got, []string{"member1"}) {
				return fmt.Errorf("status.clusters %v", got)
			}
			if s, r, msg := condition(si, "Ready"); s != "True" || r != "Ready" {
				return fmt.Errorf("Ready %s/%s (%s)", s, r, msg)
			}
			return nil
		})
	}
	ip2 := nested(imports[clusterset.Member2], "spec", "ips")
	name := "echo." + ns + ".svc.clusterset.local."
	clusterset.Eventually(t, 10*time.Second, "dig "+name+" through coredns-mcs in member2", func() error {
		r := clusterset.Dig(t, dns.Addr, name, "A")
		if r.Status != "NOERROR" || "["+strings.Join(r.Answers, " ")+"]" != ip2 {
			return fmt.Errorf("%s %v, want %s", r.Status, r.Answers, ip2)
		}
		return nil
	})

	// A second exporter with other exportedLabels: LabelsConflict on both, member1's kept.
	richEcho(t, clusterset.Member2, ns, "10.12.11.1", "db")
	for _, m := range []string{clusterset.Member1, clusterset.Member2} {
		expectConditions(t, m, ns, "echo", map[string]string{"Conflict": "True/LabelsConflict"})
	}
	for _, m := range []string{clusterset.Member1, clusterset.Member2} {
		clusterset.Eventually(t, 30*time.Second, m+": import keeps team=web, lists both clusters", func() error {
			si, err := env.Dynamic(t, m).Resource(siV1beta1GVR).Namespace(ns).Get(ctx, "echo", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if got := si.GetLabels()["team"]; got != "web" {
				return fmt.Errorf("team=%s", got)
			}
			if got := importClusters(si); !slices.Equal(got, []string{"member1", "member2"}) {
				return fmt.Errorf("status.clusters %v", got)
			}
			return nil
		})
	}
	richEcho(t, clusterset.Member2, ns, "10.12.11.1", "web")
	for _, m := range []string{clusterset.Member1, clusterset.Member2} {
		expectConditions(t, m, ns, "echo", map[string]string{"Conflict": "False/NoConflicts", "Ready": "True/Exported"})
	}

	// Unexported everywhere: the imports go from both members.
	for _, m := range []string{clusterset.Member1, clusterset.Member2} {
		env.KubectlT(t, m, "", "-n", ns, "delete", "serviceexports.v1beta1.multicluster.x-k8s.io", "echo")
	}
	for _, m := range []string{clusterset.Member1, clusterset.Member2} {
		clusterset.Eventually(t, 60*time.Second, m+": ServiceImport and derived-echo gone", func() error {
			if _, err := env.Dynamic(t, m).Resource(siV1beta1GVR).Namespace(ns).Get(ctx, "echo", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("ServiceImport still there (err=%v)", err)
			}
			if _, err := env.Client(t, m).CoreV1().Services(ns).Get(ctx, "derived-echo", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("derived-echo still there (err=%v)", err)
			}
			return nil
		})
	}

	// A namespace that exists only in member1 at first: imported there only; once member2
	// creates it, member2 gets its import too.
	late := uniqueNS("auto-late")
	t.Cleanup(func() {
		env.Run(clusterset.Member1, "", "-n", late, "delete", "serviceexports.v1beta1.multicluster.x-k8s.io", "--all")
		for _, m := range []string{clusterset.Member1, clusterset.Member2} {
			clusterset.Eventually(t, 60*time.Second, m+": "+late+" imports gone", func() error {
				if _, err := env.Dynamic(t, m).Resource(siV1beta1GVR).Namespace(late).Get(ctx, "echo", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					return fmt.Errorf("ServiceImport still there (err=%v)", err)
				}
				return nil
			})
		}
		expectNoWorks(t, "mcs.coredns-mcs.io/service-namespace="+late)
		for _, m := range []string{clusterset.Member1, clusterset.Member2} {
			env.Run(m, "", "delete", "namespace", late, "--ignore-not-found", "--wait=false")
		}
	})
	env.KubectlT(t, clusterset.Member1, "", "create", "namespace", late)
	richEcho(t, clusterset.Member1, late, "10.10.11.2", "web")
	autoImport(t, clusterset.Member1, late)
	if _, err := env.Client(t, clusterset.Member2).CoreV1().Namespaces().Get(ctx, late, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("namespace %s in member2 before the test created it: %v", late, err)
	}
	env.KubectlT(t, clusterset.Member2, "", "create", "namespace", late)
	si := autoImport(t, clusterset.Member2, late)
	if nested(si, "spec", "type") != "ClusterSetIP" {
		t.Errorf("late import: %v", si.Object["spec"])
	}
}

// expectUserImportKept: where a ServiceImport was placed by the user (template or by hand), the
// controller writes no second one: the object is not labelled as ours.
func expectUserImportKept(t *testing.T, member, ns, name string) {
	t.Helper()
	si, err := env.Dynamic(t, member).Resource(siGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("ServiceImport %s/%s in %s: %v", ns, name, member, err)
	}
	if si.GetLabels()["app.kubernetes.io/managed-by"] == ourManager {
		t.Errorf("ServiceImport %s/%s in %s was written by the controller over the user's", ns, name, member)
	}
}
