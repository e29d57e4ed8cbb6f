package controller

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	karmadaclient "github.com/karmada-io/karmada/pkg/generated/clientset/versioned"
	clusterinformers "github.com/karmada-io/karmada/pkg/generated/informers/externalversions/cluster/v1alpha1"
	workinformers "github.com/karmada-io/karmada/pkg/generated/informers/externalversions/work/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	ctrlcontroller "sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
	"github.com/coredns-mcs/coredns-mcs/internal/report"
)

// Options configure the controller.
type Options struct {
	// DerivedPrefix prefixes the derived Service's name (default "derived-", Karmada's).
	DerivedPrefix string
	// Workers reconcile services in parallel.
	Workers int
	// MemberFailure is what happens to the endpoints a member exports once Karmada has reported
	// it not Ready for FailureGrace: MemberFailureDrain (default) removes them from every importer
	// until it is Ready again; MemberFailureKeep leaves them, as Karmada's own controllers do.
	MemberFailure string
	FailureGrace  time.Duration
	// MemberQPS and MemberBurst limit the requests to each member's apiserver (default 50, 100).
	MemberQPS   float32
	MemberBurst int
	// ReconcileTimeout bounds one reconcile of a service or cluster (default 2 minutes).
	ReconcileTimeout time.Duration
	// SecretNamespaces are where Cluster credentials may be read (default karmada-cluster, where
	// karmadactl join puts them): a Cluster whose secretRef points elsewhere is refused, so that
	// whoever may edit a Cluster cannot make the controller read any Secret and send its token
	// to a server of their choosing.
	SecretNamespaces []string
	// MemberTimeout bounds each request to a member's apiserver but its watches (default 15 s):
	// a member that accepts a request and never answers holds a worker that long at most.
	MemberTimeout time.Duration
	// StatusNamespace is where the leader publishes the FleetStatus ConfigMap on the Karmada
	// control plane (its leader-election namespace); none when empty.
	StatusNamespace string
	// DeclaredTimeout is how long a member a ServiceExport or ServiceImport template is
	// scheduled to counts as exporting or importing before the object lands there (default 60 s;
	// negative: off, only the members' own objects count). See declared.go.
	DeclaredTimeout time.Duration
	// WorkLayout groups the objects written into an importer into Works: WorkLayoutObject (one
	// Work per object, the default) or WorkLayoutBundle (the derived Service and its slices in
	// one Work per importer and service). See bundle.go.
	WorkLayout string
}

// KarmadaRequestTimeout bounds every request to the Karmada apiserver but its watches.
const KarmadaRequestTimeout = 30 * time.Second

// Member failure policies.
const (
	MemberFailureDrain = "drain"
	MemberFailureKeep  = "keep"
)

// Controller reconciles exported services across Karmada's members. It is two
// controller-runtime controllers sharing the caches: one keyed by service (namespace/name: the
// exports, imports and Works of that service), one keyed by Karmada Cluster (the member set).
type Controller struct {
	opts     Options
	kube     kubernetes.Interface // Karmada control plane
	karmada  karmadaclient.Interface
	dyn      dynamic.Interface
	recorder record.EventRecorder
	// status writes the ServiceExport templates' status off the workers.
	status *statusWriter

	services workqueue.TypedRateLimitingInterface[reconcile.Request]
	clusters workqueue.TypedRateLimitingInterface[reconcile.Request]

	works cache.SharedIndexInformer // our Works (typed), indexed by service
	// statusWorks: the status Works for Pull members' agents (pull.go); karmadaWatch feeds
	// the informers of Pull members' reports.
	statusWorks  cache.SharedIndexInformer
	karmadaWatch karmadaclient.Interface
	clusterInf   cache.SharedIndexInformer // Karmada Clusters (typed)
	// importTemplates: ServiceImport templates, whose presence turns automatic imports off;
	// exportTemplates: ServiceExport templates, onto which export conditions are mirrored.
	importTemplates *templates
	exportTemplates *templates
	// declared: the ResourceBindings of MCS templates, whose scheduled members count before
	// the objects land there (declared.go).
	declared *declared

	mu         sync.RWMutex
	members    map[string]*member
	notReady   map[string]time.Time // clusters Karmada reports not Ready, since when
	drainedNow map[string]bool      // clusters whose endpoints are withdrawn (logged once)

	syncMu      sync.Mutex
	syncedNow   map[string]bool   // whether each Push member's caches were synced at the last look
	refusedNow  map[string]string // why each member's exports are refused for its cluster id ("" if not)
	propagation *propagation
	// karmadaMCSSeen: Karmada's own MCS controllers were found at the last look (warned once).
	karmadaMCSSeen bool
	warned         map[string]string // Warning events recorded on ServiceImports: key → message

	ctx     context.Context
	started atomic.Bool
}

