package controller

import (
	"context"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// The member failure policy. Karmada reports a member's health in its Cluster's Ready condition;
// a Pull member is also not Ready while its mcs-agent's report lease has run out (agentGone).
// Under the drain policy, a member not Ready for the grace period has its exported endpoints
// withdrawn from every importer (every service is reconciled when the grace ends), and restored
// when it is Ready again; under keep, nothing changes (Karmada's own behaviour).

// trackReadiness follows the Cluster's Ready condition.
func (c *Controller) trackReadiness(ctx context.Context, cl *clusterv1alpha1.Cluster) {
	logger := klog.FromContext(ctx).WithValues("cluster", cl.Name)
	ready, since := clusterReady(cl)
	if gone, at := c.agentGone(cl.Name); gone && (ready || at.Before(since)) {
		// A Pull member whose mcs-agent stopped renewing its report: what it exports is not
		// known to be served any more, as for a member Karmada reports not Ready.
		ready, since = false, at
	}
	c.mu.Lock()
	was, wasNotReady := c.notReady[cl.Name]
	if ready {
		delete(c.notReady, cl.Name)
	} else if !wasNotReady || !since.Equal(was) {
		c.notReady[cl.Name] = since
	}
	c.mu.Unlock()
	switch {
	case ready && wasNotReady:
		logger.Info("cluster Ready again", "policy", c.opts.MemberFailure)
		c.enqueueAll()
	case !ready && !wasNotReady:
		logger.Info("cluster not Ready", "since", since, "policy", c.opts.MemberFailure, "grace", c.opts.FailureGrace)
		if c.opts.MemberFailure == MemberFailureDrain {
			// Wake up when the grace ends (the Cluster object may not change again).
			c.clusters.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{Name: cl.Name}},
				time.Until(since.Add(c.opts.FailureGrace))+100*time.Millisecond)
		}
	case !ready && !c.drained(cl.Name) && c.opts.MemberFailure == MemberFailureDrain:
		// Still within the grace: wake up when it ends (a delayed add of a key already waiting
		// keeps the earlier time only, so it is asked for again on every look).
		c.clusters.AddAfter(reconcile.Request{NamespacedName: types.NamespacedName{Name: cl.Name}},
			time.Until(since.Add(c.opts.FailureGrace))+100*time.Millisecond)
	case !ready && c.drained(cl.Name):
		c.mu.Lock()
		first := !c.drainedNow[cl.Name]
		c.drainedNow[cl.Name] = true
		c.mu.Unlock()
		if first {
			drainedGauge.WithLabelValues(cl.Name).Set(1)
			logger.Info("draining the cluster's exported endpoints from every importer", "notReadySince", since)
			c.enqueueAll()
		}
		return
	}
	c.mu.Lock()
	delete(c.drainedNow, cl.Name)
	c.mu.Unlock()
	drainedGauge.WithLabelValues(cl.Name).Set(0)
}

// clusterReady reads a Karmada Cluster's Ready condition; not Ready since its last transition.
func clusterReady(cl *clusterv1alpha1.Cluster) (bool, time.Time) {
	cond := meta.FindStatusCondition(cl.Status.Conditions, clusterv1alpha1.ClusterConditionReady)
	switch {
	case cond == nil:
		return true, time.Time{} // no condition yet: a cluster just joined is not treated as failed
	case cond.Status == metav1.ConditionTrue:
		return true, time.Time{}
	case cond.LastTransitionTime.IsZero():
		return false, time.Now()
	}
	return false, cond.LastTransitionTime.Time
}

// agentGone reports whether the mcs-agent of a Pull member let its report's lease run out, and
// when it did.
func (c *Controller) agentGone(name string) (bool, time.Time) {
	c.mu.RLock()
	m := c.members[name]
	c.mu.RUnlock()
	if m == nil || m.pull == nil {
		return false, time.Time{}
	}
	rep := m.pull.cluster.Load()
	if rep == nil {
		return false, time.Time{}
	}
	return rep.Expired(time.Now())
}

// drained reports whether a member's exported endpoints are withdrawn now.
func (c *Controller) drained(name string) bool {
	if c.opts.MemberFailure != MemberFailureDrain {
		return false
	}
	c.mu.RLock()
	since, ok := c.notReady[name]
	c.mu.RUnlock()
	return ok && time.Since(since) >= c.opts.FailureGrace
}
