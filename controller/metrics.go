package controller

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var (
	reconcileTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coredns_mcs_controller_reconciles_total",
		Help: "Reconciles of exported services and clusters, by result (success, requeue, conflict: a write raced another and is retried at once, error).",
	}, []string{"result"})
	reconcileDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "coredns_mcs_controller_reconcile_duration_seconds",
		Help:    "Time to reconcile one exported service or cluster.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})
	workWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coredns_mcs_controller_work_writes_total",
		Help: "Karmada Work objects written, by operation (create, update, delete).",
	}, []string{"op"})
	statusWrites = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "coredns_mcs_controller_status_writes_total",
		Help: "ServiceExport status updates written (members and the Karmada control plane).",
	})
	statusWriteErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coredns_mcs_controller_status_write_errors_total",
		Help: "Status writes that failed (and are retried), by cluster (a member's name, or karmada for the control plane).",
	}, []string{"cluster"})
	statusPending = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "coredns_mcs_controller_status_pending",
		Help: "Objects whose status waits to be written, by cluster: it grows while a cluster does not answer (its writes wait off the reconcile workers).",
	}, []string{"cluster"})
	memberGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "coredns_mcs_controller_members",
		Help: "Member clusters the controller follows (Push: from their apiserver; Pull: from their agent's reports).",
	})
	syncedGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "coredns_mcs_controller_member_synced",
		Help: "1 while the controller's caches of a member are synced; 0 while it is unknown (not joined yet, no working credentials, unreachable, or a Pull member whose agent has not reported everything): its Works are then held as they are.",
	}, []string{"cluster"})
	drainedGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "coredns_mcs_controller_member_drained",
		Help: "1 while a member's exported endpoints are withdrawn from importers (not Ready past the grace period, drain policy).",
	}, []string{"cluster"})
	propagationSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "coredns_mcs_controller_propagation_seconds",
		Help:    "Time from the first reconcile that wants an importer's Works for a service (an export appeared or changed, an importer joined) until Karmada reports them all applied.",
		Buckets: []float64{0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300},
	})
	karmadaMCSGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "coredns_mcs_controller_karmada_mcs_detected",
		Help: "1 while objects of Karmada's own MCS controllers (their report Works, imported-* or dispatched EndpointSlices) are found on the control plane: they must not run beside this controller.",
	})
	declaredWithdrawn = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coredns_mcs_controller_declared_withdrawn_total",
		Help: "Declared exports and imports (a member a ServiceExport or ServiceImport template is scheduled to, counted before the object lands there) withdrawn, by kind and reason (ApplyFailed: Karmada reported applying it failed; NotLanded: not there within --declared-timeout).",
	}, []string{"kind", "reason"})
	unexportedEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coredns_mcs_controller_unexported_events_total",
		Help: "Changes of a member's Services and EndpointSlices of services it does not export, by cluster: cached, never reconciled.",
	}, []string{"cluster"})
)

func init() {
	metrics.Registry.MustRegister(reconcileTotal, reconcileDuration, workWrites, statusWrites, statusWriteErrors, statusPending, memberGauge, syncedGauge, drainedGauge, karmadaMCSGauge, propagationSeconds, declaredWithdrawn, unexportedEvents)
}