// New builds the controller against the Karmada control plane; SetupWithManager runs it.
func New(cfg *rest.Config, opts Options) (*Controller, error) {
	if err := defaults(&opts); err != nil {
		return nil, err
	}
	// Requests are bounded, watches (the informers' clients) are not.
	bounded := rest.CopyConfig(cfg)
	bounded.Timeout = KarmadaRequestTimeout
	kube, err := kubernetes.NewForConfig(bounded)
	if err != nil {
		return nil, err
	}
	karmada, err := karmadaclient.NewForConfig(bounded)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(bounded)
	if err != nil {
		return nil, err
	}
	karmadaWatch, err := karmadaclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dynWatch, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	c := &Controller{
		opts: opts, kube: kube, karmada: karmada, dyn: dyn, karmadaWatch: karmadaWatch,
		status:      newStatusWriter("karmada"),
		services:    newQueue("mcs-service"),
		clusters:    newQueue("mcs-cluster"),
		members:     map[string]*member{},
		notReady:    map[string]time.Time{},
		drainedNow:  map[string]bool{},
		syncedNow:   map[string]bool{},
		refusedNow:  map[string]string{},
		propagation: newPropagation(),
		warned:      map[string]string{},
	}
	c.importTemplates = &templates{kind: "ServiceImport", versions: mcs.ImportVersions, disco: kube.Discovery(), dynWatch: dynWatch, enqueue: c.enqueue,
		missingMsg: "the Karmada control plane does not serve the ServiceImport API; every export is imported automatically until it does"}
	c.exportTemplates = &templates{kind: "ServiceExport", versions: mcs.ExportVersions, disco: kube.Discovery(), dynWatch: dynWatch, enqueue: c.enqueue,
		missingMsg: "the Karmada control plane does not serve the ServiceExport API; export conditions are written in the members only"}
	c.recorder, _ = recorderFor(kube)
	if opts.DeclaredTimeout > 0 {
		c.declared = newDeclared(karmadaWatch, opts.DeclaredTimeout, c.enqueue)
	}

	c.works = workinformers.NewFilteredWorkInformer(karmadaWatch, metav1.NamespaceAll, 0, cache.Indexers{byServiceIndex: func(obj any) ([]string, error) {
		w, ok := obj.(*workv1alpha1.Work)
		if !ok {
			return nil, nil
		}
		return []string{serviceOfWork(w)}, nil
	}}, func(o *metav1.ListOptions) { o.LabelSelector = labelManagedBy + "=" + ManagedBy })
	if _, err := c.works.AddEventHandler(keyHandler(c.enqueue, func(o metav1.Object) string {
		return o.GetLabels()[labelWorkNamespace] + "/" + o.GetLabels()[labelWorkName]
	})); err != nil {
		return nil, err
	}
	c.statusWorks = workinformers.NewFilteredWorkInformer(karmadaWatch, metav1.NamespaceAll, 0, cache.Indexers{},
		func(o *metav1.ListOptions) {
			o.LabelSelector = report.LabelManagedBy + "=" + report.ManagedByController
		})
	c.clusterInf = clusterinformers.NewClusterInformer(karmadaWatch, 0, cache.Indexers{})
	if _, err := c.clusterInf.AddEventHandler(keyHandler(func(name string) {
		c.clusters.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: name}})
	}, func(o metav1.Object) string { return o.GetName() })); err != nil {
		return nil, err
	}
	return c, nil
}

