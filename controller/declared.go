package controller

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	workv1alpha2 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha2"
	karmadaclient "github.com/karmada-io/karmada/pkg/generated/clientset/versioned"
	workv1alpha2informers "github.com/karmada-io/karmada/pkg/generated/informers/externalversions/work/v1alpha2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// Declared exports and imports: the intent on the Karmada control plane, seconds before Karmada's
// execution controller puts the object in the member.
//
// A ServiceExport (or ServiceImport) template is propagated by Karmada in three hops: its
// ResourceBinding, which the scheduler fills in with the target clusters; a Work per cluster; the
// execution controller applying the Work in the member. Only then can a controller that reads the
// members act. This file reads the first hop: a member the binding of a ServiceExport template is
// scheduled to counts as an exporter of the service as soon as it is scheduled, if it already
// serves the Service (its EndpointSlices are there: the Service was propagated earlier); a member
// the binding of a ServiceImport template is scheduled to counts as an importer.
//
// The member's own object stays the authority: conditions are only ever written on it, and a
// declared export or import is withdrawn when Karmada reports that applying it failed there (the
// binding's aggregated status) or when it has not landed after the declared timeout. Once it lands,
// the member's object is what counts.

// resourceBindingIndex indexes ResourceBindings by the MCS object they propagate:
// "<Kind>/<namespace>/<name>".
const resourceBindingIndex = "mcsResource"

// Reasons a declared export or import is withdrawn (the declared_withdrawn_total metric, events).
const (
	withdrawnFailed  = "ApplyFailed"
	withdrawnTimeout = "NotLanded"
)

type declared struct {
	inf     cache.SharedIndexInformer
	timeout time.Duration
	// settled: the cache synced, or the wait for it is over (waitSynced).
	settled atomic.Bool

	mu sync.Mutex
	// since: when each (kind/ns/name, cluster) was first seen scheduled without its object in
	// the member; zero while the object is there (landed), so that one leaving later (deleted with
	// its namespace, say) gets the full timeout from then; gone with the binding or the cluster
	// leaving it.
	since map[string]time.Time
	// withdrawn: those withdrawn already (logged and counted once).
	withdrawn map[string]string
}

// declaredTarget is one member a binding places an MCS object in.
type declaredTarget struct {
	cluster string
	since   time.Time
	// failed: Karmada reported applying it there failed (the message).
	failed string
}

func newDeclared(client karmadaclient.Interface, timeout time.Duration, enqueue func(string)) *declared {
	d := &declared{timeout: timeout, since: map[string]time.Time{}, withdrawn: map[string]string{}}
	d.inf = workv1alpha2informers.NewResourceBindingInformer(client, metav1.NamespaceAll, 0, cache.Indexers{
		resourceBindingIndex: func(obj any) ([]string, error) {
			if rb, ok := obj.(*workv1alpha2.ResourceBinding); ok && mcsKind(rb.Spec.Resource) != "" {
				r := rb.Spec.Resource
				return []string{r.Kind + "/" + r.Namespace + "/" + r.Name}, nil
			}
			return nil, nil
		},
	})
	// Every binding of the control plane is watched (there is no selector by resource kind); all
	// but those of MCS objects are kept as their name only, so their cost is a few bytes each.
	_ = d.inf.SetTransform(trimBinding)
	_, _ = d.inf.AddEventHandler(mcs.Handler(func(obj any) {
		if rb, ok := obj.(*workv1alpha2.ResourceBinding); ok && mcsKind(rb.Spec.Resource) != "" {
			enqueue(rb.Spec.Resource.Namespace + "/" + rb.Spec.Resource.Name)
		}
	}))
	return d
}

// mcsKind is ServiceExport or ServiceImport when r is one of the MCS API ("" otherwise).
func mcsKind(r workv1alpha2.ObjectReference) string {
	if !strings.HasPrefix(r.APIVersion, mcs.Group+"/") {
		return ""
	}
	switch r.Kind {
	case "ServiceExport", "ServiceImport":
		return r.Kind
	}
	return ""
}

