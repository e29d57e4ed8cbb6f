package multicluster

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/coredns-mcs/coredns-mcs/plugin/multicluster/object"
)

// specReader turns fuzz bytes into choices; past the end every choice is 0.
type specReader struct {
	b []byte
	i int
}

func (r *specReader) byte() int {
	if r.i >= len(r.b) {
		return 0
	}
	r.i++
	return int(r.b[r.i-1])
}

func (r *specReader) pick(list []string) string { return list[r.byte()%len(list)] }

// Palettes of what exporters write, hostile shapes first among the ordinary ones.
var (
	fuzzHosts = []string{"", "web-0", "db", "db", strings.Repeat("h", 63), "UPPER", "a_b", "x.y", "-bad",
		"10-10-0-1", strings.Repeat("k", 64)}
	fuzzClusters = []string{"member1", "member2.ctx", "member1", strings.Repeat("c", 63), strings.Repeat("c", 63) + "." + strings.Repeat("d", 63),
		"", "a.b.c", "bad_id", "member2"}
	fuzzImports = []string{"web", "db", strings.Repeat("s", 63), "web-0.member1.web", "Web", "a_b", "x"}
	fuzzNSs     = []string{"default", strings.Repeat("n", 63), "prod"}
	fuzzPorts   = []string{"http", "", "dns", "HTTP", strings.Repeat("p", 63), "bad_port"}
	fuzzProtos  = []string{"tcp", "udp", "sctp"}
)

// fuzzService builds one imported service from the spec: up to a few slices of up to thousands
// of endpoints (shared hostnames, dual-stack, not ready) and up to a thousand ports.
func fuzzService(r *specReader) *serviceData {
	ns, name := r.pick(fuzzNSs), r.pick(fuzzImports)
	d := &serviceData{namespace: ns, name: name, imp: &object.ServiceImport{}}
	d.imp.Name, d.imp.Namespace = name, ns
	if r.byte()%3 != 0 {
		d.imp.Type = object.Headless
	} else {
		switch r.byte() % 3 {
		case 1:
			d.imp.IPs = addrs("10.13.0.1")
		case 2:
			d.imp.IPs = addrs("10.13.0.1", "fd00::1")
		}
		for range r.byte() % 4 {
			d.imp.Ports = append(d.imp.Ports, object.Port{Name: r.pick(fuzzPorts), Protocol: r.pick(fuzzProtos), Port: int32(1 + r.byte())})
		}
	}
	for s := range 1 + r.byte()%4 {
		sl := &object.EndpointSlice{Service: name, Cluster: strings.ToLower(r.pick(fuzzClusters))}
		sl.Name, sl.Namespace = "s"+strconv.Itoa(s), ns
		nports := r.byte() % 5
		if r.byte()%16 == 0 {
			nports = 1000
		}
		for p := range nports {
			pn := r.pick(fuzzPorts)
			if nports > 4 {
				pn = "p" + strconv.Itoa(p)
			}
			sl.Ports = append(sl.Ports, object.Port{Name: pn, Protocol: r.pick(fuzzProtos), Port: int32(1 + p + r.byte())})
		}
		neps := r.byte() % 8
		if r.byte()%16 == 0 {
			neps = 500 * (1 + r.byte()%4)
		}
		host := r.pick(fuzzHosts)
		for e := range neps {
			h := host
			if k := r.byte(); k%3 == 0 {
				h = r.pick(fuzzHosts)
			} else if k%3 == 1 && neps < 100 {
				h = "pod-" + strconv.Itoa(e)
			}
			var ips []netip.Addr
			switch r.byte() % 4 {
			case 0, 1:
				ips = addrs(netip.AddrFrom4([4]byte{10, byte(s), byte(e >> 8), byte(e)}).String())
			case 2:
				ips = addrs(netip.AddrFrom16([16]byte{0xfd, 0, 15: byte(e), 14: byte(e >> 8), 13: byte(s)}).String())
			case 3:
				ips = addrs(netip.AddrFrom4([4]byte{10, byte(s), byte(e >> 8), byte(e)}).String(), "10.99.99.99")
			}
			sl.Endpoints = append(sl.Endpoints, object.Endpoint{Hostname: strings.ToLower(h), Pod: "pod-" + strconv.Itoa(e%50),
				Ready: r.byte()%8 != 0, Addresses: ips})
		}
		d.slices = append(d.slices, sl)
	}
	return d
}

