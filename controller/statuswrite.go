package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// The status writers: each writes only when something changed, and retries a conflict (our
// cache lagging behind a write, ours or Karmada labelling its template) on the object read afresh.

// WriteExportStatus is writeExportStatus, for the agent of a Pull member.
var WriteExportStatus = writeExportStatus

// WriteImportStatus is writeImportStatus, for the agent of a Pull member.
var WriteImportStatus = writeImportStatus

// writeExportStatus sets conds on a ServiceExport (in a member, or the template on Karmada) read
// from cache as se, and returns the conditions that changed.
func writeExportStatus(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, se *mcsv1beta1.ServiceExport,
	conds []metav1.Condition) ([]metav1.Condition, error) {
	changed, _, err := writeExportStatusRV(ctx, dyn, gvr, se, conds)
	return changed, err
}

// writeExportStatusRV is writeExportStatus that also returns the object's version after the
// write ("" when nothing was written).
func writeExportStatusRV(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, se *mcsv1beta1.ServiceExport,
	conds []metav1.Condition) ([]metav1.Condition, string, error) {
	var changed []metav1.Condition
	var rv string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		out := se.DeepCopy()
		if changed = SetExportConditions(out, conds); len(changed) == 0 {
			return nil
		}
		var err error
		rv, err = updateStatus(ctx, dyn, gvr, out, func(fresh *unstructured.Unstructured) { se = mcs.ExportFrom(fresh) })
		return err
	})
	return changed, rv, err
}

// memoWrite runs write (which returns the object's version after writing, "" if it wrote
// nothing) unless w wrote content to object key over version rv already (alreadyWritten).
func memoWrite(w *statusWriter, key, rv, content string, write func() (string, error)) error {
	if w.alreadyWritten(key, rv, content) {
		return nil
	}
	now, err := write()
	if err == nil && now != "" {
		w.noteWritten(key, rv, now, content)
	}
	return err
}

// conditionsContent is what a status write of conds carries, for memoWrite.
func conditionsContent(conds []metav1.Condition, extra ...string) string {
	var b strings.Builder
	for _, c := range conds {
		fmt.Fprintf(&b, "%s=%s/%s/%s;", c.Type, c.Status, c.Reason, c.Message)
	}
	b.WriteString(strings.Join(extra, ","))
	return b.String()
}

func sameCondition(a, b metav1.Condition) bool {
	return a.Status == b.Status && a.Reason == b.Reason && a.Message == b.Message && a.ObservedGeneration == b.ObservedGeneration
}

// writeExportStatuses hands every member's export conditions, and their merge on the template on
// the Karmada control plane (where the user applied it, as in the seed) if there is one, to the
// status writers (see statusWriter). A member's export that turns invalid or conflicting gets a
// Warning event once written: the user must act.
func (c *Controller) writeExportStatuses(o *observation, perMember map[string][]metav1.Condition, template []metav1.Condition) {
	key := o.ns + "/" + o.name
	for _, st := range o.states {
		m, se, conds := st.m, st.obj, perMember[st.m.name]
		if m.pull != nil {
			m.status.set("ServiceExport/"+key, func(ctx context.Context) error {
				if err := m.writeStatusWork(ctx, "ServiceExport", se.Namespace, se.Name, pullExportStatus(conds)); err != nil {
					return fmt.Errorf("status of ServiceExport %s in %s (for its agent): %w", key, m.name, err)
				}
				return nil
			})
			continue
		}
		gvr, _, _ := m.mcsInformers()
		m.status.set("ServiceExport/"+key, func(ctx context.Context) error {
			return memoWrite(m.status, "ServiceExport/"+key, se.ResourceVersion, conditionsContent(conds), func() (string, error) {
				changed, rv, err := writeExportStatusRV(ctx, m.dyn, gvr, se, conds)
				if err != nil {
					return "", fmt.Errorf("status of ServiceExport %s in %s: %w", key, m.name, err)
				}
				for _, cond := range changed {
					if warns(cond) && m.recorder != nil {
						m.recorder.Event(se, corev1.EventTypeWarning, cond.Reason, cond.Message)
					}
				}
				return rv, nil
			})
		})
	}
	if len(o.states) == 0 {
		return
	}
	obj, gvr, ok := c.exportTemplates.get(key)
	if !ok {
		return // no template: the export was created in the member directly
	}
	se := obj.(*mcsv1beta1.ServiceExport)
	c.status.set("ServiceExport/"+key, func(ctx context.Context) error {
		return memoWrite(c.status, "ServiceExport/"+key, se.ResourceVersion, conditionsContent(template), func() (string, error) {
			_, rv, err := writeExportStatusRV(ctx, c.dyn, gvr, se, template)
			if err != nil {
				return "", fmt.Errorf("mirroring the ServiceExport status of %s to the Karmada control plane: %w", key, err)
			}
			return rv, nil
		})
	})
}

