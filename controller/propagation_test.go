package controller

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

func TestPropagationObservedOnce(t *testing.T) {
	p := newPropagation()
	t0 := time.Unix(1000, 0)
	count := func() uint64 {
		var m dto.Metric
		if err := propagationSeconds.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	c0 := count()
	p.note("default/serve", []string{"member2"}, []string{"member2"}, t0)
	p.note("default/serve", []string{"member2"}, []string{"member2"}, t0.Add(time.Second))
	if got := count(); got != c0 {
		t.Fatalf("observed while pending: %d", got-c0)
	}
	p.note("default/serve", []string{"member2"}, nil, t0.Add(3*time.Second))
	p.note("default/serve", []string{"member2"}, nil, t0.Add(4*time.Second))
	if got := count(); got != c0+1 {
		t.Fatalf("observations %d, want 1", got-c0)
	}
	// Already applied at first sight (a restarted controller): nothing observed.
	p.note("default/other", []string{"member2"}, nil, t0)
	// An importer that leaves while pending: nothing observed, nothing kept.
	p.note("default/gone", []string{"member1"}, []string{"member1"}, t0)
	p.note("default/gone", nil, nil, t0.Add(time.Second))
	if got := count(); got != c0+1 || len(p.waiting) != 0 {
		t.Fatalf("observations %d, waiting %v", got-c0, p.waiting)
	}
}
