package multicluster

import (
	"context"
	"errors"
	"hash/fnv"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/coredns-mcs/coredns-mcs/internal/kube"
	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
	"github.com/coredns-mcs/coredns-mcs/plugin/multicluster/object"
)

// syncState is what the zone can answer.
type syncState int32

const (
	// stateSyncing: the caches are still filling; the zone answers SERVFAIL.
	stateSyncing syncState = iota
	// stateSynced: answers come from complete caches.
	stateSynced
	// stateNoAPI: the apiserver serves no ServiceImport API (CRD missing); the zone answers
	// SERVFAIL, the rest of the server is unaffected, serving starts when the CRD appears.
	stateNoAPI
)

var stateNames = [...]string{"syncing", "synced", "no_serviceimport_api"}

func (s syncState) String() string { return stateNames[s] }

func (s syncState) explain() string {
	switch s {
	case stateNoAPI:
		return "multicluster: the ServiceImport API (multicluster.x-k8s.io) is not served by the apiserver"
	case stateSyncing:
		return "multicluster: caches not synced with the apiserver yet"
	}
	return ""
}

const (
	bySvcIndex = "mcs-service" // EndpointSlices by namespace/<multicluster service-name label>
)

// dataController feeds the store from informers on ServiceImports, EndpointSlices carrying the
// multicluster service-name label, Services (slimmed to their ClusterIPs) and Namespaces.
type dataController struct {
	client kubernetes.Interface
	dyn    dynamic.Interface
	disco  discovery.DiscoveryInterface
	store  *store
	prefix string
	// namespaces, when not nil, limits what is served to these namespaces.
	namespaces map[string]bool
	zone       string // for metrics

	// base holds the informers that do not depend on the CRD; they are replaced as a set when
	// the apiserver comes back from an outage (see reconnect).
	base atomic.Pointer[baseInformers]

	state atomic.Int32

	// imports is the running ServiceImport informer (nil while the API is absent) and its GVR.
	impMu     sync.Mutex
	imports   cache.SharedIndexInformer
	importGVR schema.GroupVersionResource
	stopImp   context.CancelFunc

	// keyMu serialises the rebuilds of one service (a shard of keys per mutex), so the last
	// rebuild of a key publishes the latest state; rebuilds of other services run beside it.
	keyMu [64]sync.Mutex
	// rebuildMu guards derived, which maps a derived Service key to its import key, and
	// derivedOf, the reverse.
	rebuildMu sync.Mutex
	derived   map[string]string
	derivedOf map[string]string

	cancel context.CancelFunc
	done   chan struct{}

	pollInterval time.Duration

	// fixedID is this cluster's id from the Corefile (clusterid); without it, local is the
	// value of the cluster's ClusterProperty cluster.clusterset.k8s.io, followed every
	// clusterIDPoll (see followClusterID). Headless imports that prefer close endpoints answer
	// this cluster's first.
	fixedID  string
	local    atomic.Pointer[string]
	idPolled time.Time
	idDenied bool
	// watchErrAt is when (Unix ns) an informer's watch last failed for a reason other than an
	// expired resourceVersion; reconnects returns how many times the informers were replaced.
	watchErrAt atomic.Int64
	reconnects atomic.Int64
	// connErrors, when set, records requests that failed below HTTP (set in setup).
	connErrors *connErrors
}

// connErrors records when a request to the apiserver last failed below HTTP: connection refused
// or reset, a TLS or dial timeout. The watches share those connections (HTTP/2), so they broke
// too; client-go's reflectors retry such errors themselves, with a backoff, without reporting
// them to the watch error handler. A 5xx answer (an apiserver blip) is no such failure.
type connErrors struct{ at atomic.Int64 }

