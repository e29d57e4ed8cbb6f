//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// helloLine is one line of the seed's request program: "2022/07/24 15:13:08 'hello from cluster
// member1 (Node: member1-control-plane Pod: serve-9b5b94f65-cp87p Address: 10.10.0.5)'".
var helloLine = regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d 'hello from cluster member1 \(Node: (\S+) Pod: (\S+) Address: (\S+)\)'$`)

type hello struct{ node, pod, addr string }

// hellos runs the seed's step 3 as the seed writes it — `kubectl --context member2 run -i --rm
// --restart=Never --image=jeremyot/request:0a40de8 request -- --duration=3s --address=…` — and
// returns the answers it printed, failing on any line that is not one, on a non-zero exit, and
// when the pod is still there afterwards.
func hellos(t *testing.T, name, address string, args ...string) []hello {
	t.Helper()
	return hellosIn(t, clusterset.Member2, name, address, args...)
}

// hellosIn is hellos from a pod of member.
func hellosIn(t *testing.T, member, name, address string, args ...string) []hello {
	t.Helper()
	full := append([]string{"run", "-i", "--rm", "--restart=Never", "--image=jeremyot/request:0a40de8", name, "--",
		"--address=" + address}, args...)
	r, err := env.KubectlRun(member, "", 2*time.Minute, full...)
	if err != nil || r.Code != 0 {
		t.Fatalf("kubectl run -i --rm %s: err=%v, exit %d\nstdout:\n%s\nstderr:\n%s", name, err, r.Code, r.Stdout, r.Stderr)
	}
	var got []hello
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(r.Stdout, "\n"), "\n") {
		if strings.HasPrefix(l, "pod \"") && strings.Contains(l, "deleted") { // kubectl's --rm notice
			continue
		}
		lines = append(lines, l)
		m := helloLine.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("request pod %s printed %q, not a hello from member1", name, l)
			continue
		}
		got = append(got, hello{m[1], m[2], m[3]})
	}
	if _, err := env.Client(t, member).CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("after kubectl run --rm, pod %s: err=%v, want NotFound", name, err)
	}
	t.Logf("kubectl run -i --rm %s (--address=%s): %d answers, e.g. %q", name, address, len(got), first(lines))
	return got
}

