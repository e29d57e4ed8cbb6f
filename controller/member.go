package controller

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/kube"
	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// byServiceIndex indexes EndpointSlices and Works by the service they serve (namespace/name).
const byServiceIndex = "service"

// member is one Karmada member cluster: its clients and its caches of Services, EndpointSlices,
// Namespaces and, once it serves the MCS API, ServiceExports and ServiceImports (in the view of
// internal/mcs, whichever version it serves).
type member struct {
	name        string
	id          string
	fingerprint string
	// kube and dyn make bounded requests (Options.MemberTimeout); dynWatch feeds the informers.
	kube     kubernetes.Interface
	dyn      dynamic.Interface
	dynWatch dynamic.Interface
	// recorder records events on the member's ServiceExports (what its users read).
	recorder   record.EventRecorder
	stopEvents func()
	// status writes the member's ServiceExport and ServiceImport status off the workers.
	status *statusWriter

	services, slices, namespaces cache.SharedIndexInformer
	// wanted: whether a change of the member's own Service or EndpointSlice of a service (key)
	// can change what the controller writes (nil: every change can).
	wanted func(key string) bool

	mu         sync.Mutex
	seGVR      schema.GroupVersionResource
	siGVR      schema.GroupVersionResource
	exports    cache.SharedIndexInformer
	imports    cache.SharedIndexInformer
	apiMissing atomic.Bool
	cancelMCS  context.CancelFunc
	// families are the IP families of the member's ServiceCIDRs (nil: unknown; families.go).
	families []corev1.IPFamily

	cancel    context.CancelFunc
	startedAt time.Time

	// pull: a Pull-mode member, read from its agent's reports (pull.go); kube, dyn and
	// recorder are nil then.
	pull *pullState
}

// followClusterID, readClusterID, clusterID: see clusterid.go.

// newMember builds the clients and informers of a member; enqueue receives service keys,
// enqueueNamespace the name of a namespace that appeared (its services may be imported there now).
//
// declared reports whether Karmada has scheduled the ServiceExport template of a service (key) to
// this member (declared.go): its Services and EndpointSlices matter then, before its export lands.
func newMember(name string, cfg *rest.Config, timeout time.Duration, fp string, enqueue, enqueueNamespace func(string), declared func(key, cluster string) bool) (*member, error) {
	// Requests to a member are bounded (a member that accepts a request and never answers must
	// not hold a worker); watches are not (they are long by design), so the informers get a
	// client of their own.
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dynWatch, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	bounded := rest.CopyConfig(cfg)
	bounded.Timeout = timeout
	kb, err := kubernetes.NewForConfig(bounded)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(bounded)
	if err != nil {
		return nil, err
	}
	m := &member{name: name, id: name, fingerprint: fp, kube: kb, dyn: dyn, dynWatch: dynWatch, status: newStatusWriter(name)}
	m.recorder, m.stopEvents = recorderFor(kb)
	m.services = kube.Informer[*corev1.ServiceList](kc.CoreV1().Services(metav1.NamespaceAll), "", &corev1.Service{}, cache.Indexers{})
	m.slices = kube.Informer[*discoveryv1.EndpointSliceList](kc.DiscoveryV1().EndpointSlices(metav1.NamespaceAll),
		discoveryv1.LabelServiceName, &discoveryv1.EndpointSlice{}, sliceIndexers)
	m.namespaces = kube.Informer[*corev1.NamespaceList](kc.CoreV1().Namespaces(), "", &corev1.Namespace{}, cache.Indexers{})
	for _, inf := range []cache.SharedIndexInformer{m.services, m.slices, m.namespaces} {
		if err := inf.SetTransform(trimMeta); err != nil {
			return nil, err
		}
	}
	// Only the Services and slices of exported services (or of ours) wake a reconcile: a
	// member's unexported churn costs a cache update and two lookups, no reconcile.
	m.wanted = func(key string) bool {
		if _, ok := m.export(key); ok {
			return true
		}
		return declared != nil && declared(key, m.name)
	}
	if err := m.handle(enqueue, enqueueNamespace); err != nil {
		return nil, err
	}
	return m, nil
}

// sliceIndexers index EndpointSlices by the service they serve.
var sliceIndexers = cache.Indexers{byServiceIndex: func(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	return []string{s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]}, nil
}}

