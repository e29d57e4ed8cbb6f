package controller

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// templates watches one kind of resource template on the Karmada control plane.
//
// ServiceImport templates (what the seed's 03-import.yaml applies): where one exists, the user's
// PropagationPolicy decides which members import the service and the controller writes no
// ServiceImport; where none exists, the controller creates the ServiceImports itself
// (automatic imports, KEP-1645).
//
// ServiceExport templates: the controller mirrors its members' export conditions onto them, read
// from this cache (a GET per reconcile was most of the controller's requests at scale).
type templates struct {
	kind     string
	versions []schema.GroupVersionResource // mcs.ExportVersions or mcs.ImportVersions
	// missingMsg is logged once when the control plane serves none of versions.
	missingMsg string
	disco      discovery.DiscoveryInterface
	dynWatch   dynamic.Interface
	enqueue    func(string)

	mu  sync.Mutex
	inf cache.SharedIndexInformer
	gvr schema.GroupVersionResource // the one watched
	// missing: the control plane does not serve the API (so there are no templates).
	missing atomic.Bool
	// v1beta1: the control plane serves versions[0] (v1beta1). Karmada maps a Work's manifests
	// with the control plane's API, so only then can a Work carry a v1beta1 ServiceImport.
	v1beta1 atomic.Bool
}

func (t *templates) run(ctx context.Context) {
	logger := klog.FromContext(ctx).WithValues("kind", t.kind)
	logged := false
	mcs.Supervise(ctx, t.disco, func(apis mcs.APIs, err error) time.Duration {
		if err != nil {
			return 5 * time.Second // unreachable: keep what we have
		}
		if beta := apis.Serves(t.versions[0]); beta != t.v1beta1.Load() {
			t.v1beta1.Store(beta)
			logger.Info("the Karmada control plane's API versions", "v1beta1", beta)
		}
		gvr, ok := apis.Preferred(t.versions)
		switch {
		case ok && t.informer() == nil:
			inf := mcs.Informer(t.dynWatch, gvr, nil)
			_, _ = inf.AddEventHandler(keyHandler(t.enqueue, func(o metav1.Object) string { return o.GetNamespace() + "/" + o.GetName() }))
			t.mu.Lock()
			t.inf, t.gvr = inf, gvr
			t.mu.Unlock()
			t.missing.Store(false)
			logger.Info("watching templates on the Karmada control plane", "version", gvr.Version)
			go inf.RunWithContext(ctx)
		case !ok && t.informer() == nil:
			t.missing.Store(true)
			if !logged {
				logger.Info(t.missingMsg)
				logged = true
			}
		}
		if t.informer() != nil {
			return 30 * time.Second
		}
		return 5 * time.Second
	})
}

func (t *templates) informer() cache.SharedIndexInformer {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inf
}

func (t *templates) synced() bool {
	if inf := t.informer(); inf != nil {
		return inf.HasSynced()
	}
	return t.missing.Load()
}

// has reports whether a template for key (namespace/name) exists.
func (t *templates) has(key string) bool {
	_, _, ok := t.get(key)
	return ok
}

// get returns the template of key (namespace/name) from the cache (in the view of internal/mcs),
// and the resource it was read as.
func (t *templates) get(key string) (runtime.Object, schema.GroupVersionResource, bool) {
	t.mu.Lock()
	inf, gvr := t.inf, t.gvr
	t.mu.Unlock()
	if inf == nil {
		return nil, gvr, false
	}
	obj, ok, _ := inf.GetStore().GetByKey(key)
	if !ok {
		return nil, gvr, false
	}
	return obj.(runtime.Object), gvr, true
}
