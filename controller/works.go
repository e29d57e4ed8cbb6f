package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	"github.com/karmada-io/karmada/pkg/util/names"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// The Work applier: everything the controller writes into members goes through Karmada Works in
// karmada-es-<cluster>, one object per Work, and every quirk of Karmada's execution controller
// (v1.16) is handled here.

const (
	// ManagedBy is the endpointslice.kubernetes.io/managed-by value of the slices we write, and the
	// app.kubernetes.io/managed-by value of our Works and derived Services.
	ManagedBy = "mcs-controller.coredns-mcs.io"

	labelManagedBy      = "app.kubernetes.io/managed-by"
	labelSliceManagedBy = discoveryv1.LabelManagedBy
	// Labels on our Works, naming the exported service they serve.
	labelWorkNamespace = mcs.LabelWorkNamespace
	labelWorkName      = mcs.LabelWorkName
	labelWorkCluster   = mcs.LabelWorkCluster
	annotationHash     = "mcs.coredns-mcs.io/manifest-hash"
	// annotationSources: on a bundle Work, the exporter of each slice it carries (JSON: slice
	// name → Karmada cluster name).
	annotationSources = "mcs.coredns-mcs.io/slice-sources"

	// executionFinalizer is the finalizer Karmada's execution controller honours on Works
	// (Karmada's util.ExecutionControllerFinalizer).
	executionFinalizer = "karmada.io/execution-controller"
	// labelKarmadaManaged marks member objects Karmada may update and delete (Karmada's
	// util.ManagedByKarmadaLabel).
	labelKarmadaManaged = "karmada.io/managed"

	// ExecutionNamespacePrefix is Karmada's per-cluster namespace for Works.
	ExecutionNamespacePrefix = names.ExecutionSpacePrefix
)

// minWorkAge is how long a Work lives at least before it is deleted; maxWorkWait how long a Work
// Karmada has not reported on is kept before it is deleted anyway (see applyWorks).
const (
	minWorkAge  = 5 * time.Second
	maxWorkWait = time.Minute
)

// workObject is one desired Work: its namespace/name and the manifests it carries (one, or, for
// a bundle, the derived Service and its slices: bundle.go).
type workObject struct {
	namespace, name string
	cluster         string // the importing cluster
	sourceCluster   string // for slices: the exporter
	manifests       []map[string]any
	// sources: of a bundle, the exporter (Karmada cluster name) of each slice it carries.
	sources map[string]string
	hash    string
}

// workName names a Work in karmada-es-<importer>: "mcs-", the kind (svc, eps, si, orphan) and
// the service's name for people, then a hash of kind, namespace, name and source (for slices:
// the exporter and its slice) that makes it unique: team-a/api and team/a-api get different
// Works. (Until v0.x the name was mcs-<kind>-<ns>-<name>[-<hash of source>], which collided; such
// Works are retired by applyWorks.)
func workName(kind, ns, name, source string) string {
	readable := name
	if len(readable) > 200 {
		readable = readable[:200]
	}
	return "mcs-" + kind + "-" + readable + "-" + shortHash(kind+"/"+ns+"/"+name+"/"+source, 16)
}

// newWork renders obj as the single manifest of a Work for cluster. overwrite lets Karmada take
// over an existing object of that name (derived objects, orphans); without it Karmada refuses.
func newWork(cluster, name, source string, obj any, overwrite bool) (workObject, error) {
	raw, err := json.Marshal(obj)
	if err != nil {
		return workObject{}, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return workObject{}, err
	}
	// Never carry server-set fields. Derived objects belong to this controller (derived-* is the
	// reserved naming Karmada uses too): with overwrite, a leftover of an earlier Work is taken
	// over rather than left unmanaged, which is what Karmada does without the annotation.
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
		ann, _ := md["annotations"].(map[string]any)
		if ann == nil {
			ann = map[string]any{}
		}
		if overwrite {
			ann[workv1alpha2.ResourceConflictResolutionAnnotation] = workv1alpha2.ResourceConflictResolutionOverwrite
		}
		md["annotations"] = ann
		// Karmada deletes (and updates) member objects only when they carry its managed label.
		labels, _ := md["labels"].(map[string]any)
		if labels == nil {
			labels = map[string]any{}
		}
		labels[labelKarmadaManaged] = "true"
		md["labels"] = labels
	}
	delete(m, "status")
	raw, _ = json.Marshal(m)
	return workObject{
		namespace: ExecutionNamespacePrefix + cluster, name: name, cluster: cluster, sourceCluster: source,
		manifests: []map[string]any{m}, hash: shortHash(string(raw), 16),
	}, nil
}

