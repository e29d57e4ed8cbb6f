package controller

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/util/retry"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// TestWriteStatusRetriesConflict: a status write from a stale cached object (our own earlier
// write, or Karmada labelling its template) is retried on the object read afresh, keeping the
// conditions someone else set, instead of failing the reconcile.
func TestWriteStatusRetriesConflict(t *testing.T) {
	gvr := mcs.ExportVersions[1]
	cur := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
		"metadata": map[string]any{"name": "serve", "namespace": "default", "resourceVersion": "2"},
		"status": map[string]any{"conditions": []any{map[string]any{
			"type": "Other", "status": "True", "reason": "Theirs", "message": "set by someone else", "lastTransitionTime": "2026-01-01T00:00:00Z"}}},
	}}
	stale := cur.DeepCopy()
	stale.SetResourceVersion("1")
	unstructured.RemoveNestedField(stale.Object, "status")

	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{gvr: "ServiceExportList"}, cur)
	var updates []*unstructured.Unstructured
	dyn.PrependReactor("update", "serviceexports", func(a clienttesting.Action) (bool, runtime.Object, error) {
		u := a.(clienttesting.UpdateAction).GetObject().(*unstructured.Unstructured)
		updates = append(updates, u)
		if u.GetResourceVersion() != "2" {
			return true, nil, apierrors.NewConflict(gvr.GroupResource(), u.GetName(), nil)
		}
		return true, u, nil
	})

	ready := condition("Ready", metav1.ConditionTrue, "Exported", "exported")
	changed, err := writeExportStatus(context.Background(), dyn, gvr, mcs.ExportFrom(stale), []metav1.Condition{ready})
	if err != nil {
		t.Fatalf("writeExportStatus: %v", err)
	}
	if len(updates) != 2 || len(changed) != 1 {
		t.Fatalf("%d status updates, %d changed, want 2 (the stale one, then one on the fresh object) and Ready", len(updates), len(changed))
	}
	types := map[string]string{}
	for _, cd := range mcs.ExportFrom(updates[1]).Status.Conditions {
		types[cd.Type] = string(cd.Status) + "/" + cd.Reason
	}
	if types["Ready"] != "True/Exported" || types["Other"] != "True/Theirs" {
		t.Errorf("written conditions %v, want Ready True/Exported and the other writer's Other True/Theirs", types)
	}

	// A persistent conflict is returned after retry.DefaultRetry's attempts (the service is
	// requeued), not retried forever.
	updates = nil
	dyn.PrependReactor("update", "serviceexports", func(a clienttesting.Action) (bool, runtime.Object, error) {
		updates = append(updates, nil)
		return true, nil, apierrors.NewConflict(gvr.GroupResource(), "serve", nil)
	})
	if _, err := writeExportStatus(context.Background(), dyn, gvr, mcs.ExportFrom(stale), []metav1.Condition{ready}); !apierrors.IsConflict(err) {
		t.Errorf("persistent conflict: err = %v, want a conflict", err)
	}
	if len(updates) != retry.DefaultRetry.Steps {
		t.Errorf("persistent conflict: %d updates, want %d", len(updates), retry.DefaultRetry.Steps)
	}
}

// mcs-api v0.5: compatible but different ports are a PortConflict on every export (the import
// still has the union); different kinds of conflict combine their reasons with commas.
func TestConflictConditionPortsAndCombinedReasons(t *testing.T) {
	port := func(name string, proto corev1.Protocol, n int32) corev1.ServicePort {
		return corev1.ServicePort{Name: name, Protocol: proto, Port: n}
	}
	m1 := exporter{cluster: "member1", service: svc(port("a", corev1.ProtocolTCP, 42), port("u", corev1.ProtocolUDP, 42))}
	m2 := exporter{cluster: "member2", service: svc(port("a", corev1.ProtocolTCP, 42), port("s", corev1.ProtocolSCTP, 142))}
	cond := conflictCondition([]exporter{m1, m2})
	if cond.Status != metav1.ConditionTrue || cond.Reason != "PortConflict" {
		t.Fatalf("compatible ports: %s/%s (%s), want True/PortConflict", cond.Status, cond.Reason, cond.Message)
	}
	for _, want := range []string{`"s" SCTP/142`, `"u" UDP/42`, "member1", "member2", "union"} {
		if !strings.Contains(cond.Message, want) {
			t.Errorf("message %q does not name %s", cond.Message, want)
		}
	}
	if got := unionPorts([]exporter{m1, m2}); len(got) != 3 {
		t.Errorf("union %+v, want a, u and s", got)
	}
	same := exporter{cluster: "member2", service: svc(port("u", corev1.ProtocolUDP, 42), port("a", corev1.ProtocolTCP, 42))}
	if cond := conflictCondition([]exporter{m1, same}); cond.Status != metav1.ConditionFalse || cond.Reason != "NoConflicts" {
		t.Errorf("identical ports: %s/%s (%s), want False/NoConflicts", cond.Status, cond.Reason, cond.Message)
	}
	headless := exporter{cluster: "member3", service: svc(port("a", corev1.ProtocolTCP, 42), port("u", corev1.ProtocolUDP, 42))}
	headless.service.Spec.ClusterIP = corev1.ClusterIPNone
	cond = conflictCondition([]exporter{m1, m2, headless})
	if cond.Reason != "PortConflict,TypeConflict" || !strings.Contains(cond.Message, "member3") {
		t.Errorf("two kinds of conflict: %s (%s), want PortConflict,TypeConflict naming member3", cond.Reason, cond.Message)
	}
}
