package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	karmadaclient "github.com/karmada-io/karmada/pkg/generated/clientset/versioned"
	workinformers "github.com/karmada-io/karmada/pkg/generated/informers/externalversions/work/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
	"github.com/coredns-mcs/coredns-mcs/internal/report"
)

// Pull-mode members: the controller never talks to their apiserver. The agent in the member
// (cmd/mcs-agent) reports what the controller reads of it as Works on the Karmada control plane
// (internal/report), and the member's caches are fed from those; the status the controller
// decides there goes into status Works that the agent applies. Imports reach a Pull member
// through Works as everywhere (Karmada's agent applies them).

// pullState is what a Pull member has instead of clients.
type pullState struct {
	karmada karmadaclient.Interface // bounded requests to the Karmada control plane
	// clusterInf holds the agent's cluster report; cluster its latest decoded value.
	clusterInf cache.SharedIndexInformer
	cluster    atomic.Pointer[report.Cluster]
	// statusWorks is the controller's cache of status Works (shared by every Pull member).
	statusWorks cache.SharedIndexInformer
	// onReport looks at the member's readiness again (a new report, or its lease ran out).
	onReport func(string)
}

// newPullMember builds a Pull member whose caches are its agent's reports.
func newPullMember(name string, karmadaWatch, karmada karmadaclient.Interface, statusWorks cache.SharedIndexInformer,
	enqueue, enqueueNamespace, onIDChange, onReport func(string)) (*member, error) {
	m := &member{name: name, id: name, status: newStatusWriter(name),
		pull: &pullState{karmada: karmada, statusWorks: statusWorks, onReport: onReport}}
	m.services = report.Informer(karmadaWatch, name, report.KindService, cache.Indexers{})
	m.slices = report.Informer(karmadaWatch, name, report.KindEndpointSlice, sliceIndexers)
	m.namespaces = report.Informer(karmadaWatch, name, report.KindNamespace, cache.Indexers{})
	if err := m.handle(enqueue, enqueueNamespace); err != nil {
		return nil, err
	}
	m.exports = report.Informer(karmadaWatch, name, report.KindServiceExport, cache.Indexers{})
	m.imports = report.Informer(karmadaWatch, name, report.KindServiceImport, cache.Indexers{})
	for _, inf := range []cache.SharedIndexInformer{m.exports, m.imports} {
		if _, err := inf.AddEventHandler(keyHandler(enqueue, func(o metav1.Object) string { return o.GetNamespace() + "/" + o.GetName() })); err != nil {
			return nil, err
		}
	}
	m.pull.clusterInf = workinformers.NewFilteredWorkInformer(karmadaWatch, report.ExecutionNamespace(name), 0, cache.Indexers{},
		func(o *metav1.ListOptions) { o.LabelSelector = report.Selector(report.KindCluster) })
	if _, err := m.pull.clusterInf.AddEventHandler(mcs.Handler(func(any) {
		m.readClusterReport(onIDChange)
		onReport(name) // the member's readiness follows the agent's lease (see watchLease)
	})); err != nil {
		return nil, err
	}
	return m, nil
}

// readClusterReport takes in the agent's cluster report: the cluster id, IP families and MCS
// versions; a change of any makes every service be looked at again.
func (m *member) readClusterReport(onChange func(string)) {
	var rep *report.Cluster
	if obj, ok, _ := m.pull.clusterInf.GetStore().GetByKey(report.ExecutionNamespace(m.name) + "/" + report.ClusterWorkName); ok {
		r, err := report.DecodeCluster(obj.(*workv1alpha1.Work))
		if err != nil {
			klog.Background().Info("ignoring the agent's cluster report", "cluster", m.name, "err", err)
		} else {
			rep = r
		}
	}
	old := m.pull.cluster.Swap(rep)
	id := m.name
	se, si := schema.GroupVersionResource{}, schema.GroupVersionResource{}
	if rep != nil {
		if rep.ClusterID != "" {
			id = rep.ClusterID
		}
		se, si = servedGVR(rep.ExportVersion, mcs.ExportVersions), servedGVR(rep.ImportVersion, mcs.ImportVersions)
	}
	m.mu.Lock()
	m.id, m.seGVR, m.siGVR = id, se, si
	if rep != nil {
		m.families = rep.Families
	} else {
		m.families = nil
	}
	m.mu.Unlock()
	if old == nil || rep == nil || old.ClusterID != rep.ClusterID || !slices.Equal(old.Families, rep.Families) ||
		old.ImportVersion != rep.ImportVersion || old.ExportVersion != rep.ExportVersion || old.Synced != rep.Synced {
		if rep != nil {
			klog.Background().Info("Pull member's agent report", "cluster", m.name, "clusterID", id, "families", rep.Families,
				"serviceimports", rep.ImportVersion, "synced", rep.Synced, "agent", rep.AgentVersion)
		}
		onChange(m.name)
	}
}

// servedGVR is the one of versions whose group/version is gv (zero when none is).
func servedGVR(gv string, versions []schema.GroupVersionResource) schema.GroupVersionResource {
	for _, v := range versions {
		if v.GroupVersion().String() == gv {
			return v
		}
	}
	return schema.GroupVersionResource{}
}

