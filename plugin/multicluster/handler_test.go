package multicluster

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/pkg/fall"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/plugin/multicluster/object"
)

type fakeSource struct {
	state      syncState
	namespaces map[string]bool
}

func (f *fakeSource) syncState() syncState           { return f.state }
func (f *fakeSource) namespaceExists(ns string) bool { return f.namespaces[ns] }
func addrs(ss ...string) (out []netip.Addr) {
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func imp(ns, name string, t object.ImportType, ips []string, ports ...object.Port) *object.ServiceImport {
	return &object.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Type: t, IPs: addrs(ips...), Ports: ports}
}

func slice(ns, svc, name, cluster string, ports []object.Port, eps ...object.Endpoint) *object.EndpointSlice {
	return &object.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Service: svc, Cluster: cluster, Ports: ports, Endpoints: eps}
}

func ep(host, pod string, ready bool, ips ...string) object.Endpoint {
	return object.Endpoint{Hostname: host, Pod: pod, Ready: ready, Addresses: addrs(ips...)}
}

var (
	http80   = object.Port{Name: "http", Protocol: "tcp", Port: 80}
	http8080 = object.Port{Name: "http", Protocol: "tcp", Port: 8080}
	dns53    = object.Port{Name: "dns", Protocol: "udp", Port: 53}
	unnamed  = object.Port{Protocol: "tcp", Port: 9000}
)

// testPlugin holds one import of every shape.
func testPlugin() *MultiCluster {
	st := newStore([]string{"clusterset.local."}, 5)
	st.set("default/serve", &serviceData{ // as Karmada writes it: no spec.ips, derived-serve carries the IP
		namespace: "default", name: "serve",
		imp:     imp("default", "serve", object.ClusterSetIP, nil, http80),
		derived: &object.Service{ClusterIPs: addrs("10.13.0.10")},
		slices: []*object.EndpointSlice{slice("default", "serve", "s1", "member1", []object.Port{{Protocol: "tcp", Port: 8080}},
			ep("", "serve-1", true, "10.10.0.5"))},
	})
	st.set("default/dual", &serviceData{
		namespace: "default", name: "dual",
		imp: imp("default", "dual", object.ClusterSetIP, []string{"10.13.0.30", "fd00::30"}, http80, dns53, unnamed),
	})
	st.set("default/web", &serviceData{
		namespace: "default", name: "web",
		imp: imp("default", "web", object.Headless, nil),
		slices: []*object.EndpointSlice{
			slice("default", "web", "w1", "member1", []object.Port{http8080},
				ep("web-0", "web-0", true, "10.10.0.5"), ep("web-1", "web-1", true, "10.10.0.6"),
				ep("", "p9", true, "10.10.0.9"), ep("web-8", "web-8", false, "10.10.0.8")),
			slice("default", "web", "w1v6", "member1", []object.Port{http8080}, ep("", "p9", true, "fd00::9")),
			slice("default", "web", "w2", "member2.ctx", []object.Port{http8080}, ep("web-0", "web-0", true, "10.12.0.7")),
		},
	})
	st.set("default/down", &serviceData{
		namespace: "default", name: "down",
		imp:    imp("default", "down", object.ClusterSetIP, []string{"10.13.0.20"}, http80),
		slices: []*object.EndpointSlice{slice("default", "down", "d1", "member1", []object.Port{http8080}, ep("", "x", false, "10.10.0.7"))},
	})
	st.set("default/hdown", &serviceData{
		namespace: "default", name: "hdown",
		imp:    imp("default", "hdown", object.Headless, nil),
		slices: []*object.EndpointSlice{slice("default", "hdown", "h1", "member1", []object.Port{http8080})},
	})
	st.set("default/pending", &serviceData{
		namespace: "default", name: "pending",
		imp: imp("default", "pending", object.ClusterSetIP, nil, http80),
	})
	return &MultiCluster{
		Zones: []string{"clusterset.local."}, ttl: 5, store: st,
		ctrl: &fakeSource{state: stateSynced, namespaces: map[string]bool{"default": true, "empty": true}},
		Next: test.NextHandler(dns.RcodeRefused, nil),
	}
}

const zone = "clusterset.local."

func soa() dns.RR {
	return test.SOA("clusterset.local. 5 IN SOA ns.dns.clusterset.local. hostmaster.clusterset.local. 1 7200 1800 86400 5")
}