func (c *connErrors) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := rt.RoundTrip(r)
		if err != nil && r.Context().Err() == nil {
			c.at.Store(time.Now().UnixNano())
		}
		return resp, err
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func newDataController(client kubernetes.Interface, dyn dynamic.Interface, disco discovery.DiscoveryInterface,
	st *store, prefix string, namespaces map[string]bool, zone string) *dataController {
	c := &dataController{
		client: client, dyn: dyn, disco: disco, store: st, prefix: prefix, namespaces: namespaces, zone: zone,
		derived: map[string]string{}, derivedOf: map[string]string{}, pollInterval: 2 * time.Second, done: make(chan struct{}),
	}
	c.state.Store(int32(stateSyncing))

	c.base.Store(c.newBase())
	return c
}

// baseInformers are the EndpointSlice, Service and Namespace informers.
type baseInformers struct {
	slices, services, nss cache.SharedIndexInformer
	cancel                context.CancelFunc
}

func (b *baseInformers) run(ctx context.Context) {
	ctx, b.cancel = context.WithCancel(ctx)
	go b.slices.RunWithContext(ctx)
	go b.services.RunWithContext(ctx)
	go b.nss.RunWithContext(ctx)
}

func (b *baseInformers) synced() bool {
	return b.slices.HasSynced() && b.services.HasSynced() && b.nss.HasSynced()
}

func (c *dataController) newBase() *baseInformers {
	b := &baseInformers{}
	b.slices = kube.Informer[*discoveryv1.EndpointSliceList](c.client.DiscoveryV1().EndpointSlices(metav1.NamespaceAll),
		mcs.LabelServiceName, &discoveryv1.EndpointSlice{}, cache.Indexers{bySvcIndex: func(obj any) ([]string, error) {
			s, ok := obj.(*object.EndpointSlice)
			if !ok || s.Service == "" {
				return nil, nil
			}
			return []string{s.Namespace + "/" + s.Service}, nil
		}})
	b.services = kube.Informer[*corev1.ServiceList](c.client.CoreV1().Services(metav1.NamespaceAll), "", &corev1.Service{}, cache.Indexers{})
	b.nss = kube.Informer[*corev1.NamespaceList](c.client.CoreV1().Namespaces(), "", &corev1.Namespace{}, cache.Indexers{})
	for _, inf := range []cache.SharedIndexInformer{b.slices, b.services, b.nss} {
		c.noticeWatchErrors(inf)
	}
	mustSet(b.slices.SetTransform(object.ToEndpointSlice))
	mustSet(b.services.SetTransform(object.ToService))
	mustSet(b.nss.SetTransform(object.ToNamespace))

	mustAdd(b.slices.AddEventHandler(handlerFor(func(obj any) {
		if s, ok := obj.(*object.EndpointSlice); ok && s.Service != "" {
			c.rebuild(s.Namespace + "/" + s.Service)
		}
	})))
	mustAdd(b.services.AddEventHandler(handlerFor(func(obj any) {
		s, ok := obj.(*object.Service)
		if !ok {
			return
		}
		c.rebuildMu.Lock()
		key, ok := c.derived[s.Namespace+"/"+s.Name]
		c.rebuildMu.Unlock()
		if ok {
			c.rebuild(key)
		}
	})))
	return b
}

// noticeWatchErrors records when inf's watch breaks (then logs as client-go does): a watch that
// only expired, or closed normally, is not broken.
func (c *dataController) noticeWatchErrors(inf cache.SharedIndexInformer) {
	mustSet(inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) && !errors.Is(err, io.EOF) && ctx.Err() == nil {
			c.watchErrAt.Store(time.Now().UnixNano())
		}
		cache.DefaultWatchErrorHandler(ctx, r, err)
	}))
}

// watchBrokenSince reports whether a watch failed, or a connection to the apiserver did, at t or
// later.
func (c *dataController) watchBrokenSince(t time.Time) bool {
	at := c.watchErrAt.Load()
	if c.connErrors != nil {
		at = max(at, c.connErrors.at.Load())
	}
	return at != 0 && at >= t.UnixNano()
}

func mustSet(err error) {
	if err != nil {
		panic(err) // only fails once an informer has started; these are set before Run
	}
}

func mustAdd(_ cache.ResourceEventHandlerRegistration, err error) { mustSet(err) }

// handlerFor calls f with the (slim) object of every add, update and delete.
func handlerFor(f func(obj any)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    f,
		UpdateFunc: func(_, obj any) { f(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			f(obj)
		},
	}
}