// trimBinding keeps of a ResourceBinding what is read here: of an MCS object's binding the
// resource, the target clusters and whether each applied; of any other its name.
func trimBinding(obj any) (any, error) {
	rb, ok := obj.(*workv1alpha2.ResourceBinding)
	if !ok {
		return obj, nil
	}
	out := &workv1alpha2.ResourceBinding{ObjectMeta: metav1.ObjectMeta{Name: rb.Name, Namespace: rb.Namespace,
		ResourceVersion: rb.ResourceVersion, UID: rb.UID}}
	if mcsKind(rb.Spec.Resource) == "" {
		return out, nil
	}
	out.Spec.Resource = rb.Spec.Resource
	for _, tc := range rb.Spec.Clusters {
		out.Spec.Clusters = append(out.Spec.Clusters, workv1alpha2.TargetCluster{Name: tc.Name})
	}
	for _, st := range rb.Status.AggregatedStatus {
		out.Status.AggregatedStatus = append(out.Status.AggregatedStatus, workv1alpha2.AggregatedStatusItem{
			ClusterName: st.ClusterName, Applied: st.Applied, AppliedMessage: st.AppliedMessage})
	}
	return out, nil
}

func (d *declared) enabled() bool { return d != nil && d.timeout > 0 }

// targets are the members the bindings of kind ns/name place it in, now.
func (d *declared) targets(kind, ns, name string, now time.Time) []declaredTarget {
	if !d.enabled() {
		return nil
	}
	key := kind + "/" + ns + "/" + name
	objs, _ := d.inf.GetIndexer().ByIndex(resourceBindingIndex, key)
	scheduled := map[string]string{} // cluster → failure message
	for _, o := range objs {
		rb := o.(*workv1alpha2.ResourceBinding)
		if !rb.DeletionTimestamp.IsZero() {
			continue
		}
		for _, tc := range rb.Spec.Clusters {
			scheduled[tc.Name] = ""
		}
		for _, st := range rb.Status.AggregatedStatus {
			if _, ok := scheduled[st.ClusterName]; ok && !st.Applied && st.AppliedMessage != "" {
				scheduled[st.ClusterName] = st.AppliedMessage
			}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for k := range d.since { // clusters no longer scheduled: forgotten
		if rest, ok := strings.CutPrefix(k, key+"@"); ok {
			if _, still := scheduled[rest]; !still {
				delete(d.since, k)
				delete(d.withdrawn, k)
			}
		}
	}
	out := make([]declaredTarget, 0, len(scheduled))
	for cluster, failed := range scheduled {
		k := key + "@" + cluster
		since, ok := d.since[k]
		if !ok || since.IsZero() {
			since = now
			d.since[k] = since
		}
		out = append(out, declaredTarget{cluster: cluster, since: since, failed: failed})
	}
	return out
}

// withdraw records that kind ns/name is withdrawn from cluster for reason; it reports whether
// this is news (to be logged, counted and told once).
func (d *declared) withdraw(kind, ns, name, cluster, reason string) bool {
	k := kind + "/" + ns + "/" + name + "@" + cluster
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.withdrawn[k] == reason {
		return false
	}
	d.withdrawn[k] = reason
	return true
}

// landed forgets the withdrawal of kind ns/name in cluster: its object is there now. Should it
// leave while still scheduled there, the timeout counts from the first reconcile that misses it.
func (d *declared) landed(kind, ns, name, cluster string) {
	d.forget(kind, ns, name, cluster, true)
}

// forgetWithdrawal forgets the withdrawal of kind ns/name in cluster, leaving its clock as is.
func (d *declared) forgetWithdrawal(kind, ns, name, cluster string) {
	d.forget(kind, ns, name, cluster, false)
}

func (d *declared) forget(kind, ns, name, cluster string, present bool) {
	if !d.enabled() {
		return
	}
	k := kind + "/" + ns + "/" + name + "@" + cluster
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.withdrawn, k)
	if _, ok := d.since[k]; ok && present {
		d.since[k] = time.Time{}
	}
}

// declaredGone says why target t is no longer counted ("" while it is): Karmada failed to apply
// it, or it has not landed within the timeout; wait is how long it is counted still.
func (d *declared) gone(t declaredTarget, now time.Time) (reason, msg string, wait time.Duration) {
	if t.failed != "" {
		return withdrawnFailed, "Karmada failed to apply it there: " + t.failed, 0
	}
	if left := d.timeout - now.Sub(t.since); left > 0 {
		return "", "", left
	}
	return withdrawnTimeout, "not in the member " + d.timeout.String() + " after Karmada scheduled it there", 0
}

// declaredExporters are the members the ServiceExport template of o is scheduled to that have
// no ServiceExport of it yet and serve the Service already: valid exporters that agree with the
// exports in place (a declared export that would conflict waits for its own ServiceExport, which
// gets the conflict condition). They come after the members' own exports, so never decide a
// conflict. Returns how long until the first of them times out (0: none).
func (c *Controller) declaredExporters(ctx context.Context, o *observation, now time.Time) (out []exporter, since []time.Time, wait time.Duration) {
	if !c.declared.enabled() {
		return nil, nil, 0
	}
	byName := o.memberByName()
	tmpl, _, hasTmpl := c.exportTemplates.get(o.ns + "/" + o.name)
	for _, t := range c.declared.targets("ServiceExport", o.ns, o.name, now) {
		m := byName[t.cluster]
		if m == nil || m.pull != nil { // a Pull member's agent reports its exported Services only
			continue
		}
		if _, ok := m.export(o.ns + "/" + o.name); ok || slices.Contains(o.drained, m.name) {
			c.declared.landed("ServiceExport", o.ns, o.name, m.name)
			continue
		}
		if !c.stillDeclared(ctx, "ServiceExport", o, t, now, &wait) {
			continue
		}
		se := &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: o.ns, Name: o.name, CreationTimestamp: metav1.NewTime(t.since)}}
		if t, ok := tmpl.(*mcsv1beta1.ServiceExport); hasTmpl && ok {
			se.Spec = t.Spec
		}
		ex, valid := c.exporterOf(ctx, o, m, se)
		if valid.Status != metav1.ConditionTrue || len(conflicts(append(slices.Clone(o.exporters), ex))) > len(conflicts(o.exporters)) {
			continue
		}
		out = append(out, ex)
		since = append(since, t.since)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].cluster < out[j].cluster })
	return out, since, wait
}