// handle enqueues, on a change of the member's Services, EndpointSlices and Namespaces, the
// services they concern.
func (m *member) handle(enqueue, enqueueNamespace func(string)) error {
	if _, err := m.namespaces.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if o, ok := obj.(metav1.Object); ok {
				enqueueNamespace(o.GetName())
			}
		},
	}); err != nil {
		return err
	}
	if _, err := m.services.AddEventHandler(keyHandler(enqueue, func(o metav1.Object) string {
		// Our derived Services name the imported service in the MCS label: their ClusterIP goes
		// into the automatic ServiceImport's spec.ips.
		if svc := o.GetLabels()[mcs.LabelServiceName]; svc != "" && o.GetLabels()[labelManagedBy] == ManagedBy {
			return o.GetNamespace() + "/" + svc
		}
		return m.ifWanted(o.GetNamespace() + "/" + o.GetName())
	})); err != nil {
		return err
	}
	_, err := m.slices.AddEventHandler(keyHandler(enqueue, func(o metav1.Object) string {
		// Our own mirrored slices name the imported service in the MCS label.
		if svc := o.GetLabels()[mcs.LabelServiceName]; svc != "" {
			return o.GetNamespace() + "/" + svc
		}
		return m.ifWanted(o.GetNamespace() + "/" + o.GetLabels()[discoveryv1.LabelServiceName])
	}))
	return err
}

// ifWanted is key if a change of the service's own objects in the member matters, "" (nothing
// enqueued) if not.
func (m *member) ifWanted(key string) string {
	if m.wanted == nil || m.wanted(key) {
		return key
	}
	unexportedEvents.WithLabelValues(m.name).Inc()
	return ""
}

// trimMeta drops what the controller never reads and costs most of a cached object beside its
// spec: managedFields, and kubectl's copy of the last applied object.
func trimMeta(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
		if a := o.GetAnnotations(); a != nil {
			if _, ok := a[corev1.LastAppliedConfigAnnotation]; ok {
				delete(a, corev1.LastAppliedConfigAnnotation)
				o.SetAnnotations(a)
			}
		}
	}
	return obj, nil
}

// keyHandler enqueues the key of every added, updated or deleted object.
func keyHandler(enqueue func(string), key func(metav1.Object) string) cache.ResourceEventHandlerFuncs {
	return mcs.Handler(func(obj any) {
		if o, ok := obj.(metav1.Object); ok {
			if k := key(o); k != "" {
				enqueue(k)
			}
		}
	})
}

// start runs the member's informers until stop; the MCS informers start once the member serves
// the MCS API (the seed propagates the CRDs after the member joined).
// onSynced is called once the caches are synced.
func (m *member) start(parent context.Context, enqueue func(string), onSynced func()) {
	ctx, cancel := context.WithCancel(parent)
	m.cancel, m.startedAt = cancel, time.Now()
	if m.pull != nil {
		m.startPull(ctx, onSynced)
		return
	}
	go m.status.run(ctx)
	go m.services.RunWithContext(ctx)
	go m.slices.RunWithContext(ctx)
	go m.namespaces.RunWithContext(ctx)
	go func() {
		m.followClusterID(ctx, func() {})
		m.followFamilies(ctx, func() {})
		mcs.Supervise(ctx, m.kube.Discovery(), m.superviseMCS(ctx, enqueue, onSynced))
	}()
	go m.whenSynced(ctx, onSynced)
}

// whenSynced calls onSynced once the member's caches are synced (never if ctx ends first).
func (m *member) whenSynced(ctx context.Context, onSynced func()) {
	for !m.synced() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	onSynced()
}

func (m *member) stop() {
	if m.cancel != nil {
		m.cancel()
	}
	if m.stopEvents != nil {
		m.stopEvents()
	}
}