// startPull runs a Pull member's caches; onSynced is called once they are synced and the agent
// has reported every object of its member.
func (m *member) startPull(ctx context.Context, onSynced func()) {
	for _, inf := range []cache.SharedIndexInformer{m.services, m.slices, m.namespaces, m.exports, m.imports, m.pull.clusterInf} {
		go inf.RunWithContext(ctx)
	}
	go m.status.run(ctx)
	go m.watchLease(ctx)
	go m.whenSynced(ctx, onSynced)
}

// watchLease looks at the member's readiness again whenever its agent's lease runs out (a report
// renewed afterwards is an informer event, which does the same). A timer per report would do,
// but the cluster queue keeps only the earliest of several delayed adds of one key.
func (m *member) watchLease(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	gone := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := false
		if rep := m.pull.cluster.Load(); rep != nil {
			now, _ = rep.Expired(time.Now())
		}
		if now != gone {
			gone = now
			if gone {
				klog.Background().Info("Pull member's mcs-agent has not renewed its report within its lease", "cluster", m.name)
			}
			m.pull.onReport(m.name)
		}
	}
}

// pullSynced: the report caches are synced and the agent says it has reported everything.
func (m *member) pullSynced() bool {
	for _, inf := range []cache.SharedIndexInformer{m.services, m.slices, m.namespaces, m.exports, m.imports, m.pull.clusterInf} {
		if !inf.HasSynced() {
			return false
		}
	}
	rep := m.pull.cluster.Load()
	return rep != nil && rep.Synced
}

// writeStatusWork makes the status Work of kind ns/name in the member carry payload (written
// only when it differs from the one cached).
func (m *member) writeStatusWork(ctx context.Context, kind, ns, name string, payload any) error {
	raw, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	wname := report.WorkName(true, kind, ns, name)
	want, err := report.NewWork(m.name, wname, report.ManagedByController, kind, report.ObjectRef(kind, ns, name), raw)
	if err != nil {
		return err
	}
	works := m.pull.karmada.WorkV1alpha1().Works(want.Namespace)
	if obj, ok, _ := m.pull.statusWorks.GetStore().GetByKey(want.Namespace + "/" + wname); ok {
		cur := obj.(*workv1alpha1.Work)
		if cur.Annotations[report.AnnotationHash] == want.Annotations[report.AnnotationHash] {
			return nil
		}
		want.ResourceVersion = cur.ResourceVersion
		_, err = works.Update(ctx, want, metav1.UpdateOptions{})
	} else {
		_, err = works.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// Our cache lags: the next attempt reads it.
			return fmt.Errorf("status Work %s/%s exists already: %w", want.Namespace, wname, err)
		}
	}
	if err == nil {
		statusWrites.Inc()
	}
	return err
}

// pullExportStatus is the status Work payload of a ServiceExport: the conditions as decided,
// without the times and generation the agent sets (so that an unchanged decision is an unchanged
// payload).
func pullExportStatus(conds []metav1.Condition) report.ExportStatus {
	out := report.ExportStatus{}
	for _, c := range conds {
		out.Conditions = append(out.Conditions, metav1.Condition{Type: c.Type, Status: c.Status, Reason: c.Reason, Message: c.Message})
		if warns(c) {
			out.Warn = append(out.Warn, c.Type)
		}
	}
	return out
}

// warns: a condition the user must act on, recorded as a Warning event when it is written.
func warns(c metav1.Condition) bool {
	return c.Type == string(mcsv1beta1.ServiceExportConditionValid) && c.Status == metav1.ConditionFalse ||
		c.Type == string(mcsv1beta1.ServiceExportConditionConflict) && c.Status == metav1.ConditionTrue ||
		c.Reason == string(ReasonDerivedServiceTaken)
}

// pullImportStatus is the status Work payload of a ServiceImport.
func pullImportStatus(clusters []string, present mcsv1beta1.EndpointSliceObjectsStatus, cond metav1.Condition) report.ImportStatus {
	ready := metav1.Condition{Type: cond.Type, Status: cond.Status, Reason: cond.Reason, Message: cond.Message}
	return report.ImportStatus{Clusters: clusters, EndpointSliceObjects: string(present), Ready: &ready}
}

// SetExportConditions sets conds (as decided: Type, Status, Reason, Message) on se at its
// generation and returns those that changed; the agent applies a status Work with it.
func SetExportConditions(se *mcsv1beta1.ServiceExport, conds []metav1.Condition) []metav1.Condition {
	var changed []metav1.Condition
	for _, cond := range conds {
		cond.ObservedGeneration = se.Generation
		if cur := meta.FindStatusCondition(se.Status.Conditions, cond.Type); cur != nil && sameCondition(*cur, cond) {
			continue
		}
		meta.SetStatusCondition(&se.Status.Conditions, cond)
		changed = append(changed, cond)
	}
	return changed
}

// agentVersion is the version the Pull member's agent reports ("" before its first report).
func (m *member) agentVersion() string {
	if rep := m.pull.cluster.Load(); rep != nil {
		return rep.AgentVersion
	}
	return ""
}