func defaults(opts *Options) error {
	if opts.DerivedPrefix == "" {
		opts.DerivedPrefix = mcs.DefaultDerivedPrefix
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.MemberQPS <= 0 {
		opts.MemberQPS, opts.MemberBurst = 50, 100
	}
	if opts.MemberBurst < int(opts.MemberQPS) {
		opts.MemberBurst = int(opts.MemberQPS)
	}
	switch opts.MemberFailure {
	case "":
		opts.MemberFailure = MemberFailureDrain
	case MemberFailureDrain, MemberFailureKeep:
	default:
		return fmt.Errorf("member failure policy %q: want %s or %s", opts.MemberFailure, MemberFailureDrain, MemberFailureKeep)
	}
	switch opts.WorkLayout {
	case "":
		opts.WorkLayout = WorkLayoutObject
	case WorkLayoutObject, WorkLayoutBundle:
	default:
		return fmt.Errorf("work layout %q: want %s or %s", opts.WorkLayout, WorkLayoutObject, WorkLayoutBundle)
	}
	if opts.FailureGrace <= 0 {
		opts.FailureGrace = 60 * time.Second
	}
	if opts.ReconcileTimeout <= 0 {
		opts.ReconcileTimeout = 2 * time.Minute
	}
	if len(opts.SecretNamespaces) == 0 {
		opts.SecretNamespaces = []string{"karmada-cluster"}
	}
	if opts.MemberTimeout <= 0 {
		opts.MemberTimeout = 15 * time.Second
	}
	if opts.DeclaredTimeout == 0 {
		opts.DeclaredTimeout = 60 * time.Second
	}
	return nil
}

func newQueue(name string) workqueue.TypedRateLimitingInterface[reconcile.Request] {
	return workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request](),
		workqueue.TypedRateLimitingQueueConfig[reconcile.Request]{Name: name})
}

// scheme knows the objects events are recorded on (typed objects without TypeMeta).
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, discoveryv1.AddToScheme, clusterv1alpha1.Install, workv1alpha1.Install,
		mcsv1alpha1.AddToScheme, mcsv1beta1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// recorderFor records events into the cluster of client, until stop.
func recorderFor(client kubernetes.Interface) (rec record.EventRecorder, stop func()) {
	bc := record.NewBroadcaster()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return bc.NewRecorder(scheme, corev1.EventSource{Component: "coredns-mcs-controller"}), bc.Shutdown
}