// manifest is the first (for most Works the only) manifest.
func (w workObject) manifest() map[string]any {
	if len(w.manifests) == 0 {
		return nil
	}
	return w.manifests[0]
}

// objects names the member objects (cluster/kind/name) the Work describes.
func (w workObject) objects() []string {
	out := make([]string, 0, len(w.manifests))
	for _, m := range w.manifests {
		out = append(out, objectOf(w.cluster, m))
	}
	return out
}

// toWork renders the Work object of service ns/name.
func (w workObject) toWork(ns, name string) (*workv1alpha1.Work, error) {
	manifests := make([]workv1alpha1.Manifest, 0, len(w.manifests))
	for _, m := range w.manifests {
		raw, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		manifests = append(manifests, workv1alpha1.Manifest{RawExtension: runtime.RawExtension{Raw: raw}})
	}
	labels := map[string]string{labelManagedBy: ManagedBy, labelWorkNamespace: ns, labelWorkName: name}
	if w.sourceCluster != "" {
		labels[labelWorkCluster] = w.sourceCluster
	}
	annotations := map[string]string{annotationHash: w.hash}
	if len(w.sources) > 0 {
		raw, err := json.Marshal(w.sources)
		if err != nil {
			return nil, err
		}
		annotations[annotationSources] = string(raw)
	}
	return &workv1alpha1.Work{
		ObjectMeta: metav1.ObjectMeta{
			Name: w.name, Namespace: w.namespace,
			Labels:      labels,
			Annotations: annotations,
			// Karmada's execution controller deletes a Work's objects from the member before it
			// lets the Work go, but only for Works that carry its finalizer.
			Finalizers: []string{executionFinalizer},
		},
		Spec: workv1alpha1.WorkSpec{Workload: workv1alpha1.WorkloadTemplate{Manifests: manifests}},
	}, nil
}

// serviceOfWork is the service key (namespace/name) a Work of ours serves.
func serviceOfWork(w *workv1alpha1.Work) string {
	return w.Labels[labelWorkNamespace] + "/" + w.Labels[labelWorkName]
}

// worksOf returns our cached Works of service key, by namespace/name.
func (c *Controller) worksOf(key string) (map[string]*workv1alpha1.Work, error) {
	objs, err := c.works.GetIndexer().ByIndex(byServiceIndex, key)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*workv1alpha1.Work, len(objs))
	for _, o := range objs {
		w := o.(*workv1alpha1.Work)
		out[w.Namespace+"/"+w.Name] = w
	}
	return out, nil
}

