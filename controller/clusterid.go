package controller

import (
	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"
)

// The cluster id: what other clusters see as a member's name (the source-cluster label of its
// mirrored slices, per-pod DNS names, status.clusters of imports).

var clusterPropertyGVR = schema.GroupVersionResource{Group: "about.k8s.io", Version: "v1alpha1", Resource: "clusterproperties"}

// clusterIDProperty is the KEP-2149 ClusterProperty naming a cluster within its clusterset.
const clusterIDProperty = "cluster.clusterset.k8s.io"

// clusterID is the member's ClusterProperty cluster.clusterset.k8s.io, else its Karmada name.
func (m *member) clusterID(ctx context.Context) string {
	cp, err := m.dyn.Resource(clusterPropertyGVR).Get(ctx, clusterIDProperty, metav1.GetOptions{})
	if err == nil {
		if v, _, _ := unstructured.NestedString(cp.Object, "spec", "value"); v != "" {
			return v
		}
	} else if !apierrors.IsNotFound(err) { // NotFound: no such object, or no ClusterProperty CRD
		klog.FromContext(ctx).V(2).Info("reading ClusterProperty", "cluster", m.name, "err", err)
	}
	return m.name
}
