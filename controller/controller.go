package controller

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
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
)

var (
	workGVR    = schema.GroupVersionResource{Group: "work.karmada.io", Version: "v1alpha1", Resource: "works"}
	clusterGVR = schema.GroupVersionResource{Group: "cluster.karmada.io", Version: "v1alpha1", Resource: "clusters"}
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
}

// Member failure policies.
const (
	MemberFailureDrain = "drain"
	MemberFailureKeep  = "keep"
)

// Controller reconciles exported services across Karmada's members.
type Controller struct {
	opts     Options
	kube     kubernetes.Interface // Karmada control plane
	dyn      dynamic.Interface
	recorder record.EventRecorder

	queue     workqueue.TypedRateLimitingInterface[string]
	works     cache.SharedIndexInformer
	clusters  cache.SharedIndexInformer
	templates *templates
	// exportTemplates: ServiceExport templates, onto which export conditions are mirrored.
	exportTemplates *templates

	mu         sync.RWMutex
	members    map[string]*member
	pull       map[string]bool      // pull-mode clusters already reported
	notReady   map[string]time.Time // clusters Karmada reports not Ready, since when
	drainedNow map[string]bool      // clusters whose endpoints are withdrawn (logged once)

	ctx     context.Context
	started atomic.Bool
}

// New builds the controller against the Karmada control plane.
func New(cfg *rest.Config, opts Options) (*Controller, error) {
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
		return nil, fmt.Errorf("member failure policy %q: want %s or %s", opts.MemberFailure, MemberFailureDrain, MemberFailureKeep)
	}
	if opts.FailureGrace <= 0 {
		opts.FailureGrace = 60 * time.Second
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	c := &Controller{
		opts: opts, kube: kube, dyn: dyn,
		queue:      workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "mcs"}),
		members:    map[string]*member{},
		pull:       map[string]bool{},
		notReady:   map[string]time.Time{},
		drainedNow: map[string]bool{},
	}
	c.templates = &templates{kind: "ServiceImport", gvrs: importGVRs, disco: kube.Discovery(), dyn: dyn, enqueue: c.enqueue,
		missingMsg: "the Karmada control plane does not serve the ServiceImport API; every export is imported automatically until it does"}
	c.exportTemplates = &templates{kind: "ServiceExport", gvrs: exportGVRs, disco: kube.Discovery(), dyn: dyn, enqueue: c.enqueue,
		missingMsg: "the Karmada control plane does not serve the ServiceExport API; export conditions are written in the members only"}
	bc := record.NewBroadcaster()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	c.recorder = bc.NewRecorder(runtime.NewScheme(), corev1.EventSource{Component: "coredns-mcs-controller"})

	c.works = dynInformer(dyn, workGVR, labelManagedBy+"="+ManagedBy, cache.Indexers{byServiceIndex: func(obj any) ([]string, error) {
		u, ok := obj.(*unstructured.Unstructured)
		if !ok {
			return nil, nil
		}
		l := u.GetLabels()
		return []string{l[labelWorkNamespace] + "/" + l[labelWorkName]}, nil
	}})
	if _, err := c.works.AddEventHandler(keyHandler(c.enqueue, func(o metav1.Object) string {
		return o.GetLabels()[labelWorkNamespace] + "/" + o.GetLabels()[labelWorkName]
	})); err != nil {
		return nil, err
	}
	c.clusters = dynInformer(dyn, clusterGVR, "", cache.Indexers{})
	f := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if u, ok := obj.(*unstructured.Unstructured); ok {
			c.queue.Add(clusterKeyPrefix + u.GetName())
		}
	}
	if _, err := c.clusters.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: f, UpdateFunc: func(_, n any) { f(n) }, DeleteFunc: f}); err != nil {
		return nil, err
	}
	return c, nil
}

// Cluster keys share the queue with service keys; service keys never contain a colon.
const clusterKeyPrefix = "cluster:"

func dynInformer(dyn dynamic.Interface, gvr schema.GroupVersionResource, selector string, idx cache.Indexers) cache.SharedIndexInformer {
	return kube.Informer[*unstructured.UnstructuredList](dyn.Resource(gvr).Namespace(metav1.NamespaceAll), selector, &unstructured.Unstructured{}, idx)
}

func (c *Controller) enqueue(key string) {
	if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") {
		return
	}
	c.queue.Add(key)
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: only the leader writes.
func (c *Controller) NeedLeaderElection() bool { return true }

// Start implements manager.Runnable.
func (c *Controller) Start(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	c.ctx = ctx
	go c.works.RunWithContext(ctx)
	go c.clusters.RunWithContext(ctx)
	go c.templates.run(ctx)
	go c.exportTemplates.run(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), c.works.HasSynced, c.clusters.HasSynced, c.templates.synced, c.exportTemplates.synced) {
		return fmt.Errorf("caches of the Karmada control plane did not sync")
	}
	c.started.Store(true)
	logger.Info("controller started", "workers", c.opts.Workers)
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	c.mu.Lock()
	for _, m := range c.members {
		m.stop()
	}
	c.mu.Unlock()
	return nil
}

