package multicluster

import (
	"context"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Every label is bounded: server and zone come from the Corefile, kind, outcome and state from
// fixed sets (reason too). No service, cluster or IP ever becomes a label.
var (
	requestCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "requests_total",
		Help:      "Counter of queries answered by the multicluster plugin, by kind of name (apex, version, namespace, service, srv, endpoint, unknown) and outcome (success, nodata, nxdomain, servfail, fallthrough, truncated, refused).",
	}, []string{"server", "kind", "outcome"})

	importCount = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "imports",
		Help:      "Number of ServiceImports cached for the zone.",
	}, []string{"zone"})

	sliceCount = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "endpointslices",
		Help:      "Number of multi-cluster EndpointSlices cached for the zone.",
	}, []string{"zone"})

	lastChange = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "last_change_timestamp_seconds",
		Help:      "Unix time of the last change applied to the zone's answers (the data age is time() minus this).",
	}, []string{"zone"})

	limitedGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "limited",
		Help:      "What the zone's answers leave out now, summed over services, by reason: endpoints (addresses over max_endpoints), ports (over max_ports), long_names (names over 255 octets), invalid_names (imports whose name or namespace is not a DNS label).",
	}, []string{"zone", "reason"})

	reconnectCount = promauto.NewCounterVec(prometheus.CounterOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "informer_restarts_total",
		Help:      "Times the informers were replaced after their watches broke and the apiserver came back.",
	}, []string{"zone"})

	syncStateGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: plugin.Namespace,
		Subsystem: pluginName,
		Name:      "sync_state",
		Help:      "1 for the zone's current state (syncing, synced, no_serviceimport_api), 0 for the others.",
	}, []string{"zone", "state"})
)

func metricsServer(ctx context.Context) string { return metrics.WithServer(ctx) }
