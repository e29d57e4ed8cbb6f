package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/controller"
	"github.com/coredns-mcs/coredns-mcs/internal/report"
)

// syncStatus applies the status the controller decided for a ServiceExport or ServiceImport of
// the member (its status Work). The status Work of an object that is gone is deleted.
func (a *Agent) syncStatus(ctx context.Context, it item) error {
	name := report.WorkName(true, it.kind, it.ns, it.name)
	ns := report.ExecutionNamespace(a.opts.Cluster)
	o, ok, _ := a.statusWorks.GetStore().GetByKey(ns + "/" + name)
	if !ok {
		return nil
	}
	w := o.(*workv1alpha1.Work)
	payload, err := report.Payload(w)
	if err != nil {
		return nil // not the controller's doing; nothing to apply
	}
	seGVR, _, _ := a.mcsInformers()
	switch it.kind {
	case report.KindServiceExport:
		se, ok := a.export(it.ns, it.name)
		if !ok {
			return a.dropStatusWork(ctx, w)
		}
		var st report.ExportStatus
		if err := json.Unmarshal(payload, &st); err != nil {
			return nil
		}
		changed, err := controller.WriteExportStatus(ctx, a.memberDyn, seGVR, se, st.Conditions)
		if err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("status of ServiceExport %s/%s: %w", it.ns, it.name, err)
		}
		for _, c := range changed {
			if slices.Contains(st.Warn, c.Type) {
				a.recorder.Event(se, corev1.EventTypeWarning, c.Reason, c.Message)
			}
		}
		if len(changed) > 0 {
			statusWrites.Inc()
		}
	case report.KindServiceImport:
		si, ok := a.serviceImport(it.ns, it.name)
		if !ok {
			return a.dropStatusWork(ctx, w)
		}
		var st report.ImportStatus
		if err := json.Unmarshal(payload, &st); err != nil || st.Ready == nil {
			return nil
		}
		a.mu.Lock()
		siGVR := a.siGVR
		a.mu.Unlock()
		if err := controller.WriteImportStatus(ctx, a.memberDyn, siGVR, si, st.Clusters,
			mcsv1beta1.EndpointSliceObjectsStatus(st.EndpointSliceObjects), *st.Ready); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("status of ServiceImport %s/%s: %w", it.ns, it.name, err)
		}
	}
	return nil
}

// dropStatusWork deletes the status Work of an object the member no longer has.
func (a *Agent) dropStatusWork(ctx context.Context, w *workv1alpha1.Work) error {
	err := a.karmada.WorkV1alpha1().Works(w.Namespace).Delete(ctx, w.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &w.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting status Work %s/%s: %w", w.Namespace, w.Name, err)
	}
	return nil
}
