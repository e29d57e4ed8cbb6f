//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/controller/agent"
	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// TestPullAgentStandbyTakesOver: a second mcs-agent replica for member3 (as the Deployment of
// manifests/agent/member runs two) stands by, ready, while the clusterset's agent holds the
// member's Lease; when that one stops, the standby leads within seconds and reports: a Service
// exported in member3 after the stop is imported into member1. The stopped agent, started again,
// stands by in its turn.
func TestPullAgentStandbyTakesOver(t *testing.T) {
	ctx := context.Background()
	pullMCSAPI(t)
	env.StartController(t)
	ns := uniqueNS("pull-standby")
	memberNamespaceIn(t, ns, "derived-before", clusterset.Member1, clusterset.Member3)
	m1, m3 := env.Client(t, clusterset.Member1), env.Client(t, clusterset.Member3)
	imported := func(name, ip string) {
		t.Helper()
		clusterset.Eventually(t, 60*time.Second, fmt.Sprintf("member1 imports %s from member3", name), func() error {
			ips, _, err := readyIPs(ctx, m1, ns, "kubernetes.io/service-name=derived-"+name)
			if err == nil && !slices.Equal(ips, []string{ip}) {
				err = fmt.Errorf("endpoints %v", ips)
			}
			return err
		})
	}
	holder := func() string {
		l, err := m3.CoordinationV1().Leases("karmada-system").Get(ctx, agent.LeaseName, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	serviceIn(t, clusterset.Member3, ns, "before", "10.14.9.1", 80)
	imported("before", "10.14.9.1")
	first := holder()
	if first == "" {
		t.Fatal("member3's mcs-agent holds no Lease karmada-system/" + agent.LeaseName)
	}

	// The standby: the same binary, identities and flags as the clusterset's agent.
	dir := env.Vars["CMCS_CLUSTERSET_DIR"]
	metricsPort, probePort := freeLoopbackPort(t), freeLoopbackPort(t)
	cmd := exec.Command(filepath.Join(env.Root, "_output", "bin", "mcs-agent"),
		"--kubeconfig", filepath.Join(dir, "kubeconfig", "mcs-agent-member-member3.config"),
		"--karmada-kubeconfig", filepath.Join(dir, "kubeconfig", "mcs-agent-member3.config"),
		"--cluster-name", clusterset.Member3, "--cluster-interval", "2s", "--lease-duration", "8s",
		"--leader-elect-lease-duration", "4s", "--leader-elect-renew-deadline", "3s", "--leader-elect-retry-period", "1s",
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", metricsPort),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probePort))
	startLogged(t, "the standby mcs-agent", cmd)
	// Stopped gracefully, so the clusterset's agent (started again below) takes over at once.
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if exited(cmd.Process.Pid) {
				return
			}
		}
	})
	get := func(port int, path string) (int, string) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	leaderMetric := regexp.MustCompile(`(?m)^coredns_mcs_agent_leader (\S+)$`)
	isLeader := func(port int) (string, error) {
		code, body := get(port, "/metrics")
		m := leaderMetric.FindStringSubmatch(body)
		if code != http.StatusOK || m == nil {
			return "", fmt.Errorf("metrics: %d %.200s", code, body)
		}
		return m[1], nil
	}
	clusterset.Eventually(t, 30*time.Second, "the standby ready and standing by", func() error {
		if code, body := get(probePort, "/readyz"); code != http.StatusOK || !strings.Contains(body, "standing by") {
			return fmt.Errorf("readyz %d %q", code, body)
		}
		if v, err := isLeader(metricsPort); err != nil || v != "0" {
			return fmt.Errorf("leader %q (err %v)", v, err)
		}
		return nil
	})
	if h := holder(); h != first {
		t.Fatalf("the Lease moved to %q while its holder ran", h)
	}

	env.Script(t, "stop", "mcs-agent-member3")
	stopped := time.Now()
	t.Cleanup(func() { env.Script(t, "start", "mcs-agent-member3") })
	clusterset.Eventually(t, 20*time.Second, "the standby leads", func() error {
		if v, err := isLeader(metricsPort); err != nil || v != "1" {
			return fmt.Errorf("leader %q (err %v)", v, err)
		}
		return nil
	})
	t.Logf("the standby led %s after the leader stopped (it released the Lease)", time.Since(stopped).Round(100*time.Millisecond))
	if h := holder(); h == first || h == "" {
		t.Errorf("Lease holder %q after the handover, want the standby (not %q)", h, first)
	}
	serviceIn(t, clusterset.Member3, ns, "after", "10.14.9.2", 80)
	imported("after", "10.14.9.2")
	imported("before", "10.14.9.1")

	// The stopped agent comes back as the standby.
	env.Script(t, "start", "mcs-agent-member3")
	time.Sleep(3 * time.Second)
	if v, err := isLeader(metricsPort); err != nil || v != "1" {
		t.Errorf("the standby, leading, gave the lease up when the other agent started: leader %q (err %v)", v, err)
	}
}

// freeLoopbackPort is a TCP port of 127.0.0.1 free now.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
