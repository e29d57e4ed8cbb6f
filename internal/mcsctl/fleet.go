package mcsctl

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	karmadaclient "github.com/karmada-io/karmada/pkg/generated/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
	"github.com/coredns-mcs/coredns-mcs/internal/report"
)

// Fleet is what the commands read: the Karmada control plane and each member. Members are
// reached through Karmada's cluster proxy (as `karmadactl get --operation-scope members` does:
// one kubeconfig, the Karmada one), or through a kubeconfig of their own whose contexts are named
// after the Karmada clusters.
type Fleet struct {
	Karmada             kubernetes.Interface
	KarmadaClusters     karmadaclient.Interface
	ControllerNamespace string
	DerivedPrefix       string
	// Member returns the clients of one member.
	Member func(name string) (*Member, error)
}

// Member is one member's clients: its apiserver's, or (a Pull member, which Karmada's cluster
// proxy does not reach) its mcs-agent's reports on the Karmada control plane.
type Member struct {
	Name string
	Kube kubernetes.Interface
	Dyn  dynamic.Interface
	apis *mcs.APIs
	// reports, for a Pull member: what its agent reports (internal/report).
	reports karmadaclient.Interface
}

// NewPullMember reads member name from its agent's reports on the Karmada control plane.
func NewPullMember(name string, karmada karmadaclient.Interface) *Member {
	return &Member{Name: name, reports: karmada}
}

// reported lists the objects of kind the member's agent reports, in namespace ns ("" = all).
func reported[T metav1.Object](ctx context.Context, m *Member, kind, ns string) ([]T, error) {
	works, err := m.reports.WorkV1alpha1().Works(report.ExecutionNamespace(m.Name)).List(ctx, metav1.ListOptions{LabelSelector: report.Selector(kind)})
	if err != nil {
		return nil, fmt.Errorf("the reports of Pull member %s's mcs-agent: %w", m.Name, err)
	}
	var out []T
	for i := range works.Items {
		o, err := report.Decode(kind, &works.Items[i])
		if err != nil {
			continue
		}
		if t, ok := o.(T); ok && (ns == "" || o.GetNamespace() == ns) {
			out = append(out, t)
		}
	}
	return out, nil
}

// slicesOf lists the EndpointSlices of Service ns/name.
func (m *Member) slicesOf(ctx context.Context, ns, name string) ([]discoveryv1.EndpointSlice, error) {
	if m.reports != nil {
		all, err := reported[*discoveryv1.EndpointSlice](ctx, m, report.KindEndpointSlice, ns)
		var out []discoveryv1.EndpointSlice
		for _, s := range all {
			if s.Labels[discoveryv1.LabelServiceName] == name {
				out = append(out, *s)
			}
		}
		return out, err
	}
	list, err := m.Kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + name})
	if err != nil {
		return nil, err
	}
	return list.Items, nil
}

// Options say how to reach the fleet.
type Options struct {
	Kubeconfig, Context string // of the Karmada control plane
	// MembersKubeconfig, when set, is used for the members (context = cluster name) instead of
	// Karmada's cluster proxy.
	MembersKubeconfig   string
	ControllerNamespace string
	DerivedPrefix       string
	Timeout             time.Duration
}

// NewFleet builds the clients.
func NewFleet(o Options) (*Fleet, error) {
	cfg, err := restConfig(o.Kubeconfig, o.Context)
	if err != nil {
		return nil, fmt.Errorf("the Karmada control plane: %w", err)
	}
	cfg.Timeout = o.Timeout
	f := &Fleet{ControllerNamespace: o.ControllerNamespace, DerivedPrefix: o.DerivedPrefix}
	if f.Karmada, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if f.KarmadaClusters, err = karmadaclient.NewForConfig(cfg); err != nil {
		return nil, err
	}
	f.Member = func(name string) (*Member, error) {
		var mc *rest.Config
		if o.MembersKubeconfig != "" {
			if mc, err = restConfig(o.MembersKubeconfig, name); err != nil {
				return nil, fmt.Errorf("member %s in %s: %w", name, o.MembersKubeconfig, err)
			}
			mc.Timeout = o.Timeout
		} else {
			// A Pull member is not reachable through Karmada's cluster proxy: its agent's reports are read.
			if cl, err := f.KarmadaClusters.ClusterV1alpha1().Clusters().Get(context.Background(), name, metav1.GetOptions{}); err == nil &&
				cl.Spec.SyncMode == clusterv1alpha1.Pull {
				return NewPullMember(name, f.KarmadaClusters), nil
			}
			mc = rest.CopyConfig(cfg)
			mc.Host = strings.TrimRight(cfg.Host, "/") + "/apis/cluster.karmada.io/v1alpha1/clusters/" + name + "/proxy"
		}
		return NewMember(name, mc)
	}
	return f, nil
}

