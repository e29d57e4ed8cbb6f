//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// TestDNSModesByTraffic installs the coredns-mcs chart for real in both members, one mode each,
// and proves both by traffic from ordinary pods:
//   - member1 keeps stock DNS: a stock CoreDNS build (same version, no multicluster plugin) is its
//     cluster DNS, with the one stanza the chart prints (`helm get notes`) forwarding
//     clusterset.local to the chart's coredns-mcs Service (*beside* mode);
//   - member2's cluster DNS is the chart itself (*replace* mode): kube-dns sends queries to its pod.
//
// The charts' pods run the coredns-mcs image's own filesystem (see runImage: no image can be pulled
// here, so the test plays the kubelet for those containers). A service exported in member1 with no
// templates is imported into both; a netshoot pod in each member resolves its clusterset name
// through its resolv.conf and reaches member1's pod by it.
func TestDNSModesByTraffic(t *testing.T) {
	env.RequireDataPath(t)
	ctx := context.Background()
	img := buildImages(t)
	stock := env.Vars["CMCS_STOCK_COREDNS"]
	if _, err := os.Stat(stock); err != nil {
		t.Fatalf("no stock CoreDNS build at %q (hack/build-deps.sh coredns): %v", stock, err)
	}
	env.PropagateMCSCRDs(t)
	env.StartController(t)
	ns := uniqueNS("dnsmodes")
	memberNamespace(t, ns, "derived-echo")
	m1, m2 := env.Client(t, clusterset.Member1), env.Client(t, clusterset.Member2)

	// The charts, installed with helm into kube-system of each member.
	besideIP := strings.TrimSuffix(env.Vars["CMCS_MEMBER1_SERVICE_CIDR"], "0.0/16") + "0.53"
	install := func(member string, values ...string) {
		args := append([]string{"--kubeconfig", env.MembersConfig, "--kube-context", member, "-n", "kube-system",
			"install", "coredns-mcs", "charts/coredns-mcs", "--set", "replicas=1",
			"--set", "image.repository=" + img.repo + "/coredns-mcs", "--set", "image.tag=" + img.version}, values...)
		helm(t, args...)
		t.Cleanup(func() {
			helm(t, "--kubeconfig", env.MembersConfig, "--kube-context", member, "-n", "kube-system", "uninstall", "coredns-mcs")
		})
	}
	install(clusterset.Member1, "--set", "mode=beside", "--set", "beside.service.clusterIP="+besideIP)
	install(clusterset.Member2, "--set", "mode=replace")

	// Each chart's pod: the kubelet's part, with the image's filesystem, the chart's Corefile and
	// the chart's ServiceAccount.
	chartPod := func(c kubernetes.Interface, member string) {
		var pod *corev1.Pod
		clusterset.Eventually(t, 60*time.Second, "the chart's pod in "+member+" has a network namespace", func() error {
			pods, err := c.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=coredns-mcs"})
			if err != nil || len(pods.Items) != 1 || pods.Items[0].Status.PodIP == "" {
				return fmt.Errorf("pods %v (err=%v)", pods, err)
			}
			pod = &pods.Items[0]
			_, err = env.PodNetnsErr(member, pod)
			return err
		})
		cm, err := c.CoreV1().ConfigMaps("kube-system").Get(ctx, "coredns-mcs", metav1.GetOptions{})
		must(t, err)
		runImage(t, img, member, env.PodNetns(t, member, pod), "kube-system", "coredns-mcs", cm.Data["Corefile"])
	}
	chartPod(m1, clusterset.Member1)
	chartPod(m2, clusterset.Member2)

	// member1: stock CoreDNS as the cluster DNS, with the stanza the chart documents.
	notes := helm(t, "--kubeconfig", env.MembersConfig, "--kube-context", clusterset.Member1, "-n", "kube-system", "get", "notes", "coredns-mcs")
	stanza := regexp.MustCompile(`(?s)\n( *clusterset\.local:53 \{.*?\n *\})`).FindStringSubmatch(notes)
	if stanza == nil || !strings.Contains(stanza[1], "forward . "+besideIP) {
		t.Fatalf("helm get notes shows no stanza forwarding clusterset.local to %s:\n%s", besideIP, notes)
	}
	corefile := fmt.Sprintf(`.:53 {
    errors
    health :18080
    ready :18181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig %s member1
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
    loadbalance
}
%s
`, env.Kubeconfig(clusterset.Member1), stanza[1])
	conf := filepath.Join(t.TempDir(), "Corefile")
	must(t, os.WriteFile(conf, []byte(corefile), 0o644))
	node1 := env.Vars["CMCS_NETNS"] + "-" + clusterset.Member1
	// A real node reaches its cluster's ClusterIPs through its default route (kube-proxy rewrites
	// them on the way out); the clusterset's node has no default route, so it gets one for the
	// Service CIDR, from its own address, while the test runs.
	addr := regexp.MustCompile(`inet (\S+)/`).FindStringSubmatch(run(t, "", "ip", "-n", node1, "-4", "-o", "addr", "show", "dev", "peer"))
	if addr == nil {
		t.Fatalf("no IPv4 address on %s's peer link", node1)
	}
	svcCIDR := env.Vars["CMCS_MEMBER1_SERVICE_CIDR"]
	run(t, "", "ip", "-n", node1, "route", "replace", svcCIDR, "dev", "peer", "src", addr[1])
	t.Cleanup(func() { _ = exec.Command("ip", "-n", node1, "route", "del", svcCIDR).Run() })
	_, _ = env.ScriptWith(nil, "stop", "cluster-dns-member1") // a cluster DNS an earlier test left, if any
	startLogged(t, "stock CoreDNS (member1's cluster DNS)", exec.Command("ip", "netns", "exec", node1, stock, "-conf", conf))
	if v := run(t, "", stock, "-version"); !strings.HasPrefix(v, "CoreDNS-") || strings.Contains(v, "coredns-mcs") {
		t.Fatalf("%s is not a stock CoreDNS: %q", stock, v)
	}

	// member2: kube-dns sends queries to the chart's pod (its k8s-app=kube-dns label), instead of
	// the node; put back when the test ends.
	env.KubectlT(t, clusterset.Member2, "", "-n", "kube-system", "patch", "service", "kube-dns", "-p", `{"spec":{"selector":{"k8s-app":"kube-dns"}}}`)
	env.KubectlT(t, clusterset.Member2, "", "-n", "kube-system", "delete", "endpointslice", "kube-dns-node")
	t.Cleanup(func() {
		env.Run(clusterset.Member2, "", "-n", "kube-system", "patch", "service", "kube-dns", "--type", "json", "-p", `[{"op":"remove","path":"/spec/selector"}]`)
		// What the selector made stays behind a selector-less Service: the Endpoints object (which
		// the mirroring controller then copies into a slice) and the controller's slices.
		env.Run(clusterset.Member2, "", "-n", "kube-system", "delete", "endpoints", "kube-dns", "--ignore-not-found")
		env.Run(clusterset.Member2, "", "-n", "kube-system", "delete", "endpointslices",
			"-l", "kubernetes.io/service-name=kube-dns,endpointslice.kubernetes.io/managed-by in (endpointslice-controller.k8s.io,endpointslicemirroring-controller.k8s.io)")
		env.Script(t, "up") // re-applies kube-dns-node
	})

	// The exported service: socat listener pods in member1, exported there, no template.
	env.KubectlT(t, clusterset.Member1, echoExported(ns), "apply", "-f", "-")
	derived := map[string]string{}
	clusterset.Eventually(t, 90*time.Second, "derived-echo with member1's pod in both members", func() error {
		for member, c := range map[string]kubernetes.Interface{clusterset.Member1: m1, clusterset.Member2: m2} {
			svc, err := c.CoreV1().Services(ns).Get(ctx, "derived-echo", metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("%s: %v", member, err)
			}
			if ips, _, err := readyIPs(ctx, c, ns, "kubernetes.io/service-name=derived-echo"); err != nil || len(ips) != 1 {
				return fmt.Errorf("%s lists %v (err=%v)", member, ips, err)
			}
			derived[member] = svc.Spec.ClusterIP
		}
		return nil
	})
	echoPods, err := m1.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
	if err != nil || len(echoPods.Items) != 1 {
		t.Fatalf("member1 echo pods: %v (err=%v)", echoPods, err)
	}
	name := "echo." + ns + ".svc.clusterset.local"
	for _, member := range []string{clusterset.Member1, clusterset.Member2} {
		env.WaitProgrammed(t, member, derived[member])
		toolPod(t, member, ns, "client", "nicolaka/netshoot:v0.13")
		clusterset.Eventually(t, 30*time.Second, "a "+member+" pod resolves "+name+" through its cluster DNS", func() error {
			r := kexec(t, member, ns, "client", "", "dig", "+short", name)
			if strings.TrimSpace(r.Stdout) != derived[member] {
				return fmt.Errorf("exit %d, %q %q; want %s", r.Code, r.Stdout, r.Stderr, derived[member])
			}
			return nil
		})
		r := kexec(t, member, ns, "client", "", "nc", "-w", "3", name, "7000")
		if want := "answer-from-" + echoPods.Items[0].Name; r.Code != 0 || strings.TrimSpace(r.Stdout) != want {
			t.Errorf("%s: nc %s 7000: exit %d, %q %q; want %s", member, name, r.Code, r.Stdout, r.Stderr, want)
		}
	}
	// The rest of member1's names are still its stock CoreDNS's.
	if r := kexec(t, clusterset.Member1, ns, "client", "", "dig", "+short", "derived-echo."+ns+".svc.cluster.local"); strings.TrimSpace(r.Stdout) != derived[clusterset.Member1] {
		t.Errorf("member1: derived-echo.%s.svc.cluster.local by the stock CoreDNS: %q, want %s", ns, r.Stdout, derived[clusterset.Member1])
	}
}
