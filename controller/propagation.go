package controller

import (
	"slices"
	"sync"
	"time"
)

// propagation measures how long an importer waits for a service: from the first reconcile that
// wants Works for it there (an export appeared, changed, or the importer joined) until Karmada
// reports every one of them applied. It feeds coredns_mcs_controller_propagation_seconds.
type propagation struct {
	mu      sync.Mutex
	waiting map[string]map[string]time.Time // service key -> importer -> since
}

func newPropagation() *propagation {
	return &propagation{waiting: map[string]map[string]time.Time{}}
}

// note records one reconcile's outcome for service key: the importers it wants Works in, and
// those still pending. An importer that was pending and is not any more is observed once.
func (p *propagation) note(key string, importers, pending []string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.waiting[key]
	for _, imp := range pending {
		if w == nil {
			w = map[string]time.Time{}
			p.waiting[key] = w
		}
		if _, ok := w[imp]; !ok {
			w[imp] = now
		}
	}
	for imp, since := range w {
		switch {
		case slices.Contains(pending, imp):
		case slices.Contains(importers, imp):
			propagationSeconds.Observe(now.Sub(since).Seconds())
			delete(w, imp)
		default: // no longer an importer: nothing to measure
			delete(w, imp)
		}
	}
	if len(w) == 0 {
		delete(p.waiting, key)
	}
}

// workClusters are the clusters desired Works go to.
func workClusters(desired []workObject) []string {
	var out []string
	for _, w := range desired {
		if !slices.Contains(out, w.cluster) {
			out = append(out, w.cluster)
		}
	}
	return out
}
