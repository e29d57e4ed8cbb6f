package object

import (
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// ImportType is the type of a ServiceImport.
type ImportType uint8

const (
	// ClusterSetIP imports are reached through one virtual IP per family.
	ClusterSetIP ImportType = iota
	// Headless imports answer with their ready endpoints.
	Headless
)

func (t ImportType) String() string {
	if t == Headless {
		return "Headless"
	}
	return "ClusterSetIP"
}

// Port is a service port: name, protocol (lower case, as used in SRV labels) and number.
type Port struct {
	Name     string
	Protocol string
	Port     int32
}

// meta is the part of ObjectMeta the caches need to key and version objects.
func meta(m metav1.Object) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: m.GetName(), Namespace: m.GetNamespace(), ResourceVersion: m.GetResourceVersion()}
}

// ServiceImport is the slim form of a multicluster.x-k8s.io ServiceImport (v1alpha1 or v1beta1,
// whose specs agree on every field used here).
type ServiceImport struct {
	metav1.ObjectMeta
	Type  ImportType
	IPs   []netip.Addr
	Ports []Port
	// DerivedService is the multicluster.kubernetes.io/derived-service annotation, if any.
	DerivedService string
}

// ToServiceImport slims a ServiceImport of either version: an unstructured one, or one already
// read through internal/mcs's view (mcs-api's v1beta1 type). Malformed fields are skipped: one
// bad import must not stop the others from being served.
func ToServiceImport(obj any) (any, error) {
	var v *mcsv1beta1.ServiceImport
	switch x := obj.(type) {
	case *unstructured.Unstructured:
		v = mcs.ImportFrom(x)
	case *mcsv1beta1.ServiceImport:
		v = x
	default:
		return obj, nil
	}
	si := &ServiceImport{ObjectMeta: meta(v)}
	if strings.EqualFold(string(v.Spec.Type), "Headless") {
		si.Type = Headless
	}
	for _, s := range v.Spec.IPs {
		if ip, err := netip.ParseAddr(s); err == nil {
			si.IPs = append(si.IPs, ip.Unmap())
		}
	}
	for _, p := range v.Spec.Ports {
		port := Port{Name: p.Name, Protocol: "tcp", Port: p.Port}
		if p.Protocol != "" {
			port.Protocol = strings.ToLower(string(p.Protocol))
		}
		if port.Port > 0 {
			si.Ports = append(si.Ports, port)
		}
	}
	// Only a valid name (see mcs.DerivedServiceOf: the controller writes that one, else the
	// default, which the plugin then derives from its own prefix).
	if want := v.Annotations[mcs.AnnotationDerivedService]; want != "" {
		if _, err := mcs.DerivedServiceOf("", v.Namespace, v.Name, v.Annotations); err == nil {
			si.DerivedService = want
		}
	}
	return si, nil
}

// DeepCopyObject implements runtime.Object. Slim objects are never mutated after ingest.
func (s *ServiceImport) DeepCopyObject() runtime.Object { return s }

// GetObjectKind implements runtime.Object.
func (*ServiceImport) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// Endpoint is one endpoint of an EndpointSlice.
type Endpoint struct {
	Addresses []netip.Addr
	Hostname  string
	// Pod names the endpoint's targetRef (for grouping an IPv4 and an IPv6 address of one pod),
	// kept only when it has no hostname (which groups it then).
	Pod   string
	Ready bool
}

// EndpointSlice is the slim form of a discovery.k8s.io EndpointSlice that carries the
// multicluster.kubernetes.io/service-name label.
type EndpointSlice struct {
	metav1.ObjectMeta
	// Service is the imported service's name (the multicluster.kubernetes.io/service-name label).
	Service string
	// Cluster is the source cluster id (multicluster.kubernetes.io/source-cluster), lower case.
	Cluster   string
	Ports     []Port
	Endpoints []Endpoint
}

