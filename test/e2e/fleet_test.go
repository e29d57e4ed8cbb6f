//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

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

	raw, err := os.ReadFile(filepath.Join(env.Root, "_output", "clusterset", "pids", "apiserver-member1.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
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
