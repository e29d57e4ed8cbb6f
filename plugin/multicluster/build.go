package multicluster

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/coredns-mcs/coredns-mcs/plugin/multicluster/object"
)

// Limits bound what one imported service may cost, whatever its exporters put in their
// EndpointSlices (semi-trusted input from other clusters). What they cut is counted, never served
// half-built: a service over a limit answers with the first endpoints and ports in a stable order.
type Limits struct {
	// Endpoints is the most endpoint addresses (a dual-stack pod counts two) one service answers with.
	Endpoints int
	// Ports is the most distinct ports (name, protocol, number) one service answers SRV for.
	Ports int
}

// DefaultLimits are generous for real services (an EndpointSlice holds at most 1,000 endpoints;
// kube-proxy and the endpoints controller stop at 1,000 too) and keep the cost of a hostile export
// to a few MiB.
var DefaultLimits = Limits{Endpoints: 5000, Ports: 1000}

// maxNameLen is the longest name in wire format (RFC 1035 2.3.4). Longer names are never built:
// a client cannot unpack a reply that holds one.
const maxNameLen = 255

// Reasons something is left out of the answers (the metric's reason label).
const (
	cutEndpoints   = "endpoints"     // over Limits.Endpoints
	cutPorts       = "ports"         // over Limits.Ports
	cutLongNames   = "long_names"    // a name over 255 octets
	cutInvalidName = "invalid_names" // an import whose name or namespace is not a DNS label
)

var cutReasons = []string{cutEndpoints, cutPorts, cutLongNames, cutInvalidName}

// cuts counts, per reason, what the limits left out of one service.
type cuts map[string]int

func (c cuts) add(reason string, n int) {
	if n > 0 {
		c[reason] += n
	}
}

// node holds what one name answers. Nodes are immutable once published.
//
// A ClusterSetIP service's names hold their few records ready made (a, aaaa, srv with extra).
// A headless service's names point at its endpoint set (hs) instead, and the handler copies the
// window of endpoints that fits each reply: the cost of building is linear in the endpoints plus
// the ports, never their product, and a query costs what it answers.
type node struct {
	kind recordKind
	// owner is the key (namespace/name) of the service that holds the name, set by the store.
	owner string
	// nxdomain: the name is known but answers NXDOMAIN (a headless import with nothing ready).
	nxdomain bool
	// reason explains an empty answer in an extended DNS error (RFC 8914).
	reason string

	a, aaaa, srv, extra []dns.RR

	hs *headlessSet
	// ep is the endpoint of a per-endpoint name (<hostname>.<clusterid>.<svc>…), or -1.
	ep int
	// ranges are the endpoints (and their ports) behind the headless service name and its
	// _<port>._<proto> names.
	ranges []epRange
	count  int // endpoints in ranges
}

// epRange is a run of a headless set's endpoints that share their ports.
type epRange struct {
	lo, hi int
	ports  []object.Port // the ports this name answers for these endpoints
}

// headlessSet is the endpoint set of one headless service, shared by all its names.
type headlessSet struct {
	eps    []endpoint
	ttl    uint32
	weight uint16 // SRV weight: 100 spread over the endpoints
	n4, n6 int    // endpoints with IPv4 / IPv6 addresses
}

// endpoint is one named endpoint of a headless service: a hostname (or IP-derived label) in one
// source cluster. Its records are templates: the handler copies them and sets the owner name.
type endpoint struct {
	target string // its FQDN, or "" when it has none (no valid cluster id, or a name too long)
	a      []dns.A
	aaaa   []dns.AAAA
}

// weight is the wire size an endpoint's addresses take in an A or AAAA answer, whichever is
// larger: A and AAAA answers then pick the same endpoints.
func (e *endpoint) weight() int { return max(len(e.a)*sizeA, len(e.aaaa)*sizeAAAA) }

// serviceData is everything known about one imported service, the input of buildService.
type serviceData struct {
	namespace, name string
	imp             *object.ServiceImport
	derived         *object.Service // may be nil
	slices          []*object.EndpointSlice
	// local is this cluster's id ("" if unknown): a headless import whose derived Service
	// prefers close endpoints answers its service names with this cluster's, when it has any.
	local string
}