// Synced reports whether the controller has started and every member's caches are filled; the
// readiness probe uses it.
func (c *Controller) Synced() bool {
	if !c.started.Load() || !c.templates.synced() || !c.exportTemplates.synced() {
		return false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, m := range c.members {
		if !m.synced() {
			return false
		}
	}
	return true
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	start := time.Now()
	var err error
	var requeue time.Duration
	if name, ok := strings.CutPrefix(key, clusterKeyPrefix); ok {
		err = c.syncCluster(ctx, name)
	} else {
		requeue, err = c.reconcile(ctx, key)
	}
	reconcileDuration.Observe(time.Since(start).Seconds())
	switch {
	case err != nil:
		reconcileTotal.WithLabelValues("error").Inc()
		klog.FromContext(ctx).Error(err, "reconcile failed; retrying", "key", key)
		c.queue.AddRateLimited(key)
	case requeue > 0:
		reconcileTotal.WithLabelValues("requeue").Inc()
		c.queue.Forget(key)
		c.queue.AddAfter(key, requeue)
	default:
		reconcileTotal.WithLabelValues("success").Inc()
		c.queue.Forget(key)
	}
	return true
}

// syncCluster keeps the member of Karmada Cluster name in step with its object and credentials.
func (c *Controller) syncCluster(ctx context.Context, name string) error {
	logger := klog.FromContext(ctx).WithValues("cluster", name)
	obj, exists, err := c.clusters.GetStore().GetByKey(name)
	if err != nil {
		return err
	}
	c.mu.Lock()
	old := c.members[name]
	c.mu.Unlock()
	if !exists {
		if old != nil {
			logger.Info("cluster left Karmada; forgetting it")
			c.removeMember(name)
		}
		return nil
	}
	u := obj.(*unstructured.Unstructured)
	c.trackReadiness(ctx, u)
	mode, _, _ := unstructured.NestedString(u.Object, "spec", "syncMode")
	if mode != "Push" {
		c.mu.Lock()
		reported := c.pull[name]
		c.pull[name] = true
		c.mu.Unlock()
		if !reported {
			logger.Info("cluster is in Pull mode, which this controller does not support: its services are neither exported nor imported", "syncMode", mode)
			c.recorder.Eventf(u, corev1.EventTypeWarning, "UnsupportedSyncMode",
				"coredns-mcs-controller supports Push-mode clusters only; %s is %s: its ServiceExports and ServiceImports are ignored", name, mode)
		}
		if old != nil {
			c.removeMember(name)
		}
		return nil
	}
	endpoint, _, _ := unstructured.NestedString(u.Object, "spec", "apiEndpoint")
	secretNS, _, _ := unstructured.NestedString(u.Object, "spec", "secretRef", "namespace")
	secretName, _, _ := unstructured.NestedString(u.Object, "spec", "secretRef", "name")
	insecure, _, _ := unstructured.NestedBool(u.Object, "spec", "insecureSkipTLSVerification")
	if endpoint == "" || secretName == "" {
		return fmt.Errorf("cluster %s has no apiEndpoint or secretRef", name)
	}
	secret, err := c.kube.CoreV1().Secrets(secretNS).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("credentials of cluster %s (secret %s/%s): %w", name, secretNS, secretName, err)
	}
	token, ca := secret.Data["token"], secret.Data["caBundle"]
	fp := fingerprint(endpoint, token, ca, insecure)
	if old != nil && old.fingerprint == fp {
		return nil
	}
	m, err := newMember(name, restConfigFor(endpoint, token, ca, insecure, c.opts.MemberQPS, c.opts.MemberBurst), fp, c.enqueue, c.enqueueNamespace)
	if err != nil {
		return err
	}
	if old != nil {
		logger.Info("cluster credentials or endpoint changed; reconnecting")
		old.stop()
	} else {
		logger.Info("cluster joined", "apiEndpoint", endpoint)
	}
	m.start(c.ctx, c.enqueue)
	c.mu.Lock()
	c.members[name] = m
	delete(c.pull, name)
	memberGauge.Set(float64(len(c.members)))
	c.mu.Unlock()
	c.enqueueAll()
	return nil
}