var dnsCases = []test.Case{
	// ClusterSetIP from the derived Service (spec.ips empty, as Karmada leaves it).
	{Qname: "serve.default.svc.clusterset.local.", Qtype: dns.TypeA,
		Answer: []dns.RR{test.A("serve.default.svc.clusterset.local. 5 IN A 10.13.0.10")}},
	{Qname: "serve.default.svc.clusterset.local.", Qtype: dns.TypeAAAA, Ns: []dns.RR{soa()}},
	{Qname: "serve.default.svc.clusterset.local.", Qtype: dns.TypeSRV,
		Answer: []dns.RR{test.SRV("serve.default.svc.clusterset.local. 5 IN SRV 0 100 80 serve.default.svc.clusterset.local.")},
		Extra:  []dns.RR{test.A("serve.default.svc.clusterset.local. 5 IN A 10.13.0.10")}},
	{Qname: "_http._tcp.serve.default.svc.clusterset.local.", Qtype: dns.TypeSRV,
		Answer: []dns.RR{test.SRV("_http._tcp.serve.default.svc.clusterset.local. 5 IN SRV 0 100 80 serve.default.svc.clusterset.local.")},
		Extra:  []dns.RR{test.A("serve.default.svc.clusterset.local. 5 IN A 10.13.0.10")}},
	{Qname: "_http._tcp.serve.default.svc.clusterset.local.", Qtype: dns.TypeA, Ns: []dns.RR{soa()}},
	{Qname: "_tcp.serve.default.svc.clusterset.local.", Qtype: dns.TypeSRV, Ns: []dns.RR{soa()}},
	{Qname: "_http._udp.serve.default.svc.clusterset.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa()}},
	{Qname: "_udp.serve.default.svc.clusterset.local.", Qtype: dns.TypeSRV, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa()}},
	// KEP-1645 2.3.4: no cluster-specific names for ClusterSetIP services.
	{Qname: "member1.serve.default.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa()}},
	{Qname: "10-10-0-5.member1.serve.default.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa()}},
	{Qname: "serve.default.svc.clusterset.local.", Qtype: dns.TypeMX, Ns: []dns.RR{soa()}},
	{Qname: "serve.default.svc.clusterset.local.", Qtype: dns.TypeTXT, Ns: []dns.RR{soa()}},
	{Qname: "serve.default.svc.clusterset.local.", Qtype: dns.TypePTR, Ns: []dns.RR{soa()}},
	// Dual-stack ClusterSetIP from spec.ips; SRV for every port, _name._proto for named ones.
	{Qname: "dual.default.svc.clusterset.local.", Qtype: dns.TypeA,
		Answer: []dns.RR{test.A("dual.default.svc.clusterset.local. 5 IN A 10.13.0.30")}},
	{Qname: "dual.default.svc.clusterset.local.", Qtype: dns.TypeAAAA,
		Answer: []dns.RR{test.AAAA("dual.default.svc.clusterset.local. 5 IN AAAA fd00::30")}},
	{Qname: "dual.default.svc.clusterset.local.", Qtype: dns.TypeSRV,
		Answer: []dns.RR{
			test.SRV("dual.default.svc.clusterset.local. 5 IN SRV 0 100 80 dual.default.svc.clusterset.local."),
			test.SRV("dual.default.svc.clusterset.local. 5 IN SRV 0 100 53 dual.default.svc.clusterset.local."),
			test.SRV("dual.default.svc.clusterset.local. 5 IN SRV 0 100 9000 dual.default.svc.clusterset.local."),
		},
		Extra: []dns.RR{
			test.A("dual.default.svc.clusterset.local. 5 IN A 10.13.0.30"),
			test.AAAA("dual.default.svc.clusterset.local. 5 IN AAAA fd00::30"),
		}},
	{Qname: "_dns._udp.dual.default.svc.clusterset.local.", Qtype: dns.TypeSRV,
		Answer: []dns.RR{test.SRV("_dns._udp.dual.default.svc.clusterset.local. 5 IN SRV 0 100 53 dual.default.svc.clusterset.local.")},
		Extra: []dns.RR{
			test.A("dual.default.svc.clusterset.local. 5 IN A 10.13.0.30"),
			test.AAAA("dual.default.svc.clusterset.local. 5 IN AAAA fd00::30"),
		}},
	// Headless: ready endpoints of every cluster; per-pod names with one- and two-label cluster ids.
	{Qname: "web.default.svc.clusterset.local.", Qtype: dns.TypeA,
		Answer: []dns.RR{
			test.A("web.default.svc.clusterset.local. 5 IN A 10.10.0.5"),
			test.A("web.default.svc.clusterset.local. 5 IN A 10.10.0.6"),
			test.A("web.default.svc.clusterset.local. 5 IN A 10.10.0.9"),
			test.A("web.default.svc.clusterset.local. 5 IN A 10.12.0.7"),
		}},
	{Qname: "web.default.svc.clusterset.local.", Qtype: dns.TypeAAAA,
		Answer: []dns.RR{test.AAAA("web.default.svc.clusterset.local. 5 IN AAAA fd00::9")}},
	{Qname: "web-0.member1.web.default.svc.clusterset.local.", Qtype: dns.TypeA,
		Answer: []dns.RR{test.A("web-0.member1.web.default.svc.clusterset.local. 5 IN A 10.10.0.5")}},
	{Qname: "web-0.member1.web.default.svc.clusterset.local.", Qtype: dns.TypeAAAA, Ns: []dns.RR{soa()}},
	{Qname: "web-0.member2.ctx.web.default.svc.clusterset.local.", Qtype: dns.TypeA,
		Answer: []dns.RR{test.A("web-0.member2.ctx.web.default.svc.clusterset.local. 5 IN A 10.12.0.7")}},
	// A pod without a hostname gets its IP-derived label; its IPv4 and IPv6 slices give one name.
	{Qname: "10-10-0-9.member1.web.default.svc.clusterset.local.", Qtype: dns.TypeA,
		Answer: []dns.RR{test.A("10-10-0-9.member1.web.default.svc.clusterset.local. 5 IN A 10.10.0.9")}},
	{Qname: "10-10-0-9.member1.web.default.svc.clusterset.local.", Qtype: dns.TypeAAAA,
		Answer: []dns.RR{test.AAAA("10-10-0-9.member1.web.default.svc.clusterset.local. 5 IN AAAA fd00::9")}},
	// <clusterid>.<svc>: no records (KEP-1645 2.4.4); an empty non-terminal, so NODATA (RFC 8020).
	{Qname: "member1.web.default.svc.clusterset.local.", Qtype: dns.TypeA, Ns: []dns.RR{soa()}},
	{Qname: "member2.ctx.web.default.svc.clusterset.local.", Qtype: dns.TypeA, Ns: []dns.RR{soa()}},
	{Qname: "ctx.web.default.svc.clusterset.local.", Qtype: dns.TypeA, Ns: []dns.RR{soa()}},
	{Qname: "member3.web.default.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa()}},
	{Qname: "web-9.member1.web.default.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa()}},
	{Qname: "web-8.member1.web.default.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa()}},
	{Qname: "web-0.member3.web.default.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa()}},
	{Qname: "_http._tcp.web.default.svc.clusterset.local.", Qtype: dns.TypeSRV,
		Answer: []dns.RR{
			test.SRV("_http._tcp.web.default.svc.clusterset.local. 5 IN SRV 0 25 8080 web-0.member1.web.default.svc.clusterset.local."),
			test.SRV("_http._tcp.web.default.svc.clusterset.local. 5 IN SRV 0 25 8080 web-1.member1.web.default.svc.clusterset.local."),
			test.SRV("_http._tcp.web.default.svc.clusterset.local. 5 IN SRV 0 25 8080 10-10-0-9.member1.web.default.svc.clusterset.local."),
			test.SRV("_http._tcp.web.default.svc.clusterset.local. 5 IN SRV 0 25 8080 web-0.member2.ctx.web.default.svc.clusterset.local."),
		},
		Extra: []dns.RR{
			test.A("web-0.member1.web.default.svc.clusterset.local. 5 IN A 10.10.0.5"),
			test.A("web-1.member1.web.default.svc.clusterset.local. 5 IN A 10.10.0.6"),
			test.A("10-10-0-9.member1.web.default.svc.clusterset.local. 5 IN A 10.10.0.9"),
			test.AAAA("10-10-0-9.member1.web.default.svc.clusterset.local. 5 IN AAAA fd00::9"),
			test.A("web-0.member2.ctx.web.default.svc.clusterset.local. 5 IN A 10.12.0.7"),
		}},
	{Qname: "web.default.svc.clusterset.local.", Qtype: dns.TypeSRV,
		Answer: []dns.RR{
			test.SRV("web.default.svc.clusterset.local. 5 IN SRV 0 25 8080 web-0.member1.web.default.svc.clusterset.local."),
			test.SRV("web.default.svc.clusterset.local. 5 IN SRV 0 25 8080 web-1.member1.web.default.svc.clusterset.local."),
			test.SRV("web.default.svc.clusterset.local. 5 IN SRV 0 25 8080 10-10-0-9.member1.web.default.svc.clusterset.local."),
			test.SRV("web.default.svc.clusterset.local. 5 IN SRV 0 25 8080 web-0.member2.ctx.web.default.svc.clusterset.local."),
		},
		Extra: []dns.RR{
			test.A("web-0.member1.web.default.svc.clusterset.local. 5 IN A 10.10.0.5"),
			test.A("web-1.member1.web.default.svc.clusterset.local. 5 IN A 10.10.0.6"),
			test.A("10-10-0-9.member1.web.default.svc.clusterset.local. 5 IN A 10.10.0.9"),
			test.AAAA("10-10-0-9.member1.web.default.svc.clusterset.local. 5 IN AAAA fd00::9"),
			test.A("web-0.member2.ctx.web.default.svc.clusterset.local. 5 IN A 10.12.0.7"),
		}},
	{Qname: "_tcp.web.default.svc.clusterset.local.", Qtype: dns.TypeA, Ns: []dns.RR{soa()}},
	// Imported, nothing ready: ClusterSetIP answers NODATA, headless NXDOMAIN (KEP-1645 2.4.1).
	{Qname: "down.default.svc.clusterset.local.", Qtype: dns.TypeA, Ns: []dns.RR{soa()}},
	{Qname: "down.default.svc.clusterset.local.", Qtype: dns.TypeSRV, Ns: []dns.RR{soa()}},
	{Qname: "hdown.default.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa()}},
	{Qname: "pending.default.svc.clusterset.local.", Qtype: dns.TypeA, Ns: []dns.RR{soa()}},
	// Zone structure.
	{Qname: "dns-version.clusterset.local.", Qtype: dns.TypeTXT,
		Answer: []dns.RR{test.TXT(`dns-version.clusterset.local. 28800 IN TXT "1.0.0"`)}},
	{Qname: "dns-version.clusterset.local.", Qtype: dns.TypeA, Ns: []dns.RR{soa()}},
	{Qname: "clusterset.local.", Qtype: dns.TypeSOA, Answer: []dns.RR{soa()}},
	{Qname: "clusterset.local.", Qtype: dns.TypeNS, Answer: []dns.RR{test.NS("clusterset.local. 5 IN NS ns.dns.clusterset.local.")}},
	{Qname: "clusterset.local.", Qtype: dns.TypeA, Ns: []dns.RR{soa()}},
	{Qname: "svc.clusterset.local.", Qtype: dns.TypeA, Ns: []dns.RR{soa()}},
	{Qname: "default.svc.clusterset.local.", Qtype: dns.TypeA, Ns: []dns.RR{soa()}},
	{Qname: "empty.svc.clusterset.local.", Qtype: dns.TypeSRV, Ns: []dns.RR{soa()}},
	{Qname: "nope.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa()}},
	{Qname: "nope.default.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa()}},
	{Qname: "serve.empty.svc.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa()}},
	{Qname: "foo.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa()}},
	{Qname: "serve.default.pod.clusterset.local.", Qtype: dns.TypeA, Rcode: dns.RcodeNameError, Ns: []dns.RR{soa()}},
	// Case-insensitive; the answer keeps the question's spelling.
	{Qname: "SeRvE.DeFault.SVC.clusterset.LOCAL.", Qtype: dns.TypeA,
		Answer: []dns.RR{test.A("SeRvE.DeFault.SVC.clusterset.LOCAL. 5 IN A 10.13.0.10")}},
	{Qname: "WEB-0.Member1.web.default.svc.clusterset.local.", Qtype: dns.TypeA,
		Answer: []dns.RR{test.A("WEB-0.Member1.web.default.svc.clusterset.local. 5 IN A 10.10.0.5")}},
	// Outside the zone: next plugin.
	{Qname: "serve.default.svc.cluster.local.", Qtype: dns.TypeA, Rcode: dns.RcodeRefused},
}

func TestServeDNS(t *testing.T) {
	m := testPlugin()
	ctx := context.TODO()
	for _, tc := range dnsCases {
		t.Run(dns.TypeToString[tc.Qtype]+" "+tc.Qname, func(t *testing.T) {
			r := tc.Msg()
			w := dnstest.NewRecorder(&test.ResponseWriter{})
			rcode, err := m.ServeDNS(ctx, w, r)
			if err != nil {
				t.Fatalf("ServeDNS: %v", err)
			}
			if tc.Rcode == dns.RcodeRefused { // passed to the next plugin, which writes nothing
				if rcode != dns.RcodeRefused || w.Msg != nil {
					t.Fatalf("rcode %d, reply %v: want the next plugin's", rcode, w.Msg)
				}
				return
			}
			resp := w.Msg
			if resp == nil {
				t.Fatal("no reply")
			}
			if !resp.Authoritative {
				t.Error("reply is not authoritative")
			}
			for _, sec := range [][]dns.RR{tc.Answer, tc.Ns, tc.Extra} {
				sort.Sort(test.RRSet(sec))
			}
			if err := test.SortAndCheck(resp, tc); err != nil {
				t.Error(err)
			}
			// Every negative answer carries the SOA, and only negative answers do.
			if (len(resp.Answer) == 0) != (len(resp.Ns) == 1) {
				t.Errorf("answer %d records, authority %d records", len(resp.Answer), len(resp.Ns))
			}
		})
	}
}

// ede returns the extended error of a reply, if any.
func ede(m *dns.Msg) *dns.EDNS0_EDE {
	if o := m.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_EDE); ok {
				return e
			}
		}
	}
	return nil
}

func query(t *testing.T, m *MultiCluster, name string, qtype uint16, bufsize uint16) *dns.Msg {
	t.Helper()
	r := new(dns.Msg)
	r.SetQuestion(name, qtype)
	if bufsize > 0 {
		r.SetEdns0(bufsize, false)
	}
	w := dnstest.NewRecorder(&test.ResponseWriter{})
	if _, err := m.ServeDNS(context.TODO(), w, r); err != nil {
		t.Fatalf("ServeDNS: %v", err)
	}
	return w.Msg
}

// next queries name for A and returns the rcode, failing if the plugin wrote a reply itself.
func next(t *testing.T, m *MultiCluster, name string) int {
	t.Helper()
	r := new(dns.Msg)
	r.SetQuestion(name, dns.TypeA)
	w := dnstest.NewRecorder(&test.ResponseWriter{})
	rcode, err := m.ServeDNS(context.TODO(), w, r)
	if err != nil || w.Msg != nil {
		t.Fatalf("%s: err %v, reply %v; want it passed on", name, err, w.Msg)
	}
	return rcode
}

func TestExtendedErrors(t *testing.T) {
	m := testPlugin()
	tests := []struct {
		name  string
		rcode int
		want  string
	}{
		{"down.default.svc.clusterset.local.", dns.RcodeSuccess, "service default/down is imported but has no ready endpoints in any cluster"},
		{"hdown.default.svc.clusterset.local.", dns.RcodeNameError, "headless service default/hdown is imported but has no ready endpoints in any cluster"},
		{"pending.default.svc.clusterset.local.", dns.RcodeSuccess, "service default/pending is imported but has no ClusterSetIP yet"},
	}
	for _, tc := range tests {
		resp := query(t, m, tc.name, dns.TypeA, 1232)
		if resp.Rcode != tc.rcode || len(resp.Answer) != 0 {
			t.Errorf("%s: rcode %s with %d answers, want %s and none", tc.name, dns.RcodeToString[resp.Rcode], len(resp.Answer), dns.RcodeToString[tc.rcode])
		}
		e := ede(resp)
		if e == nil || e.ExtraText != tc.want {
			t.Errorf("%s: EDE %+v, want text %q", tc.name, e, tc.want)
		}
		// Without EDNS0 the client gets no OPT at all.
		if plain := query(t, m, tc.name, dns.TypeA, 0); plain.IsEdns0() != nil {
			t.Errorf("%s: OPT in a reply to a query without EDNS0", tc.name)
		}
	}
	if e := ede(query(t, m, "serve.default.svc.clusterset.local.", dns.TypeA, 1232)); e != nil {
		t.Errorf("positive answer carries EDE %+v", e)
	}
}

func TestNotSynced(t *testing.T) {
	for _, st := range []syncState{stateSyncing, stateNoAPI} {
		m := testPlugin()
		m.ctrl.(*fakeSource).state = st
		resp := query(t, m, "serve.default.svc.clusterset.local.", dns.TypeA, 1232)
		if resp.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s: rcode %s, want SERVFAIL", st, dns.RcodeToString[resp.Rcode])
		}
		if e := ede(resp); e == nil || e.InfoCode != dns.ExtendedErrorCodeNotReady {
			t.Errorf("%s: EDE %+v, want Not Ready", st, e)
		}
		// Other zones are not affected.
		if rcode := next(t, m, "kubernetes.default.svc.cluster.local."); rcode != dns.RcodeRefused {
			t.Errorf("%s: outside the zone: rcode %s, want the next plugin's", st, dns.RcodeToString[rcode])
		}
	}
}

func TestFallthrough(t *testing.T) {
	m := testPlugin()
	m.Fall = fall.Root
	if rcode := next(t, m, "nope.default.svc.clusterset.local."); rcode != dns.RcodeRefused {
		t.Errorf("NXDOMAIN with fallthrough: rcode %s, want the next plugin's", dns.RcodeToString[rcode])
	}
	if resp := query(t, m, "serve.default.svc.clusterset.local.", dns.TypeA, 0); len(resp.Answer) != 1 {
		t.Errorf("positive answer with fallthrough: %v", resp)
	}
	// NODATA never falls through: the name exists here.
	if resp := query(t, m, "serve.default.svc.clusterset.local.", dns.TypeAAAA, 0); resp.Rcode != dns.RcodeSuccess {
		t.Errorf("NODATA with fallthrough: rcode %s", dns.RcodeToString[resp.Rcode])
	}
	m.Fall = fall.F{}
	m.Fall.SetZonesFromArgs([]string{"other.local."})
	if resp := query(t, m, "nope.default.svc.clusterset.local.", dns.TypeA, 0); resp.Rcode != dns.RcodeNameError {
		t.Errorf("fallthrough for another zone: rcode %s, want NXDOMAIN", dns.RcodeToString[resp.Rcode])
	}
}

// bigHeadless imports a headless service with n ready endpoints (dual-stack) in two clusters.
func bigHeadless(m *MultiCluster, n int) {
	var eps1, eps2 []object.Endpoint
	for i := 0; i < n; i++ {
		v4 := netip.AddrFrom4([4]byte{10, 10, byte(i / 250), byte(i%250 + 1)}).String()
		e := ep("pod-"+strconv.Itoa(i), "pod"+strconv.Itoa(i), true, v4, fmt.Sprintf("fd00::%x", i+1))
		if i%2 == 0 {
			eps1 = append(eps1, e)
		} else {
			eps2 = append(eps2, e)
		}
	}
	m.store.set("default/big", &serviceData{
		namespace: "default", name: "big", imp: imp("default", "big", object.Headless, nil),
		slices: []*object.EndpointSlice{
			slice("default", "big", "b1", "member1", []object.Port{http8080}, eps1...),
			slice("default", "big", "b2", "member2", []object.Port{http8080}, eps2...),
		},
	})
}

// TestBoundedAnswers: a large headless set gets a subset that fits the client's UDP size, never a
// truncated reply, and A and AAAA carry the same subset of endpoints.
func TestBoundedAnswers(t *testing.T) {
	m := testPlugin()
	bigHeadless(m, 200)
	name := "big.default.svc.clusterset.local."
	for _, size := range []uint16{0, 512, 1232, 4096} {
		a := query(t, m, name, dns.TypeA, size)
		aaaa := query(t, m, name, dns.TypeAAAA, size)
		limit := 512
		if size > 512 {
			limit = int(size)
		}
		for _, resp := range []*dns.Msg{a, aaaa} {
			if resp.Truncated {
				t.Errorf("bufsize %d: reply truncated", size)
			}
			if l := resp.Len(); l > limit {
				t.Errorf("bufsize %d: reply is %d bytes", size, l)
			}
			if len(resp.Answer) == 0 {
				t.Errorf("bufsize %d: empty answer", size)
			}
		}
		// Same subset: endpoint i has 10.10.x.y and fd00::(i+1); map both to i.
		if len(a.Answer) != len(aaaa.Answer) {
			t.Errorf("bufsize %d: %d A but %d AAAA records", size, len(a.Answer), len(aaaa.Answer))
		}
		seen := map[int]bool{}
		for _, rr := range a.Answer {
			ip := rr.(*dns.A).A.To4()
			seen[int(ip[2])*250+int(ip[3])-1] = true
		}
		for _, rr := range aaaa.Answer {
			ip, _ := netip.AddrFromSlice(rr.(*dns.AAAA).AAAA)
			b := ip.As16()
			i := int(b[14])<<8 | int(b[15]) - 1
			if !seen[i] {
				t.Errorf("bufsize %d: AAAA of endpoint %d without its A", size, i)
			}
		}
		srv := query(t, m, name, dns.TypeSRV, size)
		if srv.Truncated || srv.Len() > limit || len(srv.Answer) == 0 {
			t.Errorf("bufsize %d: SRV reply %d bytes, %d answers, truncated=%v", size, srv.Len(), len(srv.Answer), srv.Truncated)
		}
	}
	// Over TCP everything fits.
	r := new(dns.Msg)
	r.SetQuestion(name, dns.TypeA)
	w := dnstest.NewRecorder(&test.ResponseWriter{TCP: true})
	m.ServeDNS(context.TODO(), w, r)
	if len(w.Msg.Answer) != 200 {
		t.Errorf("TCP: %d answers, want 200", len(w.Msg.Answer))
	}
}

// TestBoundedAnswersLongNames: the window of a headless answer is sized from estimates; with the
// longest names a client can ask (63-character labels, mixed case) every reply still fits and is
// never truncated, for every record type.
func TestBoundedAnswersLongNames(t *testing.T) {
	m := testPlugin()
	svc, ns := strings.Repeat("s", 63), strings.Repeat("n", 63)
	var eps []object.Endpoint
	for i := 0; i < 300; i++ {
		v4 := netip.AddrFrom4([4]byte{10, 20, byte(i / 250), byte(i%250 + 1)}).String()
		eps = append(eps, ep("pod-"+strconv.Itoa(i), strings.Repeat("h", 50)+strconv.Itoa(i), true, v4, fmt.Sprintf("fd00::%x", i+1)))
	}
	m.store.set(ns+"/"+svc, &serviceData{
		namespace: ns, name: svc, imp: imp(ns, svc, object.Headless, nil),
		slices: []*object.EndpointSlice{slice(ns, svc, "s1", strings.Repeat("c", 63), []object.Port{http8080}, eps...)},
	})
	name := strings.ToUpper(svc[:1]) + svc[1:] + "." + ns + ".svc.clusterset.local."
	for _, size := range []uint16{0, 512, 1232, 4096} {
		limit := max(512, int(size))
		for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV} {
			resp := query(t, m, name, qt, size)
			if resp.Truncated || len(resp.Answer) == 0 {
				t.Errorf("bufsize %d %s: %d answers, truncated=%v", size, dns.TypeToString[qt], len(resp.Answer), resp.Truncated)
			}
			if l := resp.Len(); l > limit {
				t.Errorf("bufsize %d %s: reply is %d bytes", size, dns.TypeToString[qt], l)
			}
			for _, rr := range resp.Answer {
				if rr.Header().Name != name {
					t.Fatalf("owner %q, want the question's spelling %q", rr.Header().Name, name)
				}
			}
		}
	}
}

// TestAnswersAreCopies: a later plugin (cache rewrites TTLs in place) may change the records it
// is given; the next reply is not affected.
func TestAnswersAreCopies(t *testing.T) {
	m := testPlugin()
	bigHeadless(m, 20)
	for _, c := range []struct {
		name  string
		qtype uint16
	}{{"big.default.svc.clusterset.local.", dns.TypeA}, {"big.default.svc.clusterset.local.", dns.TypeSRV}, {"serve.default.svc.clusterset.local.", dns.TypeA}} {
		records := func(r *dns.Msg) string { return fmt.Sprint(r.Answer, r.Extra) }
		first := query(t, m, c.name, c.qtype, 4096)
		want := records(first)
		for _, rr := range append(first.Answer, first.Extra...) {
			rr.Header().Ttl = 1
			rr.Header().Name = "changed."
		}
		if got := records(query(t, m, c.name, c.qtype, 4096)); got != want {
			t.Errorf("%s %s: reply changed after the previous one's records were:\n%s\nwant\n%s", c.name, dns.TypeToString[c.qtype], got, want)
		}
	}
}
