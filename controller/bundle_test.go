package controller

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// bundleFixture: serve exported by member1 (slices a, b) and member3 (slice c), imported by
// member2 with the user's template and by member4 automatically.
func bundleFixture(t *testing.T, member1Slices ...string) []workObject {
	t.Helper()
	var s1 []*discoveryv1.EndpointSlice
	for i, n := range member1Slices {
		s1 = append(s1, srcSlice(n, "", "10.10.0."+string(rune('1'+i))))
	}
	port := corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP}
	ex := []exporter{
		{cluster: "member1", clusterID: "member1", service: svc(port), slices: s1},
		{cluster: "member3", clusterID: "member3", service: svc(port), slices: []*discoveryv1.EndpointSlice{srcSlice("c", "", "10.14.0.1")}},
	}
	ip := &corev1.Service{Spec: corev1.ServiceSpec{ClusterIP: "10.13.0.9", ClusterIPs: []string{"10.13.0.9"}}}
	im := []importer{{cluster: "member2", ports: []corev1.ServicePort{port}},
		{cluster: "member4", auto: true, siGVR: mcs.ImportVersions[1], derived: ip}}
	works, err := desiredWorks("default", "serve", mcs.DefaultDerivedPrefix, ex, im)
	if err != nil {
		t.Fatal(err)
	}
	return works
}

