package kube

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// ListWatcher is what typed and dynamic clients of one resource offer (e.g.
// client.CoreV1().Services(""), or dyn.Resource(gvr).Namespace("")).
type ListWatcher[L runtime.Object] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// Informer returns an informer (no resync) on c's resource, limited to objects matching the
// label selector (all when empty), with the given indexers.
func Informer[L runtime.Object](c ListWatcher[L], selector string, example runtime.Object, idx cache.Indexers) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformer(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = selector
			return c.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = selector
			return c.Watch(ctx, o)
		},
	}, example, 0, idx)
}

// Cached returns the object of key in inf's cache, as T (none while inf is nil).
func Cached[T any](inf cache.SharedIndexInformer, key string) (T, bool) {
	var zero T
	if inf == nil {
		return zero, false
	}
	o, ok, _ := inf.GetStore().GetByKey(key)
	if !ok {
		return zero, false
	}
	t, ok := o.(T)
	return t, ok
}