// declaredImporters are the members the ServiceImport template of o is scheduled to that have
// no ServiceImport of it yet, serve the API and have the namespace.
func (c *Controller) declaredImporters(ctx context.Context, o *observation, userImport map[string]bool, now time.Time) (out []importer, wait time.Duration) {
	if !c.declared.enabled() {
		return nil, 0
	}
	tmpl, _, ok := c.importTemplates.get(o.ns + "/" + o.name)
	si, isSI := tmpl.(*mcsv1beta1.ServiceImport)
	if !ok || !isSI {
		return nil, 0
	}
	byName := o.memberByName()
	for _, t := range c.declared.targets("ServiceImport", o.ns, o.name, now) {
		m := byName[t.cluster]
		if m == nil { // not a member (yet): nothing to count there, the clock keeps running
			c.declared.forgetWithdrawal("ServiceImport", o.ns, o.name, t.cluster)
			continue
		}
		if userImport[t.cluster] {
			c.declared.landed("ServiceImport", o.ns, o.name, t.cluster)
			continue
		}
		if m.importGVR().Empty() || !m.hasNamespace(o.ns) {
			continue
		}
		if !c.stillDeclared(ctx, "ServiceImport", o, t, now, &wait) {
			continue
		}
		derived, err := mcs.DerivedServiceOf(c.opts.DerivedPrefix, o.ns, o.name, si.Annotations)
		if err != nil {
			continue // its own ServiceImport, once there, gets the warning
		}
		out = append(out, importer{cluster: m.name, ports: importPorts(si), name: derived, custom: derived != o.derived})
	}
	return out, wait
}

