package controller

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/klog/v2"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// The cluster id: what other clusters see as a member's name (the source-cluster label of its
// mirrored slices, per-pod DNS names, status.clusters of imports). It is the member's
// ClusterProperty cluster.clusterset.k8s.io (KEP-2149), else its Karmada name; it is followed as
// it changes, validated, and unique across the members: a member whose id is not valid, or that
// claims an id another member had first, has its exports refused (ServiceExport Valid=False,
// a Warning event on its Cluster) until that is fixed.

const clusterIDProperty = mcs.ClusterIDProperty

// Reasons of the Valid condition of an export refused for its member's cluster id.
const (
	ReasonInvalidClusterID  = "InvalidClusterID"
	ReasonClusterIDConflict = "ClusterIDConflict"
)

// readClusterID reads the member's cluster id: the ClusterProperty's value, its Karmada name
// where there is none. ok is false when it could not be read (the previous id then stays).
func (m *member) readClusterID(ctx context.Context) (id string, ok bool) {
	id, err := mcs.ReadClusterID(ctx, m.dyn, m.name)
	if err != nil {
		klog.FromContext(ctx).V(2).Info("reading ClusterProperty; keeping the cluster id", "cluster", m.name, "err", err)
		return "", false
	}
	return id, true
}

// followClusterID re-reads the cluster id; onChange runs when it changed.
func (m *member) followClusterID(ctx context.Context, onChange func()) {
	id, ok := m.readClusterID(ctx)
	if !ok {
		return
	}
	m.mu.Lock()
	old := m.id
	m.id = id
	m.mu.Unlock()
	if old != id {
		klog.FromContext(ctx).Info("cluster id", "cluster", m.name, "clusterID", id, "was", old)
		onChange()
	}
}

// clusterID is the member's current cluster id.
func (m *member) clusterID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.id
}

// validClusterID: one DNS label, or two, of at most 63 characters each (it forms DNS names such
// as <hostname>.<clusterid>.<svc>.<ns>.svc.clusterset.local and object names).
func validClusterID(id string) error {
	parts := strings.Split(id, ".")
	if len(parts) > 2 {
		return fmt.Errorf("cluster id %q has more than two labels", id)
	}
	for _, p := range parts {
		if errs := validation.IsDNS1123Label(p); len(errs) > 0 {
			return fmt.Errorf("cluster id %q: %s", id, strings.Join(errs, "; "))
		}
	}
	return nil
}

// refusedIDs returns, for the members whose exports are refused for their cluster id, why: an
// invalid id, or one another member claimed first (older Cluster, then name).
func (c *Controller) refusedIDs(members []*member) map[string]string {
	created := map[string]time.Time{}
	for _, m := range members {
		if obj, ok, _ := c.clusterInf.GetStore().GetByKey(m.name); ok {
			created[m.name] = obj.(*clusterv1alpha1.Cluster).CreationTimestamp.Time
		}
	}
	ordered := append([]*member(nil), members...)
	sort.SliceStable(ordered, func(i, j int) bool {
		a, b := created[ordered[i].name], created[ordered[j].name]
		if !a.Equal(b) {
			return a.Before(b)
		}
		return ordered[i].name < ordered[j].name
	})
	refused := map[string]string{}
	owner := map[string]string{}
	for _, m := range ordered {
		id := m.clusterID()
		if err := validClusterID(id); err != nil {
			refused[m.name] = err.Error()
		} else if first, taken := owner[id]; taken {
			refused[m.name] = fmt.Sprintf("cluster id %q of %s is already %s's (its ClusterProperty %s, or its Karmada name)", id, m.name, first, clusterIDProperty)
		} else {
			owner[id] = m.name
		}
	}
	for _, m := range members {
		c.noteRefused(m.name, refused[m.name])
	}
	return refused
}

// noteRefused records a member's refusal (why, or "" when it is not refused) and, on a change,
// logs it and puts a Warning event on its Cluster.
func (c *Controller) noteRefused(name, why string) {
	c.syncMu.Lock()
	was := c.refusedNow[name]
	c.refusedNow[name] = why
	c.syncMu.Unlock()
	if was == why {
		return
	}
	if why == "" {
		klog.Background().Info("member's cluster id accepted again; its exports are imported", "cluster", name)
		return
	}
	klog.Background().Info("member's exports refused: "+why, "cluster", name)
	if obj, ok, _ := c.clusterInf.GetStore().GetByKey(name); ok {
		c.recorder.Event(obj.(*clusterv1alpha1.Cluster), corev1.EventTypeWarning, ReasonClusterIDConflict,
			why+"; the member's ServiceExports are not imported until that is fixed")
	}
}
