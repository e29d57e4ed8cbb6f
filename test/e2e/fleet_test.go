//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

func svcUID(s *corev1.Service) string {
	if s == nil {
		return ""
	}
	return string(s.UID)
}

func svcIP(s *corev1.Service) string {
	if s == nil {
		return ""
	}
	return s.Spec.ClusterIP
}

// TestBadMemberIsolated: a third Cluster joined to Karmada with a garbage token and an endpoint
// that answers nothing. The flow between member1 and member2 converges as before, and the bad
// member is named in the controller's metrics and log.
func TestBadMemberIsolated(t *testing.T) {
	env.PropagateMCSCRDs(t)
	port := clusterset.FreePort(t)
	env.KubectlT(t, clusterset.Karmada, fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: member9, namespace: karmada-cluster}
stringData: {token: garbage}
---
apiVersion: cluster.karmada.io/v1alpha1
kind: Cluster
metadata: {name: member9}
spec:
  syncMode: Push
  apiEndpoint: https://127.0.0.1:%d
  insecureSkipTLSVerification: true
  secretRef: {namespace: karmada-cluster, name: member9}
`, port), "apply", "-f", "-")
	t.Cleanup(func() {
		env.Run(clusterset.Karmada, "", "delete", "cluster", "member9", "--ignore-not-found", "--wait=false")
		env.Run(clusterset.Karmada, "", "-n", "karmada-cluster", "delete", "secret", "member9", "--ignore-not-found")
	})
	ctrl := env.StartController(t) // ready once member9 has had its chance (memberReadyGrace)
	ns := uniqueNS("badmember")
	exportEcho(t, ns, "10.10.6.9")
	m2 := env.Client(t, clusterset.Member2)
	clusterset.Eventually(t, 60*time.Second, "member2 imports member1's echo with member9 broken", func() error {
		ips, _, err := readyIPs(context.Background(), m2, ns, "kubernetes.io/service-name=derived-echo")
		if err != nil {
			return err
		}
		if !slices.Equal(ips, []string{"10.10.6.9"}) {
			return fmt.Errorf("endpoints %v", ips)
		}
		return nil
	})
	expectConditions(t, clusterset.Member1, ns, "echo", map[string]string{"Valid": "True/Valid", "Ready": "True/Exported"})
	body, err := clusterset.Get(ctrl.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(body, `coredns_mcs_controller_member_synced{cluster="member9"} 0`) ||
		!strings.Contains(body, `coredns_mcs_controller_member_synced{cluster="member1"} 1`) {
		t.Errorf("member_synced gauges: %v", grepLines(body, "member_synced"))
	}
	if !strings.Contains(ctrl.Log(), `"member caches not synced (not joined yet, no working credentials, or unreachable): what it exports and imports is held as it was" cluster="member9"`) {
		t.Error("the controller's log does not name member9 as not synced")
	}
}

func grepLines(s, sub string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// TestFrozenMemberStallsNothingElse: member1's kube-apiserver stopped with SIGSTOP for 60 s (it
// accepts connections and answers nothing) while member2 exports: member2's export is imported and
// follows its endpoints meanwhile; after SIGCONT everything converges, member1 included.
func TestFrozenMemberStallsNothingElse(t *testing.T) {
	env.PropagateMCSCRDs(t)
	env.StartController(t)
	ns1, ns2 := uniqueNS("frozen1"), uniqueNS("frozen2")
	exportEcho(t, ns1, "10.10.6.10") // member1 → member2, before the freeze
	memberNamespace(t, ns2, "derived-echo")
	m2 := env.Client(t, clusterset.Member2)
	endpoints := func(ns string) []string {
		ips, _, err := readyIPs(context.Background(), m2, ns, "kubernetes.io/service-name=derived-echo")
		if err != nil {
			return []string{err.Error()}
		}
		return ips
	}
	clusterset.Eventually(t, 60*time.Second, "member1's echo in member2", func() error {
		if ips := endpoints(ns1); !slices.Equal(ips, []string{"10.10.6.10"}) {
			return fmt.Errorf("endpoints %v", ips)
		}
		return nil
	})

	pid := env.Pid(t, "apiserver-member1")
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	thaw := func() { _ = syscall.Kill(pid, syscall.SIGCONT) }
	t.Cleanup(thaw)

	echoIn(t, clusterset.Member2, ns2, "10.12.6.10", 8080) // exported by member2, imported automatically
	clusterset.Eventually(t, 45*time.Second, "member2's new export imported into member2 while member1 is frozen", func() error {
		if ips := endpoints(ns2); !slices.Equal(ips, []string{"10.12.6.10"}) {
			return fmt.Errorf("endpoints %v", ips)
		}
		return nil
	})
	t.Logf("member2's export imported %s after member1 froze", time.Since(frozen).Round(time.Second))
	env.KubectlT(t, clusterset.Member2, "", "-n", ns2, "patch", "endpointslice", "echo-manual", "--type=json",
		"-p", `[{"op":"replace","path":"/endpoints/0/addresses/0","value":"10.12.6.11"}]`)
	clusterset.Eventually(t, 30*time.Second, "member2's endpoint change followed while member1 is frozen", func() error {
		if ips := endpoints(ns2); !slices.Equal(ips, []string{"10.12.6.11"}) {
			return fmt.Errorf("endpoints %v", ips)
		}
		return nil
	})
	// member1's export stays imported meanwhile (its Works held, or its cache unchanged).
	if ips := endpoints(ns1); !slices.Equal(ips, []string{"10.10.6.10"}) {
		t.Errorf("member1's endpoints in member2 during the freeze: %v", ips)
	}
	if d := 60*time.Second - time.Since(frozen); d > 0 {
		time.Sleep(d)
	}
	thaw()
	t.Logf("member1 thawed after %s", time.Since(frozen).Round(time.Second))
	// Everything converges: member1 imports member2's export too (automatic import).
	m1 := env.Client(t, clusterset.Member1)
	clusterset.Eventually(t, 180*time.Second, "member1 imports member2's echo after the thaw", func() error {
		ips, _, err := readyIPs(context.Background(), m1, ns2, "kubernetes.io/service-name=derived-echo")
		if err != nil {
			return err
		}
		if !slices.Equal(ips, []string{"10.12.6.11"}) {
			return fmt.Errorf("endpoints %v", ips)
		}
		return nil
	})
	expectConditions(t, clusterset.Member1, ns1, "echo", map[string]string{"Valid": "True/Valid", "Ready": "True/Exported"})
}

// TestOldWorkNamesRetiredOnKarmada: a derived Service written by a Work of the earlier naming
// (mcs-svc-<ns>-<svc>, as the previous version wrote it) keeps its UID and ClusterIP when this
// controller takes over, and the old Work goes: with Karmada v1.16's real execution controller.
func TestOldWorkNamesRetiredOnKarmada(t *testing.T) {
	env.PropagateMCSCRDs(t)
	ns := uniqueNS("oldnames")
	memberNamespace(t, ns, "derived-echo")
	importEcho(t, ns)
	old := "mcs-svc-" + ns + "-echo"
	env.KubectlT(t, clusterset.Karmada, fmt.Sprintf(`apiVersion: work.karmada.io/v1alpha1
kind: Work
metadata:
  name: %[2]s
  namespace: karmada-es-member2
  labels: {app.kubernetes.io/managed-by: mcs-controller.coredns-mcs.io, mcs.coredns-mcs.io/service-namespace: %[1]s, mcs.coredns-mcs.io/service-name: echo}
  annotations: {mcs.coredns-mcs.io/manifest-hash: from-the-previous-version}
  finalizers: [karmada.io/execution-controller]
spec:
  workload:
    manifests:
    - apiVersion: v1
      kind: Service
      metadata:
        name: derived-echo
        namespace: %[1]s
        labels: {app.kubernetes.io/managed-by: mcs-controller.coredns-mcs.io, multicluster.kubernetes.io/service-name: echo, karmada.io/managed: "true"}
        annotations: {work.karmada.io/conflict-resolution: overwrite}
      spec: {type: ClusterIP, ports: [{name: http, port: 8080, protocol: TCP}]}
`, ns, old), "apply", "-f", "-")
	m2 := env.Client(t, clusterset.Member2)
	var uid, ip string
	clusterset.Eventually(t, 90*time.Second, "Karmada applies the old Work's derived-echo", func() error {
		svc, err := m2.CoreV1().Services(ns).Get(context.Background(), "derived-echo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		uid, ip = string(svc.UID), svc.Spec.ClusterIP
		return nil
	})
	env.StartController(t)
	echoIn(t, clusterset.Member1, ns, "10.10.6.20", 8080)
	clusterset.Eventually(t, 90*time.Second, "member1's echo in member2 and the old Work gone", func() error {
		ips, _, err := readyIPs(context.Background(), m2, ns, "kubernetes.io/service-name=derived-echo")
		if err != nil {
			return err
		}
		if !slices.Equal(ips, []string{"10.10.6.20"}) {
			return fmt.Errorf("endpoints %v", ips)
		}
		if out, _ := env.Run(clusterset.Karmada, "", "-n", "karmada-es-member2", "get", "work", old, "--ignore-not-found", "-o", "name"); strings.TrimSpace(out) != "" {
			return fmt.Errorf("old Work %s still there", old)
		}
		return nil
	})
	time.Sleep(5 * time.Second) // Karmada has had time to act on the deleted Work
	svc, err := m2.CoreV1().Services(ns).Get(context.Background(), "derived-echo", metav1.GetOptions{})
	if err != nil || string(svc.UID) != uid || svc.Spec.ClusterIP != ip {
		t.Fatalf("derived-echo after the old Work was retired: %v (UID %s → %v, ClusterIP %s → %v)", err, uid, svcUID(svc), ip, svcIP(svc))
	}
	// The export going takes derived-echo with it through the new Work (while the controller,
	// started after memberNamespace and so stopped before its cleanup, still runs).
	for _, c := range []string{clusterset.Member1, clusterset.Member2} {
		env.Run(c, "", "-n", ns, "delete", "serviceexports.v1alpha1.multicluster.x-k8s.io,serviceimports.v1alpha1.multicluster.x-k8s.io", "--all")
	}
	expectGoneWithin(t, 90*time.Second, m2, ns, "derived-echo")
	expectNoWorks(t, "mcs.coredns-mcs.io/service-namespace="+ns)
}
