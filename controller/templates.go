package controller

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/coredns-mcs/coredns-mcs/internal/kube"
)

// templates watches the ServiceImport templates on the Karmada control plane (what the seed's
// 03-import.yaml applies). Where a template exists, the user's PropagationPolicy decides which
// members import the service and the controller writes no ServiceImport; where none exists, the
// controller creates the ServiceImports itself (automatic imports, KEP-1645).
type templates struct {
	disco   discovery.DiscoveryInterface
	dyn     dynamic.Interface
	enqueue func(string)

	mu  sync.Mutex
	inf cache.SharedIndexInformer
	// missing: the control plane does not serve the ServiceImport API (so there are no templates).
	missing atomic.Bool
	// v1beta1: the control plane serves ServiceImport v1beta1. Karmada maps a Work's manifests
	// with the control plane's API, so only then can a Work carry a v1beta1 ServiceImport.
	v1beta1 atomic.Bool
}

func (t *templates) run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	logged := false
	for {
		_, beta := servedGVR(t.disco, importGVRs[:1])
		if beta != t.v1beta1.Load() {
			t.v1beta1.Store(beta)
			logger.Info("ServiceImport versions Works can carry", "v1beta1", beta)
		}
		if gvr, ok := servedGVR(t.disco, importGVRs); ok && t.informer() == nil {
			inf := kube.Informer[*unstructured.UnstructuredList](t.dyn.Resource(gvr).Namespace(metav1.NamespaceAll), "",
				&unstructured.Unstructured{}, cache.Indexers{})
			_, _ = inf.AddEventHandler(keyHandler(t.enqueue, func(o metav1.Object) string { return o.GetNamespace() + "/" + o.GetName() }))
			t.mu.Lock()
			t.inf = inf
			t.mu.Unlock()
			t.missing.Store(false)
			logger.Info("watching ServiceImport templates on the Karmada control plane", "version", gvr.Version)
			go inf.RunWithContext(ctx)
		} else if !ok && t.informer() == nil {
			t.missing.Store(true)
			if !logged {
				logger.Info("the Karmada control plane does not serve the ServiceImport API; every export is imported automatically until it does")
				logged = true
			}
		}
		wait := 5 * time.Second
		if t.informer() != nil {
			wait = 30 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
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

// has reports whether a ServiceImport template for key (namespace/name) exists.
func (t *templates) has(key string) bool {
	inf := t.informer()
	if inf == nil {
		return false
	}
	_, ok, _ := inf.GetStore().GetByKey(key)
	return ok
}

// servedGVR returns the first of gvrs the server serves.
func servedGVR(d discovery.DiscoveryInterface, gvrs []schema.GroupVersionResource) (schema.GroupVersionResource, bool) {
	for _, gvr := range gvrs {
		list, err := d.ServerResourcesForGroupVersion(gvr.GroupVersion().String())
		if err != nil {
			continue
		}
		for _, r := range list.APIResources {
			if r.Name == gvr.Resource {
				return gvr, true
			}
		}
	}
	return schema.GroupVersionResource{}, false
}
