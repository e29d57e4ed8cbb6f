package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
	"github.com/coredns-mcs/coredns-mcs/internal/report"
	"github.com/coredns-mcs/coredns-mcs/internal/version"
)

// writeCluster writes the cluster report when it changed: the member's cluster id, IP
// families and MCS versions, and whether the first pass is done. What cannot be read now keeps
// its last reported value.
func (a *Agent) writeCluster(ctx context.Context) error {
	ns := report.ExecutionNamespace(a.opts.Cluster)
	var prev *report.Cluster
	var cur *workv1alpha1.Work
	if o, ok, _ := a.reports.GetStore().GetByKey(ns + "/" + report.ClusterWorkName); ok {
		cur = o.(*workv1alpha1.Work)
		prev, _ = report.DecodeCluster(cur)
	}
	rep := report.Cluster{Synced: a.synced.Load(), AgentVersion: version.Get(), LeaseSeconds: int32(a.opts.Lease / time.Second)}
	id, err := mcs.ReadClusterID(ctx, a.memberDyn, a.opts.Cluster)
	switch {
	case err == nil:
		rep.ClusterID = id
	case prev != nil:
		rep.ClusterID = prev.ClusterID
		klog.FromContext(ctx).V(2).Info("reading ClusterProperty; keeping the cluster id", "err", err)
	default:
		return fmt.Errorf("reading the cluster id: %w", err)
	}
	families, err := mcs.ReadFamilies(ctx, a.member)
	switch {
	case err == nil:
		rep.Families = families
	case prev != nil:
		rep.Families = prev.Families
	}
	se, _, _ := a.mcsInformers()
	a.mu.Lock()
	si := a.siGVR
	a.mu.Unlock()
	if !se.Empty() {
		rep.ExportVersion, rep.ImportVersion = se.GroupVersion().String(), si.GroupVersion().String()
	}
	// The lease: renewed once a quarter of it has passed, or with any other change.
	if prev != nil && prev.RenewTime.Add(a.opts.Lease/4).After(time.Now()) {
		rep.RenewTime = prev.RenewTime
		if same, _ := json.Marshal(rep); string(same) == string(mustJSON(prev)) {
			return nil
		}
	}
	rep.RenewTime = metav1.NowMicro()
	payload, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	want, err := report.NewWork(a.opts.Cluster, report.ClusterWorkName, report.ManagedByAgent, report.KindCluster,
		report.ObjectRef(report.KindCluster, "", a.opts.Cluster), payload)
	if err != nil {
		return err
	}
	works := a.karmada.WorkV1alpha1().Works(ns)
	switch {
	case cur == nil:
		_, err = works.Create(ctx, want, metav1.CreateOptions{})
	case cur.Annotations[report.AnnotationHash] != want.Annotations[report.AnnotationHash]:
		want.ResourceVersion = cur.ResourceVersion
		_, err = works.Update(ctx, want, metav1.UpdateOptions{})
	default:
		return nil
	}
	if err == nil {
		reportWrites.WithLabelValues("cluster").Inc()
		if prev != nil && prev.ClusterID == rep.ClusterID && slices.Equal(prev.Families, rep.Families) && prev.Synced == rep.Synced &&
			prev.ExportVersion == rep.ExportVersion && prev.ImportVersion == rep.ImportVersion {
			return nil // a renewal
		}
		klog.FromContext(ctx).Info("cluster report written", "clusterID", rep.ClusterID, "families", rep.Families,
			"serviceexports", rep.ExportVersion, "serviceimports", rep.ImportVersion, "synced", rep.Synced)
	}
	return err
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

var (
	reportWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coredns_mcs_agent_report_writes_total",
		Help: "Report Works written on the Karmada control plane, by operation (create, update, delete, cluster).",
	}, []string{"op"})
	statusWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "coredns_mcs_agent_status_writes_total",
		Help: "ServiceExport status updates applied in the member from the controller's status Works.",
	})
	errorsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "coredns_mcs_agent_errors_total",
		Help: "Items (a report or a status) that failed and are retried.",
	})
	syncedGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "coredns_mcs_agent_synced",
		Help: "1 once every object of the member is reported (the controller then follows the member).",
	})
	leaderGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "coredns_mcs_agent_leader",
		Help: "1 while this replica holds the member's Lease and reports (0: standing by).",
	})
)

// Collectors are the agent's metrics, for the binary to register.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{reportWrites, statusWrites, errorsTotal, syncedGauge, leaderGauge}
}
