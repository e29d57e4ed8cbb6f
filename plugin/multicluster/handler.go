package multicluster

import (
	"context"
	"hash/fnv"
	"strings"

	"github.com/coredns/coredns/plugin"
	"github.com/coredns/coredns/request"
	"github.com/miekg/dns"
)

// recordKind classifies a name for metrics.
type recordKind uint8

const (
	kindUnknown   recordKind = iota
	kindApex                 // the zone apex (SOA, NS)
	kindVersion              // dns-version.<zone>
	kindNamespace            // svc.<zone> and <ns>.svc.<zone>
	kindService              // <svc>.<ns>.svc.<zone>
	kindSRV                  // _<port>._<proto>.<svc>.<ns>.svc.<zone> and _<proto>.…
	kindEndpoint             // <hostname>.<clusterid>.<svc>.<ns>.svc.<zone> and the names between
)

var kindNames = [...]string{"unknown", "apex", "version", "namespace", "service", "srv", "endpoint"}

func (k recordKind) String() string { return kindNames[k] }

// Outcomes, for metrics.
const (
	outcomeSuccess     = "success"
	outcomeNoData      = "nodata"
	outcomeNXDomain    = "nxdomain"
	outcomeServFail    = "servfail"
	outcomeFallthrough = "fallthrough"
)

const dnsSchemaVersion = "1.0.0" // KEP-1645 DNS specification, section 2.2

// ServeDNS implements the plugin.Handler interface.
func (m *MultiCluster) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	state := request.Request{W: w, Req: r}
	qname := state.QName() // the question's spelling, for the answers' owner names
	zone := plugin.Zones(m.Zones).Matches(qname)
	if zone == "" {
		return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
	}
	server := metricsServer(ctx)

	if st := m.syncState(); st != stateSynced {
		msg := reply(r)
		msg.Rcode = dns.RcodeServerFailure
		addEDE(state, msg, dns.ExtendedErrorCodeNotReady, st.explain())
		w.WriteMsg(msg)
		requestCount.WithLabelValues(server, kindUnknown.String(), outcomeServFail).Inc()
		return dns.RcodeServerFailure, nil
	}

	lower := state.Name() // lower case
	qtype := state.QType()
	n := m.store.lookup(lower)
	if n == nil {
		n = m.staticNode(lower, zone)
	}
	if n == nil || n.nxdomain {
		kind := kindUnknown
		reason := ""
		if n != nil {
			kind, reason = n.kind, n.reason
		}
		if m.Fall.Through(qname) {
			requestCount.WithLabelValues(server, kind.String(), outcomeFallthrough).Inc()
			return plugin.NextOrFailure(m.Name(), m.Next, ctx, w, r)
		}
		msg := reply(r)
		msg.Rcode = dns.RcodeNameError
		msg.Ns = []dns.RR{m.soa(zone)}
		if reason != "" {
			addEDE(state, msg, dns.ExtendedErrorCodeOther, reason)
		}
		w.WriteMsg(msg)
		requestCount.WithLabelValues(server, kind.String(), outcomeNXDomain).Inc()
		return dns.RcodeNameError, nil
	}

	msg := reply(r)
	switch {
	case n.kind == kindApex && qtype == dns.TypeSOA:
		msg.Answer = []dns.RR{m.soa(zone)}
		msg.Answer[0].Header().Name = qname
	case n.kind == kindApex && qtype == dns.TypeNS:
		msg.Answer = []dns.RR{m.ns(zone)}
		msg.Answer[0].Header().Name = qname
	case n.kind == kindVersion && qtype == dns.TypeTXT:
		msg.Answer = []dns.RR{&dns.TXT{
			Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 28800},
			Txt: []string{dnsSchemaVersion},
		}}
	case qtype == dns.TypeA:
		m.fill(state, msg, n, n.a, n.weights, qname)
	case qtype == dns.TypeAAAA:
		m.fill(state, msg, n, n.aaaa, n.weights, qname)
	case qtype == dns.TypeSRV:
		m.fill(state, msg, n, n.srv, nil, qname) // SRV groups are weighed by their own size
	}
	outcome := outcomeSuccess
	if len(msg.Answer) == 0 {
		outcome = outcomeNoData
		msg.Ns = []dns.RR{m.soa(zone)}
		if n.reason != "" {
			addEDE(state, msg, dns.ExtendedErrorCodeOther, n.reason)
		}
	}
	w.WriteMsg(msg)
	requestCount.WithLabelValues(server, n.kind.String(), outcome).Inc()
	return dns.RcodeSuccess, nil
}

// Name implements the plugin.Handler interface.
func (m *MultiCluster) Name() string { return pluginName }

// Static nodes: names that exist whatever is imported.
var (
	apexNode      = &node{kind: kindApex}
	versionNode   = &node{kind: kindVersion}
	namespaceNode = &node{kind: kindNamespace}
)

// staticNode answers the names no import owns: the apex, dns-version, svc and <ns>.svc.
func (m *MultiCluster) staticNode(lower, zone string) *node {
	rel := lower[:len(lower)-len(zone)]
	switch rel {
	case "":
		return apexNode
	case "dns-version.":
		return versionNode
	case "svc.":
		return namespaceNode
	}
	ns, rest, ok := strings.Cut(rel, ".")
	if ok && rest == "svc." && (m.store.hasImports(ns) || m.namespaceExists(ns)) {
		return namespaceNode
	}
	return nil
}

