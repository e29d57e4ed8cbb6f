//go:build envtest

package controlplane_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/coredns-mcs/coredns-mcs/controller"
)

// IP families (mcs-api v0.5.2): member1 is dual-stack, member2 IPv4 only (their ServiceCIDRs).
// An IPv6-only export is imported in member1 and not in member2, whose ServiceImport says
// Ready=False/IPFamilyNotSupported, as does the export's Ready naming member2; a dual-stack export
// is imported in member2 with IPv4 only, in member1 with both.
func TestIPFamilies(t *testing.T) {
	startController(t, controller.Options{})
	ns := namespace(t, "families")
	m1, m2 := members["member1"], members["member2"]
	exportFamilies := func(name string, policy corev1.IPFamilyPolicy, families []corev1.IPFamily, addrType discoveryv1.AddressType, ip string) {
		t.Helper()
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: corev1.ServiceSpec{IPFamilyPolicy: &policy, IPFamilies: families,
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
		if _, err := m1.kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-src", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: addrType, Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}}}
		if _, err := m1.kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// member2 imports it through a ServiceImport of its own (v1beta1: it has conditions).
		si := &unstructured.Unstructured{Object: map[string]any{"apiVersion": siGVR.GroupVersion().String(), "kind": "ServiceImport",
			"metadata": map[string]any{"namespace": ns, "name": name},
			"spec":     map[string]any{"type": "ClusterSetIP", "ports": []any{map[string]any{"name": "http", "port": int64(80), "protocol": "TCP"}}}}}
		if _, err := m2.dyn.Resource(siGVR).Namespace(ns).Create(ctx, si, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		export(t, m1, ns, name)
	}
	derivedFamilies := func(c *cluster, name string) ([]corev1.IPFamily, error) {
		svc, err := c.kube.CoreV1().Services(ns).Get(ctx, "derived-"+name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return svc.Spec.IPFamilies, nil
	}
	expectFamilies := func(c *cluster, name string, want ...corev1.IPFamily) {
		t.Helper()
		eventually(t, 30*time.Second, fmt.Sprintf("derived-%s in %s with %v", name, c.name, want), func() error {
			got, err := derivedFamilies(c, name)
			if err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("ipFamilies %v", got)
			}
			return nil
		})
	}

	exportFamilies("v6", corev1.IPFamilyPolicySingleStack, []corev1.IPFamily{corev1.IPv6Protocol}, discoveryv1.AddressTypeIPv6, "fd00:1::5")
	expectFamilies(m1, "v6", corev1.IPv6Protocol)
	expectExportCondition(t, m1, ns, "v6", "Ready", "False/IPFamilyNotSupported")
	eventually(t, 30*time.Second, "member2's import of v6 Ready=False/IPFamilyNotSupported", func() error {
		u, err := m2.dyn.Resource(siGVR).Namespace(ns).Get(ctx, "v6", metav1.GetOptions{})
		if err != nil {
			return err
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			if m, _ := c.(map[string]any); m["type"] == "Ready" {
				if got := fmt.Sprint(m["status"], "/", m["reason"]); got != "False/IPFamilyNotSupported" {
					return fmt.Errorf("Ready %s (%v)", got, m["message"])
				}
				return nil
			}
		}
		return fmt.Errorf("no Ready condition")
	})
	if _, err := m2.kube.CoreV1().Services(ns).Get(ctx, "derived-v6", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("derived-v6 in member2 (IPv4 only): err=%v, want NotFound", err)
	}

	exportFamilies("dual", corev1.IPFamilyPolicyRequireDualStack, []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}, discoveryv1.AddressTypeIPv4, "10.10.14.1")
	expectFamilies(m2, "dual", corev1.IPv4Protocol)
	expectFamilies(m1, "dual", corev1.IPv6Protocol, corev1.IPv4Protocol)
	expectExportCondition(t, m1, ns, "dual", "Ready", "True/Exported")

	for _, n := range []string{"v6", "dual"} {
		unexport(t, m1, ns, n)
	}
	expectNoWorks(t, ns)
}