// buildService computes every name, with its answers, that one imported service owns in zone,
// and what the limits left out. It is a pure function of its input, linear in its size.
func buildService(zone string, ttl uint32, lim Limits, d serviceData) (map[string]*node, cuts) {
	cut := cuts{}
	names := map[string]*node{}
	if !validLabel(d.name) || !validLabel(d.namespace) {
		cut.add(cutInvalidName, 1)
		return names, cut
	}
	base := strings.ToLower(d.name + "." + d.namespace + ".svc." + zone)
	if len(base)+1 > maxNameLen {
		cut.add(cutLongNames, 1)
		return names, cut
	}
	b := builder{names: names, cut: cut, base: base, ttl: ttl, lim: lim}
	if d.imp.Type == object.Headless {
		b.headless(d)
	} else {
		b.clusterSetIP(d)
	}
	return names, cut
}

type builder struct {
	names map[string]*node
	cut   cuts
	base  string
	ttl   uint32
	lim   Limits
}

// add publishes n under name unless the name is too long; it reports whether it did.
func (b *builder) add(name string, n *node) bool {
	if len(name)+1 > maxNameLen {
		b.cut.add(cutLongNames, 1)
		return false
	}
	b.names[name] = n
	return true
}

// portName returns the _<port>._<proto> name of p under the service, or "" if p has none.
func (b *builder) portName(p object.Port) (pname, proto string) {
	// "_" + the name must stay one label of at most 63 octets.
	if p.Name == "" || !validLabel(p.Name) || !validLabel(p.Protocol) || len(p.Name) > 62 || len(p.Protocol) > 62 {
		return "", ""
	}
	proto = "_" + p.Protocol + "." + b.base
	return "_" + strings.ToLower(p.Name) + "." + proto, proto
}

func (b *builder) clusterSetIP(d serviceData) {
	vips := d.imp.IPs
	if len(vips) == 0 && d.derived != nil {
		vips = d.derived.ClusterIPs
	}
	reason := ""
	switch {
	case len(d.slices) > 0 && !anyReady(d.slices):
		reason = fmt.Sprintf("service %s/%s is imported but has no ready endpoints in any cluster", d.namespace, d.name)
	case len(vips) == 0:
		reason = fmt.Sprintf("service %s/%s is imported but has no ClusterSetIP yet", d.namespace, d.name)
	}
	ports := d.imp.Ports
	if len(ports) == 0 {
		ports = slicePorts(d.slices)
	}
	ports = b.capPorts(ports)

	svc := &node{kind: kindService, reason: reason, ep: -1}
	b.names[b.base] = svc
	byName := map[string]*node{}
	for _, p := range ports {
		pname, proto := b.portName(p)
		if pname == "" || byName[pname] != nil {
			continue
		}
		n := &node{kind: kindSRV, reason: reason, ep: -1}
		if b.add(pname, n) {
			byName[pname] = n
			if b.names[proto] == nil {
				b.names[proto] = &node{kind: kindSRV, reason: reason, ep: -1}
			}
		}
	}
	if reason != "" {
		return
	}

	var a, aaaa []dns.RR
	for _, ip := range vips {
		if ip.Is4() {
			a = append(a, newA(b.base, b.ttl, ip))
		} else {
			aaaa = append(aaaa, newAAAA(b.base, b.ttl, ip))
		}
	}
	svc.a, svc.aaaa = a, aaaa
	extra := append(append([]dns.RR{}, a...), aaaa...)
	for _, p := range ports {
		svc.srv = append(svc.srv, newSRV(b.base, b.ttl, 100, uint16(p.Port), b.base))
		svc.extra = extra
		if pname, _ := b.portName(p); byName[pname] != nil {
			n := byName[pname]
			n.srv = append(n.srv, newSRV(pname, b.ttl, 100, uint16(p.Port), b.base))
			n.extra = extra
		}
	}
}

