package controller

import (
	"context"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// statusWriter writes status off the reconcile workers, for one cluster (a member, or the
// Karmada control plane): a cluster that accepts a write and never answers holds its own writer
// for the request timeout, never a worker that other members' services need.
//
// Each object has at most one pending write, the latest wanted: a write that a newer one
// overtakes is dropped, a failed one is retried with backoff unless a newer one arrived.
type statusWriter struct {
	cluster string
	queue   workqueue.TypedRateLimitingInterface[string]

	mu   sync.Mutex
	jobs map[string]statusJob
	// stopped: run has returned (the member left): nothing is queued or counted any more, so
	// its pending gauge does not come back after it was deleted.
	stopped bool
	// written: per object, the status content last written and the object's versions before
	// and after that write (see alreadyWritten).
	written map[string]writtenStatus
}

type writtenStatus struct{ over, now, content string }

// maxWritten bounds the memory of written statuses (it starts afresh beyond).
const maxWritten = 100000

// alreadyWritten reports whether content is what was last written to object key, over or as
// version rv: the caller's cached copy has not caught up with that write yet, and writing the
// same again would only cost the cluster (and, for a member's ServiceExport, Karmada's status
// collection) another round.
func (w *statusWriter) alreadyWritten(key, rv, content string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	x, ok := w.written[key]
	return ok && x.content == content && (rv == x.over || rv == x.now)
}

// noteWritten records a status write of content to object key, from version over to now.
func (w *statusWriter) noteWritten(key, over, now, content string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.written == nil || len(w.written) >= maxWritten {
		w.written = map[string]writtenStatus{}
	}
	w.written[key] = writtenStatus{over: over, now: now, content: content}
}

// statusJob writes one object's status; it is called again after an error (but NotFound: the
// object is gone).
type statusJob func(ctx context.Context) error

// statusWriters per cluster: each writes this many objects at a time.
const statusWorkers = 2

func newStatusWriter(cluster string) *statusWriter {
	return &statusWriter{
		cluster: cluster,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "mcs-status-" + cluster}),
		jobs: map[string]statusJob{},
	}
}

// set makes job the pending write of key (replacing any not started yet).
func (w *statusWriter) set(key string, job statusJob) {
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return
	}
	w.jobs[key] = job
	w.countLocked()
	w.mu.Unlock()
	w.queue.Add(key)
}

// countLocked sets the pending gauge (w.mu held).
func (w *statusWriter) countLocked() {
	if !w.stopped {
		statusPending.WithLabelValues(w.cluster).Set(float64(len(w.jobs)))
	}
}

// pending is the number of objects whose status is waiting to be written.
func (w *statusWriter) pending() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.jobs)
}

// run writes until ctx is done.
func (w *statusWriter) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range statusWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	w.queue.ShutDown()
	wg.Wait()
	w.mu.Lock()
	w.stopped = true
	clear(w.jobs)
	w.mu.Unlock()
	statusPending.DeleteLabelValues(w.cluster)
}

func (w *statusWriter) next(ctx context.Context) bool {
	key, quit := w.queue.Get()
	if quit {
		return false
	}
	defer w.queue.Done(key)
	w.mu.Lock()
	job := w.jobs[key]
	delete(w.jobs, key)
	w.countLocked()
	w.mu.Unlock()
	if job == nil {
		w.queue.Forget(key)
		return true
	}
	if err := job(ctx); err != nil {
		statusWriteErrors.WithLabelValues(w.cluster).Inc()
		if ctx.Err() != nil || apierrors.IsNotFound(err) {
			w.queue.Forget(key) // stopping, or the object is gone: nothing left to write
			return true
		}
		klog.FromContext(ctx).V(1).Info("status write failed; retrying", "cluster", w.cluster, "object", key, "err", err.Error())
		w.mu.Lock()
		if _, newer := w.jobs[key]; !newer {
			w.jobs[key] = job
			w.countLocked()
		}
		w.mu.Unlock()
		w.queue.AddRateLimited(key)
		return true
	}
	w.queue.Forget(key)
	return true
}
