//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

var bindingGVR = schema.GroupVersionResource{Group: "work.karmada.io", Version: "v1alpha2", Resource: "resourcebindings"}

// logKarmadaPath logs, when the test has failed, where service ns/name stands on its way through
// Karmada to cluster: the MCS templates, their ResourceBindings (target clusters, whether each
// applied, Karmada's message) and every Work in karmada-es-<cluster> that names the service or
// its templates (Applied condition). A failure that did not reproduce locally then says which
// hop stalled.
func logKarmadaPath(t *testing.T, ns, name, cluster string) {
	t.Helper()
	if !t.Failed() {
		return
	}
	ctx := context.Background()
	dyn := env.Dynamic(t, clusterset.Karmada)
	var b strings.Builder
	for _, gvr := range []schema.GroupVersionResource{seGVR, siGVR} {
		u, err := dyn.Resource(gvr).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		fmt.Fprintf(&b, "template %s %s/%s: %s\n", gvr.Resource, ns, name, objState(u, err))
	}
	rbs, err := dyn.Resource(bindingGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		fmt.Fprintf(&b, "resourcebindings: %v\n", err)
	} else {
		for i := range rbs.Items {
			rb := &rbs.Items[i]
			if n, _, _ := unstructured.NestedString(rb.Object, "spec", "resource", "name"); n != name {
				continue
			}
			kind, _, _ := unstructured.NestedString(rb.Object, "spec", "resource", "kind")
			clusters, _, _ := unstructured.NestedSlice(rb.Object, "spec", "clusters")
			agg, _, _ := unstructured.NestedSlice(rb.Object, "status", "aggregatedStatus")
			var applied []string
			for _, a := range agg {
				m, _ := a.(map[string]any)
				applied = append(applied, fmt.Sprintf("%v applied=%v %q", m["clusterName"], m["applied"], m["appliedMessage"]))
			}
			fmt.Fprintf(&b, "binding %s (%s, %s): clusters %v, aggregatedStatus %v\n", rb.GetName(), kind, objState(rb, nil), clusters, applied)
		}
	}
	works, err := dyn.Resource(workGVR).Namespace("karmada-es-"+cluster).List(ctx, metav1.ListOptions{})
	if err != nil {
		fmt.Fprintf(&b, "works in karmada-es-%s: %v\n", cluster, err)
	} else {
		for i := range works.Items {
			w := &works.Items[i]
			if !strings.Contains(w.GetName(), name) && w.GetLabels()["mcs.coredns-mcs.io/service-name"] != name {
				continue
			}
			conds, _, _ := unstructured.NestedSlice(w.Object, "status", "conditions")
			var cs []string
			for _, c := range conds {
				m, _ := c.(map[string]any)
				cs = append(cs, fmt.Sprintf("%v=%v/%v %q", m["type"], m["status"], m["reason"], m["message"]))
			}
			fmt.Fprintf(&b, "work %s (%s): %v\n", w.GetName(), objState(w, nil), cs)
		}
	}
	t.Logf("Karmada's path of %s/%s to %s:\n%s", ns, name, cluster, b.String())
}

// objState is "absent", the error, or the object's age and whether it is being deleted.
func objState(u *unstructured.Unstructured, err error) string {
	switch {
	case err != nil:
		return err.Error()
	case u.GetDeletionTimestamp() != nil:
		return fmt.Sprintf("created %s, deleting since %s, finalizers %v", u.GetCreationTimestamp().Format("15:04:05"),
			u.GetDeletionTimestamp().Format("15:04:05"), u.GetFinalizers())
	default:
		return "created " + u.GetCreationTimestamp().Format("15:04:05")
	}
}
