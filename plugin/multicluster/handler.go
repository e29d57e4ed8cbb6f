package multicluster

import (
	"context"
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
	outcomeTruncated   = "truncated"
	outcomeRefused     = "refused"
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
	if qtype == dns.TypeAXFR || qtype == dns.TypeIXFR {
		// No zone transfers, as the kubernetes plugin: the server writes REFUSED.
		requestCount.WithLabelValues(server, kindUnknown.String(), outcomeRefused).Inc()
		return dns.RcodeRefused, nil
	}
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
	case qtype == dns.TypeA, qtype == dns.TypeAAAA, qtype == dns.TypeSRV:
		answer(state, msg, n, qtype, qname)
	}
	outcome := outcomeSuccess
	switch {
	case msg.Truncated:
		outcome = outcomeTruncated
	case len(msg.Answer) == 0:
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