func (m *MultiCluster) namespaceExists(ns string) bool {
	if m.namespaces != nil && !m.namespaces[ns] {
		return false
	}
	return m.ctrl != nil && m.ctrl.namespaceExists(ns)
}

func reply(r *dns.Msg) *dns.Msg {
	msg := new(dns.Msg)
	msg.SetReply(r)
	msg.Authoritative = true
	msg.Compress = true
	return msg
}

// fill copies the answers of groups into msg. Bounded nodes (headless services) return the
// window of endpoints that fits the client's UDP size, starting at an offset derived from the
// client's address: the same client gets the same subset for A and AAAA, different clients get
// different subsets, and no reply is truncated.
// weights, when set, replace the groups' own sizes (A and AAAA share them, so both pick the same
// endpoints).
func (m *MultiCluster) fill(state request.Request, msg *dns.Msg, n *node, groups []group, weights []int, qname string) {
	if len(groups) == 0 {
		return
	}
	if !n.bounded {
		msg.Answer = copyRecords(groups, 0, len(groups), false, qname)
		msg.Extra = copyRecords(groups, 0, len(groups), true, "")
		return
	}
	size := state.Size()
	budget := size - 12 - (len(qname) + 1 + 4) - 32 // header, question, OPT with room for an EDE
	offset := clientOffset(state, len(groups))
	count, total, extra := 0, 0, false
	for ; count < len(groups); count++ {
		g := &groups[(offset+count)%len(groups)]
		w := g.size
		if weights != nil {
			w = weights[(offset+count)%len(groups)]
		}
		if total+w > budget {
			break
		}
		total += w
		extra = extra || len(g.extra) > 0
	}
	for {
		msg.Answer = copyRecords(groups, offset, count, false, qname)
		msg.Extra = copyRecords(groups, offset, count, true, "")
		// The sizes of A and AAAA groups are exact (every owner name is a pointer to the
		// question), so only SRV answers, whose additional records' owner names may be written
		// out in full, are measured; this trims only in corner cases (long target names).
		if !extra || count <= 1 || msg.Len() <= size-32 {
			break
		}
		count -= max(1, count/8)
	}
}

func clientOffset(state request.Request, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(state.IP()))
	return int(h.Sum32() % uint32(n))
}

// copyRecords returns copies of the records (rrs, or extra when extra is set) of count groups
// starting at offset, wrapping around; owner, when set, replaces the owner name (so the answer
// carries the question's spelling). Records are never shared with later plugins (the cache
// plugin rewrites TTLs in place). The copies of each record type share one backing array: a
// 100-endpoint answer costs a few allocations, not one per record.
func copyRecords(groups []group, offset, count int, extra bool, owner string) []dns.RR {
	records := func(k int) []dns.RR {
		g := &groups[(offset+k)%len(groups)]
		if extra {
			return g.extra
		}
		return g.rrs
	}
	var total, nA, nAAAA, nSRV int
	for k := 0; k < count; k++ {
		for _, rr := range records(k) {
			total++
			switch rr.(type) {
			case *dns.A:
				nA++
			case *dns.AAAA:
				nAAAA++
			case *dns.SRV:
				nSRV++
			}
		}
	}
	if total == 0 {
		return nil
	}
	out := make([]dns.RR, 0, total)
	// Exact capacities: appending never moves these arrays, so the pointers taken stay valid.
	as, aaaas, srvs := make([]dns.A, 0, nA), make([]dns.AAAA, 0, nAAAA), make([]dns.SRV, 0, nSRV)
	for k := 0; k < count; k++ {
		for _, rr := range records(k) {
			var c dns.RR
			switch x := rr.(type) {
			case *dns.A:
				as = append(as, *x)
				c = &as[len(as)-1]
			case *dns.AAAA:
				aaaas = append(aaaas, *x)
				c = &aaaas[len(aaaas)-1]
			case *dns.SRV:
				srvs = append(srvs, *x)
				c = &srvs[len(srvs)-1]
			default:
				c = dns.Copy(rr)
			}
			if owner != "" {
				c.Header().Name = owner
			}
			out = append(out, c)
		}
	}
	return out
}

func (m *MultiCluster) soa(zone string) dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: m.ttl},
		Ns:      "ns.dns." + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  m.store.serial.Load(),
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  m.ttl,
	}
}

func (m *MultiCluster) ns(zone string) dns.RR {
	return &dns.NS{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: m.ttl}, Ns: "ns.dns." + zone}
}

// addEDE attaches an extended DNS error (RFC 8914) when the client speaks EDNS0.
func addEDE(state request.Request, msg *dns.Msg, code uint16, text string) {
	o := state.Req.IsEdns0()
	if o == nil {
		return
	}
	msg.SetEdns0(o.UDPSize(), o.Do())
	msg.IsEdns0().Option = append(msg.IsEdns0().Option, &dns.EDNS0_EDE{InfoCode: code, ExtraText: text})
}
