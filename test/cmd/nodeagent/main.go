// Command nodeagent makes the pods of one simulated (kwok) node of the local clusterset real enough
// for traffic: each pod gets a network namespace holding the IP kwok assigned, a veth into the node's
// network namespace (where kube-proxy programs Services), a resolv.conf pointing at the member's
// kube-dns Service, and — for the two images of the seed — a process running the project's stand-in
// (test/cmd/serve for jeremyot/serve, test/cmd/request for jeremyot/request) with the pod's args and
// env. A kwok Logs object per pod points `kubectl logs` at the process's output.
//
// Everything it creates lives inside network namespaces named <prefix>-<member>-<uid>; the host's
// own network is never touched. It is started by hack/netns.sh, which also sets up the node
// namespace, and it removes what it created when a pod goes and when it is stopped.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// images maps an image repository to the program (in --bin-dir) that plays it.
var images = map[string]string{
	"jeremyot/serve":   "serve",
	"jeremyot/request": "request",
}

type options struct {
	kubeconfig, node, member, prefix, nodeNetns, stateDir, binDir string
	dnsIP, clusterDomain                                          string
}

type agent struct {
	opt  options
	kube kubernetes.Interface
	dyn  dynamic.Interface
	pods cache.Indexer

	mu        sync.Mutex
	sandboxes map[string]*sandbox // by namespace/name
}

type sandbox struct {
	uid, ip, netns, veth, dir string
	procs                     []*exec.Cmd
	done                      []chan struct{}
}

var logsGVR = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "logs"}

func main() {
	var o options
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the member")
	flag.StringVar(&o.node, "node", "", "name of the Node whose pods this agent runs")
	flag.StringVar(&o.member, "member", "", "member name, part of every namespace name")
	flag.StringVar(&o.prefix, "prefix", "cmcs", "prefix of the network namespaces")
	flag.StringVar(&o.nodeNetns, "node-netns", "", "the node's network namespace")
	flag.StringVar(&o.stateDir, "state-dir", "", "directory for per-pod state and logs")
	flag.StringVar(&o.binDir, "bin-dir", "", "directory holding the serve and request programs")
	flag.StringVar(&o.dnsIP, "cluster-dns", "", "nameserver written into pods' resolv.conf")
	flag.StringVar(&o.clusterDomain, "cluster-domain", "cluster.local", "cluster domain for the resolv.conf search path")
	klog.InitFlags(nil)
	flag.Parse()
	for name, v := range map[string]string{"kubeconfig": o.kubeconfig, "node": o.node, "member": o.member,
		"node-netns": o.nodeNetns, "state-dir": o.stateDir, "bin-dir": o.binDir} {
		if v == "" {
			klog.Exitf("--%s is required", name)
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		klog.Exitf("kubeconfig: %v", err)
	}
	a := &agent{opt: o, sandboxes: map[string]*sandbox{}}
	a.kube = kubernetes.NewForConfigOrDie(cfg)
	a.dyn = dynamic.NewForConfigOrDie(cfg)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a.removeStale()
	if err := a.run(ctx); err != nil {
		klog.Errorf("%v", err)
	}
	a.teardownAll()
	klog.Infof("stopped; every pod namespace removed")
}

func (a *agent) run(ctx context.Context) error {
	f := informers.NewSharedInformerFactoryWithOptions(a.kube, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.opt.node).String()
	}))
	inf := f.Core().V1().Pods().Informer()
	a.pods = inf.GetIndexer()
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			q.Add(k)
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, n any) { enqueue(n) }, DeleteFunc: enqueue,
	})
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return fmt.Errorf("pod informer did not sync")
	}
	klog.Infof("running the pods of node %s in network namespaces %s-%s-*", a.opt.node, a.opt.prefix, a.opt.member)
	go func() { <-ctx.Done(); q.ShutDown() }()
	for {
		k, shutdown := q.Get()
		if shutdown {
			return nil
		}
		if err := a.sync(ctx, k); err != nil {
			klog.Errorf("pod %s: %v (retrying)", k, err)
			q.AddRateLimited(k)
		} else {
			q.Forget(k)
		}
		q.Done(k)
	}
}

