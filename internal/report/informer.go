package report

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	karmadaclient "github.com/karmada-io/karmada/pkg/generated/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// Example returns an empty object of the type a report of kind decodes to.
func Example(kind string) runtime.Object {
	switch kind {
	case KindService:
		return &corev1.Service{}
	case KindEndpointSlice:
		return &discoveryv1.EndpointSlice{}
	case KindNamespace:
		return &corev1.Namespace{}
	case KindServiceExport:
		return &mcsv1beta1.ServiceExport{}
	case KindServiceImport:
		return &mcsv1beta1.ServiceImport{}
	}
	return nil
}

// Decode returns the object a report Work of kind carries, checked: the Work must be the one
// its object names (WorkName), so a member's agent cannot make two Works claim one object. The
// object's resourceVersion becomes the Work's (what an informer resumes its watch from).
func Decode(kind string, w *workv1alpha1.Work) (metav1.Object, error) {
	payload, err := Payload(w)
	if err != nil {
		return nil, err
	}
	obj := Example(kind)
	if obj == nil {
		return nil, fmt.Errorf("work %s/%s: unknown kind %q", w.Namespace, w.Name, kind)
	}
	if err := json.Unmarshal(payload, obj); err != nil {
		return nil, fmt.Errorf("work %s/%s: %w", w.Namespace, w.Name, err)
	}
	o := obj.(metav1.Object)
	switch {
	case kind == KindNamespace && o.GetNamespace() != "":
		return nil, fmt.Errorf("work %s/%s: a Namespace with a namespace", w.Namespace, w.Name)
	case kind != KindNamespace && len(validation.IsDNS1123Label(o.GetNamespace())) > 0:
		return nil, fmt.Errorf("work %s/%s: invalid namespace %q", w.Namespace, w.Name, o.GetNamespace())
	case len(validation.IsDNS1123Subdomain(o.GetName())) > 0:
		return nil, fmt.Errorf("work %s/%s: invalid name %q", w.Namespace, w.Name, o.GetName())
	case WorkName(false, kind, o.GetNamespace(), o.GetName()) != w.Name:
		return nil, fmt.Errorf("work %s/%s carries %s, which is another Work's", w.Namespace, w.Name, ObjectRef(kind, o.GetNamespace(), o.GetName()))
	}
	o.SetResourceVersion(w.ResourceVersion)
	o.SetManagedFields(nil)
	return o, nil
}

// DecodeCluster returns the cluster report a Work carries.
func DecodeCluster(w *workv1alpha1.Work) (*Cluster, error) {
	payload, err := Payload(w)
	if err != nil {
		return nil, err
	}
	var c Cluster
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("work %s/%s: %w", w.Namespace, w.Name, err)
	}
	return &c, nil
}

// Selector selects the report Works of kind.
func Selector(kind string) string {
	return LabelManagedBy + "=" + ManagedByAgent + "," + LabelKind + "=" + kind
}

// Informer returns an informer (not started) whose cache holds the objects of kind that
// cluster's agent reports, decoded from its report Works on the Karmada control plane: what an
// informer on the member's apiserver would hold, as far as the agent reports it. A Work that
// does not decode is left out (and logged): a member's agent is semi-trusted.
func Informer(client karmadaclient.Interface, cluster, kind string, idx cache.Indexers) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformer(&listWatch{client: client, cluster: cluster, kind: kind}, Example(kind), 0, idx)
}

type listWatch struct {
	client        karmadaclient.Interface
	cluster, kind string

	mu sync.Mutex
	// last is the object each Work decoded to last: a Work edited into one that does not decode
	// takes that object out of the cache.
	last map[string]runtime.Object
}

var _ cache.ListerWithContext = (*listWatch)(nil)

// IsWatchListSemanticsUnSupported: the watch is converted, and bookmarks with it would not be,
// so the reflector lists and then watches.
func (lw *listWatch) IsWatchListSemanticsUnSupported() bool { return true }

func (lw *listWatch) decode(w *workv1alpha1.Work) (runtime.Object, bool) {
	o, err := Decode(lw.kind, w)
	if err != nil {
		klog.Background().Info("ignoring a report Work that does not decode", "cluster", lw.cluster, "err", err)
		return nil, false
	}
	return o.(runtime.Object), true
}

func (lw *listWatch) ListWithContext(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
	opts.LabelSelector = Selector(lw.kind)
	works, err := lw.client.WorkV1alpha1().Works(ExecutionNamespace(lw.cluster)).List(ctx, opts)
	if err != nil {
		return nil, err
	}
	out := &metav1.List{ListMeta: works.ListMeta}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if opts.Continue == "" || lw.last == nil {
		lw.last = map[string]runtime.Object{}
	}
	for i := range works.Items {
		if o, ok := lw.decode(&works.Items[i]); ok {
			out.Items = append(out.Items, runtime.RawExtension{Object: o})
			lw.last[works.Items[i].Name] = o
		}
	}
	return out, nil
}

func (lw *listWatch) List(opts metav1.ListOptions) (runtime.Object, error) {
	return lw.ListWithContext(context.Background(), opts)
}

func (lw *listWatch) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.LabelSelector = Selector(lw.kind)
	opts.AllowWatchBookmarks = false
	w, err := lw.client.WorkV1alpha1().Works(ExecutionNamespace(lw.cluster)).Watch(ctx, opts)
	if err != nil {
		return nil, err
	}
	return watch.Filter(w, func(ev watch.Event) (watch.Event, bool) {
		work, ok := ev.Object.(*workv1alpha1.Work)
		if !ok {
			return ev, ev.Type == watch.Error
		}
		lw.mu.Lock()
		defer lw.mu.Unlock()
		prev := lw.last[work.Name]
		o, ok := lw.decode(work)
		switch {
		case ok && ev.Type == watch.Deleted:
			delete(lw.last, work.Name)
		case ok:
			lw.last[work.Name] = o
		case prev != nil:
			// A Work edited into one that does not decode, or deleted as such: the object it
			// carried leaves the cache.
			delete(lw.last, work.Name)
			o, ev.Type = prev.DeepCopyObject(), watch.Deleted
			o.(metav1.Object).SetResourceVersion(work.ResourceVersion)
		default:
			return ev, false
		}
		ev.Object = o
		return ev, true
	}), nil
}

func (lw *listWatch) Watch(opts metav1.ListOptions) (watch.Interface, error) {
	return lw.WatchWithContext(context.Background(), opts)
}
