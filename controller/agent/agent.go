// Package agent is the MCS agent of a Pull-mode member (cmd/mcs-agent): it runs in the member
// with the member's credentials and a Karmada kubeconfig that may only touch the member's
// execution namespace (karmada-es-<cluster>), as Karmada's own karmada-agent does. It
//
//   - reports what the MCS controller reads of the member (its ServiceExports and
//     ServiceImports, the exported Services and their EndpointSlices, the derived Services and
//     mirrored slices Karmada applied there, its Namespaces, its cluster id, IP families and MCS
//     versions) as report Works (internal/report), so the controller never calls the member;
//   - applies the status the controller decided for the member's ServiceExports and
//     ServiceImports (status Works) with Warning events where the user must act.
//
// Imports reach the member as everywhere: Works that Karmada's agent applies.
//
// Its rooms: agent.go (caches, queue, first pass), publish.go (report Works), status.go
// (status Works), cluster.go (the cluster report).
package agent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	karmadaclient "github.com/karmada-io/karmada/pkg/generated/clientset/versioned"
	workinformers "github.com/karmada-io/karmada/pkg/generated/informers/externalversions/work/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/kube"
	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
	"github.com/coredns-mcs/coredns-mcs/internal/report"
)

// Options configure the agent.
type Options struct {
	// Cluster is the member's name in Karmada (its Cluster object, karmada-es-<Cluster>).
	Cluster string
	// DerivedPrefix is the controller's --derived-prefix: Services of that prefix are reported
	// (whether a derived Service's name is taken is the controller's to decide).
	DerivedPrefix string
	// Workers process items in parallel (default 2).
	Workers int
	// RequestTimeout bounds every request but watches (default 15 s).
	RequestTimeout time.Duration
	// ClusterInterval: how often the cluster id, IP families and MCS versions are re-read
	// (default 10 s).
	ClusterInterval time.Duration
	// Lease is how long the agent's cluster report vouches for it (default 40 s, Karmada's
	// cluster lease): it is renewed every quarter of it, and the controller takes a member whose
	// report is older for not Ready.
	Lease time.Duration
}

// item is one thing to bring in step: the report of a member object (status false), or the
// status of a ServiceExport or ServiceImport from its status Work (status true).
type item struct {
	status         bool
	kind, ns, name string
}

// Agent is one member's MCS agent.
type Agent struct {
	opts Options

	member    kubernetes.Interface // bounded
	memberDyn dynamic.Interface    // bounded
	karmada   karmadaclient.Interface
	recorder  record.EventRecorder
	stopEvent func()

	services, slices, namespaces cache.SharedIndexInformer
	// reports are our report Works, statusWorks the controller's status Works, both in the
	// member's execution namespace.
	reports, statusWorks cache.SharedIndexInformer

	memberDynWatch dynamic.Interface
	disco          func() (mcs.APIs, error)
	mu             sync.Mutex
	seGVR, siGVR   schema.GroupVersionResource
	exports        cache.SharedIndexInformer
	imports        cache.SharedIndexInformer
	cancelMCS      context.CancelFunc
	mcsDiscovered  atomic.Bool

	queue  workqueue.TypedRateLimitingInterface[item]
	synced atomic.Bool
	// lastCluster is the hash of the cluster report last written.
	lastCluster atomic.Value
}

