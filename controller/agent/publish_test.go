package agent

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// An import is found by the derived Service it names: the default one, or the one its
// annotation chooses; an invalid choice is not indexed (the controller then uses the default
// name, which the agent reports by its prefix).
func TestDerivedNameIndex(t *testing.T) {
	idx := derivedNameIndex("derived-")
	for _, tc := range []struct {
		ann  map[string]string
		want string
	}{
		{nil, "team/derived-api"},
		{map[string]string{mcs.AnnotationDerivedService: "api"}, "team/api"},
		{map[string]string{mcs.AnnotationDerivedService: "Not_A_Name"}, ""},
	} {
		si := &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "api", Annotations: tc.ann}}
		got, err := idx(si)
		if err != nil {
			t.Fatal(err)
		}
		if tc.want == "" {
			if _, derr := mcs.DerivedServiceOf("derived-", "team", "api", tc.ann); derr == nil {
				t.Fatalf("%v: DerivedServiceOf accepts it; the test expects an error", tc.ann)
			}
			if len(got) != 0 {
				t.Errorf("%v: indexed as %v, want nothing", tc.ann, got)
			}
			continue
		}
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%v: indexed as %v, want %s", tc.ann, got, tc.want)
		}
	}
}
