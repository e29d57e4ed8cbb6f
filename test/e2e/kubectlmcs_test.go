//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// kubectlMCS runs `kubectl mcs ARGS…` — kubectl finding the plugin kubectl-mcs on PATH — with the
// Karmada kubeconfig, as an operator would: members are read through Karmada's cluster proxy.
func kubectlMCS(t *testing.T, args ...string) clusterset.Result {
	t.Helper()
	bin := clusterset.Binary(t, "kubectl-mcs")
	r, err := env.KubectlPlugin(filepath.Dir(bin), env.KarmadaConfig, append([]string{"mcs"}, args...)...)
	if err != nil {
		t.Fatalf("kubectl mcs %s: %v\n%+v", strings.Join(args, " "), err, r)
	}
	return r
}

// TestKubectlMCS: on the seed, `kubectl mcs status` names both members (Push, Ready, synced, not
// drained, their cluster ids), the exporter with its ready endpoint and the importer with the
// derived Service's ClusterIP; `kubectl mcs explain default/serve` walks to coredns-mcs's real
// answer in member2 and says OK; with the exported Service deleted on Karmada, explain says in
// its last line that the path breaks at member1's Service, and exits 3.
func TestKubectlMCS(t *testing.T) {
	ctx := context.Background()
	ctrl := env.StartController(t)
	dns := env.StartMemberDNS(t, clusterset.Member2)
	applySeed(t)
	m2 := env.Client(t, clusterset.Member2)
	var cip string
	clusterset.Eventually(t, 60*time.Second, "derived-serve in member2 with an endpoint", func() error {
		svc, err := m2.CoreV1().Services("default").Get(ctx, "derived-serve", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ips, _, err := readyIPs(ctx, m2, "default", "kubernetes.io/service-name=derived-serve"); err != nil || len(ips) != 1 {
			return fmt.Errorf("endpoints %v (err=%v)", ips, err)
		}
		cip = svc.Spec.ClusterIP
		return nil
	})

	var status string
	clusterset.Eventually(t, 30*time.Second, "kubectl mcs status shows the fleet and the seed", func() error {
		r := kubectlMCS(t, "status")
		status = r.Stdout
		for _, re := range []string{
			`(?m)^Controller: \S+, status written \d+s ago$`,
			`(?m)^member1\s+Push\s+True\s+True\s+False\s+member1\s*$`,
			`(?m)^member2\s+Push\s+True\s+True\s+False\s+member2\s*$`,
			`(?m)^default/serve\s+member1 \(1\)\s+member2 \(derived-serve ` + regexp.QuoteMeta(cip) + `, 1\)\s+True\s+-\s*$`,
		} {
			if !regexp.MustCompile(re).MatchString(r.Stdout) {
				return fmt.Errorf("exit %d, no line matching %s in:\n%s%s", r.Code, re, r.Stdout, r.Stderr)
			}
		}
		if strings.Contains(r.Stdout, "WARNING") {
			return fmt.Errorf("a warning with Karmada's MCS controllers off:\n%s", r.Stdout)
		}
		return nil
	})
	t.Logf("kubectl mcs status:\n%s", status)

	r := kubectlMCS(t, "explain", "default/serve", "--dns", "member2="+dns.Addr)
	t.Logf("kubectl mcs explain default/serve:\n%s", r.Stdout)
	if r.Code != 0 || !strings.Contains(r.Stdout, "answers A ["+cip+"]") ||
		lastLine(r.Stdout) != "OK: default/serve is exported by member1 and imported by member2" {
		t.Errorf("explain on the working seed: exit %d, want 0, coredns-mcs's answer %s and OK\n%s%s", r.Code, cip, r.Stdout, r.Stderr)
	}

	// Every metric the charts' alert rules and the Grafana dashboard use is one the binaries expose.
	ctrlMetrics, err := clusterset.Get(ctrl.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	dnsMetrics, err := clusterset.Get(dns.Metrics)
	if err != nil {
		t.Fatal(err)
	}
	ruleMetrics(t, "charts/mcs-controller/files/alerts.yaml", ctrlMetrics)
	ruleMetrics(t, "charts/coredns-mcs/files/alerts.yaml", dnsMetrics)
	ruleMetrics(t, "charts/mcs-controller/files/dashboard.json", ctrlMetrics+dnsMetrics)

	// The seed's import into member2 was measured: export wanted there → Works applied.
	if body, err := clusterset.Get(ctrl.Metrics); err != nil || !regexp.MustCompile(`(?m)^coredns_mcs_controller_propagation_seconds_count [1-9]`).MatchString(body) {
		t.Errorf("coredns_mcs_controller_propagation_seconds has no observation after the seed was imported (err=%v)", err)
	}

	// Broken: the exported Service is deleted (on Karmada, which removes it from member1).
	env.KubectlT(t, clusterset.Karmada, "", "-n", "default", "delete", "service", "serve")
	clusterset.Eventually(t, 60*time.Second, "kubectl mcs explain names the missing Service in member1", func() error {
		r := kubectlMCS(t, "explain", "default/serve", "--dns", "member2="+dns.Addr)
		if r.Code != 3 || !strings.HasPrefix(lastLine(r.Stdout), "BREAKS at exported Service in member1: Service default/serve does not exist") {
			return fmt.Errorf("exit %d, last line %q", r.Code, lastLine(r.Stdout))
		}
		t.Logf("kubectl mcs explain default/serve, Service deleted:\n%s", r.Stdout)
		return nil
	})
}

// TestKarmadaMCSDetected: with Karmada's own MCS controllers switched on beside ours
// (CMCS_KARMADA_MCS=on restarts karmada-controller-manager with them), the controller finds their
// Works, says so in coredns_mcs_controller_karmada_mcs_detected and a Warning event, and
// `kubectl mcs status` warns.
func TestKarmadaMCSDetected(t *testing.T) {
	karmadaMCS(t, true)
	t.Cleanup(func() { karmadaMCS(t, false) })
	ctrl := env.StartController(t)
	applySeed(t)
	clusterset.Eventually(t, 90*time.Second, "the controller reports Karmada's MCS controllers", func() error {
		body, err := clusterset.Get(ctrl.Metrics)
		if err != nil {
			return err
		}
		if !strings.Contains(body, "\ncoredns_mcs_controller_karmada_mcs_detected 1\n") {
			return fmt.Errorf("coredns_mcs_controller_karmada_mcs_detected is not 1")
		}
		return nil
	})
	events := env.KubectlT(t, clusterset.Karmada, "", "get", "events", "-A", "--field-selector", "reason=KarmadaMCSControllersRunning", "-o", "name")
	if strings.TrimSpace(events) == "" {
		t.Errorf("no KarmadaMCSControllersRunning event on the Karmada control plane")
	}
	clusterset.Eventually(t, 30*time.Second, "kubectl mcs status warns", func() error {
		r := kubectlMCS(t, "status")
		if !strings.Contains(r.Stdout, "WARNING: Karmada's own MCS controllers run beside coredns-mcs") {
			return fmt.Errorf("no warning:\n%s", r.Stdout)
		}
		return nil
	})
}

// karmadaMCS switches Karmada's built-in MCS controllers on or off (only karmada-controller-manager
// restarts).
func karmadaMCS(t *testing.T, on bool) {
	t.Helper()
	v := "off"
	if on {
		v = "on"
	}
	if out, err := env.ScriptWith([]string{"CMCS_KARMADA_MCS=" + v}, "up"); err != nil {
		t.Fatalf("CMCS_KARMADA_MCS=%s hack/clusterset.sh up: %v\n%s", v, err, out)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// ruleMetrics checks that every coredns_* metric an alert rule's (or a dashboard panel's) expression names is one the
// binaries define: seen in metrics (a Prometheus text exposition), or — for a labelled metric with
// no sample yet, which Prometheus does not expose — registered under that name in the source.
func ruleMetrics(t *testing.T, rules, metrics string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.Root, rules))
	if err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, l := range strings.Split(string(b), "\n") {
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "expr:") || strings.HasPrefix(t, `"expr":`) {
			exprs = append(exprs, l)
		}
	}
	names := regexp.MustCompile(`coredns_[a-z_]+[a-z]`).FindAllString(strings.Join(exprs, "\n"), -1)
	if len(names) == 0 {
		t.Fatalf("%s: no expression names a coredns_* metric", rules)
	}
	src := func(path string) string {
		b, err := os.ReadFile(filepath.Join(env.Root, path))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	controllerSrc, pluginSrc := src("controller/metrics.go"), src("plugin/multicluster/metrics.go")
	for _, n := range names {
		exposed := regexp.MustCompile(`(?m)^` + n + `[{ ]`).MatchString(metrics)
		registered := strings.Contains(controllerSrc, `"`+n+`"`) ||
			(strings.HasPrefix(n, "coredns_multicluster_") && regexp.MustCompile(`Name:\s+"`+strings.TrimPrefix(n, "coredns_multicluster_")+`"`).MatchString(pluginSrc))
		if !exposed && !registered {
			t.Errorf("%s uses %s, which the binary neither exposes nor registers", rules, n)
		}
	}
}
