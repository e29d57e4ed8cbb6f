package controller

import (
	"encoding/json"
	"maps"
	"slices"
	"sort"
	"strings"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/coredns-mcs/coredns-mcs/internal/kube"
)

// Work layouts: how the objects written into an importer are grouped into Karmada Works.
//
// In the object layout every member object has a Work of its own: the derived Service, each
// mirrored slice, the automatic ServiceImport. In the bundle layout the derived Service and its
// slices travel in one Work per importer and service (the automatic ServiceImport, which must
// never overwrite a user's, and orphan Works stay apart): for the seed, one Work per importer
// instead of two, so half the objects for Karmada's webhook, its execution controller's queue
// and its status updates.
//
// Karmada's execution controller applies every manifest of a Work, deletes them all with the
// Work, and leaves an object in the member when a Work's manifest list stops naming it. So a
// slice leaving a bundle (its exporter gone or drained, the source slice deleted) first stays in
// it emptied, a tombstone, until the member holds it empty; then it is dropped from the bundle
// and the object, which no Work holds any more, is deleted through Karmada by adoptOrphans.
const (
	WorkLayoutObject = "object"
	WorkLayoutBundle = "bundle"
)

// maxTombstones bounds the emptied slices a bundle carries (an exporter churning its slices'
// names must not grow a Work without end); beyond it the oldest names go to adoptOrphans at once.
const maxTombstones = 16

// bundleInputs is what bundleWorks needs of the controller's state for one service.
type bundleInputs struct {
	// existing: the service's Works, by namespace/name.
	existing map[string]*workv1alpha1.Work
	// heldSource: an exporter whose slices stay as they are (its caches are unknown and the
	// drain policy does not withdraw them).
	heldSource func(cluster string) bool
	// emptiedIn: the importer holds the mirrored slice of that name, and it has no endpoints.
	emptiedIn func(cluster, ns, slice string) bool
}

