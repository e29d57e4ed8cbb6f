package controller

import (
	"context"
	"testing"

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
