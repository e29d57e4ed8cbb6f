//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// The tests here debug multi-cluster DNS and traffic the way operators do: `kubectl exec` into a
// pod of a general-purpose image and run dig, curl or nc there. On the local clusterset the node
// agent serves the kubelet's exec and attach, and runs the command in the pod's network namespace
// with the host's tools.

// toolPod runs a pod of image with `sleep infinity` in member and waits until it is Ready (its
// process runs); it is deleted when the test ends.
func toolPod(t *testing.T, member, ns, name, image string) {
	t.Helper()
	env.KubectlT(t, member, "", "-n", ns, "run", name, "--image="+image, "--restart=Always", "--", "sleep", "infinity")
	t.Cleanup(func() { env.Run(member, "", "-n", ns, "delete", "pod", name, "--wait=false") })
	env.KubectlT(t, member, "", "-n", ns, "wait", "--for=condition=Ready", "pod/"+name, "--timeout=60s")
}

// kexec runs `kubectl exec POD -- CMD…` in member and returns the result; a kubectl that could not
// run fails the test, a command's non-zero exit does not.
func kexec(t *testing.T, member, ns, pod, stdin string, cmd ...string) clusterset.Result {
	t.Helper()
	args := []string{"-n", ns, "exec", pod}
	if stdin != "" {
		args = append(args, "-i")
	}
	r, err := env.KubectlRun(member, stdin, time.Minute, append(append(args, "--"), cmd...)...)
	if err != nil {
		t.Fatalf("kubectl exec %s -- %s: %v\n%+v", pod, strings.Join(cmd, " "), err, r)
	}
	return r
}

