package clusterset

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RequireDataPath fails the test when the clusterset runs without its data path (CMCS_DATAPATH off
// or not root): traffic tests are never skipped.
func (e *Env) RequireDataPath(t testing.TB) {
	t.Helper()
	if e.Vars["CMCS_DATAPATH"] != "on" {
		t.Fatalf("the local clusterset has no data path (CMCS_DATAPATH=%q): traffic tests need root, ip, iptables and socat (hack/install-packages.sh)",
			e.Vars["CMCS_DATAPATH"])
	}
}

// DNSIP returns the ClusterIP of member's kube-dns Service.
func (e *Env) DNSIP(member string) string {
	return e.Vars["CMCS_"+strings.ToUpper(member)+"_DNS_IP"]
}

// StartClusterDNS runs coredns-mcs with corefile.example as member's cluster DNS (behind its
// kube-dns Service, in its node's network namespace) until the test ends.
func (e *Env) StartClusterDNS(t testing.TB, member string) {
	t.Helper()
	stop := func() { _, _ = e.script("stop", "cluster-dns-"+member) }
	stop()
	if out, err := e.script("dns", member, CoreDNSBinary(t)); err != nil {
		t.Fatalf("hack/clusterset.sh dns %s: %v\n%s", member, err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(e.Vars["CMCS_CLUSTERSET_DIR"], "logs", "cluster-dns-"+member+".log"))
			t.Logf("cluster DNS of %s, log:\n%s", member, tail(string(log), 40))
		}
		stop()
	})
}

func (e *Env) script(args ...string) (string, error) {
	return e.ScriptWith(nil, args...)
}

// ScriptWith runs hack/clusterset.sh with args and extra environment (CMCS_KARMADA_MCS=on, say).
func (e *Env) ScriptWith(environ []string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(e.Root, "hack", "clusterset.sh"), args...)
	cmd.Env = append(os.Environ(), environ...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Script runs hack/clusterset.sh with args (stop NAME, up, …) and fails the test if it fails.
func (e *Env) Script(t testing.TB, args ...string) string {
	t.Helper()
	out, err := e.script(args...)
	if err != nil {
		t.Fatalf("hack/clusterset.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// RunPod creates a one-container pod (restartPolicy Never) in member and waits until the node agent
// gave it a network namespace; it is deleted when the test ends.
func (e *Env) RunPod(t testing.TB, member, ns, name, image string, args ...string) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	c := e.Client(t, member)
	pods := c.CoreV1().Pods(ns)
	_ = pods.Delete(ctx, name, metav1.DeleteOptions{})
	Eventually(t, 60*time.Second, "no earlier pod "+name, func() error {
		if _, err := pods.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there (err=%v)", err)
		}
		return nil
	})
	pod, err := pods.Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: name, Image: image, Args: args}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s in %s: %v", ns, name, member, err)
	}
	t.Cleanup(func() { _ = pods.Delete(context.Background(), name, metav1.DeleteOptions{}) })
	Eventually(t, 60*time.Second, fmt.Sprintf("pod %s/%s in %s running in its network namespace", ns, name, member), func() error {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.PodIP == "" {
			return fmt.Errorf("no IP yet (phase %s)", p.Status.Phase)
		}
		if _, err := e.podNetns(member, p); err != nil {
			return err
		}
		pod = p
		return nil
	})
	return pod
}

// podNetns asks `hack/clusterset.sh netns` (the command the README gives) for the pod's network
// namespace.
func (e *Env) podNetns(member string, p *corev1.Pod) (string, error) {
	out, err := e.script("netns", member, p.Namespace+"/"+p.Name)
	if err != nil {
		return "", fmt.Errorf("no network namespace for pod %s/%s yet: %v: %s", p.Namespace, p.Name, err, strings.TrimSpace(out))
	}
	return strings.TrimSpace(out), nil
}

// PodNetnsErr returns the network namespace the node agent made for pod, or why there is none yet.
func (e *Env) PodNetnsErr(member string, pod *corev1.Pod) (string, error) {
	return e.podNetns(member, pod)
}

// PodNetns returns the network namespace the node agent made for pod.
func (e *Env) PodNetns(t testing.TB, member string, pod *corev1.Pod) string {
	t.Helper()
	ns, err := e.podNetns(member, pod)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// PodLogs returns `kubectl logs` of the pod's only container (served by kwok from what the node
// agent recorded of the process's output), one entry per line.
func (e *Env) PodLogs(t testing.TB, member string, pod *corev1.Pod) []string {
	t.Helper()
	out, err := e.Run(member, "", "-n", pod.Namespace, "logs", pod.Name)
	if err != nil {
		t.Fatalf("kubectl logs %s/%s: %v\n%s", pod.Namespace, pod.Name, err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// InNetns runs a command inside a network namespace (ip netns exec, with the namespace's
// resolv.conf).
func InNetns(netns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", netns}, args...)...).CombinedOutput()
	return string(out), err
}

// WaitProgrammed waits until kube-proxy in member's node has programmed clusterIP with endpoints
// (a KUBE-SVC chain behind it): before that, a pod's connection to it goes to the node, which has
// no route for Service CIDRs, and fails with "network is unreachable".
func (e *Env) WaitProgrammed(t testing.TB, member, clusterIP string) {
	t.Helper()
	node := e.Vars["CMCS_NETNS"] + "-" + member
	Eventually(t, 30*time.Second, "kube-proxy in "+node+" programs "+clusterIP, func() error {
		out, err := InNetns(node, "iptables-save", "-t", "nat")
		if err != nil {
			return fmt.Errorf("iptables-save: %v: %s", err, out)
		}
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "-d "+clusterIP+"/32") && strings.Contains(l, "-j KUBE-SVC-") {
				return nil
			}
		}
		return fmt.Errorf("no KUBE-SVC rule for %s yet", clusterIP)
	})
}