// capPorts returns the distinct ports of list, at most Limits.Ports of them, counting the
// distinct rest.
func (b *builder) capPorts(list []object.Port) []object.Port {
	seen := make(map[object.Port]bool, min(len(list), b.lim.Ports))
	out := make([]object.Port, 0, min(len(list), b.lim.Ports))
	for _, p := range list {
		if seen[p] {
			continue
		}
		seen[p] = true
		if len(out) >= b.lim.Ports {
			b.cut.add(cutPorts, 1) // each distinct port once, as for headless services
			continue
		}
		out = append(out, p)
	}
	return out
}

// group collects one named endpoint while the slices are read.
type group struct {
	cluster, label, key string
	v4, v6              []netip.Addr
	set                 int // index of its port set
}

// headless builds the endpoint set of a headless service and its names. Everything here is
// linear in the endpoints and ports read (maps, no nested scans); the limits bound what is kept.
func (b *builder) headless(d serviceData) {
	// Slices in name order: what the limits keep is the same on every replica and every rebuild.
	sl := slices.Clone(d.slices)
	slices.SortFunc(sl, func(x, y *object.EndpointSlice) int { return strings.Compare(x.Name, y.Name) })

	// The service's ports, capped; then each slice's port set, interned.
	allowed := map[object.Port]bool{}
	droppedPorts := map[object.Port]bool{}
	for _, s := range sl {
		for _, p := range s.Ports {
			if allowed[p] || droppedPorts[p] {
				continue
			}
			if len(allowed) >= b.lim.Ports {
				droppedPorts[p] = true
				continue
			}
			allowed[p] = true
		}
	}
	b.cut.add(cutPorts, len(droppedPorts))
	sets := portSets{index: map[string]int{}, unions: map[[2]int]int{}}
	sliceSet := make([]int, len(sl))
	for i, s := range sl {
		sliceSet[i] = sets.intern(s.Ports, allowed)
	}

	// Named endpoints by source cluster and hostname (or pod, so the IPv4 and IPv6 slices of one
	// dual-stack pod give one name), at most Limits.Endpoints addresses in all.
	type addrKey struct {
		g  *group
		ip netip.Addr
	}
	byKey := map[string]*group{}
	seen := map[addrKey]bool{}
	var groups []*group
	addrs, cutAddrs := 0, 0
	for i, s := range sl {
		cluster := s.Cluster
		if !validClusterID(cluster) {
			cluster = ""
		}
		for _, e := range s.Endpoints {
			if !e.Ready || len(e.Addresses) == 0 {
				continue
			}
			label := e.Hostname
			if !validLabel(label) {
				label = ""
			}
			key := cluster + "/"
			switch {
			case label != "":
				key += "h:" + label
			case e.Pod != "":
				key += "p:" + e.Pod
			default:
				key += "a:" + e.Addresses[0].String()
			}
			g := byKey[key]
			for _, ip := range e.Addresses {
				if g != nil && seen[addrKey{g, ip}] {
					continue
				}
				if addrs >= b.lim.Endpoints {
					cutAddrs++
					continue
				}
				if g == nil {
					g = &group{cluster: cluster, label: label, key: key, set: sliceSet[i]}
					byKey[key] = g
					groups = append(groups, g)
				}
				seen[addrKey{g, ip}] = true
				addrs++
				if ip.Is4() {
					g.v4 = append(g.v4, ip)
				} else {
					g.v6 = append(g.v6, ip)
				}
			}
			if g != nil && g.set != sliceSet[i] {
				g.set = sets.union(g.set, sliceSet[i])
			}
		}
	}
	b.cut.add(cutEndpoints, cutAddrs)
	if len(groups) == 0 {
		reason := fmt.Sprintf("headless service %s/%s is imported but has no ready endpoints in any cluster", d.namespace, d.name)
		b.names[b.base] = &node{kind: kindService, nxdomain: true, reason: reason, ep: -1}
		return
	}

	// System-assigned labels; two names alike in one cluster (a hostname equal to another
	// endpoint's IP label): the first in key order keeps it.
	for _, g := range groups {
		if g.label == "" {
			g.label = ipLabel(g)
		}
	}
	slices.SortFunc(groups, func(x, y *group) int {
		return cmpStrings(x.cluster, y.cluster, x.label, y.label, x.key, y.key)
	})
	groups = slices.CompactFunc(groups, func(x, y *group) bool { return x.cluster == y.cluster && x.label == y.label })
	// Endpoints sharing ports are kept together, so each name's endpoints are a few ranges.
	slices.SortStableFunc(groups, func(x, y *group) int { return x.set - y.set })
	// The service's own names (its name and _port._proto names) answer the first scope
	// endpoints: all of them, or, when the import prefers close endpoints (its
	// trafficDistribution) and this cluster has ready ones, only this cluster's (moved first).
	// Every endpoint keeps its own name.
	scope := len(groups)
	if d.local != "" && d.derived != nil && d.derived.PreferClose {
		local := 0
		for _, g := range groups {
			if g.cluster == d.local {
				local++
			}
		}
		if local > 0 {
			rank := func(g *group) int {
				if g.cluster == d.local {
					return 0
				}
				return 1
			}
			slices.SortStableFunc(groups, func(x, y *group) int { return rank(x) - rank(y) })
			scope = local
		}
	}

	hs := &headlessSet{eps: make([]endpoint, len(groups)), ttl: b.ttl, weight: uint16(max(1, 100/scope))}
	var n4, n6 int
	for _, g := range groups {
		n4 += len(g.v4)
		n6 += len(g.v6)
	}
	// One backing array per record type for the whole service.
	as, aaaas := make([]dns.A, 0, n4), make([]dns.AAAA, 0, n6)
	svc := &node{kind: kindService, hs: hs, ep: -1}
	b.names[b.base] = svc
	for i, g := range groups {
		e := &hs.eps[i]
		lo := len(as)
		for _, ip := range g.v4 {
			as = append(as, *newA("", b.ttl, ip).(*dns.A))
		}
		e.a = as[lo:len(as):len(as)]
		lo = len(aaaas)
		for _, ip := range g.v6 {
			aaaas = append(aaaas, *newAAAA("", b.ttl, ip).(*dns.AAAA))
		}
		e.aaaa = aaaas[lo:len(aaaas):len(aaaas)]
		if len(e.a) > 0 && i < scope {
			hs.n4++
		}
		if len(e.aaaa) > 0 && i < scope {
			hs.n6++
		}
		if g.cluster == "" {
			continue // no valid cluster id: part of the service's answers, but without a name
		}
		host := g.label + "." + g.cluster + "." + b.base
		if !b.add(host, &node{kind: kindEndpoint, hs: hs, ep: i}) {
			continue
		}
		e.target = host
		// Empty non-terminals between the hostname and the service: <clusterid>.<svc>… has no
		// records (KEP-1645 2.4.4) but exists as a name, so it answers NODATA, not NXDOMAIN (RFC 8020).
		for ent := host[strings.IndexByte(host, '.')+1:]; ent != b.base; ent = ent[strings.IndexByte(ent, '.')+1:] {
			if b.names[ent] == nil {
				b.names[ent] = &node{kind: kindEndpoint, ep: -1}
			}
		}
	}

	// The service name's ranges (every endpoint, all its ports) and the _<port>._<proto> names'
	// ranges (the endpoints whose set has that port).
	byName := map[string]*node{}
	var order []string
	for lo := 0; lo < scope; {
		set := groups[lo].set
		hi := lo + 1
		for hi < scope && groups[hi].set == set {
			hi++
		}
		ports := sets.list[set]
		svc.ranges = append(svc.ranges, epRange{lo: lo, hi: hi, ports: ports})
		for j := 0; j < len(ports); {
			k := j + 1
			for k < len(ports) && strings.EqualFold(ports[k].Name, ports[j].Name) && ports[k].Protocol == ports[j].Protocol {
				k++
			}
			pname, proto := b.portName(ports[j])
			if pname != "" {
				n := byName[pname]
				if n == nil {
					n = &node{kind: kindSRV, hs: hs, ep: -1}
					if !b.add(pname, n) {
						byName[pname] = &node{} // counted once; never published
						j = k
						continue
					}
					byName[pname] = n
					order = append(order, pname)
					if b.names[proto] == nil {
						b.names[proto] = &node{kind: kindSRV, ep: -1}
					}
				}
				if n.hs != nil {
					n.ranges = append(n.ranges, epRange{lo: lo, hi: hi, ports: ports[j:k:k]})
					n.count += hi - lo
				}
			}
			j = k
		}
		lo = hi
	}
	svc.count = scope
}