// New builds the agent from the member's configuration and the Karmada control plane's.
func New(memberCfg, karmadaCfg *rest.Config, opts Options) (*Agent, error) {
	if opts.Cluster == "" {
		return nil, errors.New("the member's Karmada cluster name is required")
	}
	if opts.DerivedPrefix == "" {
		opts.DerivedPrefix = mcs.DefaultDerivedPrefix
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 15 * time.Second
	}
	if opts.ClusterInterval <= 0 {
		opts.ClusterInterval = 10 * time.Second
	}
	if opts.Lease <= 0 {
		opts.Lease = 40 * time.Second
	}
	if opts.ClusterInterval > opts.Lease/4 {
		opts.ClusterInterval = opts.Lease / 4
	}
	bounded := func(cfg *rest.Config) *rest.Config {
		c := rest.CopyConfig(cfg)
		c.Timeout = opts.RequestTimeout
		return c
	}
	memberWatch, err := kubernetes.NewForConfig(memberCfg)
	if err != nil {
		return nil, err
	}
	a := &Agent{opts: opts}
	if a.member, err = kubernetes.NewForConfig(bounded(memberCfg)); err != nil {
		return nil, err
	}
	if a.memberDyn, err = dynamic.NewForConfig(bounded(memberCfg)); err != nil {
		return nil, err
	}
	if a.memberDynWatch, err = dynamic.NewForConfig(memberCfg); err != nil {
		return nil, err
	}
	if a.karmada, err = karmadaclient.NewForConfig(bounded(karmadaCfg)); err != nil {
		return nil, err
	}
	karmadaWatch, err := karmadaclient.NewForConfig(karmadaCfg)
	if err != nil {
		return nil, err
	}
	disco := a.member.Discovery()
	a.disco = func() (mcs.APIs, error) { return mcs.Discover(disco) }
	bc := record.NewBroadcaster()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.member.CoreV1().Events("")})
	a.recorder, a.stopEvent = bc.NewRecorder(eventScheme(), corev1.EventSource{Component: "coredns-mcs-agent"}), bc.Shutdown
	a.queue = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[item](),
		workqueue.TypedRateLimitingQueueConfig[item]{Name: "mcs-agent"})

	a.services = kube.Informer[*corev1.ServiceList](memberWatch.CoreV1().Services(metav1.NamespaceAll), "", &corev1.Service{}, cache.Indexers{})
	a.slices = kube.Informer[*discoveryv1.EndpointSliceList](memberWatch.DiscoveryV1().EndpointSlices(metav1.NamespaceAll),
		discoveryv1.LabelServiceName, &discoveryv1.EndpointSlice{}, cache.Indexers{byService: func(obj any) ([]string, error) {
			s, ok := obj.(*discoveryv1.EndpointSlice)
			if !ok {
				return nil, nil
			}
			return []string{s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]}, nil
		}})
	a.namespaces = kube.Informer[*corev1.NamespaceList](memberWatch.CoreV1().Namespaces(), "", &corev1.Namespace{}, cache.Indexers{})
	ns := report.ExecutionNamespace(opts.Cluster)
	a.reports = workinformers.NewFilteredWorkInformer(karmadaWatch, ns, 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = report.LabelManagedBy + "=" + report.ManagedByAgent })
	a.statusWorks = workinformers.NewFilteredWorkInformer(karmadaWatch, ns, 0, cache.Indexers{},
		func(o *metav1.ListOptions) {
			o.LabelSelector = report.LabelManagedBy + "=" + report.ManagedByController
		})

	objectKey := func(o metav1.Object) (string, string) { return o.GetNamespace(), o.GetName() }
	a.on(a.services, func(o metav1.Object) { ns, n := objectKey(o); a.add(item{kind: report.KindService, ns: ns, name: n}) })
	a.on(a.slices, func(o metav1.Object) {
		ns, n := objectKey(o)
		a.add(item{kind: report.KindEndpointSlice, ns: ns, name: n})
	})
	a.on(a.namespaces, func(o metav1.Object) { a.add(item{kind: report.KindNamespace, name: o.GetName()}) })
	workItem := func(status bool) func(metav1.Object) {
		return func(o metav1.Object) {
			if it, ok := parseRef(o.GetAnnotations()[report.AnnotationObject]); ok {
				it.status = status
				a.add(it)
			}
		}
	}
	a.on(a.reports, workItem(false))
	a.on(a.statusWorks, workItem(true))
	return a, nil
}

// byService indexes EndpointSlices by the service they serve (namespace/name).
const byService = "service"

// eventScheme knows the kinds the agent records events on.
func eventScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = corev1.AddToScheme(s)
	_ = mcsv1beta1.Install(s)
	return s
}

// on calls f with every object added, updated or deleted in inf.
func (a *Agent) on(inf cache.SharedIndexInformer, f func(metav1.Object)) {
	_, _ = inf.AddEventHandler(mcs.Handler(func(obj any) {
		if o, ok := obj.(metav1.Object); ok {
			f(o)
		}
	}))
}

func (a *Agent) add(it item) { a.queue.Add(it) }

// parseRef reads report.AnnotationObject (kind/namespace/name).
func parseRef(ref string) (item, bool) {
	parts := strings.SplitN(ref, "/", 3)
	if len(parts) != 3 || parts[0] == "" || parts[2] == "" {
		return item{}, false
	}
	return item{kind: parts[0], ns: parts[1], name: parts[2]}, true
}