// bundleWorks folds, per importer, the derived Service's Work and its slices' Works of desired
// into one Work (desired's order otherwise kept). A slice of the importer's existing bundle that
// is no longer desired stays: as it is when its exporter is held, emptied otherwise until the
// importer holds it empty.
func bundleWorks(ns, name string, desired []workObject, in bundleInputs) ([]workObject, error) {
	type group struct {
		svc    *workObject
		slices []workObject
	}
	groups := map[string]*group{} // importer cluster/derived Service name
	var order []string
	var out []workObject
	groupOf := func(cluster, derived string) *group {
		k := cluster + "/" + derived
		g := groups[k]
		if g == nil {
			g = &group{}
			groups[k] = g
			order = append(order, k)
		}
		return g
	}
	for i := range desired {
		w := &desired[i]
		m := w.manifest()
		switch {
		case len(w.manifests) != 1:
			out = append(out, *w)
		case m["kind"] == "Service":
			groupOf(w.cluster, metaName(m)).svc = w
		case m["kind"] == "EndpointSlice":
			g := groupOf(w.cluster, metaLabel(m, discoveryv1.LabelServiceName))
			g.slices = append(g.slices, *w)
		default:
			out = append(out, *w)
		}
	}
	for _, k := range order {
		g := groups[k]
		if g.svc == nil { // slices without their Service: not bundled (never desired so)
			out = append(out, g.slices...)
			continue
		}
		b, err := bundleOf(ns, *g.svc, g.slices, in)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// bundleName names the bundle of the derived Service Work svcName ("mcs-svc-…" → "mcs-imp-…":
// the same importer, service and chosen name). A bundle's own name (keptServiceWorks keeps a
// bundle's Service under it) stays.
func bundleName(svcName string) string {
	if strings.HasPrefix(svcName, "mcs-imp-") {
		return svcName
	}
	return "mcs-imp-" + strings.TrimPrefix(svcName, "mcs-svc-")
}

func bundleOf(ns string, svc workObject, slicesOf []workObject, in bundleInputs) (workObject, error) {
	b := workObject{namespace: svc.namespace, name: bundleName(svc.name), cluster: svc.cluster, sources: map[string]string{}}
	want := map[string]map[string]any{}
	for _, s := range slicesOf {
		n := metaName(s.manifest())
		want[n] = s.manifest()
		b.sources[n] = s.sourceCluster
	}
	// What the existing bundle carries that is no longer desired.
	var tombstones []string
	old := map[string]map[string]any{}
	if cur := in.existing[b.namespace+"/"+b.name]; cur != nil && cur.DeletionTimestamp == nil {
		var oldSources map[string]string
		_ = json.Unmarshal([]byte(cur.Annotations[annotationSources]), &oldSources)
		for _, m := range manifestsOf(cur) {
			n := metaName(m)
			if m["kind"] != "EndpointSlice" || want[n] != nil {
				continue
			}
			src := oldSources[n]
			switch {
			case src != "" && in.heldSource != nil && in.heldSource(src):
				want[n], b.sources[n] = m, src // held as it is
			case isEmptySlice(m) && in.emptiedIn != nil && in.emptiedIn(b.cluster, ns, n):
				// The member holds it empty: dropped, adoptOrphans deletes it.
			default:
				old[n] = emptied(m)
				b.sources[n] = src
				tombstones = append(tombstones, n)
			}
		}
	}
	sort.Strings(tombstones)
	if len(tombstones) > maxTombstones {
		for _, n := range tombstones[:len(tombstones)-maxTombstones] {
			delete(old, n)
			delete(b.sources, n)
		}
	}
	maps.Copy(want, old)
	b.manifests = append(b.manifests, svc.manifest())
	for _, n := range slices.Sorted(maps.Keys(want)) {
		b.manifests = append(b.manifests, want[n])
	}
	for n, src := range b.sources {
		if src == "" {
			delete(b.sources, n)
		}
	}
	raw, err := json.Marshal(struct {
		M []map[string]any
		S map[string]string
	}{b.manifests, b.sources})
	if err != nil {
		return workObject{}, err
	}
	b.hash = shortHash(string(raw), 16)
	return b, nil
}

// sourcesOfWork are the exporters whose endpoints a Work carries: its source label (a slice Work)
// or its sources annotation (a bundle).
func sourcesOfWork(w *workv1alpha1.Work) []string {
	var out []string
	if src := w.Labels[labelWorkCluster]; src != "" {
		out = append(out, src)
	}
	var m map[string]string
	if json.Unmarshal([]byte(w.Annotations[annotationSources]), &m) == nil {
		for _, src := range m {
			if !slices.Contains(out, src) {
				out = append(out, src)
			}
		}
	}
	return out
}

// bundle folds desired into bundles (bundleWorks) with what the controller knows of service o.
func (c *Controller) bundle(o *observation, desired []workObject) ([]workObject, error) {
	existing, err := c.worksOf(o.ns + "/" + o.name)
	if err != nil {
		return nil, err
	}
	byName := o.memberByName()
	return bundleWorks(o.ns, o.name, desired, bundleInputs{
		existing:   existing,
		heldSource: func(src string) bool { return c.sourceHeld(o, src) },
		emptiedIn: func(cluster, ns, slice string) bool {
			m := byName[cluster]
			if m == nil {
				return false
			}
			s, ok := kube.Cached[*discoveryv1.EndpointSlice](m.slices, ns+"/"+slice)
			return ok && len(s.Endpoints) == 0
		},
	})
}

func metaName(m map[string]any) string {
	md, _ := m["metadata"].(map[string]any)
	n, _ := md["name"].(string)
	return n
}

func metaLabel(m map[string]any, key string) string {
	md, _ := m["metadata"].(map[string]any)
	l, _ := md["labels"].(map[string]any)
	v, _ := l[key].(string)
	return v
}

func isEmptySlice(m map[string]any) bool {
	eps, _ := m["endpoints"].([]any)
	return len(eps) == 0
}

// emptied is a copy of slice manifest m without endpoints.
func emptied(m map[string]any) map[string]any {
	out := maps.Clone(m)
	out["endpoints"] = []any{}
	return out
}