// sync brings the sandbox of pod key in line with the pod: present while the pod is scheduled here,
// has an IP and is not being deleted; replaced when the pod's UID changes.
func (a *agent) sync(ctx context.Context, key string) error {
	obj, exists, err := a.pods.GetByKey(key)
	if err != nil {
		return err
	}
	var pod *corev1.Pod
	if exists {
		pod = obj.(*corev1.Pod)
	}
	a.mu.Lock()
	sb := a.sandboxes[key]
	a.mu.Unlock()
	want := pod != nil && pod.DeletionTimestamp == nil && pod.Status.PodIP != "" && !pod.Spec.HostNetwork
	if sb != nil && (!want || sb.uid != string(pod.UID)) {
		a.teardown(key, sb)
		sb = nil
	}
	if !want || sb != nil {
		return nil
	}
	sb, err = a.create(ctx, pod)
	if err != nil {
		if sb != nil {
			a.teardown(key, sb)
		}
		return err
	}
	a.mu.Lock()
	a.sandboxes[key] = sb
	a.mu.Unlock()
	return nil
}

func (a *agent) netnsName(uid string) string {
	return fmt.Sprintf("%s-%s-%s", a.opt.prefix, a.opt.member, strings.ReplaceAll(uid, "-", "")[:10])
}

func (a *agent) create(ctx context.Context, pod *corev1.Pod) (*sandbox, error) {
	uid := string(pod.UID)
	sb := &sandbox{uid: uid, ip: pod.Status.PodIP, netns: a.netnsName(uid),
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
	var logs []any
	for _, c := range pod.Spec.Containers {
		logFile := filepath.Join(sb.dir, c.Name+".log")
		logs = append(logs, map[string]any{"containers": []any{c.Name}, "logsFile": logFile, "follow": true})
		exitFile := filepath.Join(sb.dir, c.Name+".exit")
		if _, err := os.Stat(exitFile); err == nil && pod.Spec.RestartPolicy != corev1.RestartPolicyAlways {
			continue // ran to completion before this agent restarted; restartPolicy says not again
		}
		prog, ok := images[repository(c.Image)]
		if !ok {
			_ = os.WriteFile(logFile, []byte(fmt.Sprintf("%s stderr F image %s is not run by the local clusterset; the pod has a network namespace only\n",
				time.Now().UTC().Format(time.RFC3339Nano), c.Image)), 0o644)
			continue
		}
		if err := a.start(sb, pod, c, filepath.Join(a.opt.binDir, prog), logFile, exitFile); err != nil {
			return sb, fmt.Errorf("container %s: %v", c.Name, err)
		}
	}
	a.ensureLogs(ctx, pod, logs)
	klog.Infof("pod %s/%s: %s in network namespace %s (%d process(es))", pod.Namespace, pod.Name, sb.ip, sb.netns, len(sb.procs))
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

// repository strips the registry-less image reference to its repository: "jeremyot/serve:0a40de8" →
// "jeremyot/serve"; "docker.io/jeremyot/serve@sha256:…" → "jeremyot/serve".
func repository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	if parts := strings.SplitN(image, "/", 2); len(parts) == 2 && strings.ContainsAny(parts[0], ".:") {
		image = parts[1]
	}
	return image
}

func (a *agent) start(sb *sandbox, pod *corev1.Pod, c corev1.Container, prog, logFile, exitFile string) error {
	out, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	env := []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOSTNAME=" + pod.Name}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			v = fieldValue(pod, e.ValueFrom.FieldRef.FieldPath)
		}
		env = append(env, e.Name+"="+v)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", sb.netns, prog}, c.Args...)...)
	cmd.Env = env
	l := &criLog{f: out}
	stdout, stderr := &criStream{log: l, name: "stdout"}, &criStream{log: l, name: "stderr"}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		stdout.flush()
		stderr.flush()
		out.Close()
		if cmd.ProcessState != nil && cmd.ProcessState.Exited() { // not when killed by teardown
			_ = os.WriteFile(exitFile, []byte(fmt.Sprintf("%d\n", cmd.ProcessState.ExitCode())), 0o644)
		}
		klog.Infof("pod %s/%s container %s exited: %v", pod.Namespace, pod.Name, c.Name, exitText(err))
		close(done)
	}()
	sb.procs = append(sb.procs, cmd)
	sb.done = append(sb.done, done)
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "status 0"
	}
	return err.Error()
}