// ToEndpointSlice converts an EndpointSlice.
func ToEndpointSlice(obj any) (any, error) {
	es, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	s := &EndpointSlice{
		ObjectMeta: meta(es),
		Service:    es.Labels[mcs.LabelServiceName],
		Cluster:    strings.ToLower(es.Labels[mcs.LabelSourceCluster]),
	}
	if es.AddressType == discoveryv1.AddressTypeFQDN {
		return s, nil
	}
	for _, p := range es.Ports {
		port := Port{Protocol: "tcp"}
		if p.Name != nil {
			port.Name = *p.Name
		}
		if p.Protocol != nil {
			port.Protocol = strings.ToLower(string(*p.Protocol))
		}
		if p.Port != nil {
			port.Port = *p.Port
		}
		if port.Port > 0 {
			s.Ports = append(s.Ports, port)
		}
	}
	// One allocation for the endpoints, one for all their addresses, and one string per distinct
	// hostname: a 1,000-endpoint slice costs a few allocations, whatever it holds.
	s.Endpoints = make([]Endpoint, 0, len(es.Endpoints))
	n := 0
	for _, e := range es.Endpoints {
		n += len(e.Addresses)
	}
	addrs := make([]netip.Addr, 0, n)
	hostnames := map[string]string{}
	for _, e := range es.Endpoints {
		ep := Endpoint{Ready: e.Conditions.Ready == nil || *e.Conditions.Ready}
		if e.Hostname != nil {
			h, ok := hostnames[*e.Hostname]
			if !ok {
				h = strings.Clone(strings.ToLower(*e.Hostname))
				hostnames[*e.Hostname] = h
			}
			ep.Hostname = h
		}
		if ep.Hostname == "" && e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
			ep.Pod = e.TargetRef.Name
		}
		lo := len(addrs)
		for _, a := range e.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				addrs = append(addrs, ip.Unmap())
			}
		}
		if len(addrs) > lo {
			ep.Addresses = addrs[lo:len(addrs):len(addrs)]
			s.Endpoints = append(s.Endpoints, ep)
		}
	}
	return s, nil
}

// DeepCopyObject implements runtime.Object.
func (s *EndpointSlice) DeepCopyObject() runtime.Object { return s }

// GetObjectKind implements runtime.Object.
func (*EndpointSlice) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// Service is the slim form of a Service: only its cluster IPs (the ClusterSetIP source for
// imports whose spec.ips is empty, as Karmada's are).
type Service struct {
	metav1.ObjectMeta
	ClusterIPs []netip.Addr
	// PreferClose: its trafficDistribution asks for close endpoints (PreferClose,
	// PreferSameZone, PreferSameNode).
	PreferClose bool
}

// ToService converts a Service.
func ToService(obj any) (any, error) {
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	s := &Service{ObjectMeta: meta(svc)}
	if td := svc.Spec.TrafficDistribution; td != nil {
		switch *td {
		case "PreferClose", "PreferSameZone", "PreferSameNode":
			s.PreferClose = true
		}
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, a := range ips {
		if ip, err := netip.ParseAddr(a); err == nil {
			s.ClusterIPs = append(s.ClusterIPs, ip.Unmap())
		}
	}
	sort.Slice(s.ClusterIPs, func(i, j int) bool { return s.ClusterIPs[i].Less(s.ClusterIPs[j]) })
	return s, nil
}

// DeepCopyObject implements runtime.Object.
func (s *Service) DeepCopyObject() runtime.Object { return s }

// GetObjectKind implements runtime.Object.
func (*Service) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }

// Namespace is the slim form of a Namespace: its name.
type Namespace struct {
	metav1.ObjectMeta
}

// ToNamespace converts a Namespace.
func ToNamespace(obj any) (any, error) {
	ns, ok := obj.(*corev1.Namespace)
	if !ok {
		return obj, nil
	}
	return &Namespace{ObjectMeta: meta(ns)}, nil
}

// DeepCopyObject implements runtime.Object.
func (n *Namespace) DeepCopyObject() runtime.Object { return n }

// GetObjectKind implements runtime.Object.
func (*Namespace) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
