package multicluster

import (
	"context"
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

// Preferred first: v1beta1 is the storage version from mcs-api v0.5; v1alpha1 is what Karmada and
// older installations serve.
var importVersions = []schema.GroupVersionResource{
	{Group: mcs.Group, Version: "v1beta1", Resource: "serviceimports"},
	{Group: mcs.Group, Version: "v1alpha1", Resource: "serviceimports"},
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

	slices, services, nss cache.SharedIndexInformer

	state atomic.Int32

	// imports is the running ServiceImport informer (nil while the API is absent) and its GVR.
	impMu     sync.Mutex
	imports   cache.SharedIndexInformer
	importGVR schema.GroupVersionResource
	stopImp   context.CancelFunc

	// rebuildMu serialises rebuilds; derived maps a derived Service key to its import key and
	// derivedOf the reverse.
	rebuildMu sync.Mutex
	derived   map[string]string
	derivedOf map[string]string

	cancel context.CancelFunc
	done   chan struct{}

	pollInterval time.Duration
}

func newDataController(client kubernetes.Interface, dyn dynamic.Interface, disco discovery.DiscoveryInterface,
	st *store, prefix string, namespaces map[string]bool, zone string) *dataController {
	c := &dataController{
		client: client, dyn: dyn, disco: disco, store: st, prefix: prefix, namespaces: namespaces, zone: zone,
		derived: map[string]string{}, derivedOf: map[string]string{}, pollInterval: 2 * time.Second, done: make(chan struct{}),
	}
	c.state.Store(int32(stateSyncing))

	c.slices = kube.Informer[*discoveryv1.EndpointSliceList](client.DiscoveryV1().EndpointSlices(metav1.NamespaceAll),
		mcs.LabelServiceName, &discoveryv1.EndpointSlice{}, cache.Indexers{bySvcIndex: func(obj any) ([]string, error) {
			s, ok := obj.(*object.EndpointSlice)
			if !ok || s.Service == "" {
				return nil, nil
			}
			return []string{s.Namespace + "/" + s.Service}, nil
		}})
	c.services = kube.Informer[*corev1.ServiceList](client.CoreV1().Services(metav1.NamespaceAll), "", &corev1.Service{}, cache.Indexers{})
	c.nss = kube.Informer[*corev1.NamespaceList](client.CoreV1().Namespaces(), "", &corev1.Namespace{}, cache.Indexers{})
	mustSet(c.slices.SetTransform(object.ToEndpointSlice))
	mustSet(c.services.SetTransform(object.ToService))
	mustSet(c.nss.SetTransform(object.ToNamespace))

	mustAdd(c.slices.AddEventHandler(handlerFor(func(obj any) {
		if s, ok := obj.(*object.EndpointSlice); ok && s.Service != "" {
			c.rebuild(s.Namespace + "/" + s.Service)
		}
	})))
	mustAdd(c.services.AddEventHandler(handlerFor(func(obj any) {
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
	return c
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
	go c.slices.RunWithContext(ctx)
	go c.services.RunWithContext(ctx)
	go c.nss.RunWithContext(ctx)
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
	for {
		gvr, ok, err := c.discover()
		c.impMu.Lock()
		running, current := c.imports != nil, c.importGVR
		c.impMu.Unlock()
		switch {
		case err != nil:
			// The apiserver is unreachable: keep whatever we have and serve it.
			log.Debugf("discovery of %s failed: %v", mcs.Group, err)
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
		c.updateState()
		c.updateGauges()
		select {
		case <-ctx.Done():
			return
		case <-time.After(c.pollInterval):
		}
	}
}

// discover returns the preferred served ServiceImport version.
func (c *dataController) discover() (schema.GroupVersionResource, bool, error) {
	var firstErr error
	for _, gvr := range importVersions {
		list, err := c.disco.ServerResourcesForGroupVersion(gvr.GroupVersion().String())
		if err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, r := range list.APIResources {
			if r.Name == gvr.Resource {
				return gvr, true, nil
			}
		}
	}
	return schema.GroupVersionResource{}, false, firstErr
}

func (c *dataController) startImports(ctx context.Context, gvr schema.GroupVersionResource) {
	ictx, cancel := context.WithCancel(ctx)
	inf := kube.Informer[*unstructured.UnstructuredList](c.dyn.Resource(gvr).Namespace(metav1.NamespaceAll), "",
		&unstructured.Unstructured{}, cache.Indexers{})
	mustSet(inf.SetTransform(object.ToServiceImport))
	mustAdd(inf.AddEventHandler(handlerFor(func(obj any) {
		if si, ok := obj.(*object.ServiceImport); ok {
			c.rebuild(si.Namespace + "/" + si.Name)
		}
	})))
	c.impMu.Lock()
	c.imports, c.importGVR, c.stopImp = inf, gvr, cancel
	c.impMu.Unlock()
	go inf.RunWithContext(ictx)
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
	if c.slices.HasSynced() && c.services.HasSynced() && c.nss.HasSynced() && imp.HasSynced() {
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
	return c.slices.HasSynced() && c.services.HasSynced() && c.nss.HasSynced()
}

func (c *dataController) namespaceExists(ns string) bool {
	_, ok, _ := c.nss.GetStore().GetByKey(ns)
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
	c.rebuildMu.Lock()
	defer c.rebuildMu.Unlock()

	var si *object.ServiceImport
	if inf := c.importInformer(); inf != nil {
		if obj, ok, _ := inf.GetStore().GetByKey(key); ok {
			si, _ = obj.(*object.ServiceImport)
		}
	}
	if d, ok := c.derivedOf[key]; ok {
		delete(c.derived, d)
		delete(c.derivedOf, key)
	}
	if si == nil {
		c.store.set(key, nil)
		return
	}
	derivedName := si.DerivedService
	if derivedName == "" {
		derivedName = mcs.DerivedServiceName(c.prefix, si.Namespace, si.Name)
	}
	dkey := si.Namespace + "/" + derivedName
	c.derived[dkey] = key
	c.derivedOf[key] = dkey
	d := &serviceData{namespace: si.Namespace, name: si.Name, imp: si}
	if obj, ok, _ := c.services.GetStore().GetByKey(dkey); ok {
		d.derived, _ = obj.(*object.Service)
	}
	objs, _ := c.slices.GetIndexer().ByIndex(bySvcIndex, key)
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
	sliceCount.WithLabelValues(c.zone).Set(float64(len(c.slices.GetStore().ListKeys())))
	lastChange.WithLabelValues(c.zone).Set(float64(c.store.lastChange.Load()) / 1e9)
}
