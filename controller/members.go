package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/coredns-mcs/coredns-mcs/internal/kube"
	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// Preferred first.
var (
	exportGVRs = []schema.GroupVersionResource{
		{Group: mcs.Group, Version: "v1beta1", Resource: "serviceexports"},
		{Group: mcs.Group, Version: "v1alpha1", Resource: "serviceexports"},
	}
	importGVRs = []schema.GroupVersionResource{
		{Group: mcs.Group, Version: "v1beta1", Resource: "serviceimports"},
		{Group: mcs.Group, Version: "v1alpha1", Resource: "serviceimports"},
	}
	clusterPropertyGVR = schema.GroupVersionResource{Group: "about.k8s.io", Version: "v1alpha1", Resource: "clusterproperties"}
)

const (
	byServiceIndex = "service" // namespace/<kubernetes.io/service-name>
	// clusterIDProperty is the KEP-2149 ClusterProperty naming a cluster within its clusterset.
	clusterIDProperty = "cluster.clusterset.k8s.io"
)

// member is one Karmada member cluster: its clients and informers on ServiceExports,
// ServiceImports, Services and EndpointSlices.
type member struct {
	name        string
	id          string
	fingerprint string
	kube        kubernetes.Interface
	dyn         dynamic.Interface

	services, slices, namespaces cache.SharedIndexInformer

	mu         sync.Mutex
	seGVR      schema.GroupVersionResource
	siGVR      schema.GroupVersionResource
	exports    cache.SharedIndexInformer
	imports    cache.SharedIndexInformer
	apiMissing atomic.Bool
	cancelMCS  context.CancelFunc

	cancel context.CancelFunc
}

func restConfigFor(endpoint string, token, ca []byte, insecure bool, qps float32, burst int) *rest.Config {
	cfg := &rest.Config{Host: endpoint, BearerToken: string(token), QPS: qps, Burst: burst, UserAgent: "coredns-mcs-controller"}
	if insecure {
		cfg.Insecure = true
	} else {
		cfg.CAData = ca
	}
	return cfg
}

func fingerprint(endpoint string, token, ca []byte, insecure bool) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%v", endpoint, token, ca, insecure)
	return hex.EncodeToString(h.Sum(nil))
}

// newMember builds the clients and informers of a member; enqueue receives service keys,
// enqueueNamespace the name of a namespace that appeared (its services may be imported there now).
func newMember(name string, cfg *rest.Config, fp string, enqueue, enqueueNamespace func(string)) (*member, error) {
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	m := &member{name: name, id: name, fingerprint: fp, kube: kc, dyn: dyn}
	m.services = kube.Informer[*corev1.ServiceList](kc.CoreV1().Services(metav1.NamespaceAll), "", &corev1.Service{}, cache.Indexers{})
	m.slices = kube.Informer[*discoveryv1.EndpointSliceList](kc.DiscoveryV1().EndpointSlices(metav1.NamespaceAll),
		discoveryv1.LabelServiceName, &discoveryv1.EndpointSlice{}, cache.Indexers{byServiceIndex: func(obj any) ([]string, error) {
			s, ok := obj.(*discoveryv1.EndpointSlice)
			if !ok {
				return nil, nil
			}
			return []string{s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]}, nil
		}})
	m.namespaces = kube.Informer[*corev1.NamespaceList](kc.CoreV1().Namespaces(), "", &corev1.Namespace{}, cache.Indexers{})
	if _, err := m.namespaces.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if o, ok := obj.(metav1.Object); ok {
				enqueueNamespace(o.GetName())
			}
		},
	}); err != nil {
		return nil, err
	}
	if _, err := m.services.AddEventHandler(keyHandler(enqueue, func(o metav1.Object) string {
		// Our derived Services name the imported service in the MCS label: their ClusterIP goes
		// into the automatic ServiceImport's spec.ips.
		if svc := o.GetLabels()[mcs.LabelServiceName]; svc != "" && o.GetLabels()[labelManagedBy] == ManagedBy {
			return o.GetNamespace() + "/" + svc
		}
		return o.GetNamespace() + "/" + o.GetName()
	})); err != nil {
		return nil, err
	}
	if _, err := m.slices.AddEventHandler(keyHandler(enqueue, func(o metav1.Object) string {
		// Our own mirrored slices name the imported service in the MCS label.
		if svc := o.GetLabels()[mcs.LabelServiceName]; svc != "" {
			return o.GetNamespace() + "/" + svc
		}
		return o.GetNamespace() + "/" + o.GetLabels()[discoveryv1.LabelServiceName]
	})); err != nil {
		return nil, err
	}
	return m, nil
}

