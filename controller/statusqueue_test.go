package controller

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The latest wanted status wins: writes wanted while one is in flight collapse into the last.
func TestStatusWriterLatestWins(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newStatusWriter("test-latest")
	go w.run(ctx)
	release := make(chan struct{})
	var mu sync.Mutex
	var ran []int
	job := func(i int) statusJob {
		return func(context.Context) error {
			if i == 0 {
				<-release
			}
			mu.Lock()
			ran = append(ran, i)
			mu.Unlock()
			return nil
		}
	}
	w.set("a", job(0))
	waitFor(t, "the first write started", func() bool { return w.pending() == 0 })
	for i := 1; i <= 3; i++ {
		w.set("a", job(i))
	}
	close(release)
	waitFor(t, "the latest write done", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ran) == 2
	})
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(ran) != 2 || ran[0] != 0 || ran[1] != 3 {
		t.Fatalf("writes run: %v, want [0 3]", ran)
	}
}

// A write that hangs holds one of the writer's workers; other objects are written meanwhile.
func TestStatusWriterHungWriteHoldsOnlyItself(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newStatusWriter("test-hung")
	go w.run(ctx)
	w.set("hung", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
	var done atomic.Int32
	for _, k := range []string{"b", "c", "d"} {
		w.set(k, func(context.Context) error { done.Add(1); return nil })
	}
	waitFor(t, "the other writes done", func() bool { return done.Load() == 3 })
}

// A failed write is retried until it succeeds; one whose object is gone is dropped.
func TestStatusWriterRetries(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := newStatusWriter("test-retry")
	go w.run(ctx)
	var tries, gone atomic.Int32
	w.set("flaky", func(context.Context) error {
		if tries.Add(1) < 3 {
			return errors.New("connection refused")
		}
		return nil
	})
	w.set("gone", func(context.Context) error {
		gone.Add(1)
		return apierrors.NewNotFound(schema.GroupResource{Resource: "serviceexports"}, "gone")
	})
	waitFor(t, "the flaky write succeeded", func() bool { return tries.Load() == 3 && w.pending() == 0 })
	time.Sleep(100 * time.Millisecond)
	if n := gone.Load(); n != 1 {
		t.Errorf("write of a deleted object tried %d times, want 1", n)
	}
	if n := tries.Load(); n != 3 {
		t.Errorf("flaky write tried %d times after succeeding, want 3", n)
	}
}

// A stopped writer (its member left) keeps no pending series, even if a reconcile still hands
// it a write afterwards.
func TestStatusWriterStoppedDropsItsGauge(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	w := newStatusWriter("test-stopped")
	stopped := make(chan struct{})
	go func() { w.run(ctx); close(stopped) }()
	block := make(chan struct{})
	w.set("a", func(context.Context) error { <-block; return nil })
	w.set("b", func(context.Context) error { <-block; return nil })
	w.set("c", func(context.Context) error { return nil })
	if !hasSeries(t, statusPending, "cluster", "test-stopped") {
		t.Fatalf("no status_pending{cluster=test-stopped} while writes wait")
	}
	cancel()
	close(block)
	<-stopped
	w.set("late", func(context.Context) error { return nil })
	if hasSeries(t, statusPending, "cluster", "test-stopped") {
		t.Errorf("status_pending{cluster=test-stopped} still exported after the writer stopped")
	}
	if w.pending() != 0 {
		t.Errorf("pending %d after the stop, want 0", w.pending())
	}
}

// hasSeries reports whether collector c exports a series whose label is value.
func hasSeries(t *testing.T, c prometheus.Collector, label, value string) bool {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	go func() { c.Collect(ch); close(ch) }()
	found := false
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		for _, lp := range pb.GetLabel() {
			if lp.GetName() == label && lp.GetValue() == value {
				found = true
			}
		}
	}
	return found
}

// A status already written over the version a lagging cache still shows is not written again;
// another version (someone else wrote) or other content is.
func TestMemoWrite(t *testing.T) {
	w := newStatusWriter("test-memo")
	calls := 0
	write := func(now string) func() (string, error) {
		return func() (string, error) { calls++; return now, nil }
	}
	steps := []struct {
		rv, content, now string
		want             int
	}{
		{"1", "a", "2", 1}, // written
		{"1", "a", "", 1},  // the cache still shows version 1: not again
		{"2", "a", "", 1},  // the cache caught up: the same content is there
		{"3", "a", "", 2},  // someone else wrote: looked at again (wrote nothing)
		{"3", "a", "4", 3}, // not remembered, since nothing was written: looked at again
		{"4", "b", "5", 4}, // other content
	}
	for i, s := range steps {
		if err := memoWrite(w, "ServiceExport/ns/a", s.rv, s.content, write(s.now)); err != nil {
			t.Fatal(err)
		}
		if calls != s.want {
			t.Fatalf("step %d: %d writes, want %d", i, calls, s.want)
		}
	}
}
