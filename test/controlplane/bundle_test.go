//go:build envtest

package controlplane_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/controller"
	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// TestBundleLayout: --work-layout=bundle writes one Work per importer and service carrying the
// derived Service and its slices. Switching a running import from the object layout to bundles
// and back keeps the derived Service (UID, ClusterIP) and the endpoints; a slice that leaves a
// bundle is emptied first and then deleted from the member (Karmada leaves an object a Work
// stops naming); the export going takes everything.
func TestBundleLayout(t *testing.T) {
	ns := namespace(t, "bundle")
	m1, m2 := members["member1"], members["member2"]
	seedImport(t, ns, "serve", m2)
	serve(t, m1, ns, "serve", false, 80, "10.10.1.5")
	extraSlice(t, m1, ns, "serve", "serve-src2", "10.10.1.6")
	export(t, m1, ns, "serve")

	// The object layout first: a Work per object.
	stop := startController(t, controller.Options{})
	expectImported(t, m2, ns, "serve", "10.10.1.5", "10.10.1.6")
	before := expectDerived(t, m2, ns, "derived-serve")
	expectWorks(t, ns, "the object layout: the derived Service and two slices", func(names []string) bool {
		return len(names) == 3 && countPrefix(names, "karmada-es-member2/mcs-svc-") == 1 && countPrefix(names, "karmada-es-member2/mcs-eps-") == 2
	})
	stop()

	// Bundles: one Work; the object-layout Works retired, nothing deleted in member2.
	stop = startController(t, controller.Options{WorkLayout: controller.WorkLayoutBundle})
	expectWorks(t, ns, "one bundle in member2, the object layout's Works retired", func(names []string) bool {
		return len(names) == 1 && countPrefix(names, "karmada-es-member2/mcs-imp-") == 1
	})
	expectImported(t, m2, ns, "serve", "10.10.1.5", "10.10.1.6")
	expectSameDerived(t, m2, ns, before)
	w, err := karmadaAPI.WorkV1alpha1().Works("karmada-es-member2").List(ctx, metav1.ListOptions{LabelSelector: "mcs.coredns-mcs.io/service-namespace=" + ns})
	if err != nil || len(w.Items) != 1 || len(w.Items[0].Spec.Workload.Manifests) != 3 {
		t.Fatalf("bundle: %v, %+v", err, w)
	}

	// A source slice deleted: its endpoints leave member2 at once, its mirrored slice after.
	if err := m1.kube.DiscoveryV1().EndpointSlices(ns).Delete(ctx, "serve-src2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expectImported(t, m2, ns, "serve", "10.10.1.5")
	eventually(t, 60*time.Second, "the emptied slice deleted from member2 (through an orphan Work)", func() error {
		list, err := m2.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: mcs.LabelServiceName + "=serve"})
		if err != nil {
			return err
		}
		if len(list.Items) != 1 {
			return fmt.Errorf("%d mirrored slices", len(list.Items))
		}
		return nil
	})
	expectWorks(t, ns, "the bundle alone again (the orphan Work gone)", func(names []string) bool {
		return len(names) == 1 && countPrefix(names, "karmada-es-member2/mcs-imp-") == 1
	})
	expectSameDerived(t, m2, ns, before)
	stop()

	// And back to the object layout.
	stop = startController(t, controller.Options{})
	expectWorks(t, ns, "the object layout again, the bundle retired", func(names []string) bool {
		return len(names) == 2 && countPrefix(names, "karmada-es-member2/mcs-svc-") == 1 && countPrefix(names, "karmada-es-member2/mcs-eps-") == 1
	})
	expectImported(t, m2, ns, "serve", "10.10.1.5")
	expectSameDerived(t, m2, ns, before)
	stop()

	// The export going, under bundles, takes everything.
	startController(t, controller.Options{WorkLayout: controller.WorkLayoutBundle})
	expectWorks(t, ns, "one bundle", func(names []string) bool { return len(names) == 1 })
	unexport(t, m1, ns, "serve")
	expectNoWorks(t, ns)
	if _, err := m2.kube.CoreV1().Services(ns).Get(ctx, "derived-serve", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("derived-serve still in member2 after the export went: %v", err)
	}
	if ips, _ := importedIPs(m2, ns, "serve"); len(ips) > 0 {
		t.Errorf("member2 still imports %v", ips)
	}
}

// extraSlice writes a second source EndpointSlice of ns/svc in c.
func extraSlice(t *testing.T, c *cluster, ns, svc, name string, ips ...string) {
	t.Helper()
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080)), Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for _, ip := range ips {
		es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
	}
	if _, err := c.kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func expectWorks(t *testing.T, ns, what string, ok func([]string) bool) {
	t.Helper()
	eventually(t, 60*time.Second, what, func() error {
		names, err := ourWorks(ns)
		if err != nil {
			return err
		}
		if !ok(names) {
			return fmt.Errorf("Works %v", names)
		}
		return nil
	})
}

func countPrefix(names []string, prefix string) int {
	n := 0
	for _, s := range names {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

// expectSameDerived: the derived Service is the one of before (not recreated).
func expectSameDerived(t *testing.T, c *cluster, ns string, before *corev1.Service) {
	t.Helper()
	after, err := c.kube.CoreV1().Services(ns).Get(ctx, before.Name, metav1.GetOptions{})
	if err != nil || after.UID != before.UID || after.Spec.ClusterIP != before.Spec.ClusterIP {
		t.Fatalf("%s: %v (UID %s → %v, ClusterIP %s → %v)", before.Name, err, before.UID, uidOf(after), before.Spec.ClusterIP, ipOf(after))
	}
}

func uidOf(s *corev1.Service) any {
	if s == nil {
		return nil
	}
	return s.UID
}

func ipOf(s *corev1.Service) any {
	if s == nil {
		return nil
	}
	return s.Spec.ClusterIP
}