// portSets interns the port sets of a service's slices: sorted by name, protocol and number,
// without duplicates, only the allowed ports.
type portSets struct {
	list   [][]object.Port
	index  map[string]int
	unions map[[2]int]int
}

func (s *portSets) intern(ports []object.Port, allowed map[object.Port]bool) int {
	out := make([]object.Port, 0, len(ports))
	for _, p := range ports {
		if allowed == nil || allowed[p] {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(x, y object.Port) int {
		if c := cmpStrings(strings.ToLower(x.Name), strings.ToLower(y.Name), x.Protocol, y.Protocol); c != 0 {
			return c
		}
		return int(x.Port) - int(y.Port)
	})
	out = slices.Compact(out)
	var key strings.Builder
	for _, p := range out {
		fmt.Fprintf(&key, "%s/%s/%d,", p.Name, p.Protocol, p.Port)
	}
	if i, ok := s.index[key.String()]; ok {
		return i
	}
	s.list = append(s.list, out)
	s.index[key.String()] = len(s.list) - 1
	return len(s.list) - 1
}

// union interns the union of two sets (an endpoint in two slices: a dual-stack pod).
func (s *portSets) union(a, b int) int {
	if u, ok := s.unions[[2]int{a, b}]; ok {
		return u
	}
	u := s.intern(append(slices.Clone(s.list[a]), s.list[b]...), nil)
	s.unions[[2]int{a, b}] = u
	return u
}

// cmpStrings compares pairs of strings in order: cmpStrings(a1, b1, a2, b2, …).
func cmpStrings(pairs ...string) int {
	for i := 0; i+1 < len(pairs); i += 2 {
		if c := strings.Compare(pairs[i], pairs[i+1]); c != 0 {
			return c
		}
	}
	return 0
}

// ipLabel is the system-assigned name of an endpoint without a hostname: its first address with
// dots or colons turned into dashes (10-10-0-5, fd00--5), as cluster.local does.
func ipLabel(g *group) string {
	var ip netip.Addr
	if len(g.v4) > 0 {
		ip = g.v4[0]
	} else {
		ip = g.v6[0]
	}
	s := ip.String()
	if ip.Is4() {
		return strings.ReplaceAll(s, ".", "-")
	}
	return strings.ReplaceAll(s, ":", "-")
}

func anyReady(slices []*object.EndpointSlice) bool {
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.Ready {
				return true
			}
		}
	}
	return false
}