// Start runs the informers and the ServiceImport API supervisor until Stop.
func (c *dataController) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.base.Load().run(ctx)
	go func() {
		defer close(c.done)
		c.superviseImports(ctx)
	}()
}

// Stop stops every informer.
func (c *dataController) Stop() {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
	c.stopImports()
}

// superviseImports keeps a ServiceImport informer running on the best version the apiserver
// serves: it starts one when the CRD appears, switches when a preferred version appears, and stops
// it (forgetting every import) when the API goes away. No restart of CoreDNS is ever needed.
func (c *dataController) superviseImports(ctx context.Context) {
	missingLogged := false
	var downSince time.Time
	mcs.Supervise(ctx, c.disco, func(apis mcs.APIs, err error) time.Duration {
		gvr, ok := apis.Preferred(mcs.ImportVersions)
		switch {
		case err != nil && downSince.IsZero():
			downSince = time.Now()
			log.Warningf("apiserver unreachable (%v); answering from the caches", err)
		case err == nil && !downSince.IsZero():
			// Only watches that really broke are restarted: a discovery poll that failed while
			// the watches stayed up (an apiserver blip) must not make every replica relist
			// everything at once.
			if c.watchBrokenSince(downSince.Add(-c.pollInterval)) {
				log.Infof("apiserver reachable again after %s; restarting the informers", time.Since(downSince).Round(time.Second))
				c.reconnect(ctx)
			} else {
				log.Infof("apiserver reachable again after %s; the watches stayed up, keeping the informers", time.Since(downSince).Round(time.Second))
			}
			downSince = time.Time{}
		}
		c.impMu.Lock()
		running, current := c.imports != nil, c.importGVR
		c.impMu.Unlock()
		switch {
		case err != nil:
			// The apiserver is unreachable (or half answered): keep whatever we have and serve it.
		case !ok:
			if running {
				log.Warningf("the ServiceImport API %s went away; zone %s answers SERVFAIL until it is back", current.GroupVersion(), c.zone)
				c.stopImports()
				c.store.reset()
			}
			if !missingLogged {
				log.Warningf("the apiserver serves no ServiceImport API (%s): zone %s answers SERVFAIL until the CRD is installed; the rest of the server is unaffected", mcs.Group, c.zone)
				missingLogged = true
			}
			c.setState(stateNoAPI)
		case !running || gvr != current:
			if running {
				log.Infof("switching the ServiceImport informer from %s to %s", current.GroupVersion(), gvr.GroupVersion())
				c.stopImports()
				c.store.reset()
			} else {
				log.Infof("watching ServiceImports %s", gvr.GroupVersion())
			}
			missingLogged = false
			c.startImports(ctx, gvr)
		}
		if err == nil {
			c.followClusterID(ctx)
		}
		c.updateState()
		c.updateGauges()
		return c.pollInterval
	})
}

// clusterIDPoll is how often the ClusterProperty holding the cluster id is read.
const clusterIDPoll = 10 * time.Second

var clusterPropertyGVR = schema.GroupVersionResource{Group: "about.k8s.io", Version: "v1alpha1", Resource: "clusterproperties"}

// localID is this cluster's id ("" if unknown).
func (c *dataController) localID() string {
	if c.fixedID != "" {
		return c.fixedID
	}
	if p := c.local.Load(); p != nil {
		return *p
	}
	return ""
}