// holdings tells which records of qtype a name holds, ignoring reply sizes (without listing
// them: a 1,000 × 1,000 export holds a million SRV records).
type holdings struct {
	count int             // how many records
	fixed map[string]bool // ClusterSetIP and address records, by rdata
	// SRV of a headless name: the endpoint of each target, the ports of each range.
	target map[string]int
	n      *node
}

func holdingsOf(n *node, qtype uint16) holdings {
	h := holdings{fixed: map[string]bool{}, n: n}
	if n.hs == nil {
		rrs, _ := n.fixed(qtype)
		for _, rr := range rrs {
			h.fixed[rdata(rr)] = true
		}
		h.count = len(rrs)
		return h
	}
	eps := n.hs.eps
	switch {
	case qtype == dns.TypeSRV:
		h.target = map[string]int{}
		for _, r := range n.ranges {
			for i := r.lo; i < r.hi; i++ {
				if eps[i].target != "" {
					h.target[eps[i].target] = i
					h.count += len(r.ports)
				}
			}
		}
	case qtype == dns.TypeA || qtype == dns.TypeAAAA:
		if n.ep >= 0 {
			eps = eps[n.ep : n.ep+1]
		} else if n.kind != kindService {
			return h
		}
		for i := range eps {
			if qtype == dns.TypeA {
				for _, a := range eps[i].a {
					h.fixed[a.A.String()] = true
				}
			} else {
				for _, a := range eps[i].aaaa {
					h.fixed[a.AAAA.String()] = true
				}
			}
		}
		h.count = len(h.fixed)
	}
	return h
}

func (h holdings) holds(rr dns.RR) bool {
	srv, ok := rr.(*dns.SRV)
	if !ok || h.target == nil {
		return h.fixed[rdata(rr)]
	}
	i, ok := h.target[strings.ToLower(srv.Target)]
	if !ok {
		return false
	}
	for _, r := range h.n.ranges {
		if i >= r.lo && i < r.hi {
			for _, p := range r.ports {
				if uint16(p.Port) == srv.Port {
					return true
				}
			}
		}
	}
	return false
}

func rdatas(rrs []dns.RR) (out []string) {
	for _, rr := range rrs {
		out = append(out, rdata(rr))
	}
	return out
}

func rdata(rr dns.RR) string {
	switch x := rr.(type) {
	case *dns.A:
		return x.A.String()
	case *dns.AAAA:
		return x.AAAA.String()
	case *dns.SRV:
		return strconv.Itoa(int(x.Port)) + " " + strings.ToLower(x.Target)
	}
	return rr.String()
}

