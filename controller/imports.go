package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// writeImportStatuses writes, on every ServiceImport of service key in its importers (ours or
// the user's), status.clusters (the clusters whose endpoints it carries) and a Ready condition
// that says why the import has no endpoints when it has none.
func (c *Controller) writeImportStatuses(ctx context.Context, key string, members []*member, importers []importer,
	exporters []exporter, states []*exportState, drained, pending []string) error {
	byName := map[string]*member{}
	for _, m := range members {
		byName[m.name] = m
	}
	var clusters []string
	for _, ex := range exporters {
		clusters = append(clusters, ex.clusterID)
	}
	slices.Sort(clusters)
	for _, im := range importers {
		m := byName[im.cluster]
		if m == nil {
			continue
		}
		_, _, imInf := m.mcsInformers()
		if imInf == nil {
			continue
		}
		obj, ok, _ := imInf.GetStore().GetByKey(key)
		if !ok {
			continue // ours, not applied by Karmada yet
		}
		cond := importReady(key, im.cluster, exporters, states, drained, pending)
		if err := c.writeImportStatus(ctx, m, obj.(*unstructured.Unstructured), clusters, cond); err != nil {
			return fmt.Errorf("status of ServiceImport %s in %s: %w", key, m.name, err)
		}
	}
	return nil
}

// importReady is the Ready condition of the ServiceImport key in cluster.
func importReady(key, cluster string, exporters []exporter, states []*exportState, drained, pending []string) metav1.Condition {
	notReady := func(msg string) metav1.Condition {
		return metav1.Condition{Type: string(mcsv1beta1.ServiceImportConditionReady), Status: metav1.ConditionFalse,
			Reason: string(mcsv1beta1.ServiceImportReasonPending), Message: msg}
	}
	withdrawn := ""
	if len(drained) > 0 {
		withdrawn = fmt.Sprintf("the endpoints of %s are withdrawn: not Ready in Karmada past the member failure grace (policy drain)",
			strings.Join(drained, ", "))
	}
	switch {
	case len(exporters) == 0 && len(drained) > 0:
		return notReady("no endpoints: " + withdrawn)
	case len(exporters) == 0 && len(states) > 0:
		var why []string
		for _, st := range states {
			why = append(why, st.m.name+": "+st.valid.Message)
		}
		return notReady("no endpoints: no export of " + key + " is valid (" + strings.Join(why, "; ") + ")")
	case len(exporters) == 0:
		return notReady("no endpoints: no cluster exports " + key)
	case slices.Contains(pending, cluster):
		return notReady("waiting for Karmada to apply the derived Service and EndpointSlices in " + cluster)
	}
	names := make([]string, 0, len(exporters))
	readyEndpoints := 0
	for _, ex := range exporters {
		names = append(names, ex.clusterID)
		for _, s := range ex.slices {
			for _, e := range s.Endpoints {
				if ready(e) {
					readyEndpoints++
				}
			}
		}
	}
	msg := "imported from " + strings.Join(names, ", ")
	if readyEndpoints == 0 {
		msg += "; no endpoint is ready there"
	}
	if withdrawn != "" {
		msg += "; " + withdrawn
	}
	return metav1.Condition{Type: string(mcsv1beta1.ServiceImportConditionReady), Status: metav1.ConditionTrue,
		Reason: string(mcsv1beta1.ServiceImportReasonReady), Message: msg}
}

func ready(e discoveryv1.Endpoint) bool {
	return e.Conditions.Ready == nil || *e.Conditions.Ready
}

// writeImportStatus sets status.clusters and the Ready condition on a member's ServiceImport,
// writing only if either changed.
func (c *Controller) writeImportStatus(ctx context.Context, m *member, obj *unstructured.Unstructured, clusters []string, cond metav1.Condition) error {
	var have []string
	raw, _, _ := unstructured.NestedSlice(obj.Object, "status", "clusters")
	for _, r := range raw {
		if cm, ok := r.(map[string]any); ok {
			have = append(have, fmt.Sprint(cm["cluster"]))
		}
	}
	gvr := m.importGVR()
	// v1alpha1 has no status.conditions (the apiserver would prune them, and we would write
	// them again on every pass).
	withConditions := gvr.Version != "v1alpha1"
	conds := readConditions(obj)
	cond.ObservedGeneration = obj.GetGeneration()
	cur := meta.FindStatusCondition(conds, cond.Type)
	same := cur != nil && cur.Status == cond.Status && cur.Reason == cond.Reason &&
		cur.Message == cond.Message && cur.ObservedGeneration == cond.ObservedGeneration
	if slices.Equal(have, clusters) && (same || !withConditions) {
		return nil
	}
	meta.SetStatusCondition(&conds, cond)
	out := obj.DeepCopy()
	cl := make([]any, 0, len(clusters))
	for _, id := range clusters {
		cl = append(cl, map[string]any{"cluster": id})
	}
	rc, err := conditionsToUnstructured(conds)
	if err != nil {
		return err
	}
	if len(cl) > 0 {
		_ = unstructured.SetNestedSlice(out.Object, cl, "status", "clusters")
	} else {
		unstructured.RemoveNestedField(out.Object, "status", "clusters")
	}
	if withConditions {
		_ = unstructured.SetNestedSlice(out.Object, rc, "status", "conditions")
	}
	if _, err := m.dyn.Resource(gvr).Namespace(obj.GetNamespace()).UpdateStatus(ctx, out, metav1.UpdateOptions{}); err != nil {
		return err
	}
	statusWrites.Inc()
	return nil
}
