package mcs

import (
	"strings"
	"testing"
)

func TestDerivedServiceName(t *testing.T) {
	long := strings.Repeat("a", 60)
	tests := []struct {
		prefix, ns, name string
		want             string
	}{
		{"derived-", "default", "serve", "derived-serve"},
		{"mcs-", "default", "serve", "mcs-serve"},
		{"derived-", "default", strings.Repeat("b", 55), "derived-" + strings.Repeat("b", 55)},
	}
	for _, tc := range tests {
		if got := DerivedServiceName(tc.prefix, tc.ns, tc.name); got != tc.want {
			t.Errorf("DerivedServiceName(%q, %q, %q) = %q, want %q", tc.prefix, tc.ns, tc.name, got, tc.want)
		}
	}

	h1 := DerivedServiceName("derived-", "ns1", long)
	h2 := DerivedServiceName("derived-", "ns2", long)
	if len(h1) > 63 || !strings.HasPrefix(h1, "derived-") || len(h1) != len("derived-")+10 {
		t.Errorf("hashed name %q: want derived- and 10 hash characters", h1)
	}
	if h1 == h2 {
		t.Errorf("hashed names of different namespaces collide: %q", h1)
	}
	if h1 != DerivedServiceName("derived-", "ns1", long) {
		t.Errorf("hashed name is not stable")
	}
	if strings.ToLower(h1) != h1 {
		t.Errorf("hashed name %q is not lower case", h1)
	}
}

func TestReservedKeys(t *testing.T) {
	for key, want := range map[string]bool{
		"team":                                       false,
		"example.com/owner":                          false,
		"app.kubernetes.io/name":                     false, // the recommended labels are the user's
		"kubernetes.io/service-name":                 true,
		"k8s.io/x":                                   true,
		"karmada.io/managed":                         true,
		"work.karmada.io/conflict-resolution":        true,
		"propagationpolicy.karmada.io/name":          true,
		"Work.Karmada.IO/x":                          true,
		"multicluster.kubernetes.io/derived-service": true,
		"multicluster.x-k8s.io/anything":             true,
		"notkarmada.io/x":                            false,
	} {
		if got := ReservedKey(key); got != want {
			t.Errorf("ReservedKey(%q) = %v, want %v", key, got, want)
		}
	}
	in := map[string]string{"team": "web", "work.karmada.io/conflict-resolution": "overwrite", "multicluster.kubernetes.io/derived-service": "kubernetes"}
	out, dropped := WithoutReserved(in)
	if len(out) != 1 || out["team"] != "web" || strings.Join(dropped, ",") != "multicluster.kubernetes.io/derived-service,work.karmada.io/conflict-resolution" {
		t.Errorf("WithoutReserved = %v, dropped %v", out, dropped)
	}
	if len(in) != 3 {
		t.Error("WithoutReserved changed its input")
	}
}

func TestDerivedServiceOf(t *testing.T) {
	for _, tc := range []struct {
		ann     map[string]string
		want    string
		wantErr bool
	}{
		{nil, "derived-serve", false},
		{map[string]string{AnnotationDerivedService: "serve"}, "serve", false},
		{map[string]string{AnnotationDerivedService: "serve-from-afar"}, "serve-from-afar", false},
		{map[string]string{AnnotationDerivedService: "Not_A_Name"}, "derived-serve", true},
		{map[string]string{AnnotationDerivedService: "1abc"}, "derived-serve", true},
	} {
		got, err := DerivedServiceOf(DefaultDerivedPrefix, "default", "serve", tc.ann)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%v: %q, %v; want %q (error %v)", tc.ann, got, err, tc.want, tc.wantErr)
		}
	}
}