// FuzzStore stores hostile imports and slices, then queries one of the names they built (or any
// name) and checks every reply: it packs and unpacks; fits the client's budget; holds only records
// the name has, and at least one when it has any (or TC, for an SRV record that cannot fit with
// the question); every address answered is a ready address the exporters published; A and AAAA
// answers of a headless service come from the same endpoints.
func FuzzStore(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, uint16(0), uint8(1), uint16(0), false, uint8(3))
	f.Add([]byte{0, 3, 2, 1, 2, 0, 1, 2, 3}, uint16(1), uint8(2), uint16(512), false, uint8(9))
	f.Add([]byte{4, 1, 1, 0, 3, 1, 4, 16, 0, 0, 2}, uint16(2), uint8(3), uint16(1232), false, uint8(0))
	f.Add([]byte{1, 0, 0, 1, 0, 0, 1, 0, 2, 1, 1, 0, 0, 7, 0}, uint16(5), uint8(0), uint16(0), true, uint8(200))
	f.Fuzz(func(t *testing.T, spec []byte, pick uint16, qt uint8, bufsize uint16, tcp bool, client uint8) {
		r := &specReader{b: spec}
		st := newStore([]string{"clusterset.local."}, 5)
		var services []*serviceData
		for range 1 + r.byte()%3 {
			d := fuzzService(r)
			services = append(services, d)
			st.set(d.namespace+"/"+d.name, d)
		}
		m := &MultiCluster{Zones: []string{"clusterset.local."}, ttl: 5, store: st,
			ctrl: &fakeSource{state: stateSynced}, Next: test.NextHandler(dns.RcodeRefused, nil)}

		st.mu.RLock()
		names := make([]string, 0, len(st.names))
		for name := range st.names {
			names = append(names, name)
		}
		st.mu.RUnlock()
		slices.Sort(names)
		qname := "nothing.default.svc.clusterset.local."
		if len(names) > 0 {
			qname = names[int(pick)%len(names)]
		}
		if pick%7 == 3 { // the question's spelling is kept: mixed case
			qname = strings.ToUpper(qname[:1]) + qname[1:]
		}
		qtype := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV, dns.TypeANY, dns.TypeTXT}[int(qt)%5]
		clientIP := "10.98." + strconv.Itoa(int(client)) + ".1"
		reply := func(qtype uint16) *dns.Msg {
			q := new(dns.Msg)
			q.SetQuestion(qname, qtype)
			if bufsize > 0 {
				q.SetEdns0(bufsize, false)
			}
			w := dnstest.NewRecorder(&test.ResponseWriter{RemoteIP: clientIP, TCP: tcp})
			if _, err := m.ServeDNS(context.TODO(), w, q); err != nil || w.Msg == nil {
				t.Fatalf("%s %s: err %v, reply %v", qname, dns.TypeToString[qtype], err, w.Msg)
			}
			wire, err := w.Msg.Pack()
			if err != nil {
				t.Fatalf("%s %s: does not pack: %v\n%s", qname, dns.TypeToString[qtype], err, w.Msg)
			}
			limit := dns.MaxMsgSize
			if !tcp {
				limit = max(dns.MinMsgSize, int(bufsize))
			}
			if len(wire) > limit {
				t.Fatalf("%s %s: %d bytes over a budget of %d", qname, dns.TypeToString[qtype], len(wire), limit)
			}
			back := new(dns.Msg)
			if err := back.Unpack(wire); err != nil {
				t.Fatalf("%s %s: the client cannot unpack it: %v", qname, dns.TypeToString[qtype], err)
			}
			return back
		}
		resp := reply(qtype)
		n := st.lookup(strings.ToLower(qname))
		if n == nil {
			return
		}
		held := holdingsOf(n, qtype)
		if held.count > 0 && len(resp.Answer) == 0 && !resp.Truncated {
			t.Fatalf("%s %s: NOERROR without records for a name with %d", qname, dns.TypeToString[qtype], held.count)
		}
		if resp.Truncated && qtype != dns.TypeSRV {
			t.Fatalf("%s %s: TC set; only an SRV record can fail to fit", qname, dns.TypeToString[qtype])
		}
		for _, rr := range resp.Answer {
			if !held.holds(rr) {
				t.Fatalf("%s %s: answered %s, which the name does not hold", qname, dns.TypeToString[qtype], rr)
			}
			if rr.Header().Name != qname {
				t.Fatalf("owner %q, want the question's %q", rr.Header().Name, qname)
			}
		}
		// Every address is a ready address of the service's slices.
		published := map[string]bool{}
		for _, d := range services {
			if n.owner != d.namespace+"/"+d.name {
				continue
			}
			for _, s := range d.slices {
				for _, e := range s.Endpoints {
					for _, ip := range e.Addresses {
						published[ip.String()] = published[ip.String()] || e.Ready
					}
				}
			}
		}
		if n.hs != nil {
			for _, rr := range append(slices.Clone(resp.Answer), resp.Extra...) {
				var ip string
				switch x := rr.(type) {
				case *dns.A:
					ip = x.A.String()
				case *dns.AAAA:
					ip = x.AAAA.String()
				default:
					continue
				}
				if !published[ip] {
					t.Fatalf("%s: %s is no ready address of the service", qname, ip)
				}
			}
		}
		// A and AAAA: the dual-stack endpoints behind both are the same (or one side has none).
		if n.hs != nil && n.ep < 0 && n.kind == kindService && (qtype == dns.TypeA || qtype == dns.TypeAAAA) {
			owner := map[string]int{}
			for i, e := range n.hs.eps {
				if len(e.a) > 0 && len(e.aaaa) > 0 {
					for _, a := range e.a {
						owner[a.A.String()] = i
					}
					for _, a := range e.aaaa {
						owner[a.AAAA.String()] = i
					}
				}
			}
			dual := func(m *dns.Msg) map[int]bool {
				out := map[int]bool{}
				for _, rr := range m.Answer {
					if i, ok := owner[rdata(rr)]; ok {
						out[i] = true
					}
				}
				return out
			}
			a, aaaa := dual(reply(dns.TypeA)), dual(reply(dns.TypeAAAA))
			if len(a) > 0 && len(aaaa) > 0 && !mapsEqual(a, aaaa) {
				t.Fatalf("%s: A answers dual-stack endpoints %v, AAAA %v", qname, a, aaaa)
			}
		}
	})
}

func mapsEqual(a, b map[int]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
