package multicluster

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/miekg/dns"

	"github.com/coredns-mcs/coredns-mcs/plugin/multicluster/object"
)

// group is a unit of answer records that is returned whole or not at all: one endpoint's records
// of a headless service (so A and AAAA, and SRV with its additional records, stay consistent), or
// every record of a ClusterSetIP name.
type group struct {
	rrs   []dns.RR
	extra []dns.RR
	// size is the group's estimated wire size in a compressed reply.
	size int
}

// node holds the precomputed answers of one name. Nodes are immutable once published.
type node struct {
	kind     recordKind
	a, aaaa  []group
	srv      []group
	bounded  bool  // a/aaaa/srv hold one group per endpoint and may be cut to fit the reply
	weights  []int // per endpoint: the larger of its A and AAAA group sizes (bounded nodes only)
	nxdomain bool  // the name is known but answers NXDOMAIN (a headless import with nothing ready)
	// reason explains an empty answer in an extended DNS error (RFC 8914).
	reason string
}

// serviceData is everything known about one imported service, the input of buildService.
type serviceData struct {
	namespace, name string
	imp             *object.ServiceImport
	derived         *object.Service // may be nil
	slices          []*object.EndpointSlice
}

// buildService computes every name, with its answers, that one imported service owns in zone.
// It is a pure function of its input: the store calls it on every change of that service.
func buildService(zone string, ttl uint32, d serviceData) map[string]*node {
	base := strings.ToLower(d.name + "." + d.namespace + ".svc." + zone)
	names := map[string]*node{}
	if d.imp.Type == object.Headless {
		buildHeadless(names, base, ttl, d)
	} else {
		buildClusterSetIP(names, base, ttl, d)
	}
	return names
}

func buildClusterSetIP(names map[string]*node, base string, ttl uint32, d serviceData) {
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

	svc := &node{kind: kindService, reason: reason}
	names[base] = svc
	for _, p := range ports {
		if p.Name == "" || !validLabel(p.Name) || !validLabel(p.Protocol) {
			continue
		}
		proto := "_" + p.Protocol + "." + base
		if names[proto] == nil {
			names[proto] = &node{kind: kindSRV, reason: reason}
		}
		pname := "_" + strings.ToLower(p.Name) + "." + proto
		names[pname] = &node{kind: kindSRV, reason: reason}
	}
	if reason != "" {
		return
	}

	var a, aaaa []dns.RR
	for _, ip := range vips {
		if ip.Is4() {
			a = append(a, newA(base, ttl, ip))
		} else {
			aaaa = append(aaaa, newAAAA(base, ttl, ip))
		}
	}
	if len(a) > 0 {
		svc.a = []group{{rrs: a, size: len(a) * sizeA}}
	}
	if len(aaaa) > 0 {
		svc.aaaa = []group{{rrs: aaaa, size: len(aaaa) * sizeAAAA}}
	}
	extra := append(append([]dns.RR{}, a...), aaaa...)
	extraSize := len(a)*sizeA + len(aaaa)*sizeAAAA
	var all []dns.RR
	for _, p := range ports {
		rr := newSRV(base, ttl, 100, uint16(p.Port), base)
		all = append(all, rr)
		if p.Name == "" || !validLabel(p.Name) || !validLabel(p.Protocol) {
			continue
		}
		pname := "_" + strings.ToLower(p.Name) + "._" + p.Protocol + "." + base
		n := names[pname]
		rrs := append(n.srvRRs(), newSRV(pname, ttl, 100, uint16(p.Port), base))
		n.srv = []group{{rrs: rrs, extra: extra, size: len(rrs)*sizeSRV(base) + extraSize}}
	}
	if len(all) > 0 {
		svc.srv = []group{{rrs: all, extra: extra, size: len(all)*sizeSRV(base) + extraSize}}
	}
}

func (n *node) srvRRs() []dns.RR {
	if len(n.srv) == 0 {
		return nil
	}
	return n.srv[0].rrs
}

// endpointGroup is one ready endpoint of a headless import: a hostname (or an IP-derived label)
// in one source cluster, with its addresses and the ports of its slice.
type endpointGroup struct {
	cluster, label string
	v4, v6         []netip.Addr
	ports          []object.Port
}