// applyWorks makes the Works of service ns/name equal to desired: creates and updates what
// differs, deletes ours that are no longer desired (selected by our labels only) unless held. It
// returns which Works (namespace/name) Karmada reports as applied.
func (c *Controller) applyWorks(ctx context.Context, ns, name string, desired []workObject, held func(*workv1alpha1.Work) bool) (map[string]bool, error) {
	existing, err := c.worksOf(ns + "/" + name)
	if err != nil {
		return nil, err
	}
	applied := map[string]bool{}
	want := map[string]bool{}
	for _, w := range desired {
		k := w.namespace + "/" + w.name
		want[k] = true
		cur := existing[k]
		if cur != nil && cur.Annotations[annotationHash] == w.hash && cur.DeletionTimestamp == nil {
			applied[k], _ = workAppliedState(cur)
			continue
		}
		if cur != nil && cur.DeletionTimestamp != nil {
			continue // being deleted; recreated on the next pass
		}
		if err := c.writeWork(ctx, ns, name, w, cur); err != nil {
			return nil, err
		}
	}
	objects := map[string]string{} // member object (cluster/kind/name) → the desired Work holding it
	for _, w := range desired {
		for _, obj := range w.objects() {
			objects[obj] = w.namespace + "/" + w.name
		}
	}
	var wait time.Duration
	for k, w := range existing {
		if want[k] || w.DeletionTimestamp != nil || held(w) {
			continue
		}
		if by, ok := heldElsewhere(w, objects); ok {
			// Other desired Works hold its member objects (this one has an earlier name, or the
			// other layout: bundle.go): retired without touching the objects, once Karmada has
			// applied its successors. A Work that also holds objects no desired Work holds (a
			// bundle's tombstones, the Service of a name no longer chosen) first loses the
			// others (Karmada leaves an object a Work stops naming), and is deleted, with what
			// is left, on a later pass.
			if !allApplied(by, applied) {
				wait = max(wait, time.Second)
				continue
			}
			if rest := notHeld(w, objects); len(rest) > 0 {
				if err := c.shrinkWork(ctx, w, rest); err != nil {
					return nil, err
				}
				wait = max(wait, time.Second)
				continue
			}
			if err := c.retireWork(ctx, w); err != nil {
				return nil, err
			}
			continue
		}
		// Karmada's execution controller deletes a Work's object from the member only if its own
		// cache of that member already holds the object; for a Work applied a moment ago it may
		// not, and the object would be left behind, unmanaged. So a young or not yet applied
		// Work is first emptied (a slice loses its endpoints at once) and deleted a little later:
		// once Karmada reports it applied, or failed (nothing of it reached the member), or at
		// the latest after maxWorkWait (a member that stays unreachable); whatever is left then
		// is adopted (adoptOrphans) and deleted through Karmada.
		age := time.Since(w.CreationTimestamp.Time)
		if applied, known := workAppliedState(w); age < minWorkAge || (!applied && !known && age < maxWorkWait) {
			if err := c.emptyWork(ctx, w); err != nil {
				return nil, err
			}
			wait = max(wait, minWorkAge-age, time.Second)
			continue
		}
		err := c.karmada.WorkV1alpha1().Works(w.Namespace).Delete(ctx, w.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{UID: &w.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("delete Work %s: %w", k, err)
		}
		workWrites.WithLabelValues("delete").Inc()
	}
	if wait > 0 {
		c.enqueueAfter(ns+"/"+name, wait)
	}
	return applied, nil
}

// heldBy returns which of a service's existing Works must stay as they are although not desired:
// those written into a member whose caches are unknown (what it imports is unknown), those
// carrying the endpoints of an unknown member (what it exports is unknown) unless the drain
// policy withdraws them, and, while any such endpoints are held, the importers' derived Services
// and ServiceImports (the service may still be exported). Nothing is deleted on the strength of
// a cache that is not there.
// It also records in o.heldFor the unknown members that hold something of this service.
func (c *Controller) heldBy(o *observation) func(*workv1alpha1.Work) bool {
	if len(o.unknown) == 0 {
		return func(*workv1alpha1.Work) bool { return false }
	}
	existing, _ := c.worksOf(o.ns + "/" + o.name)
	heldSources := func(w *workv1alpha1.Work) []string {
		var out []string
		for _, src := range sourcesOfWork(w) {
			if c.sourceHeld(o, src) {
				out = append(out, src)
			}
		}
		return out
	}
	heldSource := func(w *workv1alpha1.Work) bool { return len(heldSources(w)) > 0 }
	anySource := false
	affected := map[string]bool{}
	for _, w := range existing {
		for _, src := range heldSources(w) {
			anySource = true
			affected[src] = true
		}
		if o.unknown[clusterOfWork(w)] {
			affected[clusterOfWork(w)] = true
		}
	}
	o.heldFor = slices.Sorted(maps.Keys(affected))
	return func(w *workv1alpha1.Work) bool {
		if o.unknown[clusterOfWork(w)] || heldSource(w) {
			return true
		}
		return anySource && (kindOf(w) == "Service" || kindOf(w) == "ServiceImport")
	}
}

// sourceHeld: exporter src's endpoints stay as they are in the importers: its caches are
// unknown (what it exports is unknown) and the drain policy does not withdraw them.
func (c *Controller) sourceHeld(o *observation, src string) bool {
	return o.unknown[src] && !c.drained(src)
}

// retireWork deletes a Work whose object another Work holds now, leaving the object in the
// member: without Karmada's execution finalizer, Karmada deletes nothing of it. The delete is
// conditional on the version without the finalizer (should Karmada add it back in between, the
// next reconcile tries again).
func (c *Controller) retireWork(ctx context.Context, w *workv1alpha1.Work) error {
	works := c.karmada.WorkV1alpha1().Works(w.Namespace)
	cur := w
	if slices.Contains(w.Finalizers, executionFinalizer) {
		out := w.DeepCopy()
		out.Finalizers = slices.DeleteFunc(out.Finalizers, func(f string) bool { return f == executionFinalizer })
		var err error
		if cur, err = works.Update(ctx, out, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("retire Work %s/%s: %w", w.Namespace, w.Name, err)
		}
		workWrites.WithLabelValues("update").Inc()
	}
	err := works.Delete(ctx, w.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &w.UID, ResourceVersion: &cur.ResourceVersion}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("retire Work %s/%s: %w", w.Namespace, w.Name, err)
	}
	workWrites.WithLabelValues("delete").Inc()
	klog.FromContext(ctx).V(1).Info("retired a Work another Work holds the object of", "work", w.Namespace+"/"+w.Name)
	return nil
}

