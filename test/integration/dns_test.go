//go:build e2e

// Package integration tests coredns-mcs as a real process (booted from corefile.example) against
// member2's real kube-apiserver in the local clusterset, queried with the real dig.
package integration

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

var env *clusterset.Env

func TestMain(m *testing.M) { clusterset.Main(m, &env) }

const ns = "dns-it"

func objects(alphaReady bool, webEndpoints ...string) string {
	var eps strings.Builder
	for _, e := range webEndpoints {
		host, ip, _ := strings.Cut(e, "=")
		fmt.Fprintf(&eps, "  - addresses: [%q]\n    hostname: %s\n    conditions: {ready: true}\n", ip, host)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata:
  name: alpha
  namespace: %[1]s
spec:
  type: ClusterSetIP
  ports:
  - name: http
    port: 80
    protocol: TCP
---
apiVersion: v1
kind: Service
metadata:
  name: derived-alpha
  namespace: %[1]s
spec:
  type: ClusterIP
  ports:
  - name: http
    port: 80
    protocol: TCP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: alpha-member1
  namespace: %[1]s
  labels:
    multicluster.kubernetes.io/service-name: alpha
    multicluster.kubernetes.io/source-cluster: member1
    kubernetes.io/service-name: derived-alpha
    endpointslice.kubernetes.io/managed-by: dns-integration-test
addressType: IPv4
ports:
- name: http
  port: 8080
  protocol: TCP
endpoints:
- addresses: ["10.10.0.50"]
  conditions: {ready: %[2]t}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata:
  name: web
  namespace: %[1]s
spec:
  type: Headless
  ports: []
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-member1
  namespace: %[1]s
  labels:
    multicluster.kubernetes.io/service-name: web
    multicluster.kubernetes.io/source-cluster: member1
    endpointslice.kubernetes.io/managed-by: dns-integration-test
addressType: IPv4
ports:
- name: http
  port: 8080
  protocol: TCP
endpoints:
%[3]s`, ns, alphaReady, eps.String())
}

// expectDig polls dig until the answer matches (sorted) want and status is wantStatus.
func expectDig(t *testing.T, timeout time.Duration, server, name, qtype, wantStatus string, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	slices.Sort(want)
	clusterset.Eventually(t, timeout, fmt.Sprintf("dig %s %s = %s %v", name, qtype, wantStatus, want), func() error {
		r := clusterset.Dig(t, server, name, qtype)
		got := slices.Clone(r.Answers)
		slices.Sort(got)
		if r.Status != wantStatus || !slices.Equal(got, want) {
			return fmt.Errorf("got %s %v", r.Status, got)
		}
		return nil
	})
	return time.Since(start)
}

func TestDNSOnRealAPIServer(t *testing.T) {
	env.PropagateMCSCRDs(t)
	t.Cleanup(func() {
		env.Run(clusterset.Member2, "", "delete", "namespace", ns, "--ignore-not-found", "--wait=false")
	})

	dnsPort, healthPort, readyPort, metricsPort := clusterset.FreePort(t), clusterset.FreePort(t), clusterset.FreePort(t), clusterset.FreePort(t)
	corefile := env.MemberCorefile(t, clusterset.Member2, dnsPort, healthPort, readyPort, metricsPort)
	dns := clusterset.StartCoreDNS(t, corefile, dnsPort, healthPort, readyPort, metricsPort, true)
	server := dns.Addr

	// The stock plugins still serve cluster.local beside us.
	expectDig(t, 10*time.Second, server, "kubernetes.default.svc.cluster.local.", "A", "NOERROR", "10.13.0.1")
	expectDig(t, 5*time.Second, server, "dns-version.clusterset.local.", "TXT", "NOERROR", `"1.0.0"`)

	env.KubectlT(t, clusterset.Member2, objects(true, "web-0=10.10.0.60", "web-1=10.10.0.61"), "apply", "-f", "-")
	clusterIP := strings.TrimSpace(env.KubectlT(t, clusterset.Member2, "", "-n", ns, "get", "svc", "derived-alpha", "-o", "jsonpath={.spec.clusterIP}"))
	if !strings.HasPrefix(clusterIP, "10.13.") {
		t.Fatalf("derived-alpha ClusterIP %q not in member2's service CIDR", clusterIP)
	}

	t.Run("answers", func(t *testing.T) {
		expectDig(t, 10*time.Second, server, "alpha.dns-it.svc.clusterset.local.", "A", "NOERROR", clusterIP)
		expectDig(t, 2*time.Second, server, "_http._tcp.alpha.dns-it.svc.clusterset.local.", "SRV", "NOERROR", "0 100 80 alpha.dns-it.svc.clusterset.local.")
		expectDig(t, 2*time.Second, server, "web.dns-it.svc.clusterset.local.", "A", "NOERROR", "10.10.0.60", "10.10.0.61")
		expectDig(t, 2*time.Second, server, "web-1.member1.web.dns-it.svc.clusterset.local.", "A", "NOERROR", "10.10.0.61")
		expectDig(t, 2*time.Second, server, "_http._tcp.web.dns-it.svc.clusterset.local.", "SRV", "NOERROR",
			"0 50 8080 web-0.member1.web.dns-it.svc.clusterset.local.", "0 50 8080 web-1.member1.web.dns-it.svc.clusterset.local.")
		expectDig(t, 2*time.Second, server, "member1.alpha.dns-it.svc.clusterset.local.", "A", "NXDOMAIN")
		expectDig(t, 2*time.Second, server, "nope.dns-it.svc.clusterset.local.", "A", "NXDOMAIN")
		expectDig(t, 2*time.Second, server, "alpha.dns-it.svc.clusterset.local.", "AAAA", "NOERROR")
	})

	t.Run("changes follow within 1s", func(t *testing.T) {
		env.KubectlT(t, clusterset.Member2, objects(true, "web-0=10.10.0.60", "web-1=10.10.0.61", "web-2=10.10.0.62"), "apply", "-f", "-")
		took := expectDig(t, time.Second, server, "web.dns-it.svc.clusterset.local.", "A", "NOERROR", "10.10.0.60", "10.10.0.61", "10.10.0.62")
		t.Logf("endpoint added: answer followed in %s", took)
		env.KubectlT(t, clusterset.Member2, objects(false, "web-0=10.10.0.60"), "apply", "-f", "-")
		took = expectDig(t, time.Second, server, "web.dns-it.svc.clusterset.local.", "A", "NOERROR", "10.10.0.60")
		t.Logf("endpoints removed: answer followed in %s", took)
		// Nothing ready behind the ClusterSetIP: NODATA with an extended error that says why.
		expectDig(t, time.Second, server, "alpha.dns-it.svc.clusterset.local.", "A", "NOERROR")
		r := clusterset.Dig(t, server, "alpha.dns-it.svc.clusterset.local.", "A")
		if !strings.Contains(r.EDE, "no ready endpoints") {
			t.Errorf("EDE %q, want the no-ready-endpoints reason; dig said:\n%s", r.EDE, r.Raw)
		}
		env.KubectlT(t, clusterset.Member2, objects(true, "web-0=10.10.0.60"), "apply", "-f", "-")
		expectDig(t, time.Second, server, "alpha.dns-it.svc.clusterset.local.", "A", "NOERROR", clusterIP)
		env.KubectlT(t, clusterset.Member2, "", "-n", ns, "delete", "serviceimport.v1alpha1.multicluster.x-k8s.io", "web")
		expectDig(t, time.Second, server, "web.dns-it.svc.clusterset.local.", "A", "NXDOMAIN")
	})

	t.Run("CRD removed and re-added", func(t *testing.T) {
		pid := dns.Pid()
		env.KubectlT(t, clusterset.Karmada, "", "delete", "crd", "serviceimports.multicluster.x-k8s.io")
		clusterset.Eventually(t, 60*time.Second, "ServiceImport CRD gone from member2", func() error {
			if _, err := env.Run(clusterset.Member2, "", "get", "crd", "serviceimports.multicluster.x-k8s.io"); err == nil {
				return fmt.Errorf("still there")
			}
			return nil
		})
		expectDig(t, 10*time.Second, server, "alpha.dns-it.svc.clusterset.local.", "A", "SERVFAIL")
		// Only the zone: cluster.local answers and the server stays ready.
		expectDig(t, time.Second, server, "kubernetes.default.svc.cluster.local.", "A", "NOERROR", "10.13.0.1")
		if err := clusterset.HTTPOK(dns.Ready); err != nil {
			t.Errorf("ready without the CRD: %v", err)
		}
		if n := strings.Count(dns.Log(), "serves no ServiceImport API"); n != 1 {
			t.Errorf("the missing CRD was logged %d times, want once", n)
		}

		env.ApplyMCSCRDs(t)
		env.WaitMCSAPI(t, clusterset.Member2)
		env.KubectlT(t, clusterset.Member2, objects(true, "web-0=10.10.0.60"), "apply", "-f", "-")
		expectDig(t, 30*time.Second, server, "alpha.dns-it.svc.clusterset.local.", "A", "NOERROR", clusterIP)
		expectDig(t, 5*time.Second, server, "web-0.member1.web.dns-it.svc.clusterset.local.", "A", "NOERROR", "10.10.0.60")
		if dns.Pid() != pid {
			t.Errorf("coredns-mcs restarted")
		}
	})

	t.Run("apiserver down for 30s", func(t *testing.T) {
		stop := exec.Command(filepath.Join(env.Root, "hack", "clusterset.sh"), "stop", "apiserver-member2")
		if out, err := stop.CombinedOutput(); err != nil {
			t.Fatalf("stop apiserver-member2: %v: %s", err, out)
		}
		restarted := false
		defer func() {
			if !restarted {
				exec.Command(filepath.Join(env.Root, "hack", "clusterset.sh"), "up").Run()
			}
		}()
		deadline := time.Now().Add(30 * time.Second)
		queries := 0
		for time.Now().Before(deadline) {
			r := clusterset.Dig(t, server, "alpha.dns-it.svc.clusterset.local.", "A")
			if r.Status != "NOERROR" || !slices.Equal(r.Answers, []string{clusterIP}) {
				t.Fatalf("with the apiserver down: %s %v, want the cached answer", r.Status, r.Answers)
			}
			queries++
			time.Sleep(time.Second)
		}
		t.Logf("%d queries answered from the cache while the apiserver was down", queries)
		up := exec.Command(filepath.Join(env.Root, "hack", "clusterset.sh"), "up")
		if out, err := up.CombinedOutput(); err != nil {
			t.Fatalf("restart the clusterset: %v: %s", err, out)
		}
		restarted = true
		// Recovered without a restart: a change made now is served. The plugin replaces its
		// informers when its discovery poll (every 2 s) sees the apiserver again, rather than
		// waiting out client-go's reconnect backoff (up to a minute).
		env.KubectlT(t, clusterset.Member2, objects(true, "web-0=10.10.0.60", "web-3=10.10.0.63"), "apply", "-f", "-")
		took := expectDig(t, 30*time.Second, server, "web-3.member1.web.dns-it.svc.clusterset.local.", "A", "NOERROR", "10.10.0.63")
		t.Logf("a change made after the apiserver came back was served after %s", took)
		if !strings.Contains(dns.Log(), "informers restarted after an apiserver outage") {
			t.Errorf("coredns-mcs did not restart its informers after the outage:\n%s", dns.Log())
		}
	})
}
