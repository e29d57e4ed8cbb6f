//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// Fleet-safety tests on the clusterset: no member, namespace or Cluster editor can pre-empt,
// spoof or overwrite what is another's.

// TestCollidingOldWorkNamesBothImported: team-a/api and team/a-api had one Work name under the
// earlier naming (mcs-<kind>-<ns>-<name>), so one of them was never imported. Both are now.
func TestCollidingOldWorkNamesBothImported(t *testing.T) {
	env.PropagateMCSCRDs(t)
	env.StartController(t)
	team := uniqueNS("team")
	teamA := team + "-a"
	if "mcs-svc-"+teamA+"-"+"api" != "mcs-svc-"+team+"-"+"a-api" {
		t.Fatal("the two services' old Work names do not collide: the test tests nothing")
	}
	memberNamespace(t, teamA, "derived-api")
	memberNamespace(t, team, "derived-a-api")
	serviceIn(t, clusterset.Member1, teamA, "api", "10.10.6.41", 8080)
	serviceIn(t, clusterset.Member1, team, "a-api", "10.10.6.42", 8080)
	m2 := env.Client(t, clusterset.Member2)
	for _, s := range []struct{ ns, name, ip string }{{teamA, "api", "10.10.6.41"}, {team, "a-api", "10.10.6.42"}} {
		clusterset.Eventually(t, 60*time.Second, "member2 imports "+s.ns+"/"+s.name, func() error {
			if _, err := m2.CoreV1().Services(s.ns).Get(context.Background(), "derived-"+s.name, metav1.GetOptions{}); err != nil {
				return err
			}
			ips, _, err := readyIPs(context.Background(), m2, s.ns, "kubernetes.io/service-name=derived-"+s.name)
			if err != nil || !slices.Equal(ips, []string{s.ip}) {
				return fmt.Errorf("endpoints %v (err=%v)", ips, err)
			}
			return nil
		})
		expectConditions(t, clusterset.Member1, s.ns, s.name, map[string]string{"Valid": "True/Valid", "Ready": "True/Exported"})
	}
}