// NewMember builds one member's clients from cfg.
func NewMember(name string, cfg *rest.Config) (*Member, error) {
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	d, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Member{Name: name, Kube: k, Dyn: d}, nil
}

func restConfig(path, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		rules.ExplicitPath = path
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
}

// Clusters lists Karmada's member clusters by name.
func (f *Fleet) Clusters(ctx context.Context) ([]clusterv1alpha1.Cluster, error) {
	list, err := f.KarmadaClusters.ClusterV1alpha1().Clusters().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items, nil
}

// ControllerStatus reads the FleetStatus the controller publishes; nil when there is none.
func (f *Fleet) ControllerStatus(ctx context.Context) (*mcs.FleetStatus, error) {
	cm, err := f.Karmada.CoreV1().ConfigMaps(f.ControllerNamespace).Get(ctx, mcs.StatusConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st mcs.FleetStatus
	if err := json.Unmarshal([]byte(cm.Data[mcs.StatusKey]), &st); err != nil {
		return nil, fmt.Errorf("configmap %s/%s: %w", f.ControllerNamespace, mcs.StatusConfigMap, err)
	}
	return &st, nil
}

func (m *Member) mcsAPIs() (mcs.APIs, error) {
	if m.apis != nil {
		return *m.apis, nil
	}
	a, err := mcs.Discover(m.Kube.Discovery())
	if err != nil {
		return a, err
	}
	m.apis = &a
	return a, nil
}

func (m *Member) resource(versions []schema.GroupVersionResource) (schema.GroupVersionResource, error) {
	a, err := m.mcsAPIs()
	if err != nil {
		return schema.GroupVersionResource{}, err
	}
	gvr, ok := a.Preferred(versions)
	if !ok {
		return gvr, fmt.Errorf("member %s does not serve the MCS API (%s): its CRDs are not installed", m.Name, versions[0].GroupResource())
	}
	return gvr, nil
}

// Exports lists the member's ServiceExports (ns "" = all namespaces), by namespace/name.
func (m *Member) Exports(ctx context.Context, ns string) (map[string]*mcsv1beta1.ServiceExport, error) {
	if m.reports != nil {
		list, err := reported[*mcsv1beta1.ServiceExport](ctx, m, report.KindServiceExport, ns)
		out := map[string]*mcsv1beta1.ServiceExport{}
		for _, e := range list {
			out[e.Namespace+"/"+e.Name] = e
		}
		return out, err
	}
	gvr, err := m.resource(mcs.ExportVersions)
	if err != nil {
		return nil, err
	}
	list, err := m.Dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]*mcsv1beta1.ServiceExport{}
	for i := range list.Items {
		e := mcs.ExportFrom(&list.Items[i])
		out[e.Namespace+"/"+e.Name] = e
	}
	return out, nil
}

// Imports lists the member's ServiceImports (ns "" = all namespaces), by namespace/name.
func (m *Member) Imports(ctx context.Context, ns string) (map[string]*mcsv1beta1.ServiceImport, error) {
	if m.reports != nil {
		list, err := reported[*mcsv1beta1.ServiceImport](ctx, m, report.KindServiceImport, ns)
		out := map[string]*mcsv1beta1.ServiceImport{}
		for _, e := range list {
			out[e.Namespace+"/"+e.Name] = e
		}
		return out, err
	}
	gvr, err := m.resource(mcs.ImportVersions)
	if err != nil {
		return nil, err
	}
	list, err := m.Dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]*mcsv1beta1.ServiceImport{}
	for i := range list.Items {
		im := mcs.ImportFrom(&list.Items[i])
		out[im.Namespace+"/"+im.Name] = im
	}
	return out, nil
}

// Service returns a Service, nil when there is none.
func (m *Member) Service(ctx context.Context, ns, name string) (*corev1.Service, error) {
	if m.reports != nil {
		w, err := m.reports.WorkV1alpha1().Works(report.ExecutionNamespace(m.Name)).Get(ctx, report.WorkName(false, report.KindService, ns, name), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		o, err := report.Decode(report.KindService, w)
		if err != nil {
			return nil, err
		}
		return o.(*corev1.Service), nil
	}
	s, err := m.Kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return s, err
}

// Endpoints counts the ready and all endpoints of the EndpointSlices of Service name.
func (m *Member) Endpoints(ctx context.Context, ns, name string) (ready, all, slices int, err error) {
	items, err := m.slicesOf(ctx, ns, name)
	if err != nil {
		return 0, 0, 0, err
	}
	for _, s := range items {
		for _, e := range s.Endpoints {
			all++
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				ready++
			}
		}
	}
	return ready, all, len(items), nil
}

// ReadyAddresses lists the IPv4 addresses of the ready endpoints of Service name.
func (m *Member) ReadyAddresses(ctx context.Context, ns, name string) ([]string, error) {
	items, err := m.slicesOf(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range items {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				out = append(out, e.Addresses...)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