// heldElsewhere returns the desired Works (namespace/name) that hold any of w's member objects.
func heldElsewhere(w *workv1alpha1.Work, objects map[string]string) ([]string, bool) {
	var by []string
	for _, m := range manifestsOf(w) {
		if k, ok := objects[objectOf(clusterOfWork(w), m)]; ok && !slices.Contains(by, k) {
			by = append(by, k)
		}
	}
	return by, len(by) > 0
}

// notHeld are the manifests of w that no desired Work holds.
func notHeld(w *workv1alpha1.Work, objects map[string]string) []workv1alpha1.Manifest {
	var out []workv1alpha1.Manifest
	for _, raw := range w.Spec.Workload.Manifests {
		var m map[string]any
		if json.Unmarshal(raw.Raw, &m) != nil {
			continue
		}
		if _, ok := objects[objectOf(clusterOfWork(w), m)]; !ok {
			out = append(out, raw)
		}
	}
	return out
}

// shrinkWork leaves in Work w only the manifests keep; the objects of the others stay in the
// member, for the Works that hold them now.
func (c *Controller) shrinkWork(ctx context.Context, w *workv1alpha1.Work, keep []workv1alpha1.Manifest) error {
	out := w.DeepCopy()
	out.Spec.Workload.Manifests = keep
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[annotationHash] = "shrunk"
	if _, err := c.karmada.WorkV1alpha1().Works(w.Namespace).Update(ctx, out, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("shrink Work %s/%s: %w", w.Namespace, w.Name, err)
	}
	workWrites.WithLabelValues("update").Inc()
	klog.FromContext(ctx).V(1).Info("kept in a Work only the objects no other Work holds", "work", w.Namespace+"/"+w.Name, "left", len(keep))
	return nil
}

func allApplied(works []string, applied map[string]bool) bool {
	for _, k := range works {
		if !applied[k] {
			return false
		}
	}
	return true
}

// objectOf names the member object a manifest describes: cluster/kind/name.
func objectOf(cluster string, manifest map[string]any) string {
	md, _ := manifest["metadata"].(map[string]any)
	return fmt.Sprintf("%s/%v/%v", cluster, manifest["kind"], md["name"])
}