// Synced reports whether the first pass is done: every object of the member is reported.
func (a *Agent) Synced() bool { return a.synced.Load() }

// Run runs the agent until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	defer a.queue.ShutDown()
	defer a.stopEvent()
	logger := klog.FromContext(ctx).WithValues("cluster", a.opts.Cluster)
	for _, inf := range []cache.SharedIndexInformer{a.services, a.slices, a.namespaces, a.reports, a.statusWorks} {
		go inf.RunWithContext(ctx)
	}
	go mcs.Supervise(ctx, a.member.Discovery(), a.superviseMCS(ctx))
	logger.Info("waiting for the caches of the member and of its execution namespace", "namespace", report.ExecutionNamespace(a.opts.Cluster))
	if !cache.WaitForCacheSync(ctx.Done(), a.services.HasSynced, a.slices.HasSynced, a.namespaces.HasSynced,
		a.reports.HasSynced, a.statusWorks.HasSynced, a.mcsSynced) {
		return ctx.Err()
	}
	// The first pass: every object of the member and every report Work (some may be of
	// objects gone while the agent was not running) is brought in step before the cluster
	// report says Synced, so the controller never takes a half-published member for the whole.
	start := time.Now()
	items := a.allItems()
	for _, it := range items {
		if err := a.sync(ctx, it); err != nil {
			logger.Info("first pass: retrying later", "item", it, "err", err)
			a.queue.AddRateLimited(it)
		}
	}
	a.synced.Store(true)
	syncedGauge.Set(1)
	if err := a.writeCluster(ctx); err != nil {
		logger.Error(err, "writing the cluster report")
	}
	logger.Info("member reported", "items", len(items), "took", time.Since(start).Round(time.Millisecond))
	for range a.opts.Workers {
		go a.work(ctx)
	}
	t := time.NewTicker(a.opts.ClusterInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := a.writeCluster(ctx); err != nil {
				logger.Error(err, "writing the cluster report")
			}
		}
	}
}

// allItems lists every object the agent may report and every Work it follows.
func (a *Agent) allItems() []item {
	var out []item
	seen := map[item]bool{}
	add := func(it item) {
		if !seen[it] {
			seen[it] = true
			out = append(out, it)
		}
	}
	keys := func(inf cache.SharedIndexInformer, kind string) {
		if inf == nil {
			return
		}
		for _, k := range inf.GetStore().ListKeys() {
			ns, name, _ := cache.SplitMetaNamespaceKey(k)
			add(item{kind: kind, ns: ns, name: name})
		}
	}
	_, ex, im := a.mcsInformers()
	keys(ex, report.KindServiceExport)
	keys(im, report.KindServiceImport)
	keys(a.services, report.KindService)
	keys(a.slices, report.KindEndpointSlice)
	keys(a.namespaces, report.KindNamespace)
	for _, inf := range []cache.SharedIndexInformer{a.reports, a.statusWorks} {
		for _, o := range inf.GetStore().List() {
			if it, ok := parseRef(o.(*workv1alpha1.Work).Annotations[report.AnnotationObject]); ok {
				it.status = inf == a.statusWorks
				add(it)
			}
		}
	}
	return out
}

func (a *Agent) work(ctx context.Context) {
	for {
		it, shutdown := a.queue.Get()
		if shutdown {
			return
		}
		err := a.sync(ctx, it)
		switch {
		case err == nil:
			a.queue.Forget(it)
		case ctx.Err() != nil:
		default:
			errorsTotal.Inc()
			klog.FromContext(ctx).V(1).Info("retrying", "item", it, "err", err)
			a.queue.AddRateLimited(it)
		}
		a.queue.Done(it)
	}
}

func (a *Agent) sync(ctx context.Context, it item) error {
	if it.status {
		return a.syncStatus(ctx, it)
	}
	return a.publish(ctx, it)
}