// slicePorts is the union of the slices' ports, for imports that list none.
func slicePorts(slices []*object.EndpointSlice) []object.Port {
	var out []object.Port
	seen := map[object.Port]bool{}
	for _, s := range slices {
		for _, p := range s.Ports {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// validLabel reports whether s can be one DNS label of a name we serve (RFC 1123 label).
func validLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c >= 'A' && c <= 'Z':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

// validClusterID reports whether id is one or two DNS labels (KEP-1645 allows `name` or `name.ctx`).
func validClusterID(id string) bool {
	first, rest, two := strings.Cut(id, ".")
	if !validLabel(first) {
		return false
	}
	return !two || validLabel(rest)
}

// Sizes in a compressed reply: the owner name is a 2-byte pointer, 10 bytes of fixed header, then
// the RDATA. SRV targets are not compressed (RFC 2782), but later owner names point at them.
const (
	sizeA    = 2 + 10 + 4
	sizeAAAA = 2 + 10 + 16
)

func sizeSRV(target string) int { return 2 + 10 + 6 + len(target) + 1 }

func newA(name string, ttl uint32, ip netip.Addr) dns.RR {
	b := ip.As4()
	return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: b[:]}
}

func newAAAA(name string, ttl uint32, ip netip.Addr) dns.RR {
	b := ip.As16()
	return &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: b[:]}
}

func newSRV(name string, ttl uint32, weight, port uint16, target string) dns.RR {
	return &dns.SRV{
		Hdr:      dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: ttl},
		Priority: 0, Weight: weight, Port: port, Target: target,
	}
}
