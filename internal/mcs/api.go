package mcs

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/cache"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// The MCS resources in every version this project reads, preferred first: v1beta1 has the fields
// v1alpha1 lacks on some clusters (Karmada ships an older v1alpha1 ServiceImport without
// ipFamilies, internalTrafficPolicy, trafficDistribution and status.conditions).
var (
	ExportVersions = []schema.GroupVersionResource{
		mcsv1beta1.SchemeGroupVersion.WithResource(mcsv1beta1.ServiceExportPluralName),
		mcsv1alpha1.SchemeGroupVersion.WithResource(mcsv1alpha1.ServiceExportPluralName),
	}
	ImportVersions = []schema.GroupVersionResource{
		mcsv1beta1.SchemeGroupVersion.WithResource(mcsv1beta1.ServiceImportPluralName),
		mcsv1alpha1.SchemeGroupVersion.WithResource(mcsv1alpha1.ServiceImportPluralName),
	}
)

// APIs is what one apiserver serves of the MCS API group.
type APIs struct {
	served map[schema.GroupVersionResource]bool
}

// Preferred returns the first of versions (ExportVersions or ImportVersions) that is served.
func (a APIs) Preferred(versions []schema.GroupVersionResource) (schema.GroupVersionResource, bool) {
	for _, gvr := range versions {
		if a.served[gvr] {
			return gvr, true
		}
	}
	return schema.GroupVersionResource{}, false
}

// Serves reports whether gvr is served.
func (a APIs) Serves(gvr schema.GroupVersionResource) bool { return a.served[gvr] }

// Discover asks the apiserver which MCS versions it serves. A group version the apiserver does
// not know is simply not served; any other failure (the apiserver is unreachable, say) is
// returned with what could be learnt.
func Discover(d discovery.DiscoveryInterface) (APIs, error) {
	a := APIs{served: map[schema.GroupVersionResource]bool{}}
	var firstErr error
	for _, gv := range []schema.GroupVersion{mcsv1beta1.SchemeGroupVersion, mcsv1alpha1.SchemeGroupVersion} {
		list, err := d.ServerResourcesForGroupVersion(gv.String())
		if err != nil {
			if !apierrors.IsNotFound(err) && firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, r := range list.APIResources {
			a.served[gv.WithResource(r.Name)] = true
		}
	}
	return a, firstErr
}

// Supervise is the one loop that follows which MCS versions an apiserver serves (the CRDs may
// be installed, upgraded to v1beta1 or removed at any time): it calls observe with the result of
// Discover at once, then again after the wait observe returns, until ctx ends. What to do with a
// change (start, switch or stop informers) is the caller's.
func Supervise(ctx context.Context, d discovery.DiscoveryInterface, observe func(APIs, error) time.Duration) {
	for {
		wait := observe(Discover(d))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Handler calls f with every object added, updated or deleted (the last known state of a
// deleted object), for informers whose handlers only need the object.
func Handler(f func(obj any)) cache.ResourceEventHandlerFuncs {
	g := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		f(obj)
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: g, UpdateFunc: func(_, n any) { g(n) }, DeleteFunc: g}
}