// seedImported waits until member2 has derived-serve with member1's one serve pod behind it and
// returns its ClusterIP and that pod's IP.
func seedImported(t *testing.T) (string, []string) {
	t.Helper()
	ctx := context.Background()
	m1, m2 := env.Client(t, clusterset.Member1), env.Client(t, clusterset.Member2)
	var cip string
	var podIPs []string
	clusterset.Eventually(t, 60*time.Second, "derived-serve in member2 with member1's serve pod behind it", func() error {
		svc, err := m2.CoreV1().Services("default").Get(ctx, "derived-serve", metav1.GetOptions{})
		if err != nil {
			return err
		}
		want, err := servePodIPs(ctx, m1)
		if err != nil || len(want) != 1 {
			return fmt.Errorf("member1 serve pods %v (err=%v), want 1", want, err)
		}
		got, _, err := readyIPs(ctx, m2, "default", "kubernetes.io/service-name=derived-serve")
		if err != nil || !slices.Equal(got, want) {
			return fmt.Errorf("member2 slices %v (err=%v), want %v", got, err, want)
		}
		cip, podIPs = svc.Spec.ClusterIP, want
		return nil
	})
	return cip, podIPs
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// TestSeedTraffic is the seed's step 3 as traffic, and the same through DNS: a request pod in
// member2 reaches member1's serve pod through derived-serve's ClusterIP (kube-proxy in member2's
// node), and through serve.default.svc.clusterset.local resolved by coredns-mcs behind kube-dns.
func TestSeedTraffic(t *testing.T) {
	env.RequireDataPath(t)
	ctx := context.Background()
	env.StartController(t)
	env.StartClusterDNS(t, clusterset.Member2)
	applySeed(t)
	m1, m2 := env.Client(t, clusterset.Member1), env.Client(t, clusterset.Member2)

	cip, podIPs := seedImported(t)
	servePods := func() map[string]string { // name -> IP
		pods, err := m1.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=serve"})
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, p := range pods.Items {
			if p.Status.PodIP != "" && p.DeletionTimestamp == nil {
				m[p.Name] = p.Status.PodIP
			}
		}
		return m
	}
	check := func(got []hello, pods map[string]string) {
		t.Helper()
		for _, h := range got {
			if h.node != "member1-control-plane" || pods[h.pod] == "" || pods[h.pod] != h.addr {
				t.Errorf("answer %+v: want Node member1-control-plane and a serve pod of member1 with its address (%v)", h, pods)
			}
		}
	}

	env.WaitProgrammed(t, clusterset.Member2, cip)
	// The seed's step 3, literally: 3 s against the ClusterIP, at least 2 lines.
	got := hellos(t, "request", cip, "--duration=3s")
	if len(got) < 2 {
		t.Fatalf("request against derived-serve's ClusterIP %s: %d answers, want >= 2", cip, len(got))
	}
	check(got, servePods())

	// The same pod program given the clusterset name.
	got = hellos(t, "request-dns", "serve.default.svc.clusterset.local", "--duration=3s")
	if len(got) < 2 {
		t.Fatalf("request against serve.default.svc.clusterset.local: %d answers, want >= 2", len(got))
	}
	check(got, servePods())

	// dig from inside a member2 pod's network namespace, through the kube-dns ClusterIP.
	probe := env.RunPod(t, clusterset.Member2, "default", "dns-probe", "registry.k8s.io/e2e-test-images/agnhost:2.53")
	netns := env.PodNetns(t, clusterset.Member2, probe)
	dnsAddr := env.DNSIP(clusterset.Member2) + ":53"
	r := clusterset.DigIn(t, netns, dnsAddr, "serve.default.svc.clusterset.local.", "A")
	if r.Status != "NOERROR" || !slices.Equal(r.Answers, []string{cip}) {
		t.Errorf("dig in a member2 pod via kube-dns %s: %s %v, want %s\n%s", dnsAddr, r.Status, r.Answers, cip, r.Raw)
	}
	// The kubernetes plugin of the same Corefile still serves the member's own names.
	r = clusterset.DigIn(t, netns, dnsAddr, "derived-serve.default.svc.cluster.local.", "A")
	if r.Status != "NOERROR" || !slices.Equal(r.Answers, []string{cip}) {
		t.Errorf("dig derived-serve.default.svc.cluster.local: %s %v, want %s", r.Status, r.Answers, cip)
	}

	// Scale serve to 2 on Karmada: answers come from both pods.
	env.KubectlT(t, clusterset.Karmada, "", "-n", "default", "scale", "deployment", "serve", "--replicas=2")
	clusterset.Eventually(t, 60*time.Second, "member2's derived-serve slices list both serve pods", func() error {
		want, err := servePodIPs(ctx, m1)
		if err != nil || len(want) != 2 {
			return fmt.Errorf("member1 serve pods %v (err=%v), want 2", want, err)
		}
		got, _, err := readyIPs(ctx, m2, "default", "kubernetes.io/service-name=derived-serve")
		if err != nil || !slices.Equal(got, want) {
			return fmt.Errorf("member2 slices %v (err=%v), want %v", got, err, want)
		}
		podIPs = want
		return nil
	})
	pods := servePods()
	// Both pods must already run (the node agent starts their processes once they have an IP).
	got = hellos(t, "request-scaled", "serve.default.svc.clusterset.local", "--duration=4s", "--interval=100ms")
	check(got, pods)
	seen := map[string]int{}
	for _, h := range got {
		seen[h.pod]++
	}
	if len(seen) != 2 {
		t.Errorf("after scaling to 2 (%v), answers came from %v; want both pods", podIPs, seen)
	}

	// Unexport: the name stops resolving and the ClusterIP stops answering within 5 s.
	curl := func() error {
		out, err := clusterset.InNetns(netns, "curl", "-s", "--max-time", "1", "http://"+cip+"/")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "hello from cluster member1") {
			return fmt.Errorf("unexpected answer %q", out)
		}
		return nil
	}
	if err := curl(); err != nil {
		t.Fatalf("before unexport, curl %s from a member2 pod: %v", cip, err)
	}
	env.KubectlT(t, clusterset.Karmada, "", "delete", "-f", env.Seed("02-export.yaml"))
	t0 := time.Now()
	var nameGone, ipGone time.Duration
	for time.Since(t0) < 30*time.Second && (nameGone == 0 || ipGone == 0) {
		if nameGone == 0 {
			if r := clusterset.DigIn(t, netns, dnsAddr, "serve.default.svc.clusterset.local.", "A"); len(r.Answers) == 0 && r.Status != "" && !strings.HasPrefix(r.Status, "ERROR") {
				nameGone = time.Since(t0)
				t.Logf("unexported: serve.default.svc.clusterset.local answers %s with no address after %v", r.Status, nameGone.Round(time.Millisecond))
			}
		}
		if ipGone == 0 && curl() != nil {
			ipGone = time.Since(t0)
			t.Logf("unexported: ClusterIP %s stopped answering after %v", cip, ipGone.Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if nameGone == 0 || nameGone > 5*time.Second {
		t.Errorf("after unexport the name resolved for %v, want < 5s", nameGone)
	}
	if ipGone == 0 || ipGone > 5*time.Second {
		t.Errorf("after unexport the ClusterIP answered for %v, want < 5s", ipGone)
	}
}