// superviseMCS follows the MCS versions the member serves (the CRDs may come after the agent,
// or be upgraded): the ServiceExport and ServiceImport informers (re)start on the preferred.
func (a *Agent) superviseMCS(ctx context.Context) func(mcs.APIs, error) time.Duration {
	return func(apis mcs.APIs, err error) time.Duration {
		if err != nil {
			return 2 * time.Second
		}
		se, okSE := apis.Preferred(mcs.ExportVersions)
		si, okSI := apis.Preferred(mcs.ImportVersions)
		a.mu.Lock()
		same := a.seGVR == se && a.siGVR == si
		a.mu.Unlock()
		if same && a.mcsDiscovered.Load() {
			return 10 * time.Second
		}
		if !okSE || !okSI {
			a.startMCS(ctx, schema.GroupVersionResource{}, schema.GroupVersionResource{})
		} else {
			klog.FromContext(ctx).Info("watching the MCS API", "serviceexports", se.GroupVersion().String(), "serviceimports", si.GroupVersion().String())
			a.startMCS(ctx, se, si)
		}
		a.mcsDiscovered.Store(true)
		return 10 * time.Second
	}
}

func (a *Agent) startMCS(parent context.Context, se, si schema.GroupVersionResource) {
	ctx, cancel := context.WithCancel(parent)
	var ex, im cache.SharedIndexInformer
	if !se.Empty() {
		ex = mcs.Informer(a.memberDynWatch, se, nil)
		im = mcs.Informer(a.memberDynWatch, si, nil)
		if err := im.AddIndexers(cache.Indexers{byDerivedName: derivedNameIndex(a.opts.DerivedPrefix)}); err != nil {
			panic(err) // only fails on a started informer
		}
		a.on(ex, func(o metav1.Object) {
			a.add(item{kind: report.KindServiceExport, ns: o.GetNamespace(), name: o.GetName()})
			a.add(item{status: true, kind: report.KindServiceExport, ns: o.GetNamespace(), name: o.GetName()})
			// What is reported of the service follows its export.
			a.add(item{kind: report.KindService, ns: o.GetNamespace(), name: o.GetName()})
			objs, _ := a.slices.GetIndexer().ByIndex(byService, o.GetNamespace()+"/"+o.GetName())
			for _, s := range objs {
				a.add(item{kind: report.KindEndpointSlice, ns: o.GetNamespace(), name: s.(metav1.Object).GetName()})
			}
		})
		a.on(im, func(o metav1.Object) {
			a.add(item{kind: report.KindServiceImport, ns: o.GetNamespace(), name: o.GetName()})
			a.add(item{status: true, kind: report.KindServiceImport, ns: o.GetNamespace(), name: o.GetName()})
			// A derived Service of a chosen name is reported (see wanted).
			if name, err := mcs.DerivedServiceOf(a.opts.DerivedPrefix, o.GetNamespace(), o.GetName(), o.GetAnnotations()); err == nil {
				a.add(item{kind: report.KindService, ns: o.GetNamespace(), name: name})
			}
		})
		go ex.RunWithContext(ctx)
		go im.RunWithContext(ctx)
	}
	a.mu.Lock()
	if a.cancelMCS != nil {
		a.cancelMCS()
	}
	a.cancelMCS, a.seGVR, a.siGVR, a.exports, a.imports = cancel, se, si, ex, im
	a.mu.Unlock()
	// Every export and import is reported again from the new informers.
	if a.synced.Load() {
		for _, it := range a.allItems() {
			a.add(it)
		}
	}
}

func (a *Agent) mcsInformers() (schema.GroupVersionResource, cache.SharedIndexInformer, cache.SharedIndexInformer) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seGVR, a.exports, a.imports
}

// mcsSynced: the MCS API was looked for, and its informers (if served) are synced.
func (a *Agent) mcsSynced() bool {
	if !a.mcsDiscovered.Load() {
		return false
	}
	_, ex, im := a.mcsInformers()
	return ex == nil || ex.HasSynced() && im.HasSynced()
}

// export and serviceImport are the member's cached ServiceExport and ServiceImport of ns/name.
func (a *Agent) export(ns, name string) (*mcsv1beta1.ServiceExport, bool) {
	_, ex, _ := a.mcsInformers()
	return kube.Cached[*mcsv1beta1.ServiceExport](ex, ns+"/"+name)
}

func (a *Agent) serviceImport(ns, name string) (*mcsv1beta1.ServiceImport, bool) {
	_, _, im := a.mcsInformers()
	return kube.Cached[*mcsv1beta1.ServiceImport](im, ns+"/"+name)
}
