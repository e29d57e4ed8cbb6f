package multicluster

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// store holds the precomputed answers of every imported service, keyed by lower-case FQDN, so a
// query is one map lookup plus a copy of the records. Writers (informer event handlers) replace
// all names of one service at once; readers never see half a service.
type store struct {
	zones  []string
	ttl    uint32
	limits Limits

	mu    sync.RWMutex
	names map[string]*node
	// owned lists, per service key (namespace/name), the names that service put in names.
	owned map[string][]string
	// perNamespace counts the imports of each namespace (namespaces with imports always exist).
	perNamespace map[string]int
	// cut holds, per service key, what the limits left out of its answers; cutTotal their sum.
	cut      map[string]cuts
	cutTotal cuts

	// serial is the SOA serial: the Unix time of the last change.
	serial atomic.Uint32
	// lastChange is the Unix time (ns) of the last change, for the sync-age metric.
	lastChange atomic.Int64
}

func newStore(zones []string, ttl uint32) *store {
	s := &store{zones: zones, ttl: ttl, limits: DefaultLimits, names: map[string]*node{}, owned: map[string][]string{},
		perNamespace: map[string]int{}, cut: map[string]cuts{}, cutTotal: cuts{}}
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
// A service never takes over a name another service holds (names of valid labels cannot clash;
// this is a second guard), and removing one never removes another's.
func (s *store) set(key string, d *serviceData) {
	var built []map[string]*node
	cut := cuts{}
	if d != nil {
		for _, z := range s.zones {
			names, c := buildService(z, s.ttl, s.limits, *d)
			built = append(built, names)
			if len(c) > 0 {
				cut = c // the same for every zone (bar names near 255 octets); count it once
			}
		}
	}
	s.mu.Lock()
	old, existed := s.owned[key]
	for _, name := range old {
		if n := s.names[name]; n != nil && n.owner == key {
			delete(s.names, name)
		}
	}
	delete(s.owned, key)
	if existed {
		ns := namespaceOf(key)
		if s.perNamespace[ns]--; s.perNamespace[ns] <= 0 {
			delete(s.perNamespace, ns)
		}
	}
	var logCut cuts
	for reason, n := range s.cut[key] {
		s.cutTotal[reason] -= n
	}
	if len(cut) > 0 {
		if len(s.cut[key]) == 0 {
			logCut = cut // newly cut: said once, until the service is whole again
		}
		s.cut[key] = cut
		for reason, n := range cut {
			s.cutTotal[reason] += n
		}
	} else {
		delete(s.cut, key)
	}
	if d != nil && validLabel(d.name) && validLabel(d.namespace) {
		var names []string
		for _, b := range built {
			for name, n := range b {
				if cur := s.names[name]; cur != nil && cur.owner != key {
					continue
				}
				n.owner = key
				s.names[name] = n
				names = append(names, name)
			}
		}
		s.owned[key] = names
		s.perNamespace[namespaceOf(key)]++
	}
	s.mu.Unlock()
	s.touch()
	if len(logCut) > 0 {
		log.Warningf("service %s: answers limited: %s (see the plugin's limits)", key, describeCuts(logCut))
	}
}

// cutCounts returns what the limits leave out of the answers now, by reason.
func (s *store) cutCounts() map[string]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]int, len(cutReasons))
	for _, r := range cutReasons {
		out[r] = s.cutTotal[r]
	}
	return out
}

func describeCuts(c cuts) string {
	var parts []string
	for _, r := range cutReasons {
		if n := c[r]; n > 0 {
			switch r {
			case cutEndpoints:
				parts = append(parts, fmt.Sprintf("%d endpoint addresses over the limit not served", n))
			case cutPorts:
				parts = append(parts, fmt.Sprintf("%d ports over the limit not served", n))
			case cutLongNames:
				parts = append(parts, fmt.Sprintf("%d names over 255 octets not served", n))
			case cutInvalidName:
				parts = append(parts, "its name or namespace is not a DNS label (RFC 1123): not served")
			}
		}
	}
	return strings.Join(parts, "; ")
}

// reset forgets every service (the ServiceImport API went away).
func (s *store) reset() {
	s.mu.Lock()
	s.names = map[string]*node{}
	s.owned = map[string][]string{}
	s.perNamespace = map[string]int{}
	s.cut, s.cutTotal = map[string]cuts{}, cuts{}
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
