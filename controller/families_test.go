package controller

import (
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

func TestImportFamilies(t *testing.T) {
	v4, v6 := corev1.IPv4Protocol, corev1.IPv6Protocol
	for _, tc := range []struct {
		want, have, got []corev1.IPFamily
		none            bool
	}{
		{want: []corev1.IPFamily{v6, v4}, have: []corev1.IPFamily{v4}, got: []corev1.IPFamily{v4}},
		{want: []corev1.IPFamily{v6, v4}, have: []corev1.IPFamily{v4, v6}, got: []corev1.IPFamily{v6, v4}}, // the export's order
		{want: []corev1.IPFamily{v6}, have: []corev1.IPFamily{v4}, got: []corev1.IPFamily{}, none: true},
		{want: nil, have: []corev1.IPFamily{v4}, got: nil}, // export's families unknown
		{want: []corev1.IPFamily{v6}, have: nil, got: nil}, // importer's unknown: no restriction
	} {
		got := importFamilies(tc.want, tc.have)
		if !slices.Equal(got, tc.got) || (got != nil && len(got) == 0) != tc.none {
			t.Errorf("importFamilies(%v, %v) = %#v, want %#v", tc.want, tc.have, got, tc.got)
		}
	}
	// An importer that shares none gets no Works and its own reason; one that shares some has
	// its derived Service's primary family among them.
	exp := svc(corev1.ServicePort{Name: "http", Port: 80})
	exp.Spec.IPFamilies = []corev1.IPFamily{v6, v4}
	policy := corev1.IPFamilyPolicyRequireDualStack
	exp.Spec.IPFamilyPolicy = &policy
	ex := []exporter{{cluster: "member1", clusterID: "member1", service: exp}}
	works, err := desiredWorks("default", "serve", "derived-", ex, []importer{
		{cluster: "member2", name: "derived-serve", families: []corev1.IPFamily{v4}},
		{cluster: "member3", name: "derived-serve", families: []corev1.IPFamily{}, noFamily: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(works) != 1 || works[0].cluster != "member2" {
		t.Fatalf("works %+v, want member2's derived Service only", works)
	}
	spec := works[0].manifest()["spec"].(map[string]any)
	// The slices follow the importer's families: an IPv6 slice goes only where IPv6 is served.
	v6slice := srcSlice("serve-v6", "", "fd00:1::5")
	v6slice.AddressType = discoveryv1.AddressTypeIPv6
	ex[0].slices = []*discoveryv1.EndpointSlice{srcSlice("serve-v4", "", "10.10.0.5"), v6slice}
	byCluster := map[string]int{}
	all, err := desiredWorks("default", "serve", "derived-", ex, []importer{
		{cluster: "member2", name: "derived-serve", families: []corev1.IPFamily{v4}, served: []corev1.IPFamily{v4}},
		{cluster: "member1", name: "derived-serve", families: []corev1.IPFamily{v6, v4}, served: []corev1.IPFamily{v4, v6}},
		{cluster: "member9", name: "derived-serve"}, // families unknown
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range all {
		if w.manifest()["kind"] == "EndpointSlice" {
			byCluster[w.cluster]++
		}
	}
	if byCluster["member2"] != 1 || byCluster["member1"] != 2 || byCluster["member9"] != 2 {
		t.Errorf("mirrored slices per importer %v, want member2 1 (IPv4), member1 2, member9 2", byCluster)
	}
	if fams := spec["ipFamilies"].([]any); len(fams) != 1 || fams[0] != "IPv4" {
		t.Errorf("member2's derived Service ipFamilies %v, want [IPv4]", fams)
	}
	// A dual-stack importer's derived Service names both families, the export's primary first:
	// what the apiserver gives a PreferDualStack Service there, so applying it again is valid.
	// Where the importer's families are unknown, the primary only. (member2 serves IPv4 only.)
	for _, w := range all {
		if w.manifest()["kind"] != "Service" {
			continue
		}
		spec := w.manifest()["spec"].(map[string]any)
		got := fmt.Sprint(spec["ipFamilies"], " ", spec["ipFamilyPolicy"])
		want := map[string]string{"member1": "[IPv6 IPv4] PreferDualStack", "member2": "[IPv4] PreferDualStack", "member9": "[IPv6] PreferDualStack"}[w.cluster]
		if got != want {
			t.Errorf("%s: derived Service ipFamilies and policy %s, want %s", w.cluster, got, want)
		}
	}
	// A single-family export that prefers dual-stack (its cluster has one family) imported into a
	// dual-stack member: the derived Service names the importer's second family too, as the
	// apiserver assigns it.
	one := svc(corev1.ServicePort{Name: "http", Port: 80})
	one.Spec.IPFamilies = []corev1.IPFamily{v4}
	prefer := corev1.IPFamilyPolicyPreferDualStack
	one.Spec.IPFamilyPolicy = &prefer
	ws, err := desiredWorks("default", "serve", "derived-", []exporter{{cluster: "member2", clusterID: "member2", service: one}}, []importer{
		{cluster: "member1", name: "derived-serve", families: []corev1.IPFamily{v4}, served: []corev1.IPFamily{v4, v6}},
	})
	if err != nil || len(ws) != 1 {
		t.Fatalf("works %v, %v", ws, err)
	}
	if spec := ws[0].manifest()["spec"].(map[string]any); fmt.Sprint(spec["ipFamilies"]) != "[IPv4 IPv6]" {
		t.Errorf("derived Service of a single-family PreferDualStack export in a dual-stack member: ipFamilies %v, want [IPv4 IPv6]", spec["ipFamilies"])
	}
}