// trackReadiness follows the Cluster's Ready condition. Under the drain policy, a member not Ready
// for the grace period has its exported endpoints withdrawn from every importer (every service is
// reconciled when the grace ends), and restored when it is Ready again.
func (c *Controller) trackReadiness(ctx context.Context, u *unstructured.Unstructured) {
	logger := klog.FromContext(ctx).WithValues("cluster", u.GetName())
	ready, since := clusterReady(u)
	c.mu.Lock()
	was, wasNotReady := c.notReady[u.GetName()]
	if ready {
		delete(c.notReady, u.GetName())
	} else if !wasNotReady || !since.Equal(was) {
		c.notReady[u.GetName()] = since
	}
	c.mu.Unlock()
	switch {
	case ready && wasNotReady:
		logger.Info("cluster Ready again", "policy", c.opts.MemberFailure)
		c.enqueueAll()
	case !ready && !wasNotReady:
		logger.Info("cluster not Ready", "since", since, "policy", c.opts.MemberFailure, "grace", c.opts.FailureGrace)
		if c.opts.MemberFailure == MemberFailureDrain {
			// Wake up when the grace ends (the Cluster object may not change again).
			c.queue.AddAfter(clusterKeyPrefix+u.GetName(), time.Until(since.Add(c.opts.FailureGrace))+100*time.Millisecond)
		}
	case !ready && c.drained(u.GetName()):
		c.mu.Lock()
		first := !c.drainedNow[u.GetName()]
		c.drainedNow[u.GetName()] = true
		c.mu.Unlock()
		if first {
			drainedGauge.WithLabelValues(u.GetName()).Set(1)
			logger.Info("draining the cluster's exported endpoints from every importer", "notReadySince", since)
			c.enqueueAll()
		}
		return
	}
	c.mu.Lock()
	delete(c.drainedNow, u.GetName())
	c.mu.Unlock()
	drainedGauge.WithLabelValues(u.GetName()).Set(0)
}

// clusterReady reads a Karmada Cluster's Ready condition; not Ready since its last transition.
func clusterReady(u *unstructured.Unstructured) (bool, time.Time) {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, x := range conds {
		m, _ := x.(map[string]any)
		if m["type"] != "Ready" {
			continue
		}
		if m["status"] == "True" {
			return true, time.Time{}
		}
		t, err := time.Parse(time.RFC3339, fmt.Sprint(m["lastTransitionTime"]))
		if err != nil {
			t = time.Now()
		}
		return false, t
	}
	return true, time.Time{} // no condition yet: a cluster just joined is not treated as failed
}

// drained reports whether a member's exported endpoints are withdrawn now.
func (c *Controller) drained(name string) bool {
	if c.opts.MemberFailure != MemberFailureDrain {
		return false
	}
	c.mu.RLock()
	since, ok := c.notReady[name]
	c.mu.RUnlock()
	return ok && time.Since(since) >= c.opts.FailureGrace
}

func (c *Controller) removeMember(name string) {
	c.mu.Lock()
	m := c.members[name]
	delete(c.members, name)
	memberGauge.Set(float64(len(c.members)))
	c.mu.Unlock()
	if m != nil {
		m.stop()
	}
	c.enqueueAll()
}

