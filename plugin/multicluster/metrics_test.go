package multicluster

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

// TestMetricsLint runs promlint over every coredns_multicluster_* metric.
func TestMetricsLint(t *testing.T) {
	requestCount.WithLabelValues("dns://:53", "service", "success").Inc()
	importCount.WithLabelValues("clusterset.local.").Set(1)
	sliceCount.WithLabelValues("clusterset.local.").Set(1)
	lastChange.WithLabelValues("clusterset.local.").Set(1)
	syncStateGauge.WithLabelValues("clusterset.local.", "synced").Set(1)
	limitedGauge.WithLabelValues("clusterset.local.", cutPorts).Set(1)
	reconnectCount.WithLabelValues("clusterset.local.").Inc()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var ours []*dto.MetricFamily
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "coredns_multicluster_") {
			ours = append(ours, mf)
		}
	}
	if len(ours) != 7 {
		t.Fatalf("found %d coredns_multicluster_* metrics, want 7", len(ours))
	}
	problems, err := promlint.NewWithMetricFamilies(ours).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}