// stillDeclared reports whether declared target t of kind still counts; when it does not any
// more, it is withdrawn (withdrawDeclared). wait keeps the soonest time one times out.
func (c *Controller) stillDeclared(ctx context.Context, kind string, o *observation, t declaredTarget, now time.Time, wait *time.Duration) bool {
	reason, msg, left := c.declared.gone(t, now)
	if reason != "" {
		c.withdrawDeclared(ctx, kind, o.ns, o.name, t.cluster, reason, msg)
		return false
	}
	if *wait == 0 || left < *wait {
		*wait = left
	}
	return true
}

func (o *observation) memberByName() map[string]*member {
	out := make(map[string]*member, len(o.members))
	for _, m := range o.members {
		out[m.name] = m
	}
	return out
}

// withdrawDeclared logs, counts and tells on the template (once) that a declared export or
// import is no longer counted in cluster.
func (c *Controller) withdrawDeclared(ctx context.Context, kind, ns, name, cluster, reason, msg string) {
	if !c.declared.withdraw(kind, ns, name, cluster, reason) {
		return
	}
	declaredWithdrawn.WithLabelValues(kind, reason).Inc()
	text := fmt.Sprintf("%s %s/%s scheduled to %s is not counted there any more: %s", kind, ns, name, cluster, msg)
	klog.FromContext(ctx).Info("declared "+strings.ToLower(kind)+" withdrawn", "cluster", cluster, "service", ns+"/"+name, "reason", reason, "message", msg)
	tmpls := c.exportTemplates
	if kind == "ServiceImport" {
		tmpls = c.importTemplates
	}
	if obj, _, ok := tmpls.get(ns + "/" + name); ok && c.recorder != nil {
		c.recorder.Event(obj, corev1.EventTypeWarning, "Declared"+kind+reason, text)
	}
}

// declaredSyncWait is how long reconciles wait for the bindings' cache at the start: without it
// a restarted controller would withdraw the Works of declared exports it had written. A control
// plane that does not let the controller list bindings (RBAC of an older release) turns the
// declared path off after it, with a log line.
const declaredSyncWait = 30 * time.Second

func (d *declared) waitSynced(ctx context.Context) {
	sctx, cancel := context.WithTimeout(ctx, declaredSyncWait)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), d.inf.HasSynced) && ctx.Err() == nil {
		klog.FromContext(ctx).Info("ResourceBindings could not be listed on the Karmada control plane (RBAC: get, list, watch resourcebindings.work.karmada.io); only exports and imports that landed in the members count", "waited", declaredSyncWait)
	}
	d.settled.Store(true)
}

// ready: reconciles may run (the bindings are cached, or the wait for them is over).
func (d *declared) ready() bool {
	return !d.enabled() || d.settled.Load()
}

// scheduledTo reports whether the ServiceExport template of key (namespace/name) is scheduled to
// cluster (a cheap look at the bindings' index, for the members' event handlers).
func (d *declared) scheduledTo(key, cluster string) bool {
	if !d.enabled() {
		return false
	}
	objs, _ := d.inf.GetIndexer().ByIndex(resourceBindingIndex, "ServiceExport/"+key)
	for _, o := range objs {
		for _, tc := range o.(*workv1alpha2.ResourceBinding).Spec.Clusters {
			if tc.Name == cluster {
				return true
			}
		}
	}
	return false
}

// keys are the services (namespace/name) of every MCS template binding, in namespace ns ("":
// all): looked at again when a member syncs or a namespace appears.
func (d *declared) keys(ns string) []string {
	if !d.enabled() {
		return nil
	}
	var out []string
	for _, v := range d.inf.GetIndexer().ListIndexFuncValues(resourceBindingIndex) {
		_, key, _ := strings.Cut(v, "/")
		if ns == "" || strings.HasPrefix(key, ns+"/") {
			out = append(out, key)
		}
	}
	// A service with both an export and an import binding is listed once.
	slices.Sort(out)
	return slices.Compact(out)
}