// enqueueAll enqueues every service any member exports or imports, or we have Works for.
func (c *Controller) enqueueAll() {
	for _, k := range c.works.GetIndexer().ListIndexFuncValues(byServiceIndex) {
		c.enqueue(k)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, m := range c.members {
		_, ex, im := m.mcsInformers()
		for _, inf := range []cache.SharedIndexInformer{ex, im} {
			if inf != nil {
				for _, k := range inf.GetStore().ListKeys() {
					c.enqueue(k)
				}
			}
		}
	}
}

// enqueueNamespace enqueues every service exported in namespace ns (a member just created it:
// automatic imports reach it).
func (c *Controller) enqueueNamespace(ns string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, m := range c.members {
		if _, ex, _ := m.mcsInformers(); ex != nil {
			for _, k := range ex.GetStore().ListKeys() {
				if strings.HasPrefix(k, ns+"/") {
					c.enqueue(k)
				}
			}
		}
	}
}

func (c *Controller) snapshot() []*member {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*member, 0, len(c.members))
	for _, m := range c.members {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// exportState is what one member says about an exported service.
type exportState struct {
	m     *member
	obj   *unstructured.Unstructured
	valid metav1.Condition
	// exported: the export is valid and its endpoints are among the desired Works.
	exported bool
}

// reconcile computes the desired Works of one service from what every member holds, applies the
// difference through Karmada, and writes the ServiceExport conditions. It is level-triggered: it
// never depends on which event woke it.
func (c *Controller) reconcile(ctx context.Context, key string) (time.Duration, error) {
	ns, name, _ := strings.Cut(key, "/")
	members := c.snapshot()
	// Nothing is deleted before every cache is complete.
	if !c.templates.synced() || !c.exportTemplates.synced() {
		return time.Second, nil
	}
	for _, m := range members {
		if !m.synced() {
			return time.Second, nil
		}
	}

	var states []*exportState
	var exporters []exporter
	var drainedExports []string
	var importers []importer
	userImport := map[string]bool{}
	created := map[string]metav1.Time{}
	for _, m := range members {
		_, exInf, imInf := m.mcsInformers()
		if exInf == nil {
			continue
		}
		if obj, ok, _ := exInf.GetStore().GetByKey(key); ok && c.drained(m.name) {
			// Not Ready past the grace: its endpoints leave every importer; the derived Service
			// stays (below), so its ClusterIP survives the outage.
			drainedExports = append(drainedExports, m.name)
		} else if ok {
			se := obj.(*unstructured.Unstructured)
			st := &exportState{m: m, obj: se}
			states = append(states, st)
			created[m.name] = se.GetCreationTimestamp()
			svcObj, ok, _ := m.services.GetStore().GetByKey(key)
			switch {
			case !ok:
				st.valid = condition(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonNoService,
					fmt.Sprintf("Service %s not found in cluster %s", key, m.name))
			case svcObj.(*corev1.Service).Spec.Type == corev1.ServiceTypeExternalName:
				st.valid = condition(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonInvalidServiceType,
					"Service "+key+" is of type ExternalName, which cannot be exported")
			default:
				st.valid = condition(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonValid,
					"Service "+key+" is exported")
				ex := exporter{cluster: m.name, clusterID: m.id, service: svcObj.(*corev1.Service)}
				labels, _, _ := unstructured.NestedStringMap(se.Object, "spec", "exportedLabels")
				annotations, _, _ := unstructured.NestedStringMap(se.Object, "spec", "exportedAnnotations")
				// Keys of Kubernetes, Karmada and the MCS API never travel to the importers.
				var droppedL, droppedA []string
				ex.exportedLabels, droppedL = mcs.WithoutReserved(labels)
				ex.exportedAnnotations, droppedA = mcs.WithoutReserved(annotations)
				if len(droppedL)+len(droppedA) > 0 {
					klog.FromContext(ctx).V(1).Info("reserved exported labels or annotations not propagated", "cluster", m.name, "serviceExport", key,
						"labels", droppedL, "annotations", droppedA)
				}
				objs, _ := m.slices.GetIndexer().ByIndex(byServiceIndex, key)
				for _, o := range objs {
					if s := o.(*discoveryv1.EndpointSlice); exportable(s) {
						ex.slices = append(ex.slices, s)
					}
				}
				sort.Slice(ex.slices, func(i, j int) bool { return ex.slices[i].Name < ex.slices[j].Name })
				exporters = append(exporters, ex)
				st.exported = true
			}
		}
		// A ServiceImport the controller did not write (placed by the user's template, or by
		// hand) makes its member an importer; ours only count below, in automatic mode.
		if obj, ok, _ := imInf.GetStore().GetByKey(key); ok && obj.(*unstructured.Unstructured).GetLabels()[labelManagedBy] != ManagedBy {
			importers = append(importers, importer{cluster: m.name, ports: importPorts(obj.(*unstructured.Unstructured))})
			userImport[m.name] = true
		}
	}
	sortExporters(exporters, created)

	// Automatic imports (KEP-1645): with no ServiceImport template on the Karmada control plane,
	// every member that has the namespace imports the service, exporters included, and gets its
	// ServiceImport from us; they go when the last export does.
	auto := !c.templates.has(key) && (len(states) > 0 || len(drainedExports) > 0)
	// Not for a moment after the first export appeared: a template applied with the export (the
	// seed's 02 and 03) may reach us just after the export does, and importing automatically in
	// between would write imports only to withdraw them.
	var oldest time.Time
	for _, t := range created {
		if oldest.IsZero() || t.Time.Before(oldest) {
			oldest = t.Time
		}
	}
	if wait := autoImportDelay - time.Since(oldest); auto && len(drainedExports) == 0 && wait > 0 {
		auto = false
		c.queue.AddAfter(key, wait)
	}
	if auto {
		derived := mcs.DerivedServiceName(c.opts.DerivedPrefix, ns, name)
		for _, m := range members {
			served := m.importGVR()
			if served.Empty() || userImport[m.name] || !m.hasNamespace(ns) {
				continue
			}
			// v1beta1 where both the member and the Karmada control plane serve it (Karmada maps
			// a Work's manifests with the control plane's API); v1alpha1, which lacks ipFamilies,
			// internalTrafficPolicy and trafficDistribution, otherwise.
			siGVR := importGVRs[1]
			if served == importGVRs[0] && c.templates.v1beta1.Load() {
				siGVR = served
			}
			im := importer{cluster: m.name, auto: true, siGVR: siGVR}
			if o, ok, _ := m.services.GetStore().GetByKey(ns + "/" + derived); ok {
				im.derived = o.(*corev1.Service)
			}
			importers = append(importers, im)
		}
		sort.Slice(importers, func(i, j int) bool { return importers[i].cluster < importers[j].cluster })
	}

	desired, err := desiredWorks(ns, name, c.opts.DerivedPrefix, exporters, importers)
	if err != nil {
		return 0, err
	}
	if len(exporters) == 0 && (len(states) > 0 || len(drainedExports) > 0) {
		// Still exported, but no export is valid now (its Service was deleted, say): importers
		// keep the derived Service they already have, so its ClusterIP survives while the
		// import lives, with no endpoints. An export that never was valid gets nothing.
		desired = append(desired, c.keptServiceWorks(ns, name, importers)...)
	}
	if err := c.adoptOrphans(ctx, ns, name, members, desired); err != nil {
		return 0, err
	}
	applied, err := c.applyWorks(ctx, ns, name, desired)
	if err != nil {
		return 0, err
	}

	// Ready: every desired Work applied in its member.
	var pending []string
	for _, w := range desired {
		if !applied[w.namespace+"/"+w.name] {
			pending = append(pending, strings.TrimPrefix(w.namespace, ExecutionNamespacePrefix))
		}
	}
	// An automatic import whose ServiceImport waits for the derived Service's ClusterIP.
	if len(exporters) > 0 {
		has := map[string]bool{}
		for _, w := range desired {
			if w.name == workName("si", ns, name, "") {
				has[w.cluster] = true
			}
		}
		for _, im := range importers {
			if im.auto && !has[im.cluster] {
				pending = append(pending, im.cluster)
			}
		}
	}
	pending = uniqueSorted(pending)
	what := "derived Service and EndpointSlices"
	if auto {
		what = "derived Service, EndpointSlices and ServiceImport"
	}
	var ready metav1.Condition
	switch {
	case len(importers) == 0:
		ready = condition(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonExported,
			"exported; no cluster imports it yet")
	case len(pending) == 0:
		names := make([]string, 0, len(importers))
		for _, im := range importers {
			names = append(names, im.cluster)
		}
		ready = condition(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonExported,
			what+" applied in "+strings.Join(names, ", "))
	default:
		ready = condition(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonPending,
			"waiting for Karmada to apply the "+what+" in "+strings.Join(pending, ", "))
	}

	// Conflict (KEP-1645): on every export of the service, naming who disagrees with the oldest.
	conflict := condition(mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonNoConflicts,
		"no conflicting exports")
	if cf := conflicts(exporters); len(cf) > 0 {
		msgs := make([]string, 0, len(cf))
		for _, x := range cf {
			msgs = append(msgs, x.message)
		}
		conflict = condition(mcsv1beta1.ServiceExportConditionConflict, metav1.ConditionTrue, mcsv1beta1.ServiceExportConditionReason(cf[0].reason),
			strings.Join(msgs, "; "))
	}

	var template []metav1.Condition
	for _, st := range states {
		conds := []metav1.Condition{st.valid}
		if st.exported {
			conds = append(conds, ready, conflict)
		} else {
			conds = append(conds, condition(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonFailed,
				"not exported: "+st.valid.Message))
		}
		if err := c.writeStatus(ctx, st.m.dyn, st.m.seGVRValue(), st.obj, conds); err != nil {
			return 0, fmt.Errorf("status of ServiceExport %s in %s: %w", key, st.m.name, err)
		}
		template = mergeTemplate(template, st.m.name, conds)
	}
	if len(states) > 0 {
		if err := c.mirrorToKarmada(ctx, ns, name, template); err != nil {
			return 0, fmt.Errorf("mirroring the ServiceExport status to the Karmada control plane: %w", err)
		}
	}
	if err := c.writeImportStatuses(ctx, key, members, importers, exporters, states, drainedExports, pending); err != nil {
		return 0, err
	}
	if len(pending) > 0 {
		return 2 * time.Second, nil // Work status events requeue sooner; this is a safety net
	}
	return 0, nil
}

func (m *member) seGVRValue() schema.GroupVersionResource {
	gvr, _, _ := m.mcsInformers()
	return gvr
}

func importPorts(si *unstructured.Unstructured) []corev1.ServicePort {
	raw, _, _ := unstructured.NestedSlice(si.Object, "spec", "ports")
	var out []corev1.ServicePort
	for _, r := range raw {
		p, ok := r.(map[string]any)
		if !ok {
			continue
		}
		sp := corev1.ServicePort{Protocol: corev1.ProtocolTCP}
		sp.Name, _ = p["name"].(string)
		if proto, ok := p["protocol"].(string); ok && proto != "" {
			sp.Protocol = corev1.Protocol(proto)
		}
		switch n := p["port"].(type) {
		case int64:
			sp.Port = int32(n)
		case float64:
			sp.Port = int32(n)
		}
		if ap, ok := p["appProtocol"].(string); ok && ap != "" {
			sp.AppProtocol = &ap
		}
		if sp.Port > 0 {
			out = append(out, sp)
		}
	}
	return out
}

func condition(t mcsv1beta1.ServiceExportConditionType, s metav1.ConditionStatus, r mcsv1beta1.ServiceExportConditionReason, msg string) metav1.Condition {
	return metav1.Condition{Type: string(t), Status: s, Reason: string(r), Message: msg}
}

// mergeTemplate folds one member's conditions into the Karmada template's: a condition is True
// only if it is True in every exporting member; messages name the member.
func mergeTemplate(acc []metav1.Condition, cluster string, conds []metav1.Condition) []metav1.Condition {
	for _, c := range conds {
		c.Message = cluster + ": " + c.Message
		found := false
		for i := range acc {
			if acc[i].Type != c.Type {
				continue
			}
			found = true
			if c.Status != metav1.ConditionTrue && acc[i].Status == metav1.ConditionTrue {
				acc[i] = c
			} else if c.Status == acc[i].Status {
				acc[i].Message += "; " + c.Message
			}
		}
		if !found {
			acc = append(acc, c)
		}
	}
	return acc
}

// writeStatus sets conds on the ServiceExport obj (as cached) and writes the status only if a
// condition changed.
func (c *Controller) writeStatus(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, obj *unstructured.Unstructured, conds []metav1.Condition) error {
	return c.writeStatusOnce(ctx, dyn, gvr, obj, conds, false)
}

func (c *Controller) writeStatusOnce(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, obj *unstructured.Unstructured, conds []metav1.Condition, retried bool) error {
	existing := readConditions(obj)
	updated := append([]metav1.Condition(nil), existing...)
	changed := false
	for _, cond := range conds {
		cond.ObservedGeneration = obj.GetGeneration()
		if cur := meta.FindStatusCondition(updated, cond.Type); cur != nil &&
			cur.Status == cond.Status && cur.Reason == cond.Reason && cur.Message == cond.Message && cur.ObservedGeneration == cond.ObservedGeneration {
			continue
		}
		meta.SetStatusCondition(&updated, cond)
		changed = true
	}
	if !changed {
		return nil
	}
	out := obj.DeepCopy()
	raw, err := conditionsToUnstructured(updated)
	if err != nil {
		return err
	}
	if err := unstructured.SetNestedSlice(out.Object, raw, "status", "conditions"); err != nil {
		return err
	}
	_, err = dyn.Resource(gvr).Namespace(obj.GetNamespace()).UpdateStatus(ctx, out, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) && !retried {
		// Our cache lags behind a write (ours, or Karmada labelling its template): read the
		// object afresh and write once more, instead of a rate-limited requeue of the service.
		fresh, gerr := dyn.Resource(gvr).Namespace(obj.GetNamespace()).Get(ctx, obj.GetName(), metav1.GetOptions{})
		if gerr != nil {
			return gerr
		}
		return c.writeStatusOnce(ctx, dyn, gvr, fresh, conds, true)
	}
	if err == nil {
		statusWrites.Inc()
	}
	return err
}

// conditionsToUnstructured renders conditions for an unstructured status.
func conditionsToUnstructured(conds []metav1.Condition) ([]any, error) {
	out := make([]any, 0, len(conds))
	for _, cond := range conds {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&cond)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func readConditions(obj *unstructured.Unstructured) []metav1.Condition {
	raw, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	var out []metav1.Condition
	for _, r := range raw {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		var cond metav1.Condition
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &cond); err == nil {
			out = append(out, cond)
		}
	}
	return out
}

// mirrorToKarmada writes the merged conditions onto the ServiceExport on the Karmada control
// plane (where the user applied it, as in the seed), if there is one.
func (c *Controller) mirrorToKarmada(ctx context.Context, ns, name string, conds []metav1.Condition) error {
	obj, gvr, ok := c.exportTemplates.get(ns + "/" + name)
	if !ok {
		return nil // no template: the export was created in the member directly
	}
	return c.writeStatus(ctx, c.dyn, gvr, obj, conds)
}

// applyWorks makes the Works of service ns/name equal to desired: creates and updates what
// differs, deletes ours that are no longer desired (selected by our labels only). It returns
// which Works (namespace/name) Karmada reports as applied.
func (c *Controller) applyWorks(ctx context.Context, ns, name string, desired []workObject) (map[string]bool, error) {
	existing := map[string]*unstructured.Unstructured{}
	objs, err := c.works.GetIndexer().ByIndex(byServiceIndex, ns+"/"+name)
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		u := o.(*unstructured.Unstructured)
		existing[u.GetNamespace()+"/"+u.GetName()] = u
	}
	applied := map[string]bool{}
	want := map[string]bool{}
	for _, w := range desired {
		k := w.namespace + "/" + w.name
		want[k] = true
		cur := existing[k]
		if cur != nil && cur.GetAnnotations()[annotationHash] == w.hash && cur.GetDeletionTimestamp() == nil {
			applied[k] = workApplied(cur)
			continue
		}
		obj := w.toUnstructured(ns, name)
		ri := c.dyn.Resource(workGVR).Namespace(w.namespace)
		if cur == nil {
			if _, err := ri.Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return nil, fmt.Errorf("create Work %s: %w", k, err)
			}
			workWrites.WithLabelValues("create").Inc()
			continue
		}
		if cur.GetDeletionTimestamp() != nil {
			continue // being deleted; recreated on the next pass
		}
		obj.SetResourceVersion(cur.GetResourceVersion())
		fins := cur.GetFinalizers()
		if !slices.Contains(fins, executionFinalizer) {
			fins = append(fins, executionFinalizer)
		}
		obj.SetFinalizers(fins)
		// Keep labels others (Karmada's webhook) added.
		labels := cur.GetLabels()
		for lk, lv := range obj.GetLabels() {
			labels[lk] = lv
		}
		obj.SetLabels(labels)
		if _, err := ri.Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
			return nil, fmt.Errorf("update Work %s: %w", k, err)
		}
		workWrites.WithLabelValues("update").Inc()
	}
	var wait time.Duration
	for k, u := range existing {
		if want[k] || u.GetDeletionTimestamp() != nil {
			continue
		}
		// Karmada's execution controller deletes a Work's object from the member only if its own
		// cache of that member already holds the object; for a Work applied a moment ago it may
		// not, and the object would be left behind, unmanaged. So a young or not yet applied
		// Work is first emptied (a slice loses its endpoints at once) and deleted a little later:
		// once Karmada reports it applied, or failed (nothing of it reached the member), or at
		// the latest after maxWorkWait (a member that stays unreachable); whatever is left then
		// is adopted (adoptOrphans) and deleted through Karmada.
		age := time.Since(u.GetCreationTimestamp().Time)
		if applied, known := workAppliedState(u); age < minWorkAge || (!applied && !known && age < maxWorkWait) {
			if err := c.emptyWork(ctx, u); err != nil {
				return nil, err
			}
			wait = max(wait, minWorkAge-age, time.Second)
			continue
		}
		err := c.dyn.Resource(workGVR).Namespace(u.GetNamespace()).Delete(ctx, u.GetName(), metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: ptrUID(u)},
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("delete Work %s: %w", k, err)
		}
		workWrites.WithLabelValues("delete").Inc()
	}
	if wait > 0 {
		c.queue.AddAfter(ns+"/"+name, wait)
	}
	return applied, nil
}

