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
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os/signal"
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

type options struct {
	kubeconfig, node, member, prefix, nodeNetns, stateDir, binDir string
	dnsIP, clusterDomain                                          string
	kubeletAddr, tlsCert, tlsKey, clientCA, kwokURL               string
}

type agent struct {
	opt     options
	kube    kubernetes.Interface
	dyn     dynamic.Interface
	pods    cache.Indexer
	statusQ workqueue.TypedRateLimitingInterface[string]

	mu        sync.Mutex
	sandboxes map[string]*sandbox // by namespace/name
	syncErr   map[string]error    // the last error creating a pod's sandbox, by namespace/name
	unknown   map[string]bool     // images already said to be not run
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
	flag.StringVar(&o.kubeletAddr, "kubelet-address", "", "host:port to serve the node's kubelet API on (exec, attach, port-forward; the rest goes to --kwok-url); empty: none")
	flag.StringVar(&o.tlsCert, "tls-cert-file", "", "serving certificate of the kubelet API")
	flag.StringVar(&o.tlsKey, "tls-private-key-file", "", "key of --tls-cert-file")
	flag.StringVar(&o.clientCA, "client-ca-file", "", "CA of the clients (the apiserver's kubelet client certificate) and of kwok's serving certificate")
	flag.StringVar(&o.kwokURL, "kwok-url", "", "kwok's kubelet server, for every path the agent does not serve (containerLogs, healthz, …)")
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
	a := &agent{opt: o, sandboxes: map[string]*sandbox{}, syncErr: map[string]error{}, unknown: map[string]bool{}}
	a.kube = kubernetes.NewForConfigOrDie(cfg)
	a.dyn = dynamic.NewForConfigOrDie(cfg)
	a.statusQ = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if o.kubeletAddr != "" {
		srv, err := a.kubeletServer(o.kubeletAddr, o.tlsCert, o.tlsKey, o.clientCA, o.kwokURL)
		if err != nil {
			klog.Exitf("kubelet API: %v", err)
		}
		ln, err := net.Listen("tcp", o.kubeletAddr)
		if err != nil {
			klog.Exitf("kubelet API: %v", err)
		}
		go func() {
			if err := srv.ServeTLS(ln, "", ""); err != nil && err != http.ErrServerClosed {
				klog.Errorf("kubelet API: %v", err)
			}
		}()
		defer srv.Close()
		klog.Infof("serving the kubelet API (exec, attach, port-forward) on https://%s; other paths go to %s", o.kubeletAddr, o.kwokURL)
	}
	a.removeStale()
	go a.statusLoop(ctx)
	if err := a.run(ctx); err != nil {
		klog.Errorf("%v", err)
	}
	a.statusQ.ShutDown()
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
	// Several workers: one pod's slow teardown (a process that ignores SIGTERM for 2 s, the pods
	// of a whole namespace going at once) must not hold up the sandbox of a pod being attached
	// to. The queue never hands the same pod to two workers.
	var wg sync.WaitGroup
	for range syncWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a.processNext(ctx, q) {
			}
		}()
	}
	wg.Wait()
	return nil
}

const syncWorkers = 4

func (a *agent) processNext(ctx context.Context, q workqueue.TypedRateLimitingInterface[string]) bool {
	k, shutdown := q.Get()
	if shutdown {
		return false
	}
	defer q.Done(k)
	start := time.Now()
	err := a.sync(ctx, k)
	a.mu.Lock()
	if err != nil {
		a.syncErr[k] = err
	} else {
		delete(a.syncErr, k)
	}
	a.mu.Unlock()
	if err != nil {
		klog.Errorf("pod %s: %v (retrying)", k, err)
		q.AddRateLimited(k)
		return true
	}
	q.Forget(k)
	if d := time.Since(start); d > 3*time.Second {
		klog.Infof("pod %s: synced in %s", k, d.Round(time.Millisecond))
	}
	return true
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
	want := pod != nil && sandboxed(pod) && pod.Status.PodIP != ""
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
	a.reportStatus(key)
	return nil
}

// sandboxed says whether pod, scheduled here, has (or is to get, once it has an IP) a sandbox:
// not being deleted, not on the host's network.
func sandboxed(pod *corev1.Pod) bool {
	return pod.DeletionTimestamp == nil && !pod.Spec.HostNetwork
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
	var wg sync.WaitGroup
	for _, c := range sb.containers {
		wg.Add(1)
		go func() { defer wg.Done(); c.kill() }()
	}
	wg.Wait()
	removeNetns(sb.netns)
	a.mu.Lock()
	if a.sandboxes[key] == sb {
		delete(a.sandboxes, key)
	}
	a.mu.Unlock()
	klog.Infof("pod %s: network namespace %s removed", key, sb.netns)
}

// unknownImage says once per image that its containers run no process.
func (a *agent) unknownImage(image string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.unknown[image] {
		a.unknown[image] = true
		klog.Infof("image %s is not run by the local clusterset: its pods get a network namespace (exec works there), no process", image)
	}
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