// followClusterID reads the cluster's ClusterProperty cluster.clusterset.k8s.io (KEP-2149), at
// most every clusterIDPoll, unless the Corefile gives the id; when it changes, every import is
// rebuilt. No ClusterProperty (or an invalid value) means no id; a failed read keeps the last.
func (c *dataController) followClusterID(ctx context.Context) {
	if c.fixedID != "" || time.Since(c.idPolled) < clusterIDPoll {
		return
	}
	c.idPolled = time.Now()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	id := ""
	u, err := c.dyn.Resource(clusterPropertyGVR).Get(rctx, "cluster.clusterset.k8s.io", metav1.GetOptions{})
	switch {
	case err == nil:
		id, _, _ = unstructured.NestedString(u.Object, "spec", "value")
		if !validClusterID(id) {
			log.Warningf("ClusterProperty cluster.clusterset.k8s.io holds %q, not a cluster id (one or two DNS labels); ignored", id)
			id = ""
		}
	case apierrors.IsForbidden(err):
		if !c.idDenied {
			log.Warningf("may not read ClusterProperty cluster.clusterset.k8s.io (%v): no cluster id, so no local preference for close endpoints; grant get on clusterproperties.about.k8s.io or set clusterid", err)
			c.idDenied = true
		}
	case apierrors.IsNotFound(err):
	default:
		return // transient: keep what we have
	}
	if id == c.localID() {
		return
	}
	c.local.Store(&id)
	log.Infof("cluster id %q (ClusterProperty cluster.clusterset.k8s.io)", id)
	for _, key := range c.store.keys() {
		c.rebuild(key)
	}
}

func (c *dataController) startImports(ctx context.Context, gvr schema.GroupVersionResource) {
	inf, cancel := c.runImports(ctx, gvr)
	c.impMu.Lock()
	c.imports, c.importGVR, c.stopImp = inf, gvr, cancel
	c.impMu.Unlock()
}

// runImports starts a ServiceImport informer on gvr (not yet the one rebuilds read).
func (c *dataController) runImports(ctx context.Context, gvr schema.GroupVersionResource) (cache.SharedIndexInformer, context.CancelFunc) {
	ictx, cancel := context.WithCancel(ctx)
	inf := mcs.Informer(c.dyn, gvr, object.ToServiceImport)
	c.noticeWatchErrors(inf)
	mustAdd(inf.AddEventHandler(handlerFor(func(obj any) {
		if si, ok := obj.(*object.ServiceImport); ok {
			c.rebuild(si.Namespace + "/" + si.Name)
		}
	})))
	go inf.RunWithContext(ictx)
	return inf, cancel
}