// kindOf is the kind of a Work's manifest.
func kindOf(w *workv1alpha1.Work) string {
	k, _ := manifestOf(w)["kind"].(string)
	return k
}

// writeWork creates desired Work w of service ns/name, or updates cur to it.
func (c *Controller) writeWork(ctx context.Context, ns, name string, w workObject, cur *workv1alpha1.Work) error {
	obj, err := w.toWork(ns, name)
	if err != nil {
		return err
	}
	works := c.karmada.WorkV1alpha1().Works(w.namespace)
	if cur == nil {
		if _, err := works.Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create Work %s/%s: %w", w.namespace, w.name, err)
		}
		workWrites.WithLabelValues("create").Inc()
		return nil
	}
	obj.ResourceVersion = cur.ResourceVersion
	obj.Finalizers = cur.Finalizers
	if !slices.Contains(obj.Finalizers, executionFinalizer) {
		obj.Finalizers = append(slices.Clone(obj.Finalizers), executionFinalizer)
	}
	// Keep labels others (Karmada's webhook) added.
	labels := map[string]string{}
	for lk, lv := range cur.Labels {
		labels[lk] = lv
	}
	for lk, lv := range obj.Labels {
		labels[lk] = lv
	}
	obj.Labels = labels
	if _, err := works.Update(ctx, obj, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("update Work %s/%s: %w", w.namespace, w.name, err)
	}
	workWrites.WithLabelValues("update").Inc()
	return nil
}

// emptyWork removes the endpoints from the EndpointSlices of a Work that is about to go, once.
func (c *Controller) emptyWork(ctx context.Context, w *workv1alpha1.Work) error {
	changed := false
	manifests := make([]workv1alpha1.Manifest, 0, len(w.Spec.Workload.Manifests))
	for _, raw := range w.Spec.Workload.Manifests {
		var m map[string]any
		if json.Unmarshal(raw.Raw, &m) == nil && m["kind"] == "EndpointSlice" {
			if eps, ok := m["endpoints"].([]any); ok && len(eps) > 0 {
				m["endpoints"] = []any{}
				b, err := json.Marshal(m)
				if err != nil {
					return err
				}
				raw = workv1alpha1.Manifest{RawExtension: runtime.RawExtension{Raw: b}}
				changed = true
			}
		}
		manifests = append(manifests, raw)
	}
	if !changed {
		return nil // already empty, or no slices
	}
	out := w.DeepCopy()
	out.Spec.Workload.Manifests = manifests
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[annotationHash] = "emptied"
	if _, err := c.karmada.WorkV1alpha1().Works(w.Namespace).Update(ctx, out, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("empty Work %s/%s: %w", w.Namespace, w.Name, err)
	}
	workWrites.WithLabelValues("update").Inc()
	return nil
}

// workAppliedState reports whether Karmada applied a Work, and whether it has said so either way
// (Applied True or False).
func workAppliedState(w *workv1alpha1.Work) (applied, known bool) {
	cond := meta.FindStatusCondition(w.Status.Conditions, workv1alpha1.WorkApplied)
	if cond == nil {
		return false, false
	}
	return cond.Status == metav1.ConditionTrue, cond.Status != metav1.ConditionUnknown
}

// manifestOf decodes the first (for most Works the only) manifest of a Work (nil if none).
func manifestOf(w *workv1alpha1.Work) map[string]any {
	if ms := manifestsOf(w); len(ms) > 0 {
		return ms[0]
	}
	return nil
}

// manifestsOf decodes every manifest of a Work (those that do not decode are left out).
func manifestsOf(w *workv1alpha1.Work) []map[string]any {
	out := make([]map[string]any, 0, len(w.Spec.Workload.Manifests))
	for _, raw := range w.Spec.Workload.Manifests {
		var m map[string]any
		if json.Unmarshal(raw.Raw, &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// clusterOfWork is the member a Work is applied to.
func clusterOfWork(w *workv1alpha1.Work) string {
	return strings.TrimPrefix(w.Namespace, ExecutionNamespacePrefix)
}
