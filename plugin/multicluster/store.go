package multicluster

import (
	"sync"
	"sync/atomic"
	"time"
)

// store holds the precomputed answers of every imported service, keyed by lower-case FQDN, so a
// query is one map lookup plus a copy of the records. Writers (informer event handlers) replace
// all names of one service at once; readers never see half a service.
type store struct {
	zones []string
	ttl   uint32

	mu    sync.RWMutex
	names map[string]*node
	// owned lists, per service key (namespace/name), the names that service put in names.
	owned map[string][]string
	// perNamespace counts the imports of each namespace (namespaces with imports always exist).
	perNamespace map[string]int

	// serial is the SOA serial: the Unix time of the last change.
	serial atomic.Uint32
	// lastChange is the Unix time (ns) of the last change, for the sync-age metric.
	lastChange atomic.Int64
}

func newStore(zones []string, ttl uint32) *store {
	s := &store{zones: zones, ttl: ttl, names: map[string]*node{}, owned: map[string][]string{}, perNamespace: map[string]int{}}
	s.touch()
	return s
}

func (s *store) touch() {
	now := time.Now()
	serial := uint32(now.Unix())
	if old := s.serial.Load(); serial <= old {
		serial = old + 1
	}
	s.serial.Store(serial)
	s.lastChange.Store(now.UnixNano())
}

// lookup returns the node of a lower-case FQDN, or nil.
func (s *store) lookup(name string) *node {
	s.mu.RLock()
	n := s.names[name]
	s.mu.RUnlock()
	return n
}

// hasImports reports whether namespace ns (lower case) holds at least one import.
func (s *store) hasImports(ns string) bool {
	s.mu.RLock()
	n := s.perNamespace[ns]
	s.mu.RUnlock()
	return n > 0
}

// set replaces the names of service key with those built from d; d == nil removes the service.
func (s *store) set(key string, d *serviceData) {
	var built []map[string]*node
	if d != nil {
		for _, z := range s.zones {
			built = append(built, buildService(z, s.ttl, *d))
		}
	}
	s.mu.Lock()
	old, existed := s.owned[key]
	for _, name := range old {
		delete(s.names, name)
	}
	delete(s.owned, key)
	if existed {
		ns := namespaceOf(key)
		if s.perNamespace[ns]--; s.perNamespace[ns] <= 0 {
			delete(s.perNamespace, ns)
		}
	}
	if d != nil {
		var names []string
		for _, b := range built {
			for name, n := range b {
				s.names[name] = n
				names = append(names, name)
			}
		}
		s.owned[key] = names
		s.perNamespace[namespaceOf(key)]++
	}
	s.mu.Unlock()
	s.touch()
}

// reset forgets every service (the ServiceImport API went away).
func (s *store) reset() {
	s.mu.Lock()
	s.names = map[string]*node{}
	s.owned = map[string][]string{}
	s.perNamespace = map[string]int{}
	s.mu.Unlock()
	s.touch()
}

// keys returns the keys (namespace/name) of every imported service.
func (s *store) keys() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.owned))
	for k := range s.owned {
		out = append(out, k)
	}
	return out
}

// count returns the number of imported services.
func (s *store) count() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.owned)
}

func namespaceOf(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i]
		}
	}
	return ""
}