// reconnect replaces every informer after an apiserver outage. client-go's reflectors retry a
// lost apiserver with a jittered backoff of up to a minute; fresh informers list at once. The
// old ones keep serving until the new ones are synced; then every import is rebuilt, so what
// was deleted during the outage goes too.
func (c *dataController) reconnect(ctx context.Context) {
	nb := c.newBase()
	nb.run(ctx)
	c.impMu.Lock()
	gvr, running := c.importGVR, c.imports != nil
	c.impMu.Unlock()
	var ni cache.SharedIndexInformer
	var niCancel context.CancelFunc = func() {}
	if running {
		ni, niCancel = c.runImports(ctx, gvr)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !nb.synced() || (ni != nil && !ni.HasSynced()) {
		if ctx.Err() != nil || time.Now().After(deadline) {
			nb.cancel()
			niCancel()
			if ctx.Err() == nil {
				log.Warningf("new informers did not sync within 30s after the apiserver came back; keeping the old ones")
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.base.Swap(nb).cancel()
	c.reconnects.Add(1)
	reconnectCount.WithLabelValues(c.zone).Inc()
	keys := c.store.keys()
	if ni != nil {
		c.impMu.Lock()
		old := c.stopImp
		if c.imports != nil && c.importGVR == gvr {
			c.imports, c.stopImp = ni, niCancel
			ni = nil
		}
		c.impMu.Unlock()
		if ni != nil { // the API changed meanwhile: the supervisor handles that
			niCancel()
		} else if old != nil {
			old()
		}
		keys = append(keys, c.importInformer().GetStore().ListKeys()...)
	}
	for _, k := range keys {
		c.rebuild(k)
	}
	log.Infof("zone %s: informers restarted after an apiserver outage; %d imports", c.zone, c.store.count())
}

func (c *dataController) stopImports() {
	c.impMu.Lock()
	defer c.impMu.Unlock()
	if c.stopImp != nil {
		c.stopImp()
	}
	c.imports, c.stopImp, c.importGVR = nil, nil, schema.GroupVersionResource{}
}

func (c *dataController) importInformer() cache.SharedIndexInformer {
	c.impMu.Lock()
	defer c.impMu.Unlock()
	return c.imports
}

func (c *dataController) setState(s syncState) {
	if syncState(c.state.Swap(int32(s))) != s {
		if s == stateSynced {
			log.Infof("zone %s synced: %d imports", c.zone, c.store.count())
		}
	}
	for i, name := range stateNames {
		v := 0.0
		if syncState(i) == s {
			v = 1
		}
		syncStateGauge.WithLabelValues(c.zone, name).Set(v)
	}
}

func (c *dataController) updateState() {
	imp := c.importInformer()
	if imp == nil {
		if syncState(c.state.Load()) != stateNoAPI {
			c.setState(stateSyncing)
		}
		return
	}
	if c.base.Load().synced() && imp.HasSynced() {
		c.setState(stateSynced)
	} else {
		c.setState(stateSyncing)
	}
}

// syncState returns what the zone can answer now.
func (c *dataController) syncState() syncState {
	s := syncState(c.state.Load())
	if s == stateSyncing {
		// Avoid waiting a poll interval for the first sync.
		c.updateState()
		s = syncState(c.state.Load())
	}
	return s
}

// baseSynced reports whether the informers that do not depend on the CRD have synced.
func (c *dataController) baseSynced() bool {
	return c.base.Load().synced()
}

func (c *dataController) namespaceExists(ns string) bool {
	_, ok, _ := c.base.Load().nss.GetStore().GetByKey(ns)
	return ok
}

func (c *dataController) served(ns string) bool {
	return c.namespaces == nil || c.namespaces[ns]
}

// rebuild recomputes every name of the import key (namespace/name) from the caches.
func (c *dataController) rebuild(key string) {
	ns := namespaceOf(key)
	if !c.served(ns) {
		return
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	mu := &c.keyMu[h.Sum32()%uint32(len(c.keyMu))]
	mu.Lock()
	defer mu.Unlock()

	var si *object.ServiceImport
	if inf := c.importInformer(); inf != nil {
		if obj, ok, _ := inf.GetStore().GetByKey(key); ok {
			si, _ = obj.(*object.ServiceImport)
		}
	}
	dkey := ""
	if si != nil {
		derivedName := si.DerivedService
		if derivedName == "" {
			derivedName = mcs.DerivedServiceName(c.prefix, si.Namespace, si.Name)
		}
		dkey = si.Namespace + "/" + derivedName
	}
	c.rebuildMu.Lock()
	if d, ok := c.derivedOf[key]; ok {
		delete(c.derived, d)
		delete(c.derivedOf, key)
	}
	if si != nil {
		c.derived[dkey] = key
		c.derivedOf[key] = dkey
	}
	c.rebuildMu.Unlock()
	if si == nil {
		c.store.set(key, nil)
		return
	}
	d := &serviceData{namespace: si.Namespace, name: si.Name, imp: si, local: c.localID()}
	b := c.base.Load()
	if obj, ok, _ := b.services.GetStore().GetByKey(dkey); ok {
		d.derived, _ = obj.(*object.Service)
	}
	objs, _ := b.slices.GetIndexer().ByIndex(bySvcIndex, key)
	for _, o := range objs {
		if s, ok := o.(*object.EndpointSlice); ok {
			d.slices = append(d.slices, s)
		}
	}
	c.store.set(key, d)
}

// updateGauges refreshes the cache-size and data-age gauges (from the supervisor loop, not from
// event handlers, so a burst of events costs nothing extra).
func (c *dataController) updateGauges() {
	importCount.WithLabelValues(c.zone).Set(float64(c.store.count()))
	sliceCount.WithLabelValues(c.zone).Set(float64(len(c.base.Load().slices.GetStore().ListKeys())))
	lastChange.WithLabelValues(c.zone).Set(float64(c.store.lastChange.Load()) / 1e9)
	for reason, n := range c.store.cutCounts() {
		limitedGauge.WithLabelValues(c.zone, reason).Set(float64(n))
	}
}