// TestDuplicateClusterIDRefused: member2's ClusterProperty claims member1's cluster id. Its export
// of db is refused (Valid=False/ClusterIDConflict, naming member1), and member1's coredns-mcs
// answers only member1's endpoint, for the service and for db-0.member1.db: nothing of member2 is
// merged into member1's per-pod names. The ClusterProperty gone, member2's export is imported
// under its own name (the test could have seen its address).
func TestDuplicateClusterIDRefused(t *testing.T) {
	env.PropagateMCSCRDs(t)
	clusterPropertyIn(t, clusterset.Member2, "member1")
	ns := uniqueNS("dupid")
	env.StartController(t)
	dns := env.StartMemberDNS(t, clusterset.Member1)
	memberNamespace(t, ns, "derived-db")
	for member, ip := range map[string]string{clusterset.Member1: "10.10.6.51", clusterset.Member2: "10.12.6.51"} {
		env.KubectlT(t, member, exportYAML(ns, "db", "clusterIP: None", "[{name: pg, port: 5432, protocol: TCP}]", "IPv4",
			fmt.Sprintf("[{addresses: [%q], hostname: db-0, conditions: {ready: true}}]", ip)), "apply", "-f", "-")
	}
	expectConditions(t, clusterset.Member2, ns, "db", map[string]string{"Valid": "False/ClusterIDConflict"})
	expectConditions(t, clusterset.Member1, ns, "db", map[string]string{"Valid": "True/Valid"})
	u, err := env.Dynamic(t, clusterset.Member2).Resource(seGVR).Namespace(ns).Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, msg := condition(u, "Valid"); !strings.Contains(msg, "member1") {
		t.Errorf("member2's Valid condition does not name member1: %q", msg)
	}

	svc := "db." + ns + ".svc.clusterset.local."
	answers := func(name string) []string {
		r := clusterset.Dig(t, dns.Addr, name, "A")
		got := slices.Clone(r.Answers)
		slices.Sort(got)
		return append([]string{r.Status}, got...)
	}
	clusterset.Eventually(t, 60*time.Second, "member1's DNS answers member1's db", func() error {
		if got := answers(svc); !slices.Equal(got, []string{"NOERROR", "10.10.6.51"}) {
			return fmt.Errorf("%s: %v", svc, got)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // member2's export has had every chance to be merged
	m1 := env.Client(t, clusterset.Member1)
	if ips, _, err := readyIPs(context.Background(), m1, ns, "kubernetes.io/service-name=derived-db"); err != nil || !slices.Equal(ips, []string{"10.10.6.51"}) {
		t.Errorf("member1's derived-db endpoints: %v (err=%v), want member1's only", ips, err)
	}
	for _, name := range []string{svc, "db-0.member1." + svc} {
		if got := answers(name); !slices.Equal(got, []string{"NOERROR", "10.10.6.51"}) {
			t.Errorf("dig %s: %v, want member1's 10.10.6.51 only", name, got)
		}
	}

	env.KubectlT(t, clusterset.Member2, "", "delete", "clusterproperty", "cluster.clusterset.k8s.io")
	expectConditionsWithin(t, 60*time.Second, clusterset.Member2, ns, "db", map[string]string{"Valid": "True/Valid"})
	clusterset.Eventually(t, 60*time.Second, "member2's db under its own name", func() error {
		if got := answers(svc); !slices.Equal(got, []string{"NOERROR", "10.10.6.51", "10.12.6.51"}) {
			return fmt.Errorf("%s: %v", svc, got)
		}
		if got := answers("db-0.member2." + svc); !slices.Equal(got, []string{"NOERROR", "10.12.6.51"}) {
			return fmt.Errorf("db-0.member2.%s: %v", svc, got)
		}
		if got := answers("db-0.member1." + svc); !slices.Equal(got, []string{"NOERROR", "10.10.6.51"}) {
			return fmt.Errorf("db-0.member1.%s: %v", svc, got)
		}
		return nil
	})
}

// TestUserDerivedServiceSurvives: member2 has a Service of its own named derived-x. member1
// exports x: the user's Service keeps its UID, selector and ClusterIP, member1's export says the
// name is taken in member2 (Ready=False/DerivedServiceTaken), member1 (where the name is free)
// imports x; x unexported, the user's Service is still there.
func TestUserDerivedServiceSurvives(t *testing.T) {
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	env.StartController(t)
	ns := uniqueNS("taken")
	memberNamespace(t, ns, "derived-x")
	m1, m2 := env.Client(t, clusterset.Member1), env.Client(t, clusterset.Member2)
	env.KubectlT(t, clusterset.Member2, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: derived-x, namespace: %s, labels: {team: theirs}}
spec:
  selector: {app: theirs}
  ports: [{name: http, port: 9090, protocol: TCP}]
`, ns), "apply", "-f", "-")
	before, err := m2.CoreV1().Services(ns).Get(ctx, "derived-x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	serviceIn(t, clusterset.Member1, ns, "x", "10.10.6.61", 8080)
	expectConditionsWithin(t, 60*time.Second, clusterset.Member1, ns, "x", map[string]string{"Valid": "True/Valid", "Ready": "False/DerivedServiceTaken"})
	u, err := env.Dynamic(t, clusterset.Member1).Resource(seGVR).Namespace(ns).Get(ctx, "x", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, msg := condition(u, "Ready"); !strings.Contains(msg, "member2") || !strings.Contains(msg, "derived-x") {
		t.Errorf("Ready condition does not name member2 and derived-x: %q", msg)
	}
	clusterset.Eventually(t, 60*time.Second, "member1 imports x (the name is free there)", func() error {
		ips, _, err := readyIPs(ctx, m1, ns, "kubernetes.io/service-name=derived-x")
		if err != nil || !slices.Equal(ips, []string{"10.10.6.61"}) {
			return fmt.Errorf("endpoints %v (err=%v)", ips, err)
		}
		return nil
	})
	untouched := func(when string) {
		t.Helper()
		svc, err := m2.CoreV1().Services(ns).Get(ctx, "derived-x", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the user's derived-x %s: %v", when, err)
		}
		if svc.UID != before.UID || svc.Spec.ClusterIP != before.Spec.ClusterIP || svc.Spec.Selector["app"] != "theirs" ||
			len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 9090 || svc.Labels["app.kubernetes.io/managed-by"] != "" {
			t.Errorf("the user's derived-x %s: UID %s → %s, ClusterIP %s → %s, selector %v, ports %v, labels %v",
				when, before.UID, svc.UID, before.Spec.ClusterIP, svc.Spec.ClusterIP, svc.Spec.Selector, svc.Spec.Ports, svc.Labels)
		}
		if slices, err := m2.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "endpointslice.kubernetes.io/managed-by=" + ourManager}); err != nil || len(slices.Items) != 0 {
			t.Errorf("our slices in member2 %s: %d (err=%v), want none", when, len(slices.Items), err)
		}
	}
	time.Sleep(3 * time.Second) // Karmada has had time to apply anything it was given
	untouched("while x is exported")

	env.KubectlT(t, clusterset.Member1, "", "-n", ns, "delete", "serviceexport", "x")
	expectGoneWithin(t, 60*time.Second, m1, ns, "derived-x")
	expectNoWorks(t, "mcs.coredns-mcs.io/service-namespace="+ns)
	untouched("after x was unexported")
	// memberNamespace's cleanup expects no derived-x: the user removes theirs.
	env.KubectlT(t, clusterset.Member2, "", "-n", ns, "delete", "service", "derived-x")
}

// TestSecretRefOutsideRefusedOnKarmada: a Cluster whose secretRef points outside karmada-cluster
// (at someone else's Secret) and whose apiEndpoint is a server of the test's. The controller
// refuses it with a Warning event and never sends that token anywhere; the trap server records
// every request by user agent. Control: a Cluster with a secretRef in karmada-cluster and the
// same endpoint does get the controller's requests (so the trap would have seen them).
// Karmada's own controllers read any Secret and call the endpoint too: theirs are not ours.
func TestSecretRefOutsideRefusedOnKarmada(t *testing.T) {
	env.PropagateMCSCRDs(t)
	var mu sync.Mutex
	seen := map[string][]string{} // token → user agents
	trap := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		seen[tok] = append(seen[tok], r.UserAgent())
		mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer trap.Close()
	ours := func(token string) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, ua := range seen[token] {
			if strings.HasPrefix(ua, "coredns-mcs-controller") {
				n++
			}
		}
		return n
	}
	env.KubectlT(t, clusterset.Karmada, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: someone-elses, namespace: default}
stringData: {token: a-token-that-must-stay-here}
---
apiVersion: v1
kind: Secret
metadata: {name: control-member, namespace: karmada-cluster}
stringData: {token: a-token-for-the-control}
---
apiVersion: cluster.karmada.io/v1alpha1
kind: Cluster
metadata: {name: evil}
spec:
  syncMode: Push
  apiEndpoint: %[1]s
  insecureSkipTLSVerification: true
  secretRef: {namespace: default, name: someone-elses}
---
apiVersion: cluster.karmada.io/v1alpha1
kind: Cluster
metadata: {name: control-member}
spec:
  syncMode: Push
  apiEndpoint: %[1]s
  insecureSkipTLSVerification: true
  secretRef: {namespace: karmada-cluster, name: control-member}
`, trap.URL), "apply", "-f", "-")
	t.Cleanup(func() {
		env.Run(clusterset.Karmada, "", "delete", "cluster", "evil", "control-member", "--ignore-not-found", "--wait=false")
		env.Run(clusterset.Karmada, "", "-n", "default", "delete", "secret", "someone-elses", "--ignore-not-found")
		env.Run(clusterset.Karmada, "", "-n", "karmada-cluster", "delete", "secret", "control-member", "--ignore-not-found")
	})
	env.StartController(t)
	clusterset.Eventually(t, 60*time.Second, "a Warning event SecretRefNotAllowed on Cluster evil", func() error {
		out, err := env.Run(clusterset.Karmada, "", "get", "events", "-A", "--field-selector", "reason=SecretRefNotAllowed,involvedObject.name=evil", "-o", "name")
		if err != nil || strings.TrimSpace(out) == "" {
			return fmt.Errorf("no event yet (err=%v)", err)
		}
		return nil
	})
	clusterset.Eventually(t, 60*time.Second, "the controller calls the allowed Cluster's endpoint (the trap sees it)", func() error {
		if ours("a-token-for-the-control") == 0 {
			return fmt.Errorf("no request of ours with the control token yet")
		}
		return nil
	})
	// The rest of the fleet is unaffected.
	ns := uniqueNS("secretref")
	exportEcho(t, ns, "10.10.6.71")
	m2 := env.Client(t, clusterset.Member2)
	clusterset.Eventually(t, 60*time.Second, "member2 imports member1's echo", func() error {
		ips, _, err := readyIPs(context.Background(), m2, ns, "kubernetes.io/service-name=derived-echo")
		if err != nil || !slices.Equal(ips, []string{"10.10.6.71"}) {
			return fmt.Errorf("endpoints %v (err=%v)", ips, err)
		}
		return nil
	})
	if n := ours("a-token-that-must-stay-here"); n != 0 {
		t.Errorf("the controller sent the Secret default/someone-elses's token to the Cluster's endpoint %d times", n)
	}
	mu.Lock()
	t.Logf("requests the trap saw, by token: %d with the refused one (none ours), %d with the control token",
		len(seen["a-token-that-must-stay-here"]), len(seen["a-token-for-the-control"]))
	mu.Unlock()
}

// clusterPropertyIn installs the ClusterProperty CRD (KEP-2149) in member, removed again when the
// test ends (after the controller and coredns-mcs it starts later have stopped), and sets the
// member's cluster.clusterset.k8s.io to id.
func clusterPropertyIn(t *testing.T, member, id string) {
	t.Helper()
	env.KubectlT(t, member, "", "apply", "-f", filepath.Join(env.Root, "test", "testdata", "clusterproperty-crd.yaml"))
	t.Cleanup(func() {
		env.Run(member, "", "delete", "crd", "clusterproperties.about.k8s.io", "--ignore-not-found")
	})
	clusterset.Eventually(t, 30*time.Second, "ClusterProperty CRD established in "+member, func() error {
		_, err := env.Run(member, "", "get", "clusterproperties.about.k8s.io")
		return err
	})
	env.KubectlT(t, member, fmt.Sprintf(`apiVersion: about.k8s.io/v1alpha1
kind: ClusterProperty
metadata: {name: cluster.clusterset.k8s.io}
spec: {value: %s}
`, id), "apply", "-f", "-")
}