// asWork is the Work applyWorks would have written of w.
func asWork(t *testing.T, w workObject) *workv1alpha1.Work {
	t.Helper()
	out, err := w.toWork("default", "serve")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func bundleIn(t *testing.T, works []workObject, cluster string) workObject {
	t.Helper()
	for _, w := range works {
		if w.cluster == cluster && len(w.manifests) > 1 {
			return w
		}
	}
	t.Fatalf("no bundle for %s in %d works", cluster, len(works))
	return workObject{}
}

// sliceState is "name:endpoints" for every slice a bundle carries.
func sliceState(w workObject) []string {
	var out []string
	for _, m := range w.manifests[1:] {
		eps, _ := m["endpoints"].([]any)
		out = append(out, metaName(m)+":"+string(rune('0'+len(eps))))
	}
	return out
}

func TestBundleWorksGroupsPerImporter(t *testing.T) {
	desired := bundleFixture(t, "a", "b")
	got, err := bundleWorks("default", "serve", desired, bundleInputs{})
	if err != nil {
		t.Fatal(err)
	}
	// member2: one bundle. member4: one bundle and its automatic ServiceImport, apart.
	kinds := map[string][]string{}
	for _, w := range got {
		var ks []string
		for _, m := range w.manifests {
			ks = append(ks, m["kind"].(string))
		}
		kinds[w.cluster] = append(kinds[w.cluster], w.name[:8]+"="+joinKinds(ks))
	}
	if len(got) != 3 || len(kinds["member2"]) != 1 || len(kinds["member4"]) != 2 {
		t.Fatalf("works %v, want a bundle per importer and member4's ServiceImport apart", kinds)
	}
	b := bundleIn(t, got, "member2")
	if b.manifest()["kind"] != "Service" || len(b.manifests) != 4 {
		t.Fatalf("member2 bundle %v, want the Service then 3 slices", kinds["member2"])
	}
	if b.name != bundleName(workName("svc", "default", "serve", "")) || b.namespace != "karmada-es-member2" {
		t.Errorf("bundle %s/%s", b.namespace, b.name)
	}
	if len(b.sources) != 3 || b.sources[metaName(b.manifests[3])] != "member3" {
		t.Errorf("sources %v", b.sources)
	}
	w := asWork(t, b)
	if srcs := sourcesOfWork(w); len(srcs) != 2 || !slices.Contains(srcs, "member1") || !slices.Contains(srcs, "member3") {
		t.Errorf("sourcesOfWork %v, want member1 and member3", srcs)
	}
	if len(manifestsOf(w)) != 4 {
		t.Errorf("Work carries %d manifests", len(manifestsOf(w)))
	}
	again, _ := bundleWorks("default", "serve", desired, bundleInputs{})
	if bundleIn(t, again, "member2").hash != b.hash {
		t.Error("the same input hashes differently")
	}
}

func joinKinds(ks []string) string {
	out := ""
	for i, k := range ks {
		if i > 0 {
			out += ","
		}
		out += k
	}
	return out
}

// A slice that leaves the bundle stays in it emptied until the importer holds it empty; a held
// exporter's slices stay as they are; tombstones are bounded.
func TestBundleWorksTombstonesAndHeld(t *testing.T) {
	before, _ := bundleWorks("default", "serve", bundleFixture(t, "a", "b"), bundleInputs{})
	cur := asWork(t, bundleIn(t, before, "member2"))
	existing := map[string]*workv1alpha1.Work{cur.Namespace + "/" + cur.Name: cur}
	var nameB string // the mirrored slice of member1's source slice b
	for n := range bundleIn(t, before, "member2").sources {
		if bundleNameOfSource(t, before, n) == "b" {
			nameB = n
		}
	}
	if nameB == "" {
		t.Fatal("no mirrored slice of b")
	}

	// b is gone from member1: a tombstone, emptied.
	after, _ := bundleWorks("default", "serve", bundleFixture(t, "a"), bundleInputs{existing: existing,
		emptiedIn: func(string, string, string) bool { return false }})
	st := sliceState(bundleIn(t, after, "member2"))
	if !slices.Contains(st, nameB+":0") || len(st) != 3 {
		t.Fatalf("after b left: %v, want b's slice kept emptied", st)
	}
	if bundleIn(t, after, "member2").hash == bundleIn(t, before, "member2").hash {
		t.Error("emptying did not change the hash")
	}
	// Once member2 holds it empty, it leaves the bundle (adoptOrphans deletes it).
	cur2 := asWork(t, bundleIn(t, after, "member2"))
	existing2 := map[string]*workv1alpha1.Work{cur2.Namespace + "/" + cur2.Name: cur2}
	gone, _ := bundleWorks("default", "serve", bundleFixture(t, "a"), bundleInputs{existing: existing2,
		emptiedIn: func(cluster, ns, slice string) bool { return cluster == "member2" && slice == nameB }})
	if st := sliceState(bundleIn(t, gone, "member2")); slices.Contains(st, nameB+":0") || len(st) != 2 {
		t.Errorf("after member2 holds it empty: %v, want it dropped", st)
	}

	// member1 unknown (held): its slices stay with their endpoints although not desired.
	held, _ := bundleWorks("default", "serve", bundleFixture(t), bundleInputs{existing: existing,
		heldSource: func(src string) bool { return src == "member1" }})
	if st := sliceState(bundleIn(t, held, "member2")); len(st) != 3 || slices.Contains(st, nameB+":0") {
		t.Errorf("member1 held: %v, want its two slices with their endpoints", st)
	}
}

// bundleNameOfSource maps a mirrored slice name back to its source slice's name through the
// manifests' endpoints (the fixture gives each source slice its own address).
func bundleNameOfSource(t *testing.T, works []workObject, mirrored string) string {
	t.Helper()
	for _, m := range bundleIn(t, works, "member2").manifests[1:] {
		if metaName(m) != mirrored {
			continue
		}
		eps, _ := m["endpoints"].([]any)
		if len(eps) == 0 {
			return ""
		}
		addr := eps[0].(map[string]any)["addresses"].([]any)[0]
		switch addr {
		case "10.10.0.1":
			return "a"
		case "10.10.0.2":
			return "b"
		}
	}
	return ""
}

func TestBundleWorksTombstonesBounded(t *testing.T) {
	var many []string
	for i := 0; i < maxTombstones+5; i++ {
		many = append(many, "s"+string(rune('a'+i)))
	}
	before, _ := bundleWorks("default", "serve", bundleFixture(t, many...), bundleInputs{})
	cur := asWork(t, bundleIn(t, before, "member2"))
	after, _ := bundleWorks("default", "serve", bundleFixture(t), bundleInputs{
		existing: map[string]*workv1alpha1.Work{cur.Namespace + "/" + cur.Name: cur}})
	empties := 0
	for _, s := range sliceState(bundleIn(t, after, "member2")) {
		if s[len(s)-2:] == ":0" {
			empties++
		}
	}
	if empties != maxTombstones {
		t.Errorf("%d tombstones, want %d", empties, maxTombstones)
	}
}

// A Work written in one layout is retired (its objects left in place) once the other layout's
// Works holding them are applied.
func TestHeldElsewhere(t *testing.T) {
	objectWorks := bundleFixture(t, "a")
	bundled, _ := bundleWorks("default", "serve", objectWorks, bundleInputs{})
	objects := map[string]string{}
	for _, w := range bundled {
		for _, o := range w.objects() {
			objects[o] = w.namespace + "/" + w.name
		}
	}
	for _, w := range objectWorks {
		if w.cluster != "member2" {
			continue
		}
		by, ok := heldElsewhere(asWork(t, w), objects)
		if !ok || len(by) != 1 || by[0] != "karmada-es-member2/"+bundleIn(t, bundled, "member2").name {
			t.Errorf("%s held by %v, want member2's bundle", w.name, by)
		}
		if allApplied(by, map[string]bool{}) || !allApplied(by, map[string]bool{by[0]: true}) {
			t.Error("allApplied")
		}
	}
	// Back: the bundle's objects are held by the object layout's Works.
	objects = map[string]string{}
	for _, w := range objectWorks {
		for _, o := range w.objects() {
			objects[o] = w.namespace + "/" + w.name
		}
	}
	by, ok := heldElsewhere(asWork(t, bundleIn(t, bundled, "member2")), objects)
	if !ok || len(by) != 3 {
		t.Errorf("bundle held by %v, want the Service Work and two slice Works", by)
	}
}

// A bundle's Service kept alone (no valid export: keptServiceWorks) is bundled under the same
// name, its slices emptied.
func TestBundleOfKeptService(t *testing.T) {
	before, _ := bundleWorks("default", "serve", bundleFixture(t, "a"), bundleInputs{})
	b := bundleIn(t, before, "member2")
	cur := asWork(t, b)
	kept := workObject{namespace: b.namespace, name: b.name, cluster: b.cluster, manifests: b.manifests[:1]}
	after, err := bundleWorks("default", "serve", []workObject{kept}, bundleInputs{existing: map[string]*workv1alpha1.Work{cur.Namespace + "/" + cur.Name: cur}})
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 1 || after[0].name != b.name {
		t.Fatalf("kept bundle %v, want %s", after, b.name)
	}
	if st := sliceState(after[0]); len(st) != 2 || st[0][len(st[0])-2:] != ":0" || st[1][len(st[1])-2:] != ":0" {
		t.Errorf("kept bundle's slices %v, want both emptied", st)
	}
}

// A bundle whose Service and live slice the object layout's Works hold, but not its tombstone,
// keeps only the tombstone before it goes (notHeld).
func TestNotHeld(t *testing.T) {
	before, _ := bundleWorks("default", "serve", bundleFixture(t, "a", "b"), bundleInputs{})
	cur := asWork(t, bundleIn(t, before, "member2"))
	after, _ := bundleWorks("default", "serve", bundleFixture(t, "a"), bundleInputs{
		existing: map[string]*workv1alpha1.Work{cur.Namespace + "/" + cur.Name: cur}})
	bundle := asWork(t, bundleIn(t, after, "member2")) // Service, a, c, and b emptied
	objects := map[string]string{}
	for _, w := range bundleFixture(t, "a") { // the object layout, without b
		for _, o := range w.objects() {
			objects[o] = w.namespace + "/" + w.name
		}
	}
	rest := notHeld(bundle, objects)
	if len(rest) != 1 {
		t.Fatalf("%d manifests not held, want b's tombstone alone", len(rest))
	}
	if by, ok := heldElsewhere(bundle, objects); !ok || len(by) != 3 {
		t.Errorf("held by %v, want the Service Work and the slice Works of a and c", by)
	}
}
