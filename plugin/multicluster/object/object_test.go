package object

import (
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestToEndpointSlice(t *testing.T) {
	in := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", Labels: map[string]string{
			"multicluster.kubernetes.io/service-name": "web", "multicluster.kubernetes.io/source-cluster": "Member1"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(80)), Protocol: ptr.To(corev1.ProtocolUDP)}, {Port: nil}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.0.0.1"}, Hostname: ptr.To("DB"), TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "db-0"}},
			{Addresses: []string{"10.0.0.2", "bogus"}, Hostname: ptr.To("db"), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
			{Addresses: []string{"::ffff:10.0.0.3"}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "p3"}},
			{Addresses: []string{"bogus"}},
		},
	}
	obj, err := ToEndpointSlice(in)
	if err != nil {
		t.Fatal(err)
	}
	s := obj.(*EndpointSlice)
	if s.Service != "web" || s.Cluster != "member1" || len(s.Ports) != 1 || s.Ports[0] != (Port{Name: "http", Protocol: "udp", Port: 80}) {
		t.Errorf("slice %+v", s)
	}
	if len(s.Endpoints) != 3 {
		t.Fatalf("%d endpoints, want 3 (the one without a valid address dropped)", len(s.Endpoints))
	}
	e0, e1, e2 := s.Endpoints[0], s.Endpoints[1], s.Endpoints[2]
	if e0.Hostname != "db" || e0.Pod != "" || !e0.Ready || e0.Addresses[0] != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("endpoint 0: %+v (hostname lower-cased; the pod is not kept beside a hostname)", e0)
	}
	if e1.Ready || len(e1.Addresses) != 1 {
		t.Errorf("endpoint 1: %+v", e1)
	}
	if e2.Pod != "p3" || e2.Addresses[0] != netip.MustParseAddr("10.0.0.3") {
		t.Errorf("endpoint 2: %+v (pod kept without a hostname; mapped IPv4 unmapped)", e2)
	}
	// Appending to one endpoint's addresses never overwrites the next one's.
	_ = append(e0.Addresses, netip.MustParseAddr("10.9.9.9"))
	if s.Endpoints[1].Addresses[0] != netip.MustParseAddr("10.0.0.2") {
		t.Error("endpoints share address storage beyond their own")
	}
}