// writeImportStatuses hands to the status writers, for every ServiceImport of the service in its
// importers (ours or the user's), status.clusters (the clusters whose endpoints it carries) and
// a Ready condition that says why the import has no endpoints when it has none.
func (c *Controller) writeImportStatuses(o *observation, pending []string) {
	key := o.ns + "/" + o.name
	byName := map[string]*member{}
	for _, m := range o.members {
		byName[m.name] = m
	}
	clusters := importClusters(o.exporters)
	for _, im := range o.importers {
		m := byName[im.cluster]
		if m == nil {
			continue
		}
		si, ok := m.serviceImport(key)
		if !ok {
			continue // ours, not applied by Karmada yet
		}
		cond := importReady(o, im.cluster, pending)
		if im.taken {
			// The user must act (rename or delete their Service): told on their import too.
			c.warnOnce(m, si, string(ReasonDerivedServiceTaken), cond.Message)
		}
		gvr := m.importGVR()
		present := mcsv1beta1.EndpointSliceObjectsAbsent
		if m.hasMirroredSlices(o.ns, im.name) {
			present = mcsv1beta1.EndpointSliceObjectsPresent
		}
		if m.pull != nil {
			m.status.set("ServiceImport/"+key, func(ctx context.Context) error {
				if err := m.writeStatusWork(ctx, "ServiceImport", si.Namespace, si.Name, pullImportStatus(clusters, present, cond)); err != nil {
					return fmt.Errorf("status of ServiceImport %s in %s (for its agent): %w", key, m.name, err)
				}
				return nil
			})
			continue
		}
		m.status.set("ServiceImport/"+key, func(ctx context.Context) error {
			content := conditionsContent([]metav1.Condition{cond}, append(slices.Clone(clusters), string(present))...)
			return memoWrite(m.status, "ServiceImport/"+key, si.ResourceVersion, content, func() (string, error) {
				rv, err := writeImportStatusRV(ctx, m.dyn, gvr, si, clusters, present, cond)
				if err != nil {
					return "", fmt.Errorf("status of ServiceImport %s in %s: %w", key, m.name, err)
				}
				return rv, nil
			})
		})
	}
}

// warnOnce records a Warning event on obj in member m, once per message (this process's memory:
// a v1alpha1 ServiceImport has no condition to compare with).
func (c *Controller) warnOnce(m *member, obj *mcsv1beta1.ServiceImport, reason, msg string) {
	key := m.name + "/" + obj.Namespace + "/" + obj.Name + "/" + reason
	c.syncMu.Lock()
	seen := c.warned[key] == msg
	c.warned[key] = msg
	c.syncMu.Unlock()
	if !seen && m.recorder != nil {
		m.recorder.Event(obj, corev1.EventTypeWarning, reason, msg)
	}
}

// writeImportStatus sets status.clusters, status.endpointSliceObjects (whether mirrored slices
// exist for the import: mcs-api v0.5.2) and the Ready condition on a member's ServiceImport,
// writing only if any changed. A v1alpha1 import has only status.clusters (Karmada's CRD).
func writeImportStatus(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, si *mcsv1beta1.ServiceImport,
	clusters []string, sliceObjects mcsv1beta1.EndpointSliceObjectsStatus, cond metav1.Condition) error {
	_, err := writeImportStatusRV(ctx, dyn, gvr, si, clusters, sliceObjects, cond)
	return err
}

// writeImportStatusRV is writeImportStatus that also returns the object's version after the
// write ("" when nothing was written).
func writeImportStatusRV(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, si *mcsv1beta1.ServiceImport,
	clusters []string, sliceObjects mcsv1beta1.EndpointSliceObjectsStatus, cond metav1.Condition) (string, error) {
	withConditions := gvr.Version != "v1alpha1"
	var rv string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var have []string
		for _, cl := range si.Status.Clusters {
			have = append(have, cl.Cluster)
		}
		conds := slices.Clone(si.Status.Conditions)
		cond.ObservedGeneration = si.Generation
		cur := meta.FindStatusCondition(conds, cond.Type)
		if slices.Equal(have, clusters) && (!withConditions || cur != nil && sameCondition(*cur, cond) && si.Status.EndpointSliceObjects == sliceObjects) {
			return nil
		}
		meta.SetStatusCondition(&conds, cond)
		out := si.DeepCopy()
		out.Status.Clusters = nil
		for _, id := range clusters {
			out.Status.Clusters = append(out.Status.Clusters, mcsv1beta1.ClusterStatus{Cluster: id})
		}
		out.Status.Conditions = conds
		out.Status.EndpointSliceObjects = sliceObjects
		var err error
		rv, err = updateStatus(ctx, dyn, gvr, out, func(fresh *unstructured.Unstructured) { si = mcs.ImportFrom(fresh) })
		return err
	})
	return rv, err
}

// updateStatus writes the status of obj (of the view) as version gvr; when that fails it reads
// the object afresh for the next attempt (retry.RetryOnConflict makes one on a conflict).
func updateStatus(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, obj metav1.Object, reread func(*unstructured.Unstructured)) (string, error) {
	u, err := mcs.Unstructured(obj.(runtime.Object), gvr.GroupVersion())
	if err != nil {
		return "", err
	}
	ri := dyn.Resource(gvr).Namespace(obj.GetNamespace())
	written, err := ri.UpdateStatus(ctx, u, metav1.UpdateOptions{})
	if err == nil {
		statusWrites.Inc()
		return written.GetResourceVersion(), nil
	}
	if fresh, gerr := ri.Get(ctx, obj.GetName(), metav1.GetOptions{}); gerr == nil {
		reread(fresh)
	}
	return "", err
}
