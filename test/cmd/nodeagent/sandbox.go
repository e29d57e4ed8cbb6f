package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
)

// sandbox is a pod on this node: its network namespace (eth0 with the pod IP, a veth into the
// node's namespace, the member's DNS in its resolv.conf) and its containers' processes.
type sandbox struct {
	uid, ip, netns, veth, dir string
	containers                map[string]*container // the containers that run a process
	env                       map[string][]string   // every container's environment (exec uses it)
}

func (a *agent) netnsName(uid string) string {
	return fmt.Sprintf("%s-%s-%s", a.opt.prefix, a.opt.member, strings.ReplaceAll(uid, "-", "")[:10])
}

func (a *agent) create(ctx context.Context, pod *corev1.Pod) (*sandbox, error) {
	uid := string(pod.UID)
	sb := &sandbox{uid: uid, ip: pod.Status.PodIP, netns: a.netnsName(uid), containers: map[string]*container{},
		veth: "cv" + strings.ReplaceAll(uid, "-", "")[:10],
		dir:  filepath.Join(a.opt.stateDir, fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, uid))}
	if err := os.MkdirAll(sb.dir, 0o755); err != nil {
		return nil, err
	}
	node := a.opt.nodeNetns
	steps := [][]string{
		{"netns", "add", sb.netns},
		{"-n", sb.netns, "link", "set", "lo", "up"},
		{"-n", node, "link", "add", sb.veth, "type", "veth", "peer", "name", "eth0", "netns", sb.netns},
		{"-n", node, "addr", "add", "169.254.1.1/32", "dev", sb.veth},
		{"-n", node, "link", "set", sb.veth, "up"},
		{"-n", node, "route", "replace", sb.ip + "/32", "dev", sb.veth},
		{"-n", sb.netns, "addr", "add", sb.ip + "/32", "dev", "eth0"},
		{"-n", sb.netns, "link", "set", "eth0", "up"},
		{"-n", sb.netns, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link"},
		{"-n", sb.netns, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0"},
	}
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, "ip", s...).CombinedOutput(); err != nil {
			return sb, fmt.Errorf("ip %s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	// A veth's carrier comes up asynchronously; until then the pod has no usable route and its
	// first connection would fail with "network is unreachable".
	if err := waitLinkUp(ctx, sb.netns); err != nil {
		return sb, err
	}
	if err := os.WriteFile(filepath.Join(sb.dir, "netns"), []byte(sb.netns+"\n"), 0o644); err != nil {
		return sb, err
	}
	if a.opt.dnsIP != "" {
		etc := filepath.Join("/etc/netns", sb.netns)
		if err := os.MkdirAll(etc, 0o755); err != nil {
			return sb, err
		}
		d := a.opt.clusterDomain
		conf := fmt.Sprintf("nameserver %s\nsearch %s.svc.%s svc.%s %s\noptions ndots:5\n", a.opt.dnsIP, pod.Namespace, d, d, d)
		if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(conf), 0o644); err != nil {
			return sb, err
		}
	}
	sb.env = map[string][]string{}
	var logs []any
	for _, c := range pod.Spec.Containers {
		env, envMap, err := a.containerEnv(ctx, pod, c)
		if err != nil {
			return sb, fmt.Errorf("container %s: %v", c.Name, err)
		}
		sb.env[c.Name] = env
		logFile := filepath.Join(sb.dir, c.Name+".log")
		logs = append(logs, map[string]any{"containers": []any{c.Name}, "logsFile": logFile, "follow": true})
		args, ok, err := argv(c, a.opt.binDir, envMap)
		if !ok {
			a.unknownImage(c.Image)
			_ = os.WriteFile(logFile, []byte(fmt.Sprintf("%s stderr F image %s is not run by the local clusterset; the pod has a network namespace only\n",
				time.Now().UTC().Format(time.RFC3339Nano), c.Image)), 0o644)
			continue
		}
		exitFile := filepath.Join(sb.dir, c.Name+".exit")
		ctr, cerr := newContainer(a, sb, pod, c, args, env, logFile, exitFile)
		if cerr != nil {
			return sb, fmt.Errorf("container %s: %v", c.Name, cerr)
		}
		sb.containers[c.Name] = ctr
		if b, rerr := os.ReadFile(exitFile); rerr == nil && pod.Spec.RestartPolicy != corev1.RestartPolicyAlways {
			// Ran to completion before this agent restarted; restartPolicy says not again.
			var code int32
			_, _ = fmt.Sscan(string(b), &code)
			ctr.finishedBefore(code)
			continue
		}
		if err != nil { // the image's program is not on this host: the container fails to start
			ctr.failStart(err)
			continue
		}
		go ctr.supervise()
	}
	a.ensureLogs(ctx, pod, logs)
	klog.Infof("pod %s/%s: %s in network namespace %s (%d process(es))", pod.Namespace, pod.Name, sb.ip, sb.netns, len(sb.containers))
	return sb, nil
}

func waitLinkUp(ctx context.Context, netns string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		link, _ := exec.CommandContext(ctx, "ip", "-n", netns, "-o", "link", "show", "eth0").Output()
		route, err := exec.CommandContext(ctx, "ip", "-n", netns, "route", "get", "10.255.255.254").CombinedOutput()
		if strings.Contains(string(link), "state UP") && !strings.Contains(string(link), "NO-CARRIER") && err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("eth0 in %s not up with a default route after 10s: %s / %s", netns, strings.TrimSpace(string(link)), strings.TrimSpace(string(route)))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeNetns kills what still runs in a namespace and deletes it (its veth pair goes with it).
func removeNetns(ns string) {
	if out, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
		klog.Errorf("ip netns del %s: %v: %s", ns, err, strings.TrimSpace(string(out)))
	}
	_ = os.RemoveAll(filepath.Join("/etc/netns", ns))
}

// removeStale deletes pod namespaces a previous, killed agent of this member left behind.
func (a *agent) removeStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	prefix := a.opt.prefix + "-" + a.opt.member + "-"
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			klog.Infof("removing stale network namespace %s", f[0])
			removeNetns(f[0])
		}
	}
}
