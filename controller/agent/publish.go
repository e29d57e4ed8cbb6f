package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/controller"
	"github.com/coredns-mcs/coredns-mcs/internal/kube"
	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
	"github.com/coredns-mcs/coredns-mcs/internal/report"
)

// What is reported: what the controller reads of a member, and nothing of what is not
// exported or imported (a member's 10,000 other Services cost no Work):
//   - every ServiceExport and ServiceImport, and every Namespace (automatic imports go to the
//     members that have the namespace);
//   - a Service that is exported, or that may be a derived Service here: ours, or of the derived
//     prefix, or of a name a ServiceImport here chose (the controller decides whether the name is
//     taken);
//   - an EndpointSlice of an exported Service, or one of ours (mirrored here).

// wanted returns what to report of it (nil: nothing).
func (a *Agent) wanted(it item) (metav1.Object, error) {
	switch it.kind {
	case report.KindServiceExport:
		if se, ok := a.export(it.ns, it.name); ok {
			return se, nil
		}
	case report.KindServiceImport:
		if si, ok := a.serviceImport(it.ns, it.name); ok {
			return si, nil
		}
	case report.KindNamespace:
		if o, ok := kube.Cached[*corev1.Namespace](a.namespaces, it.name); ok {
			// Its name and whether it is going: all the controller reads.
			return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Name, UID: o.UID, DeletionTimestamp: o.DeletionTimestamp,
				CreationTimestamp: o.CreationTimestamp}}, nil
		}
	case report.KindService:
		svc, ok := kube.Cached[*corev1.Service](a.services, it.ns+"/"+it.name)
		if ok && a.reportService(svc) {
			return svc, nil
		}
	case report.KindEndpointSlice:
		es, ok := kube.Cached[*discoveryv1.EndpointSlice](a.slices, it.ns+"/"+it.name)
		if !ok {
			return nil, nil
		}
		if es.Labels[discoveryv1.LabelManagedBy] == controller.ManagedBy {
			return es, nil
		}
		if _, exported := a.export(it.ns, es.Labels[discoveryv1.LabelServiceName]); exported {
			return es, nil
		}
	default:
		return nil, fmt.Errorf("unknown kind %q", it.kind)
	}
	return nil, nil
}

func (a *Agent) reportService(svc *corev1.Service) bool {
	if _, exported := a.export(svc.Namespace, svc.Name); exported {
		return true
	}
	if svc.Labels["app.kubernetes.io/managed-by"] == controller.ManagedBy || strings.HasPrefix(svc.Name, a.opts.DerivedPrefix) {
		return true
	}
	_, _, im := a.mcsInformers()
	if im == nil {
		return false
	}
	// A name an import here chose (mcs.DerivedServiceOf): one index lookup, whatever the number
	// of imports (an unexported Service's change costs no scan).
	objs, _ := im.GetIndexer().ByIndex(byDerivedName, svc.Namespace+"/"+svc.Name)
	return len(objs) > 0
}

// byDerivedName indexes ServiceImports by the derived Service they name (namespace/name).
const byDerivedName = "derivedName"

func derivedNameIndex(prefix string) cache.IndexFunc {
	return func(obj any) ([]string, error) {
		si, ok := obj.(metav1.Object)
		if !ok {
			return nil, nil
		}
		name, err := mcs.DerivedServiceOf(prefix, si.GetNamespace(), si.GetName(), si.GetAnnotations())
		if err != nil {
			return nil, nil
		}
		return []string{si.GetNamespace() + "/" + name}, nil
	}
}

// publish brings the report Work of it in step with the member: written when it changed,
// deleted when the object is gone or no longer reported.
func (a *Agent) publish(ctx context.Context, it item) error {
	if it.kind == report.KindCluster {
		return nil // written by writeCluster
	}
	if it.kind != report.KindNamespace && it.ns == "" {
		return nil
	}
	obj, err := a.wanted(it)
	if err != nil {
		return err
	}
	name := report.WorkName(false, it.kind, it.ns, it.name)
	ns := report.ExecutionNamespace(a.opts.Cluster)
	works := a.karmada.WorkV1alpha1().Works(ns)
	var cur *workv1alpha1.Work
	if o, ok, _ := a.reports.GetStore().GetByKey(ns + "/" + name); ok {
		cur = o.(*workv1alpha1.Work)
	}
	if obj == nil {
		if cur == nil {
			return nil
		}
		if err := works.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cur.UID}}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting report Work %s/%s: %w", ns, name, err)
		}
		reportWrites.WithLabelValues("delete").Inc()
		return nil
	}
	payload, err := payloadOf(obj)
	if err != nil {
		return err
	}
	if len(payload) > report.MaxPayload {
		klog.FromContext(ctx).Info("not reporting an object larger than a report may be", "object", report.ObjectRef(it.kind, it.ns, it.name), "bytes", len(payload))
		return nil
	}
	want, err := report.NewWork(a.opts.Cluster, name, report.ManagedByAgent, it.kind, report.ObjectRef(it.kind, it.ns, it.name), payload)
	if err != nil {
		return err
	}
	switch {
	case cur == nil:
		if _, err := works.Create(ctx, want, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
			return nil // our cache lags behind a write of ours: its event brings the item back
		} else if err != nil {
			return fmt.Errorf("creating report Work %s/%s: %w", ns, name, err)
		}
		reportWrites.WithLabelValues("create").Inc()
	case cur.Annotations[report.AnnotationHash] != want.Annotations[report.AnnotationHash] || cur.Labels[report.LabelKind] != it.kind:
		want.ResourceVersion = cur.ResourceVersion
		if _, err := works.Update(ctx, want, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("updating report Work %s/%s: %w", ns, name, err)
		}
		reportWrites.WithLabelValues("update").Inc()
	}
	return nil
}

// payloadOf is the JSON of what is reported of obj: the object without its managed fields (the
// MCS objects in the shape of the v1beta1 view, whichever version the member serves).
func payloadOf(obj metav1.Object) ([]byte, error) {
	var cp metav1.Object
	switch o := obj.(type) {
	case *corev1.Service:
		cp = o.DeepCopy()
	case *discoveryv1.EndpointSlice:
		cp = o.DeepCopy()
	case *corev1.Namespace:
		cp = o.DeepCopy()
	case *mcsv1beta1.ServiceExport:
		cp = o.DeepCopy()
	case *mcsv1beta1.ServiceImport:
		cp = o.DeepCopy()
	default:
		return nil, fmt.Errorf("cannot report a %T", obj)
	}
	cp.SetManagedFields(nil)
	return json.Marshal(cp)
}