// minWorkAge is how long a Work lives at least before it is deleted; maxWorkWait how long a Work
// Karmada has not reported on is kept before it is deleted anyway (see applyWorks).
const (
	minWorkAge  = 5 * time.Second
	maxWorkWait = time.Minute
)

// autoImportDelay is how old the first export of a service without a template must be before the
// controller imports it automatically (see reconcile).
const autoImportDelay = 3 * time.Second

// emptyWork removes the endpoints from an EndpointSlice Work that is about to go, once.
func (c *Controller) emptyWork(ctx context.Context, u *unstructured.Unstructured) error {
	manifests, _, _ := unstructured.NestedSlice(u.Object, "spec", "workload", "manifests")
	if len(manifests) != 1 {
		return nil
	}
	m, ok := manifests[0].(map[string]any)
	if !ok || m["kind"] != "EndpointSlice" {
		return nil
	}
	if eps, ok := m["endpoints"].([]any); !ok || len(eps) == 0 {
		return nil // already empty
	}
	out := u.DeepCopy()
	m = runtime.DeepCopyJSON(m)
	m["endpoints"] = []any{}
	if err := unstructured.SetNestedSlice(out.Object, []any{m}, "spec", "workload", "manifests"); err != nil {
		return err
	}
	ann := out.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[annotationHash] = "emptied"
	out.SetAnnotations(ann)
	if _, err := c.dyn.Resource(workGVR).Namespace(u.GetNamespace()).Update(ctx, out, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("empty Work %s/%s: %w", u.GetNamespace(), u.GetName(), err)
	}
	workWrites.WithLabelValues("update").Inc()
	return nil
}

func toAnyMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func ptrUID(u *unstructured.Unstructured) *types.UID {
	uid := u.GetUID()
	return &uid
}

// workApplied reports Karmada's Applied condition on a Work.
func workApplied(u *unstructured.Unstructured) bool {
	applied, _ := workAppliedState(u)
	return applied
}

// workAppliedState reports whether Karmada applied a Work, and whether it has said so either way
// (Applied True or False).
func workAppliedState(u *unstructured.Unstructured) (applied, known bool) {
	for _, cond := range readConditions(u) {
		if cond.Type == "Applied" {
			return cond.Status == metav1.ConditionTrue, cond.Status != metav1.ConditionUnknown
		}
	}
	return false, false
}

func uniqueSorted(s []string) []string {
	sort.Strings(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// adoptOrphans finds derived objects of service ns/name in the members that carry our labels but
// that no Work describes (left behind by a Karmada race, see applyWorks, or by a Work deleted by
// hand) and are not desired: each gets a Work holding it, which Karmada applies and, being
// undesired, applyWorks deletes once applied, so the object goes through Karmada like any other.
func (c *Controller) adoptOrphans(ctx context.Context, ns, name string, members []*member, desired []workObject) error {
	derived := mcs.DerivedServiceName(c.opts.DerivedPrefix, ns, name)
	covered := map[string]bool{} // cluster/kind/name of objects a desired or existing Work holds
	note := func(cluster string, manifest map[string]any) {
		md, _ := manifest["metadata"].(map[string]any)
		covered[fmt.Sprintf("%s/%v/%v", cluster, manifest["kind"], md["name"])] = true
	}
	for _, w := range desired {
		note(w.cluster, w.manifest)
	}
	objs, err := c.works.GetIndexer().ByIndex(byServiceIndex, ns+"/"+name)
	if err != nil {
		return err
	}
	for _, o := range objs {
		u := o.(*unstructured.Unstructured)
		manifests, _, _ := unstructured.NestedSlice(u.Object, "spec", "workload", "manifests")
		for _, m := range manifests {
			if mm, ok := m.(map[string]any); ok {
				note(strings.TrimPrefix(u.GetNamespace(), ExecutionNamespacePrefix), mm)
			}
		}
	}
	for _, m := range members {
		var orphans []metav1.Object
		if o, ok, _ := m.services.GetStore().GetByKey(ns + "/" + derived); ok {
			if svc := o.(*corev1.Service); svc.Labels[labelManagedBy] == ManagedBy && !covered[m.name+"/Service/"+svc.Name] {
				orphans = append(orphans, svc)
			}
		}
		if _, _, imInf := m.mcsInformers(); imInf != nil {
			if o, ok, _ := imInf.GetStore().GetByKey(ns + "/" + name); ok {
				if si := o.(*unstructured.Unstructured); si.GetLabels()[labelManagedBy] == ManagedBy && !covered[m.name+"/ServiceImport/"+name] {
					orphans = append(orphans, si)
				}
			}
		}
		slicesOf, _ := m.slices.GetIndexer().ByIndex(byServiceIndex, ns+"/"+derived)
		for _, o := range slicesOf {
			if es := o.(*discoveryv1.EndpointSlice); es.Labels[labelSliceManagedBy] == ManagedBy && !covered[m.name+"/EndpointSlice/"+es.Name] {
				orphans = append(orphans, es)
			}
		}
		for _, o := range orphans {
			if time.Since(o.GetCreationTimestamp().Time) < minWorkAge {
				c.queue.AddAfter(ns+"/"+name, minWorkAge)
				continue // may be a Work's object that our Work cache has not caught up with
			}
			var manifest any
			switch x := o.(type) {
			case *corev1.Service:
				cp := x.DeepCopy()
				cp.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}
				cp.ObjectMeta = metav1.ObjectMeta{Name: x.Name, Namespace: x.Namespace, Labels: x.Labels}
				cp.Status = corev1.ServiceStatus{}
				manifest = cp
			case *discoveryv1.EndpointSlice:
				cp := x.DeepCopy()
				cp.TypeMeta = metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"}
				cp.ObjectMeta = metav1.ObjectMeta{Name: x.Name, Namespace: x.Namespace, Labels: x.Labels}
				cp.Endpoints = nil
				manifest = cp
			case *unstructured.Unstructured: // our ServiceImport
				apiVersion := importGVRs[1].GroupVersion().String() // what Karmada's control plane can map
				if c.templates.v1beta1.Load() {
					apiVersion = x.GetAPIVersion()
				}
				manifest = map[string]any{
					"apiVersion": apiVersion, "kind": "ServiceImport",
					"metadata": map[string]any{"name": x.GetName(), "namespace": x.GetNamespace(), "labels": toAnyMap(x.GetLabels())},
					"spec":     x.Object["spec"],
				}
			}
			w, err := newWork(m.name, workName("orphan", ns, name, fmt.Sprintf("%T/%s", o, o.GetName())), "", manifest, true)
			if err != nil {
				return err
			}
			klog.FromContext(ctx).Info("adopting a derived object no Work holds, to delete it through Karmada",
				"cluster", m.name, "object", o.GetNamespace()+"/"+o.GetName(), "kind", fmt.Sprintf("%T", o))
			if _, err := c.dyn.Resource(workGVR).Namespace(w.namespace).Create(ctx, w.toUnstructured(ns, name), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create Work %s/%s for an orphan: %w", w.namespace, w.name, err)
			}
			workWrites.WithLabelValues("create").Inc()
		}
	}
	return nil
}

// keptServiceWorks returns the existing derived-Service and automatic ServiceImport Works of
// ns/name in importers, unchanged.
func (c *Controller) keptServiceWorks(ns, name string, importers []importer) []workObject {
	imports := map[string]bool{}
	for _, im := range importers {
		imports[ExecutionNamespacePrefix+im.cluster] = true
	}
	objs, _ := c.works.GetIndexer().ByIndex(byServiceIndex, ns+"/"+name)
	var out []workObject
	for _, o := range objs {
		u := o.(*unstructured.Unstructured)
		kept := u.GetName() == workName("svc", ns, name, "") || u.GetName() == workName("si", ns, name, "")
		if !kept || !imports[u.GetNamespace()] || u.GetDeletionTimestamp() != nil {
			continue
		}
		manifests, _, _ := unstructured.NestedSlice(u.Object, "spec", "workload", "manifests")
		if len(manifests) != 1 {
			continue
		}
		m, _ := manifests[0].(map[string]any)
		out = append(out, workObject{
			namespace: u.GetNamespace(), name: u.GetName(),
			cluster:  strings.TrimPrefix(u.GetNamespace(), ExecutionNamespacePrefix),
			manifest: m, hash: u.GetAnnotations()[annotationHash],
		})
	}
	return out
}