func fieldValue(pod *corev1.Pod, path string) string {
	switch path {
	case "metadata.name":
		return pod.Name
	case "metadata.namespace":
		return pod.Namespace
	case "metadata.uid":
		return string(pod.UID)
	case "spec.nodeName":
		return pod.Spec.NodeName
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName
	case "status.podIP":
		return pod.Status.PodIP
	case "status.hostIP":
		return pod.Status.HostIP
	}
	if strings.HasPrefix(path, "metadata.labels['") && strings.HasSuffix(path, "']") {
		return pod.Labels[strings.TrimSuffix(strings.TrimPrefix(path, "metadata.labels['"), "']")]
	}
	if strings.HasPrefix(path, "metadata.annotations['") && strings.HasSuffix(path, "']") {
		return pod.Annotations[strings.TrimSuffix(strings.TrimPrefix(path, "metadata.annotations['"), "']")]
	}
	return ""
}

// ensureLogs creates kwok's Logs object for the pod, so that `kubectl logs` (served by kwok, which
// plays the kubelet) shows the process's output. Without the Logs CRD it does nothing.
func (a *agent) ensureLogs(ctx context.Context, pod *corev1.Pod, logs []any) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "Logs",
		"metadata": map[string]any{"name": pod.Name, "namespace": pod.Namespace,
			"ownerReferences": []any{map[string]any{"apiVersion": "v1", "kind": "Pod", "name": pod.Name, "uid": string(pod.UID)}}},
		"spec": map[string]any{"logs": logs},
	}}
	r := a.dyn.Resource(logsGVR).Namespace(pod.Namespace)
	_ = r.Delete(ctx, pod.Name, metav1.DeleteOptions{})
	if _, err := r.Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		klog.V(2).Infof("pod %s/%s: kwok Logs object: %v", pod.Namespace, pod.Name, err)
	}
}

func (a *agent) teardown(key string, sb *sandbox) {
	for _, p := range sb.procs {
		_ = syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
	}
	for i, d := range sb.done {
		select {
		case <-d:
		case <-time.After(2 * time.Second):
			_ = syscall.Kill(-sb.procs[i].Process.Pid, syscall.SIGKILL)
			<-d
		}
	}
	removeNetns(sb.netns)
	a.mu.Lock()
	if a.sandboxes[key] == sb {
		delete(a.sandboxes, key)
	}
	a.mu.Unlock()
	klog.Infof("pod %s: network namespace %s removed", key, sb.netns)
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

func (a *agent) teardownAll() {
	a.mu.Lock()
	keys := make([]string, 0, len(a.sandboxes))
	for k := range a.sandboxes {
		keys = append(keys, k)
	}
	a.mu.Unlock()
	sort.Strings(keys)
	// In parallel: whoever stops the agent waits only a few seconds before killing it.
	var wg sync.WaitGroup
	for _, k := range keys {
		a.mu.Lock()
		sb := a.sandboxes[k]
		a.mu.Unlock()
		if sb != nil {
			wg.Add(1)
			go func() { defer wg.Done(); a.teardown(k, sb) }()
		}
	}
	wg.Wait()
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

// criLog writes a container's output in the CRI log format kubelets write and kwok serves to
// `kubectl logs`: "<RFC3339Nano time> <stdout|stderr> F <line>".
type criLog struct {
	mu sync.Mutex
	f  *os.File
}

type criStream struct {
	log  *criLog
	name string
	buf  []byte
}

func (s *criStream) Write(p []byte) (int, error) {
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		s.line(s.buf[:i])
		s.buf = s.buf[i+1:]
	}
}

func (s *criStream) flush() {
	if len(s.buf) > 0 {
		s.line(s.buf)
		s.buf = nil
	}
}

func (s *criStream) line(b []byte) {
	s.log.mu.Lock()
	defer s.log.mu.Unlock()
	fmt.Fprintf(s.log.f, "%s %s F %s\n", time.Now().UTC().Format(time.RFC3339Nano), s.name, b)
}