// keyHandler enqueues the key of every added, updated or deleted object.
func keyHandler(enqueue func(string), key func(metav1.Object) string) cache.ResourceEventHandlerFuncs {
	f := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if o, ok := obj.(metav1.Object); ok {
			enqueue(key(o))
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: f, UpdateFunc: func(_, n any) { f(n) }, DeleteFunc: f}
}

// start runs the member's informers until stop; the MCS informers start once the member serves
// the MCS API (the seed propagates the CRDs after the member joined).
func (m *member) start(parent context.Context, enqueue func(string)) {
	ctx, cancel := context.WithCancel(parent)
	m.cancel = cancel
	go m.services.RunWithContext(ctx)
	go m.slices.RunWithContext(ctx)
	go m.namespaces.RunWithContext(ctx)
	go m.discoverMCS(ctx, enqueue)
}

func (m *member) stop() {
	if m.cancel != nil {
		m.cancel()
	}
}

func (m *member) discoverMCS(ctx context.Context, enqueue func(string)) {
	logger := klog.FromContext(ctx).WithValues("cluster", m.name)
	m.id = m.clusterID(ctx)
	logged := false
	for {
		se, okSE := firstServed(m, exportGVRs)
		si, okSI := firstServed(m, importGVRs)
		curSE, _, _ := m.mcsInformers()
		switch {
		case okSE && okSI && (se != curSE || si != m.importGVR()):
			// First seen, or the member now serves a preferred version (the CRDs were upgraded
			// to v1beta1, whose fields v1alpha1 reads would prune): (re)start the MCS informers.
			if !curSE.Empty() {
				logger.Info("the member serves another MCS API version now; re-watching", "serviceexports", se.GroupVersion().String())
			}
			m.startMCS(ctx, se, si, enqueue)
			logger.Info("watching the MCS API", "serviceexports", se.GroupVersion().String(), "serviceimports", si.GroupVersion().String(), "clusterID", m.id)
			m.apiMissing.Store(false)
		case !okSE || !okSI:
			if curSE.Empty() {
				m.apiMissing.Store(true)
				if !logged {
					logger.Info("member does not serve the MCS API (ServiceExport/ServiceImport CRDs) yet; waiting for it")
					logged = true
				}
			}
		}
		wait := 2 * time.Second
		if !curSE.Empty() || okSE && okSI {
			wait = 30 * time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func firstServed(m *member, gvrs []schema.GroupVersionResource) (schema.GroupVersionResource, bool) {
	return servedGVR(m.kube.Discovery(), gvrs)
}

// clusterID is the member's ClusterProperty cluster.clusterset.k8s.io, else its Karmada name.
func (m *member) clusterID(ctx context.Context) string {
	cp, err := m.dyn.Resource(clusterPropertyGVR).Get(ctx, clusterIDProperty, metav1.GetOptions{})
	if err == nil {
		if v, _, _ := unstructured.NestedString(cp.Object, "spec", "value"); v != "" {
			return v
		}
	} else if !apierrors.IsNotFound(err) { // NotFound: no such object, or no ClusterProperty CRD
		klog.FromContext(ctx).V(2).Info("reading ClusterProperty", "cluster", m.name, "err", err)
	}
	return m.name
}

// startMCS (re)starts the ServiceExport and ServiceImport informers on versions se and si; the
// previous ones, if any, stop.
func (m *member) startMCS(parent context.Context, se, si schema.GroupVersionResource, enqueue func(string)) {
	ctx, cancel := context.WithCancel(parent)
	mk := func(gvr schema.GroupVersionResource) cache.SharedIndexInformer {
		inf := kube.Informer[*unstructured.UnstructuredList](m.dyn.Resource(gvr).Namespace(metav1.NamespaceAll), "",
			&unstructured.Unstructured{}, cache.Indexers{})
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

// synced reports whether everything the member serves is in the caches; a member that does not
// serve the MCS API yet counts as synced (it exports and imports nothing).
func (m *member) synced() bool {
	if !m.services.HasSynced() || !m.slices.HasSynced() || !m.namespaces.HasSynced() {
		return false
	}
	_, ex, im := m.mcsInformers()
	if ex == nil {
		return m.apiMissing.Load()
	}
	return ex.HasSynced() && im.HasSynced()
}
