package mcs

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

func TestImportFromEitherVersion(t *testing.T) {
	for _, gv := range []string{"multicluster.x-k8s.io/v1alpha1", "multicluster.x-k8s.io/v1beta1"} {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": gv, "kind": "ServiceImport",
			"metadata": map[string]any{"name": "serve", "namespace": "default", "resourceVersion": "7"},
			"spec": map[string]any{"type": "ClusterSetIP", "ips": []any{"10.0.0.1"},
				"ports": []any{map[string]any{"name": "http", "port": int64(80), "protocol": "TCP"}}},
			"status": map[string]any{"clusters": []any{map[string]any{"cluster": "member1"}}},
		}}
		si := ImportFrom(u)
		if si.Name != "serve" || si.ResourceVersion != "7" || si.Spec.Type != mcsv1beta1.ClusterSetIP || len(si.Spec.IPs) != 1 ||
			len(si.Spec.Ports) != 1 || si.Spec.Ports[0].Port != 80 || len(si.Status.Clusters) != 1 {
			t.Errorf("%s: read %+v", gv, si)
		}
		if si.APIVersion != gv {
			t.Errorf("read as %q, want %q kept", si.APIVersion, gv)
		}
	}
}

// A member's object of the wrong shape costs only the fields that do not fit.
func TestImportFromMalformedKeepsTheRest(t *testing.T) {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
		"metadata": map[string]any{"name": "serve", "namespace": "default"},
		"spec": map[string]any{"type": "ClusterSetIP", "ips": "not-a-list",
			"ports": []any{map[string]any{"port": "eighty"}, map[string]any{"port": int64(81)}, "junk"}},
		"status": "junk",
	}}
	si := ImportFrom(u)
	if si.Name != "serve" || si.Spec.Type != mcsv1beta1.ClusterSetIP || si.Spec.IPs != nil {
		t.Errorf("read %+v", si)
	}
	if len(si.Spec.Ports) != 1 || si.Spec.Ports[0].Port != 81 {
		t.Errorf("ports %+v, want only the well-formed 81", si.Spec.Ports)
	}
	se := ExportFrom(&unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
		"metadata": map[string]any{"name": "serve", "namespace": "default"},
		"spec":     map[string]any{"exportedLabels": map[string]any{"a": "b"}, "exportedAnnotations": []any{int64(1)}},
	}})
	if se.Name != "serve" || se.Spec.ExportedLabels["a"] != "b" || se.Spec.ExportedAnnotations != nil {
		t.Errorf("read %+v", se)
	}
}

func TestUnstructuredV1alpha1DropsWhatItLacks(t *testing.T) {
	fam := "PreferClose"
	si := &mcsv1beta1.ServiceImport{Spec: mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.Headless, TrafficDistribution: &fam}}
	si.Name, si.Namespace = "serve", "default"
	si.Kind = "ServiceImport"
	u, err := Unstructured(si, mcsv1alpha1.SchemeGroupVersion)
	if err != nil {
		t.Fatal(err)
	}
	if u.GetAPIVersion() != "multicluster.x-k8s.io/v1alpha1" {
		t.Errorf("apiVersion %q", u.GetAPIVersion())
	}
	if _, found, _ := unstructured.NestedString(u.Object, "spec", "trafficDistribution"); found {
		t.Error("v1alpha1 import kept trafficDistribution")
	}
	u, _ = Unstructured(si, mcsv1beta1.SchemeGroupVersion)
	if v, _, _ := unstructured.NestedString(u.Object, "spec", "trafficDistribution"); v != fam {
		t.Errorf("v1beta1 import lost trafficDistribution: %v", u.Object["spec"])
	}
}
