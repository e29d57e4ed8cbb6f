//go:build e2e && chaos

package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// TestMemberFailureKeep: under the keep policy, member1's endpoints stay in member2 while Karmada
// reports member1 not Ready (its apiserver stopped) well past the grace. Opt-in (make test-chaos):
// Karmada takes about a minute to call a Push member not Ready, and as long again to write to it
// once it is back.
func TestMemberFailureKeep(t *testing.T) {
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	env.StartController(t, "--member-failure=keep", "--member-failure-grace=5s")
	ns := uniqueNS("failure-keep")
	exportEcho(t, ns, "10.10.6.7")
	t.Cleanup(func() {
		env.Script(t, "up")
		waitKarmadaWrites(t, clusterset.Member1)
	})
	m2 := env.Client(t, clusterset.Member2)
	endpoints := func() []string {
		ips, _, err := readyIPs(ctx, m2, ns, "kubernetes.io/service-name=derived-echo")
		if err != nil {
			t.Fatalf("member2 slices: %v", err)
		}
		return ips
	}
	clusterset.Eventually(t, 30*time.Second, "derived-echo with member1's endpoint in member2", func() error {
		if ips := endpoints(); !slices.Equal(ips, []string{"10.10.6.7"}) {
			return fmt.Errorf("endpoints %v", ips)
		}
		return nil
	})
	env.Script(t, "stop", "apiserver-member1")
	clusterset.Eventually(t, 150*time.Second, "Karmada reports member1 not Ready", func() error {
		if r := karmadaReady("member1"); r == "True" {
			return fmt.Errorf("Ready=%q", r)
		}
		return nil
	})
	time.Sleep(10 * time.Second) // twice the grace
	if ips := endpoints(); !slices.Equal(ips, []string{"10.10.6.7"}) {
		t.Errorf("keep policy: member2's endpoints %v while member1 is not Ready, want them kept", ips)
	}
}
