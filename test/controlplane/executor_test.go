//go:build envtest

package controlplane_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"time"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The test's stand-in for Karmada's execution controller (v1.16), with the behaviour the
// controller relies on: a Work's manifest is created or updated in its member (an existing object
// not managed by Karmada only with work.karmada.io/conflict-resolution: overwrite), a Service
// keeps its allocated ClusterIPs, the Work gets Applied True or False, and a deleted Work's object
// is removed from the member before its execution finalizer is.
const executionFinalizer = "karmada.io/execution-controller"

func runExecutor(ctx context.Context) {
	for ctx.Err() == nil {
		works, err := karmadaAPI.WorkV1alpha1().Works(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range works.Items {
				execute(ctx, &works.Items[i])
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func resourceOf(u *unstructured.Unstructured) schema.GroupVersionResource {
	gv, _ := schema.ParseGroupVersion(u.GetAPIVersion())
	return gv.WithResource(strings.ToLower(u.GetKind()) + "s")
}

func execute(ctx context.Context, w *workv1alpha1.Work) {
	m := members[strings.TrimPrefix(w.Namespace, "karmada-es-")]
	if w.Spec.SuspendDispatching != nil && *w.Spec.SuspendDispatching {
		return // Karmada's execution controller skips it (a Pull member's agent's reports)
	}
	if m == nil || len(w.Spec.Workload.Manifests) == 0 {
		return
	}
	// Every manifest, in order; an object a Work's manifests stop naming is left in the member.
	var objs []*unstructured.Unstructured
	for _, raw := range w.Spec.Workload.Manifests {
		u := &unstructured.Unstructured{}
		if json.Unmarshal(raw.Raw, &u.Object) != nil {
			return
		}
		objs = append(objs, u)
	}
	if w.DeletionTimestamp != nil {
		if !slices.Contains(w.Finalizers, executionFinalizer) {
			return
		}
		for _, u := range objs {
			ri := m.dyn.Resource(resourceOf(u)).Namespace(u.GetNamespace())
			if cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{}); err == nil && cur.GetLabels()["karmada.io/managed"] == "true" {
				if err := ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
					return
				}
			}
		}
		w.Finalizers = slices.DeleteFunc(w.Finalizers, func(f string) bool { return f == executionFinalizer })
		_, _ = karmadaAPI.WorkV1alpha1().Works(w.Namespace).Update(ctx, w, metav1.UpdateOptions{})
		return
	}
	applied, reason := true, "AppliedSuccessful"
	for _, u := range objs {
		if ok, why := apply(ctx, m, u); !ok && applied {
			applied, reason = false, why
		}
	}
	status := metav1.ConditionTrue
	if !applied {
		status = metav1.ConditionFalse
	}
	cond := metav1.Condition{Type: workv1alpha1.WorkApplied, Status: status, Reason: reason, Message: reason}
	if cur := meta.FindStatusCondition(w.Status.Conditions, cond.Type); cur != nil && cur.Status == cond.Status && cur.Reason == cond.Reason {
		return
	}
	meta.SetStatusCondition(&w.Status.Conditions, cond)
	_, _ = karmadaAPI.WorkV1alpha1().Works(w.Namespace).UpdateStatus(ctx, w, metav1.UpdateOptions{})
}

// apply creates or updates the manifest u in member m.
func apply(ctx context.Context, m *cluster, u *unstructured.Unstructured) (bool, string) {
	ri := m.dyn.Resource(resourceOf(u)).Namespace(u.GetNamespace())
	cur, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := ri.Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return false, "CreateFailed"
		}
		return true, "AppliedSuccessful"
	case err != nil:
		return false, "GetFailed"
	}
	if cur.GetLabels()["karmada.io/managed"] != "true" && u.GetAnnotations()["work.karmada.io/conflict-resolution"] != "overwrite" {
		return false, "ConflictNotOverwritten" // an object that is not Karmada's
	}
	u.SetResourceVersion(cur.GetResourceVersion())
	if u.GetKind() == "Service" { // Karmada's retention keeps the allocated ClusterIPs
		for _, f := range []string{"clusterIP", "clusterIPs", "ipFamilies"} {
			if v, ok, _ := unstructured.NestedFieldCopy(cur.Object, "spec", f); ok {
				_ = unstructured.SetNestedField(u.Object, v, "spec", f)
			}
		}
	}
	if _, ok := u.Object["status"]; !ok {
		u.Object["status"] = cur.Object["status"]
	}
	if _, err := ri.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
		return false, "UpdateFailed"
	}
	return true, "AppliedSuccessful"
}