// superviseMCS follows the MCS versions the member serves: the informers start when both
// resources are served and restart on a preferred version (CRDs upgraded to v1beta1, whose fields
// v1alpha1 reads would prune).
// Each poll also re-reads the cluster id (onIDChange runs when it changed).
func (m *member) superviseMCS(ctx context.Context, enqueue func(string), onIDChange func()) func(mcs.APIs, error) time.Duration {
	logger := klog.FromContext(ctx).WithValues("cluster", m.name)
	logged := false
	var absentSince time.Time
	first := true
	return func(apis mcs.APIs, err error) time.Duration {
		if !first && err == nil {
			m.followClusterID(ctx, onIDChange)
			m.followFamilies(ctx, onIDChange)
		}
		first = false
		se, okSE := apis.Preferred(mcs.ExportVersions)
		si, okSI := apis.Preferred(mcs.ImportVersions)
		curSE, _, _ := m.mcsInformers()
		if okSE && okSI || err != nil {
			absentSince = time.Time{}
		} else if absentSince.IsZero() {
			absentSince = time.Now()
		}
		switch {
		case err != nil && curSE.Empty():
			// Unreachable, or half answered: nothing is known, so the member stays unsynced
			// (nothing of what it exported is withdrawn on the strength of that).
		case okSE && okSI && (se != curSE || si != m.importGVR()):
			if !curSE.Empty() {
				logger.Info("the member serves another MCS API version now; re-watching", "serviceexports", se.GroupVersion().String())
			}
			m.startMCS(ctx, se, si, enqueue)
			logger.Info("watching the MCS API", "serviceexports", se.GroupVersion().String(), "serviceimports", si.GroupVersion().String(), "clusterID", m.clusterID())
			m.apiMissing.Store(false)
		case curSE.Empty() && time.Since(absentSince) >= apiAbsentFor:
			// Absent for a while, not a moment: an apiserver that just (re)started serves its
			// CRDs' discovery a few seconds after it answers, and a member taken for one without
			// the MCS API exports nothing.
			m.apiMissing.Store(true)
			if !logged {
				logger.Info("member does not serve the MCS API (ServiceExport/ServiceImport CRDs) yet; waiting for it")
				logged = true
			}
		}
		if !curSE.Empty() || okSE && okSI {
			return 10 * time.Second // a new MCS version or cluster id is followed within this
		}
		return 2 * time.Second
	}
}

// apiAbsentFor is how long discovery must say the MCS API is absent before a member counts as
// not serving it.
const apiAbsentFor = 10 * time.Second

// startMCS (re)starts the ServiceExport and ServiceImport informers on versions se and si; the
// previous ones, if any, stop.
func (m *member) startMCS(parent context.Context, se, si schema.GroupVersionResource, enqueue func(string)) {
	ctx, cancel := context.WithCancel(parent)
	mk := func(gvr schema.GroupVersionResource) cache.SharedIndexInformer {
		inf := mcs.Informer(m.dynWatch, gvr, nil)
		_, _ = inf.AddEventHandler(keyHandler(enqueue, func(o metav1.Object) string { return o.GetNamespace() + "/" + o.GetName() }))
		go inf.RunWithContext(ctx)
		return inf
	}
	m.mu.Lock()
	if m.cancelMCS != nil {
		m.cancelMCS()
	}
	m.cancelMCS = cancel
	m.seGVR = se
	m.siGVR = si
	m.exports = mk(se)
	m.imports = mk(si)
	m.mu.Unlock()
}

// importGVR is the ServiceImport version the member serves (v1beta1 preferred); zero if none.
func (m *member) importGVR() schema.GroupVersionResource {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.siGVR
}

// hasNamespace reports whether namespace ns exists (and is not being deleted) in the member.
func (m *member) hasNamespace(ns string) bool {
	o, ok, _ := m.namespaces.GetStore().GetByKey(ns)
	return ok && o.(*corev1.Namespace).DeletionTimestamp == nil
}

func (m *member) mcsInformers() (schema.GroupVersionResource, cache.SharedIndexInformer, cache.SharedIndexInformer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seGVR, m.exports, m.imports
}

// export and serviceImport return the member's cached ServiceExport and ServiceImport of key.
func (m *member) export(key string) (*mcsv1beta1.ServiceExport, bool) {
	_, ex, _ := m.mcsInformers()
	return kube.Cached[*mcsv1beta1.ServiceExport](ex, key)
}

func (m *member) serviceImport(key string) (*mcsv1beta1.ServiceImport, bool) {
	_, _, im := m.mcsInformers()
	return kube.Cached[*mcsv1beta1.ServiceImport](im, key)
}

// hasMirroredSlices reports whether the member holds mirrored EndpointSlices (ours) of the
// derived Service ns/derived.
func (m *member) hasMirroredSlices(ns, derived string) bool {
	objs, _ := m.slices.GetIndexer().ByIndex(byServiceIndex, ns+"/"+derived)
	for _, o := range objs {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok && s.Labels[labelSliceManagedBy] == ManagedBy {
			return true
		}
	}
	return false
}

// service returns the member's cached Service of key.
func (m *member) service(key string) (*corev1.Service, bool) {
	return kube.Cached[*corev1.Service](m.services, key)
}

// synced reports whether everything the member serves is in the caches; a member that does not
// serve the MCS API yet counts as synced (it exports and imports nothing).
func (m *member) synced() bool {
	if m.pull != nil {
		return m.pullSynced()
	}
	if !m.services.HasSynced() || !m.slices.HasSynced() || !m.namespaces.HasSynced() {
		return false
	}
	_, ex, im := m.mcsInformers()
	if ex == nil {
		return m.apiMissing.Load()
	}
	return ex.HasSynced() && im.HasSynced()
}
