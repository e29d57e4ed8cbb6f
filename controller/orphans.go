package controller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// adoptOrphans finds derived objects of service ns/name in the members that carry our labels but
// that no Work describes (left behind by a Karmada race, see applyWorks, or by a Work deleted by
// hand) and are not desired: each gets a Work holding it, which Karmada applies and, being
// undesired, applyWorks deletes once applied, so the object goes through Karmada like any other.
// derivedIn names the derived Service in a member (an importer may have chosen its name).
func (c *Controller) adoptOrphans(ctx context.Context, ns, name string, members []*member, desired []workObject, derivedIn func(string) string) error {
	covered, err := c.coveredObjects(ns+"/"+name, desired)
	if err != nil {
		return err
	}
	for _, m := range members {
		for _, o := range c.orphansIn(m, ns, name, derivedIn(m.name), covered) {
			if time.Since(o.GetCreationTimestamp().Time) < minWorkAge {
				c.enqueueAfter(ns+"/"+name, minWorkAge)
				continue // may be a Work's object that our Work cache has not caught up with
			}
			w, err := newWork(m.name, workName("orphan", ns, name, fmt.Sprintf("%T/%s", o, o.GetName())), "", c.orphanManifest(o), true)
			if err != nil {
				return err
			}
			klog.FromContext(ctx).Info("adopting a derived object no Work holds, to delete it through Karmada",
				"cluster", m.name, "object", o.GetNamespace()+"/"+o.GetName(), "kind", fmt.Sprintf("%T", o))
			obj, err := w.toWork(ns, name)
			if err != nil {
				return err
			}
			if _, err := c.karmada.WorkV1alpha1().Works(w.namespace).Create(ctx, obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("create Work %s/%s for an orphan: %w", w.namespace, w.name, err)
			}
			workWrites.WithLabelValues("create").Inc()
		}
	}
	return nil
}

// coveredObjects are the member objects (cluster/kind/name) a desired or existing Work holds.
func (c *Controller) coveredObjects(key string, desired []workObject) (map[string]bool, error) {
	covered := map[string]bool{}
	for _, w := range desired {
		for _, obj := range w.objects() {
			covered[obj] = true
		}
	}
	existing, err := c.worksOf(key)
	if err != nil {
		return nil, err
	}
	for _, w := range existing {
		for _, m := range manifestsOf(w) {
			covered[objectOf(clusterOfWork(w), m)] = true
		}
	}
	return covered, nil
}

// orphansIn lists the derived objects of ns/name in m that carry our labels and no Work covers.
// Both the default derived name and the one chosen in m (chosen) are looked at.
func (c *Controller) orphansIn(m *member, ns, name, chosen string, covered map[string]bool) []metav1.Object {
	names := []string{mcs.DerivedServiceName(c.opts.DerivedPrefix, ns, name)}
	if chosen != names[0] {
		names = append(names, chosen)
	}
	var orphans []metav1.Object
	for i, derived := range names {
		// A chosen name may be another import's choice too: only what names this service.
		ofThis := func(labels map[string]string) bool { return i == 0 || labels[mcs.LabelServiceName] == name }
		if svc, ok := m.service(ns + "/" + derived); ok && svc.Labels[labelManagedBy] == ManagedBy && ofThis(svc.Labels) &&
			!covered[m.name+"/Service/"+svc.Name] {
			orphans = append(orphans, svc)
		}
		slicesOf, _ := m.slices.GetIndexer().ByIndex(byServiceIndex, ns+"/"+derived)
		for _, o := range slicesOf {
			if es := o.(*discoveryv1.EndpointSlice); es.Labels[labelSliceManagedBy] == ManagedBy && ofThis(es.Labels) &&
				!covered[m.name+"/EndpointSlice/"+es.Name] {
				orphans = append(orphans, es)
			}
		}
	}
	if si, ok := m.serviceImport(ns + "/" + name); ok && si.Labels[labelManagedBy] == ManagedBy && !covered[m.name+"/ServiceImport/"+name] {
		orphans = append(orphans, si)
	}
	return orphans
}

// orphanManifest is the manifest of the Work that adopts an orphan: enough of it for Karmada to
// take it over (and then delete it).
func (c *Controller) orphanManifest(o metav1.Object) any {
	md := metav1.ObjectMeta{Name: o.GetName(), Namespace: o.GetNamespace(), Labels: o.GetLabels()}
	switch x := o.(type) {
	case *corev1.Service:
		cp := x.DeepCopy()
		cp.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}
		cp.ObjectMeta, cp.Status = md, corev1.ServiceStatus{}
		return cp
	case *discoveryv1.EndpointSlice:
		cp := x.DeepCopy()
		cp.TypeMeta = metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"}
		cp.ObjectMeta, cp.Endpoints = md, nil
		return cp
	case *mcsv1beta1.ServiceImport: // ours
		gv := mcs.ImportVersions[1].GroupVersion() // what Karmada's control plane can map
		if c.importTemplates.v1beta1.Load() {
			gv = x.GroupVersionKind().GroupVersion()
		}
		cp := &mcsv1beta1.ServiceImport{TypeMeta: metav1.TypeMeta{Kind: "ServiceImport"}, ObjectMeta: md, Spec: x.Spec}
		u, err := mcs.Unstructured(cp, gv)
		if err != nil {
			return nil
		}
		return u.Object
	}
	return nil
}

// keptServiceWorks returns the existing derived-Service and automatic ServiceImport Works of
// ns/name in importers, unchanged.
func (c *Controller) keptServiceWorks(ns, name string, importers []importer) []workObject {
	imports := map[string]bool{}
	for _, im := range importers {
		imports[ExecutionNamespacePrefix+im.cluster] = true
	}
	existing, _ := c.worksOf(ns + "/" + name)
	var out []workObject
	for _, w := range existing {
		kept := kindOf(w) == "Service" || kindOf(w) == "ServiceImport"
		if !kept || !imports[w.Namespace] || w.DeletionTimestamp != nil {
			continue
		}
		m := manifestOf(w)
		if m == nil {
			continue
		}
		// Of a bundle (bundle.go), its Service only: bundleWorks turns its slices into emptied
		// tombstones and hashes it anew.
		out = append(out, workObject{namespace: w.Namespace, name: w.Name, cluster: clusterOfWork(w),
			manifests: []map[string]any{m}, hash: w.Annotations[annotationHash]})
	}
	return out
}
