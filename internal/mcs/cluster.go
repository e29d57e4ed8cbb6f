package mcs

import (
	"context"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// What a cluster says about itself: its cluster id (KEP-2149) and the IP families of its
// Service CIDRs. Read by the controller from Push members and by the agent in Pull members.

// ClusterPropertyGVR is the KEP-2149 ClusterProperty resource.
var ClusterPropertyGVR = schema.GroupVersionResource{Group: "about.k8s.io", Version: "v1alpha1", Resource: "clusterproperties"}

// ClusterIDProperty is the ClusterProperty naming a cluster within its clusterset.
const ClusterIDProperty = "cluster.clusterset.k8s.io"

// ReadClusterID reads a cluster's id: its ClusterProperty's value, fallback (its Karmada name)
// where there is none. An error means it could not be read.
func ReadClusterID(ctx context.Context, dyn dynamic.Interface, fallback string) (string, error) {
	cp, err := dyn.Resource(ClusterPropertyGVR).Get(ctx, ClusterIDProperty, metav1.GetOptions{})
	switch {
	case err == nil:
		if v, _, _ := unstructured.NestedString(cp.Object, "spec", "value"); v != "" {
			return v, nil
		}
		return fallback, nil
	case apierrors.IsNotFound(err): // no such object, or no ClusterProperty CRD
		return fallback, nil
	}
	return "", err
}

// ReadFamilies returns the IP families of a cluster's ServiceCIDRs (networking.k8s.io/v1,
// Kubernetes ≥ 1.33), sorted; nil when the API is not served. An error means they could not
// be read.
func ReadFamilies(ctx context.Context, kube kubernetes.Interface) ([]corev1.IPFamily, error) {
	list, err := kube.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	var families []corev1.IPFamily
	for _, sc := range list.Items {
		if sc.DeletionTimestamp != nil {
			continue
		}
		for _, cidr := range sc.Spec.CIDRs {
			p, err := netip.ParsePrefix(cidr)
			if err != nil {
				continue
			}
			f := corev1.IPv4Protocol
			if !p.Addr().Is4() {
				f = corev1.IPv6Protocol
			}
			if !slices.Contains(families, f) {
				families = append(families, f)
			}
		}
	}
	slices.Sort(families)
	return families, nil
}