func buildHeadless(names map[string]*node, base string, ttl uint32, d serviceData) {
	eps := headlessEndpoints(d.slices)
	if len(eps) == 0 {
		reason := fmt.Sprintf("headless service %s/%s is imported but has no ready endpoints in any cluster", d.namespace, d.name)
		names[base] = &node{kind: kindService, nxdomain: true, reason: reason}
		return
	}
	svc := &node{kind: kindService, bounded: true}
	names[base] = svc
	weight := uint16(max(1, 100/len(eps)))

	type portKey struct{ name, proto string }
	byPort := map[portKey]*node{}
	var portOrder []portKey
	for _, ep := range eps {
		host := ""
		if ep.cluster != "" {
			host = ep.label + "." + ep.cluster + "." + base
		}
		var a, aaaa []dns.RR
		for _, ip := range ep.v4 {
			a = append(a, newA(base, ttl, ip))
		}
		for _, ip := range ep.v6 {
			aaaa = append(aaaa, newAAAA(base, ttl, ip))
		}
		ga := group{rrs: a, size: len(a) * sizeA}
		gaaaa := group{rrs: aaaa, size: len(aaaa) * sizeAAAA}
		svc.a = append(svc.a, ga)
		svc.aaaa = append(svc.aaaa, gaaaa)
		svc.weights = append(svc.weights, max(ga.size, gaaaa.size))

		if host == "" {
			// No valid cluster id: the endpoint is part of the service's answers but has no name.
			svc.srv = append(svc.srv, group{})
			continue
		}
		var hostA, hostAAAA []dns.RR
		for _, ip := range ep.v4 {
			hostA = append(hostA, newA(host, ttl, ip))
		}
		for _, ip := range ep.v6 {
			hostAAAA = append(hostAAAA, newAAAA(host, ttl, ip))
		}
		hn := &node{kind: kindEndpoint}
		if len(hostA) > 0 {
			hn.a = []group{{rrs: hostA, size: len(hostA) * sizeA}}
		}
		if len(hostAAAA) > 0 {
			hn.aaaa = []group{{rrs: hostAAAA, size: len(hostAAAA) * sizeAAAA}}
		}
		names[host] = hn
		// Empty non-terminals between the hostname and the service: <clusterid>.<svc>… has no
		// records (KEP-1645 2.4.4) but exists as a name, so it answers NODATA, not NXDOMAIN (RFC 8020).
		for ent := host[strings.IndexByte(host, '.')+1:]; ent != base; ent = ent[strings.IndexByte(ent, '.')+1:] {
			if names[ent] == nil {
				names[ent] = &node{kind: kindEndpoint}
			}
		}

		extra := append(append([]dns.RR{}, hostA...), hostAAAA...)
		extraSize := len(hostA)*sizeA + len(hostAAAA)*sizeAAAA
		var srvs []dns.RR
		for _, p := range ep.ports {
			srvs = append(srvs, newSRV(base, ttl, weight, uint16(p.Port), host))
			if p.Name == "" || !validLabel(p.Name) || !validLabel(p.Protocol) {
				continue
			}
			k := portKey{strings.ToLower(p.Name), p.Protocol}
			pn := byPort[k]
			if pn == nil {
				pn = &node{kind: kindSRV, bounded: true}
				byPort[k] = pn
				portOrder = append(portOrder, k)
			}
			pname := "_" + k.name + "._" + k.proto + "." + base
			pn.srv = append(pn.srv, group{
				rrs:   []dns.RR{newSRV(pname, ttl, weight, uint16(p.Port), host)},
				extra: extra,
				size:  sizeSRV(host) + extraSize,
			})
		}
		svc.srv = append(svc.srv, group{rrs: srvs, extra: extra, size: len(srvs)*sizeSRV(host) + extraSize})
	}
	for _, k := range portOrder {
		proto := "_" + k.proto + "." + base
		if names[proto] == nil {
			names[proto] = &node{kind: kindSRV}
		}
		names["_"+k.name+"."+proto] = byPort[k]
	}
}

// headlessEndpoints groups the ready endpoints of every slice by source cluster and hostname (or
// pod, so the IPv4 and IPv6 slices of one dual-stack pod give one name), in a stable order.
func headlessEndpoints(slices []*object.EndpointSlice) []*endpointGroup {
	byKey := map[string]*endpointGroup{}
	var out []*endpointGroup
	for _, s := range slices {
		cluster := s.Cluster
		if !validClusterID(cluster) {
			cluster = ""
		}
		for _, e := range s.Endpoints {
			if !e.Ready {
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
			if g == nil {
				g = &endpointGroup{cluster: cluster, label: label}
				byKey[key] = g
				out = append(out, g)
			}
			for _, ip := range e.Addresses {
				if ip.Is4() {
					g.v4 = appendAddr(g.v4, ip)
				} else {
					g.v6 = appendAddr(g.v6, ip)
				}
			}
			for _, p := range s.Ports {
				if !containsPort(g.ports, p) {
					g.ports = append(g.ports, p)
				}
			}
		}
	}
	for _, g := range out {
		if g.label == "" {
			g.label = ipLabel(g)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].cluster != out[j].cluster {
			return out[i].cluster < out[j].cluster
		}
		return out[i].label < out[j].label
	})
	// Two IP-derived labels can only collide if the same address is in two groups; keep the first.
	dedup := out[:0]
	for i, g := range out {
		if i > 0 && g.cluster == out[i-1].cluster && g.label == out[i-1].label {
			continue
		}
		dedup = append(dedup, g)
	}
	return dedup
}

// ipLabel is the system-assigned name of an endpoint without a hostname: its first address with
// dots or colons turned into dashes (10-10-0-5, fd00--5), as cluster.local does.
func ipLabel(g *endpointGroup) string {
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

func appendAddr(list []netip.Addr, ip netip.Addr) []netip.Addr {
	for _, x := range list {
		if x == ip {
			return list
		}
	}
	return append(list, ip)
}

func containsPort(list []object.Port, p object.Port) bool {
	for _, x := range list {
		if x == p {
			return true
		}
	}
	return false
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
	for _, s := range slices {
		for _, p := range s.Ports {
			if !containsPort(out, p) {
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

// Estimated sizes in a compressed reply: the owner name is a 2-byte pointer, 10 bytes of fixed
// header, then the RDATA. SRV targets are not compressed (RFC 2782).
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
