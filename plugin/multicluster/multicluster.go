package multicluster

import (
	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/plugin/pkg/fall"
	clog "github.com/coredns/coredns/plugin/pkg/log"
)

const pluginName = "multicluster"

var log = clog.NewWithPlugin(pluginName)

// source is what the handler needs from the data controller (a fake in unit tests).
type source interface {
	syncState() syncState
	namespaceExists(ns string) bool
}

// MultiCluster is the plugin: it answers for Zones from store.
type MultiCluster struct {
	Next  plugin.Handler
	Zones []string
	Fall  fall.F

	ttl   uint32
	store *store
	ctrl  source
	// namespaces, when not nil, limits the namespaces served.
	namespaces map[string]bool
}

var _ plugin.Handler = &MultiCluster{}

func (m *MultiCluster) syncState() syncState {
	if m.ctrl == nil {
		return stateSyncing
	}
	return m.ctrl.syncState()
}

// Ready implements the ready.Readiness interface: true once the caches are synced, or when the
// ServiceImport API is absent (the zone then answers SERVFAIL, but the rest of the server must not
// be held NotReady by a missing CRD).
func (m *MultiCluster) Ready() bool {
	switch m.syncState() {
	case stateSynced:
		return true
	case stateNoAPI:
		c, ok := m.ctrl.(*dataController)
		return !ok || c.baseSynced()
	}
	return false
}
