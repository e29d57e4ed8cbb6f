package mcs

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/cache"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/kube"
)

// The view: ServiceExports and ServiceImports of either version are read as mcs-api's v1beta1 Go
// types, whose fields are a superset of what every served v1alpha1 CRD has (same JSON names);
// TypeMeta keeps the version the object was read as, which is the version it is written back as.

// ExportFrom reads a ServiceExport of any version; a field that does not fit its type is left out
// (see convert).
func ExportFrom(u *unstructured.Unstructured) *mcsv1beta1.ServiceExport {
	out := convert[mcsv1beta1.ServiceExport](u, func() any { return &mcsv1beta1.ServiceExportSpec{} }, func() any { return &mcsv1beta1.ServiceExportStatus{} })
	out.APIVersion, out.Kind = u.GetAPIVersion(), "ServiceExport"
	return out
}

// ImportFrom reads a ServiceImport of any version; a field that does not fit its type is left out.
func ImportFrom(u *unstructured.Unstructured) *mcsv1beta1.ServiceImport {
	out := convert[mcsv1beta1.ServiceImport](u, func() any { return &mcsv1beta1.ServiceImportSpec{} }, func() any { return &mcsv1beta1.ServiceImportStatus{} })
	out.APIVersion, out.Kind = u.GetAPIVersion(), "ServiceImport"
	return out
}

// TransformExport and TransformImport are informer transforms (cache.TransformFunc): the caches
// of dynamic informers then hold the view's types.
func TransformExport(obj any) (any, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return ExportFrom(u), nil
	}
	return obj, nil
}

// TransformImport: see TransformExport.
func TransformImport(obj any) (any, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return ImportFrom(u), nil
	}
	return obj, nil
}

// IsV1alpha1 reports whether an object of the view was read as (and so is written as) v1alpha1.
func IsV1alpha1(obj runtime.Object) bool {
	return obj.GetObjectKind().GroupVersionKind().GroupVersion() == mcsv1alpha1.SchemeGroupVersion
}

// Unstructured renders an object of the view as version gv for a write. A v1alpha1 ServiceImport
// loses what Karmada's v1alpha1 CRD lacks (ipFamilies, internalTrafficPolicy,
// trafficDistribution, status.conditions): the apiserver would prune them, and a writer that
// compares would write them again on every pass.
func Unstructured(obj runtime.Object, gv schema.GroupVersion) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(gv.String())
	if gv == mcsv1alpha1.SchemeGroupVersion && u.GetKind() == "ServiceImport" {
		for _, f := range [][]string{{"spec", "ipFamilies"}, {"spec", "internalTrafficPolicy"}, {"spec", "trafficDistribution"}, {"status", "conditions"}, {"status", "endpointSliceObjects"}} {
			unstructured.RemoveNestedField(u.Object, f...)
		}
	}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u, nil
}

// convert fills out from u. Members write these objects, so a field of the wrong shape (a CRD
// without a schema accepts anything) must cost only that field: when the whole object does not
// convert, each spec and status field is tried alone, list items one by one, and what does not fit
// is dropped.
func convert[T any](u *unstructured.Unstructured, spec, status func() any) *T {
	c := runtime.DefaultUnstructuredConverter
	if out := new(T); c.FromUnstructured(u.Object, out) == nil {
		return out
	}
	clean := u.DeepCopy().Object
	for section, fresh := range map[string]func() any{"spec": spec, "status": status} {
		fields, ok := clean[section].(map[string]any)
		if !ok {
			delete(clean, section)
			continue
		}
		for k, v := range fields {
			if c.FromUnstructured(map[string]any{k: v}, fresh()) == nil {
				continue
			}
			items, isList := v.([]any)
			if !isList {
				delete(fields, k)
				continue
			}
			kept := items[:0:0]
			for _, it := range items {
				if c.FromUnstructured(map[string]any{k: []any{it}}, fresh()) == nil {
					kept = append(kept, it)
				}
			}
			fields[k] = kept
			if c.FromUnstructured(map[string]any{k: kept}, fresh()) != nil {
				delete(fields, k) // not a list field after all
			}
		}
	}
	out := new(T)
	if c.FromUnstructured(clean, out) != nil {
		// Only the metadata is left (it is the apiserver's, always well formed).
		out = new(T)
		md, _ := clean["metadata"].(map[string]any)
		_ = c.FromUnstructured(map[string]any{"metadata": md}, out)
	}
	return out
}

// Informer returns an informer (not started) on gvr, a version of ServiceExports or
// ServiceImports, whose cache holds the view's type, or what then makes of it (then may be nil;
// the DNS plugin keeps only what answers need).
func Informer(dyn dynamic.Interface, gvr schema.GroupVersionResource, then cache.TransformFunc) cache.SharedIndexInformer {
	inf := kube.Informer[*unstructured.UnstructuredList](dyn.Resource(gvr).Namespace(metav1.NamespaceAll), "",
		&unstructured.Unstructured{}, cache.Indexers{})
	transform := TransformImport
	if gvr.Resource == mcsv1beta1.ServiceExportPluralName {
		transform = TransformExport
	}
	if then != nil {
		view := transform
		transform = func(obj any) (any, error) {
			v, err := view(obj)
			if err != nil {
				return nil, err
			}
			return then(v)
		}
	}
	if err := inf.SetTransform(transform); err != nil {
		panic(err) // only fails on a started informer
	}
	return inf
}
