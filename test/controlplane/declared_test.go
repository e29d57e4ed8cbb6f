//go:build envtest

package controlplane_test

import (
	"fmt"
	"testing"
	"time"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/coredns-mcs/coredns-mcs/controller"
)

// scheduleTemplate writes what Karmada's detector and scheduler make of an MCS template: its
// ResourceBinding, scheduled to clusters (there is no Karmada scheduler here).
func scheduleTemplate(t *testing.T, ns, kind, name string, clusters ...string) *workv1alpha2.ResourceBinding {
	t.Helper()
	rb := &workv1alpha2.ResourceBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("%s-%s", name, lower(kind))},
		Spec: workv1alpha2.ResourceBindingSpec{Resource: workv1alpha2.ObjectReference{
			APIVersion: siTemplateGVR.GroupVersion().String(), Kind: kind, Namespace: ns, Name: name}}}
	for _, c := range clusters {
		rb.Spec.Clusters = append(rb.Spec.Clusters, workv1alpha2.TargetCluster{Name: c})
	}
	out, err := karmadaAPI.WorkV1alpha2().ResourceBindings(ns).Create(ctx, rb, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// reportApplied writes the binding's aggregated status as Karmada's binding controller does
// from the Works' Applied condition.
func reportApplied(t *testing.T, ns, name, cluster string, applied bool, msg string) {
	t.Helper()
	eventually(t, 10*time.Second, "binding status written", func() error {
		rb, err := karmadaAPI.WorkV1alpha2().ResourceBindings(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		rb.Status.AggregatedStatus = []workv1alpha2.AggregatedStatusItem{{ClusterName: cluster, Applied: applied, AppliedMessage: msg}}
		_, err = karmadaAPI.WorkV1alpha2().ResourceBindings(ns).UpdateStatus(ctx, rb, metav1.UpdateOptions{})
		return err
	})
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func seTemplate(t *testing.T, ns, name string) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": siTemplateGVR.GroupVersion().String(), "kind": "ServiceExport",
		"metadata": map[string]any{"namespace": ns, "name": name}}}
	if _, err := karmada.dyn.Resource(siTemplateGVR.GroupVersion().WithResource("serviceexports")).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func siTemplate(t *testing.T, ns, name string) {
	t.Helper()
	tmpl := &unstructured.Unstructured{Object: map[string]any{"apiVersion": siTemplateGVR.GroupVersion().String(), "kind": "ServiceImport",
		"metadata": map[string]any{"namespace": ns, "name": name},
		"spec":     map[string]any{"type": "ClusterSetIP", "ports": []any{map[string]any{"port": int64(80), "protocol": "TCP"}}}}}
	if _, err := karmada.dyn.Resource(siTemplateGVR).Namespace(ns).Create(ctx, tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// A ServiceExport template scheduled to member1, which serves the Service: member2 imports from
// member1 before any ServiceExport is in member1. When Karmada reports the export could not be
// applied there, or it does not land within the timeout, the import is withdrawn; once it lands,
// the member's own export counts, with its conditions.
func TestDeclaredExport(t *testing.T) {
	const timeout = 15 * time.Second
	startController(t, controller.Options{DeclaredTimeout: timeout})
	ns := namespace(t, "declared")
	m1, m2 := members["member1"], members["member2"]
	for _, name := range []string{"refused", "late"} {
		siTemplate(t, ns, name)
		scheduleTemplate(t, ns, "ServiceImport", name, "member2")
		serve(t, m1, ns, name, false, 80, "10.10.7.5")
		seTemplate(t, ns, name)
		scheduleTemplate(t, ns, "ServiceExport", name, "member1")
	}
	failedBefore := counter(t, "coredns_mcs_controller_declared_withdrawn_total", map[string]string{"kind": "ServiceExport", "reason": "ApplyFailed"})
	lateBefore := counter(t, "coredns_mcs_controller_declared_withdrawn_total", map[string]string{"kind": "ServiceExport", "reason": "NotLanded"})
	t0 := time.Now()

	// Both imported from the declaration alone: nothing landed in member1 or member2.
	for _, name := range []string{"refused", "late"} {
		expectImported(t, m2, ns, name, "10.10.7.5")
		expectDerived(t, m2, ns, "derived-"+name)
		if _, err := m1.dyn.Resource(seGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("member1 has a ServiceExport %s (%v): the test means none", name, err)
		}
		if _, err := m2.dyn.Resource(siGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("member2 has a ServiceImport %s (%v): the test means none", name, err)
		}
	}
	if time.Since(t0) >= timeout {
		t.Fatalf("imported only after %v, past the declared timeout %v: nothing above was proven", time.Since(t0), timeout)
	}

	// Karmada reports it could not apply "refused" in member1: withdrawn at once.
	reportApplied(t, ns, "refused-serviceexport", "member1", false, `admission denied: ServiceExport "refused" is not allowed`)
	expectImported(t, m2, ns, "refused")
	eventually(t, 30*time.Second, "withdrawal counted (ApplyFailed)", func() error {
		if got := counter(t, "coredns_mcs_controller_declared_withdrawn_total", map[string]string{"kind": "ServiceExport", "reason": "ApplyFailed"}); got != failedBefore+1 {
			return fmt.Errorf("%v", got)
		}
		return nil
	})
	// "late" never lands: withdrawn after the timeout.
	expectImported(t, m2, ns, "late")
	if time.Since(t0) < timeout {
		t.Errorf("late withdrawn %v after it was scheduled, before the timeout %v", time.Since(t0), timeout)
	}
	if got := counter(t, "coredns_mcs_controller_declared_withdrawn_total", map[string]string{"kind": "ServiceExport", "reason": "NotLanded"}); got != lateBefore+1 {
		t.Errorf("NotLanded withdrawals counted: %v, want %v", got, lateBefore+1)
	}

	// The ServiceImport template scheduled to member2 did not land either: withdrawn too.
	if got := counter(t, "coredns_mcs_controller_declared_withdrawn_total", map[string]string{"kind": "ServiceImport", "reason": "NotLanded"}); got < 1 {
		t.Errorf("NotLanded ServiceImport withdrawals counted: %v", got)
	}

	// Both land after all (the admission rule was fixed, Karmada retried): the members' own
	// objects count, and the export carries the conditions.
	export(t, m1, ns, "late")
	si := &unstructured.Unstructured{Object: map[string]any{"apiVersion": siGVR.GroupVersion().String(), "kind": "ServiceImport",
		"metadata": map[string]any{"namespace": ns, "name": "late"},
		"spec":     map[string]any{"type": "ClusterSetIP", "ports": []any{map[string]any{"port": int64(80), "protocol": "TCP"}}}}}
	if _, err := m2.dyn.Resource(siGVR).Namespace(ns).Create(ctx, si, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expectImported(t, m2, ns, "late", "10.10.7.5")
	expectExportCondition(t, m1, ns, "late", "Valid", "True/Valid")

	// The template going (its binding with it) with nothing landed leaves nothing behind.
	if err := karmadaAPI.WorkV1alpha2().ResourceBindings(ns).Delete(ctx, "refused-serviceimport", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	unexport(t, m1, ns, "late")
	if err := m2.dyn.Resource(siGVR).Namespace(ns).Delete(ctx, "late", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := karmadaAPI.WorkV1alpha2().ResourceBindings(ns).Delete(ctx, "late-serviceexport", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expectNoWorks(t, ns)
}