// SetupWithManager adds the controller to mgr: the caches as a runnable, and the service and
// cluster reconcilers as controller-runtime controllers (their workers, rate limits, panic
// recovery and controller_runtime_reconcile_* metrics are controller-runtime's). Only the leader
// runs any of them.
func (c *Controller) SetupWithManager(mgr manager.Manager) error {
	if err := mgr.Add(c); err != nil {
		return err
	}
	skipNameValidation := true // tests run several controllers in one process
	for _, r := range []struct {
		name    string
		queue   workqueue.TypedRateLimitingInterface[reconcile.Request]
		rec     reconcile.Func
		workers int
	}{
		{"mcs-service", c.services, c.reconcileService, c.opts.Workers},
		{"mcs-cluster", c.clusters, c.reconcileCluster, 2},
	} {
		_, err := ctrlcontroller.New(r.name, mgr, ctrlcontroller.Options{
			Reconciler:              r.rec,
			MaxConcurrentReconciles: r.workers,
			ReconciliationTimeout:   c.opts.ReconcileTimeout,
			// The queue exists before the controller starts: informer events from the start on
			// land in it.
			NewQueue: func(string, workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
				return r.queue
			},
			SkipNameValidation: &skipNameValidation,
		})
		if err != nil {
			return fmt.Errorf("controller %s: %w", r.name, err)
		}
	}
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: only the leader writes.
func (c *Controller) NeedLeaderElection() bool { return true }

// Start implements manager.Runnable: it runs the caches of the Karmada control plane (the
// members' start as their Clusters are reconciled).
func (c *Controller) Start(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	c.ctx = ctx
	go c.status.run(ctx)
	go c.works.RunWithContext(ctx)
	go c.statusWorks.RunWithContext(ctx)
	go c.clusterInf.RunWithContext(ctx)
	go c.importTemplates.run(ctx)
	go c.exportTemplates.run(ctx)
	if c.declared.enabled() {
		go c.declared.inf.RunWithContext(ctx)
		go c.declared.waitSynced(ctx)
	}
	if !cache.WaitForCacheSync(ctx.Done(), c.works.HasSynced, c.statusWorks.HasSynced, c.clusterInf.HasSynced, c.importTemplates.synced, c.exportTemplates.synced) {
		return fmt.Errorf("caches of the Karmada control plane did not sync")
	}
	c.started.Store(true)
	logger.Info("controller started", "workers", c.opts.Workers)
	if c.opts.StatusNamespace != "" {
		go c.publishStatus(ctx, c.opts.StatusNamespace)
	}
	<-ctx.Done()
	c.mu.Lock()
	for _, m := range c.members {
		m.stop()
	}
	c.mu.Unlock()
	return nil
}

// Synced reports whether the controller is at work: its caches of the Karmada control plane are
// synced and every member's are, except a member that has not synced within memberReadyGrace of
// joining (unreachable, bad credentials): that one is held back alone (see fleet) and named in
// coredns_mcs_controller_member_synced, and keeping every other member waiting for it would not
// tell the truth. The readiness probe uses it.
func (c *Controller) Synced() bool {
	if !c.started.Load() || !c.importTemplates.synced() || !c.exportTemplates.synced() {
		return false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, m := range c.members {
		if !m.synced() && time.Since(m.startedAt) < memberReadyGrace {
			return false
		}
	}
	return true
}

// conflictRetry: how soon a reconcile whose write conflicted is run again.
const conflictRetry = 250 * time.Millisecond

// memberReadyGrace: see Synced.
const memberReadyGrace = 30 * time.Second

// reconcileService and reconcileCluster count every reconcile in the controller's own metrics
// (controller-runtime counts them too, per controller).
func (c *Controller) reconcileService(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	return c.measured(ctx, func() (time.Duration, error) { return c.reconcile(ctx, req.Namespace+"/"+req.Name) })
}

func (c *Controller) reconcileCluster(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	return c.measured(ctx, func() (time.Duration, error) { return 0, c.syncCluster(ctx, req.Name) })
}

func (c *Controller) measured(ctx context.Context, f func() (time.Duration, error)) (reconcile.Result, error) {
	start := time.Now()
	if !c.started.Load() {
		return reconcile.Result{RequeueAfter: time.Second}, nil // the Karmada caches are not synced yet
	}
	requeue, err := f()
	reconcileDuration.Observe(time.Since(start).Seconds())
	switch {
	case apierrors.IsConflict(err):
		// Routine optimistic locking: our cache was behind a write (Karmada updating a Work's
		// status, say). Looked at again shortly from fresher caches; not an error worth a log
		// line (the event of that write usually requeues it sooner).
		reconcileTotal.WithLabelValues("conflict").Inc()
		klog.FromContext(ctx).V(2).Info("write conflict; reconciling again", "err", err.Error())
		return reconcile.Result{RequeueAfter: conflictRetry}, nil
	case err != nil:
		reconcileTotal.WithLabelValues("error").Inc()
	case requeue > 0:
		reconcileTotal.WithLabelValues("requeue").Inc()
	default:
		reconcileTotal.WithLabelValues("success").Inc()
	}
	return reconcile.Result{RequeueAfter: requeue}, err
}

// enqueue queues service key (namespace/name).
func (c *Controller) enqueue(key string) {
	if req, ok := request(key); ok {
		c.services.Add(req)
	}
}

// enqueueAfter queues service key after d.
func (c *Controller) enqueueAfter(key string, d time.Duration) {
	if req, ok := request(key); ok {
		c.services.AddAfter(req, d)
	}
}

func request(key string) (reconcile.Request, bool) {
	ns, name, ok := cache.SplitMetaNamespaceKey(key)
	if ok != nil || ns == "" || name == "" {
		return reconcile.Request{}, false
	}
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}, true
}