// TestKubectlExecNetshoot: from a nicolaka/netshoot pod in member2, `kubectl exec` resolves the
// seed's service by its clusterset name (the pod's resolv.conf, kube-dns, coredns-mcs), gets its
// port by SRV, and reaches member1's pod with curl by that name; exit codes and stderr come back
// as from a real kubelet, with and without a terminal.
func TestKubectlExecNetshoot(t *testing.T) {
	env.RequireDataPath(t)
	ctx := context.Background()
	env.StartController(t)
	env.StartClusterDNS(t, clusterset.Member2)
	applySeed(t)
	m2 := env.Client(t, clusterset.Member2)
	cip, _ := seedImported(t)
	env.WaitProgrammed(t, clusterset.Member2, cip)
	toolPod(t, clusterset.Member2, "default", "netshoot", "nicolaka/netshoot:v0.13")

	name := "serve.default.svc.clusterset.local"
	clusterset.Eventually(t, 15*time.Second, "kubectl exec netshoot -- dig +short "+name, func() error {
		r := kexec(t, clusterset.Member2, "default", "netshoot", "", "dig", "+short", name)
		if r.Code != 0 || strings.TrimSpace(r.Stdout) != cip {
			return fmt.Errorf("exit %d, stdout %q, stderr %q; want %s", r.Code, r.Stdout, r.Stderr, cip)
		}
		return nil
	})
	r := kexec(t, clusterset.Member2, "default", "netshoot", "", "dig", "+short", "SRV", name)
	if f := strings.Fields(r.Stdout); r.Code != 0 || len(f) != 4 || f[2] != "80" || f[3] != name+"." {
		t.Errorf("dig +short SRV %s: exit %d, %q; want one record with port 80 and target %s.", name, r.Code, r.Stdout, name)
	}
	r = kexec(t, clusterset.Member2, "default", "netshoot", "", "curl", "-sS", "--max-time", "5", "http://"+name+"/")
	if r.Code != 0 || !strings.Contains(r.Stdout, "hello from cluster member1") {
		t.Errorf("curl http://%s/ from the netshoot pod: exit %d, stdout %q, stderr %q; want member1's hello", name, r.Code, r.Stdout, r.Stderr)
	}
	// The pod's own network: its IP on eth0, its resolv.conf.
	pod, err := m2.CoreV1().Pods("default").Get(ctx, "netshoot", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r = kexec(t, clusterset.Member2, "default", "netshoot", "", "sh", "-c", "ip -4 -o addr show dev eth0; cat /etc/resolv.conf")
	if !strings.Contains(r.Stdout, " "+pod.Status.PodIP+"/") || !strings.Contains(r.Stdout, "nameserver "+env.DNSIP(clusterset.Member2)) {
		t.Errorf("in the pod, eth0 and resolv.conf are\n%s\nwant the pod IP %s and nameserver %s", r.Stdout, pod.Status.PodIP, env.DNSIP(clusterset.Member2))
	}

	// Exit codes and streams.
	r = kexec(t, clusterset.Member2, "default", "netshoot", "", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
	if r.Code != 3 || strings.TrimSpace(r.Stdout) != "to-stdout" || !strings.Contains(r.Stderr, "to-stderr") || strings.Contains(r.Stdout, "to-stderr") {
		t.Errorf("sh -c 'exit 3': exit %d, stdout %q, stderr %q; want 3, to-stdout on stdout only, to-stderr on stderr", r.Code, r.Stdout, r.Stderr)
	}
	r = kexec(t, clusterset.Member2, "default", "netshoot", "line one\nline two\n", "wc", "-l")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "2" {
		t.Errorf("kubectl exec -i … wc -l with two lines on stdin: exit %d, %q; want 2", r.Code, r.Stdout)
	}
	r = kexec(t, clusterset.Member2, "default", "netshoot", "", "no-such-program-here")
	if r.Code == 0 || !strings.Contains(r.Stderr, "no-such-program-here") {
		t.Errorf("exec of a missing program: exit %d, stderr %q; want non-zero and the name", r.Code, r.Stderr)
	}
	// With a terminal (kubectl exec -it): the command sees a tty.
	out, err := env.ExecTTY(clusterset.Member2, "default", "netshoot", "netshoot", []string{"sh", "-c", "tty; echo cols=$(tput cols 2>/dev/null || echo ?)"})
	if err != nil || !regexp.MustCompile(`/dev/pts/\d+`).MatchString(out) {
		t.Errorf("exec with a terminal: err=%v, output %q; want a /dev/pts/N terminal", err, out)
	}
	// An attached pod's exit code is kubectl's (kubectl run -i reads it from the pod's status).
	rr, err := env.KubectlRun(clusterset.Member2, "", time.Minute, "run", "-i", "--rm", "--restart=Never", "--image=busybox:1.36", "exits-4", "--",
		"sh", "-c", "echo before-exit; exit 4")
	if err != nil || rr.Code != 4 || !strings.Contains(rr.Stdout, "before-exit") {
		t.Errorf("kubectl run -i --rm … exit 4: err=%v, exit %d, stdout %q, stderr %q; want 4 and its line", err, rr.Code, rr.Stdout, rr.Stderr)
	}
	// Readiness and restarts follow the process: a container that keeps failing is restarted
	// (restartPolicy Always) and is not Ready between its runs.
	env.KubectlT(t, clusterset.Member2, "", "run", "crashes", "--image=busybox:1.36", "--", "sh", "-c", "exit 1")
	t.Cleanup(func() { env.Run(clusterset.Member2, "", "delete", "pod", "crashes", "--wait=false") })
	clusterset.Eventually(t, 30*time.Second, "pod crashes restarted twice, not Ready, last exit 1", func() error {
		p, err := m2.CoreV1().Pods("default").Get(ctx, "crashes", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(p.Status.ContainerStatuses) != 1 {
			return fmt.Errorf("container statuses %+v", p.Status.ContainerStatuses)
		}
		cs := p.Status.ContainerStatuses[0]
		if cs.RestartCount < 2 || cs.Ready || podReady(p) || cs.LastTerminationState.Terminated == nil || cs.LastTerminationState.Terminated.ExitCode != 1 {
			return fmt.Errorf("restarts %d, ready %v/%v, last state %+v", cs.RestartCount, cs.Ready, podReady(p), cs.LastTerminationState)
		}
		return nil
	})
	// An env var from the pod spec reaches exec'd commands.
	r = kexec(t, clusterset.Member2, "default", "netshoot", "", "sh", "-c", "echo $HOSTNAME")
	if strings.TrimSpace(r.Stdout) != "netshoot" {
		t.Errorf("HOSTNAME in the pod: %q, want netshoot", r.Stdout)
	}

	// Nothing outlives the pod: once it is deleted, its processes and namespace are gone.
	netns := env.PodNetns(t, clusterset.Member2, pod)
	_, err = clusterset.InNetns(netns, "true")
	pids, perr := exec.Command("ip", "netns", "pids", netns).Output()
	if err != nil || perr != nil || len(strings.Fields(string(pids))) == 0 {
		t.Fatalf("the netshoot pod's namespace %s runs nothing (err=%v %v, pids %q)", netns, err, perr, pids)
	}
	env.KubectlT(t, clusterset.Member2, "", "delete", "pod", "netshoot", "--wait=false")
	clusterset.Eventually(t, 30*time.Second, "pod netshoot's processes "+strings.TrimSpace(string(pids))+" and namespace gone", func() error {
		for _, p := range strings.Fields(string(pids)) {
			if _, err := os.Stat("/proc/" + p); err == nil {
				return fmt.Errorf("process %s still runs", p)
			}
		}
		if out, err := exec.Command("ip", "netns", "list").Output(); err != nil || strings.Contains(string(out), netns) {
			return fmt.Errorf("namespace %s still listed (err=%v)", netns, err)
		}
		return nil
	})
}

// TestSocatListenersAcrossMembers: plain socat listener pods (alpine/socat, their command run by
// the node agent with the host's socat) in member1 answer a member2 pod's nc through the
// ClusterSetIP name, and a headless StatefulSet of them answers per pod name. An unexported
// Service of the same pods stays unreachable from member2, while the same probe to the exported
// one succeeds.
func TestSocatListenersAcrossMembers(t *testing.T) {
	env.RequireDataPath(t)
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	env.StartController(t)
	env.StartClusterDNS(t, clusterset.Member2)
	ns := uniqueNS("socat")
	memberNamespace(t, ns, "derived-echo")
	m1, m2 := env.Client(t, clusterset.Member1), env.Client(t, clusterset.Member2)
	env.KubectlT(t, clusterset.Member1, echoExported(ns)+fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: hidden, namespace: %[1]s}
spec:
  selector: {app: echo}
  ports: [{name: tcp, port: 7000, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: %[1]s}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: tcp, port: 7000, protocol: TCP}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: %[1]s}
spec:
  serviceName: db
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:%[2]s
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: db, namespace: %[1]s}
`, ns, listenerSpec), "apply", "-f", "-")
	env.KubectlT(t, clusterset.Member2, fmt.Sprintf(`apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: echo, namespace: %[1]s}
spec: {type: ClusterSetIP, ports: [{name: tcp, port: 7000, protocol: TCP}]}
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: db, namespace: %[1]s}
spec: {type: Headless, ports: [{name: tcp, port: 7000, protocol: TCP}]}
`, ns), "apply", "-f", "-")

	var echoCIP string
	clusterset.Eventually(t, 90*time.Second, "derived-echo and derived-db in member2 with member1's ready listener pods", func() error {
		svc, err := m2.CoreV1().Services(ns).Get(ctx, "derived-echo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if _, err := m2.CoreV1().Services(ns).Get(ctx, "derived-db", metav1.GetOptions{}); err != nil {
			return err
		}
		if ips, _, err := readyIPs(ctx, m2, ns, "kubernetes.io/service-name=derived-echo"); err != nil || len(ips) != 1 {
			return fmt.Errorf("derived-echo lists %v (err=%v)", ips, err)
		}
		if ips, _, err := readyIPs(ctx, m2, ns, "kubernetes.io/service-name=derived-db"); err != nil || len(ips) != 2 {
			return fmt.Errorf("derived-db lists %v (err=%v)", ips, err)
		}
		echoCIP = svc.Spec.ClusterIP
		return nil
	})
	env.WaitProgrammed(t, clusterset.Member2, echoCIP)
	echoPods, err := m1.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=echo"})
	if err != nil || len(echoPods.Items) != 1 {
		t.Fatalf("member1 echo pods: %v (err=%v)", echoPods, err)
	}
	echoPod := echoPods.Items[0].Name
	hidden, err := m1.CoreV1().Services(ns).Get(ctx, "hidden", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	toolPod(t, clusterset.Member2, ns, "client", "nicolaka/netshoot:v0.13")
	nc := func(target string) clusterset.Result {
		return kexec(t, clusterset.Member2, ns, "client", "", "nc", "-w", "3", target, "7000")
	}
	echoName := "echo." + ns + ".svc.clusterset.local"
	clusterset.Eventually(t, 20*time.Second, "nc "+echoName+" 7000 from member2", func() error {
		if r := nc(echoName); r.Code != 0 || strings.TrimSpace(r.Stdout) != "answer-from-"+echoPod {
			return fmt.Errorf("exit %d, stdout %q, stderr %q; want answer-from-%s", r.Code, r.Stdout, r.Stderr, echoPod)
		}
		return nil
	})
	for _, pod := range []string{"db-0", "db-1"} {
		name := pod + ".member1.db." + ns + ".svc.clusterset.local"
		if r := nc(name); r.Code != 0 || strings.TrimSpace(r.Stdout) != "answer-from-"+pod {
			t.Errorf("nc %s 7000: exit %d, stdout %q, stderr %q; want answer-from-%s", name, r.Code, r.Stdout, r.Stderr, pod)
		}
	}

	// kubectl port-forward to the listener pod: the node agent connects to the pod's loopback.
	pf := exec.Command(env.Kubectl, "--kubeconfig", env.Kubeconfig(clusterset.Member1), "--context", clusterset.Member1,
		"-n", ns, "port-forward", "pod/"+echoPod, ":7000")
	pfOut, err := pf.StdoutPipe()
	must(t, err)
	must(t, pf.Start())
	t.Cleanup(func() { _ = pf.Process.Kill(); _ = pf.Wait() })
	line, err := bufio.NewReader(pfOut).ReadString('\n')
	m := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 7000`).FindStringSubmatch(line)
	if err != nil || m == nil {
		t.Fatalf("kubectl port-forward printed %q (err=%v)", line, err)
	}
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+m[1], 5*time.Second)
	must(t, err)
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(conn)
	conn.Close()
	if strings.TrimSpace(string(got)) != "answer-from-"+echoPod {
		t.Errorf("through kubectl port-forward: %q, want answer-from-%s", got, echoPod)
	}

	// The negative case. The probe works: the exported Service answers it by its derived ClusterIP.
	if r := nc(echoCIP); r.Code != 0 || strings.TrimSpace(r.Stdout) != "answer-from-"+echoPod {
		t.Fatalf("the probe itself (nc %s 7000, derived-echo): exit %d, %q, %q", echoCIP, r.Code, r.Stdout, r.Stderr)
	}
	if r := nc(hidden.Spec.ClusterIP); r.Code == 0 || strings.Contains(r.Stdout, "answer-from") {
		t.Errorf("unexported hidden's member1 ClusterIP %s from member2: exit %d, stdout %q; want no answer", hidden.Spec.ClusterIP, r.Code, r.Stdout)
	}
	hiddenName := "hidden." + ns + ".svc.clusterset.local"
	if r := kexec(t, clusterset.Member2, ns, "client", "", "dig", "+short", hiddenName); strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("dig %s (not exported): %q, want no address", hiddenName, r.Stdout)
	}
	if r := nc(hiddenName); r.Code == 0 {
		t.Errorf("nc %s (not exported): exit 0, stdout %q; want failure", hiddenName, r.Stdout)
	}
}

// listenerSpec is a pod spec: one plain alpine/socat listener on 7000 that answers one line naming
// its pod ($(POD_NAME) expanded from the env, as the kubelet does) and closes.
const listenerSpec = `
      containers:
        - name: socat
          image: alpine/socat:1.8.0.0
          args: ["-d", "TCP-LISTEN:7000,fork,reuseaddr", "SYSTEM:echo answer-from-$(POD_NAME)"]
          env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
          ports: [{containerPort: 7000}]`

// echoExported is a Deployment echo of one listener, its Service echo (7000/TCP, port name tcp)
// and a ServiceExport of it, in ns.
func echoExported(ns string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: echo, namespace: %[1]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:%[2]s
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: %[1]s}
spec:
  selector: {app: echo}
  ports: [{name: tcp, port: 7000, protocol: TCP}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: echo, namespace: %[1]s}
`, ns, listenerSpec)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
