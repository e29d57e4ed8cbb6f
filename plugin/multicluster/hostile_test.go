package multicluster

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/coredns-mcs/coredns-mcs/plugin/multicluster/object"
)

// The tests here feed the store what a hostile or careless exporter can put in its
// EndpointSlices and ServiceImports (issue #13): each failed before the fix it names.

// queryFrom sends one query from client (an IP) over UDP with bufsize (0: no EDNS0) or over TCP,
// and returns the reply after a round trip through the wire format, as a client would see it.
func queryFrom(t testing.TB, m *MultiCluster, client, name string, qtype, bufsize uint16, tcp bool) *dns.Msg {
	t.Helper()
	r := new(dns.Msg)
	r.SetQuestion(name, qtype)
	if bufsize > 0 {
		r.SetEdns0(bufsize, false)
	}
	w := dnstest.NewRecorder(&test.ResponseWriter{RemoteIP: client, TCP: tcp})
	if _, err := m.ServeDNS(context.TODO(), w, r); err != nil {
		t.Fatalf("ServeDNS: %v", err)
	}
	if w.Msg == nil {
		t.Fatalf("%s %s: no reply", name, dns.TypeToString[qtype])
	}
	wire, err := w.Msg.Pack()
	if err != nil {
		t.Fatalf("%s %s: reply does not pack: %v", name, dns.TypeToString[qtype], err)
	}
	limit := dns.MaxMsgSize
	if !tcp {
		limit = max(dns.MinMsgSize, int(bufsize))
	}
	if len(wire) > limit {
		t.Errorf("%s %s from %s: reply of %d bytes for a client budget of %d", name, dns.TypeToString[qtype], client, len(wire), limit)
	}
	back := new(dns.Msg)
	if err := back.Unpack(wire); err != nil {
		t.Fatalf("%s %s: the client cannot unpack the reply: %v", name, dns.TypeToString[qtype], err)
	}
	return back
}

// namedPorts returns n ports named p0, p1, … on 10000, 10001, …
func namedPorts(n int) []object.Port {
	out := make([]object.Port, n)
	for i := range out {
		out[i] = object.Port{Name: "p" + strconv.Itoa(i), Protocol: "tcp", Port: int32(10000 + i)}
	}
	return out
}

func v4(i int) string {
	return netip.AddrFrom4([4]byte{10, byte(20 + i>>16), byte(i >> 8), byte(i)}).String()
}

// heapAfter returns the live heap after f has run and the garbage is collected, minus before.
func heapAfter(f func()) int64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.GC()
	runtime.ReadMemStats(&after)
	return int64(after.HeapAlloc) - int64(before.HeapAlloc)
}

// Finding 1: one headless export of 1,000 endpoints × 1,000 ports built an SRV record per pair
// (about 2 million records, hundreds of MiB). The answers are now computed per query from the
// endpoint set: the build holds the endpoints and the ports, not their product.
func TestHugeExportCostsLittle(t *testing.T) {
	m := testPlugin()
	ports := namedPorts(1000)
	eps := make([]object.Endpoint, 1000)
	for i := range eps {
		eps[i] = ep("pod-"+strconv.Itoa(i), "pod-"+strconv.Itoa(i), true, v4(i))
	}
	s := slice("default", "huge", "h1", "member1", ports, eps...)
	heap := heapAfter(func() {
		m.store.set("default/huge", &serviceData{namespace: "default", name: "huge", imp: imp("default", "huge", object.Headless, nil),
			slices: []*object.EndpointSlice{s}})
	})
	runtime.KeepAlive(s)
	t.Logf("1,000 endpoints x 1,000 ports: %.1f MiB of live heap", float64(heap)/(1<<20))
	if heap > 16<<20 {
		t.Errorf("the export holds %.1f MiB of heap, want at most 16 MiB", float64(heap)/(1<<20))
	}
	// Every kind of name still answers, within the budget.
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"huge.default.svc.clusterset.local.", dns.TypeSRV},
		{"huge.default.svc.clusterset.local.", dns.TypeA},
		{"_p999._tcp.huge.default.svc.clusterset.local.", dns.TypeSRV},
		{"pod-500.member1.huge.default.svc.clusterset.local.", dns.TypeA},
	} {
		for _, tcp := range []bool{false, true} {
			r := queryFrom(t, m, "10.0.0.1", q.name, q.qtype, 0, tcp)
			if len(r.Answer) == 0 || r.Truncated {
				t.Errorf("%s %s tcp=%v: %d answers, truncated=%v", q.name, dns.TypeToString[q.qtype], tcp, len(r.Answer), r.Truncated)
			}
		}
	}
	// _p999 answers port 10999 of as many endpoints as fit a TCP reply.
	r := queryFrom(t, m, "10.0.0.1", "_p999._tcp.huge.default.svc.clusterset.local.", dns.TypeSRV, 0, true)
	for _, rr := range r.Answer {
		if p := rr.(*dns.SRV).Port; p != 10999 {
			t.Fatalf("_p999 answered port %d", p)
		}
	}
	if len(r.Answer) < 500 {
		t.Errorf("_p999 over TCP: %d answers, want the hundreds that fit 64 KiB", len(r.Answer))
	}
}

// Finding 2: endpoints sharing a hostname were merged with a scan of the addresses gathered so
// far (quadratic). Now merging is a map lookup, and max_endpoints bounds what one service keeps;
// what it cuts is counted. (Build times are measured by BenchmarkBuildSharedHostname.)
func TestSharedHostnameIsBounded(t *testing.T) {
	m := testPlugin()
	d := sharedHostname(20000)
	m.store.set("default/db", d)
	if got := m.store.cutCounts()[cutEndpoints]; got != 20000-DefaultLimits.Endpoints {
		t.Errorf("cut endpoints %d, want %d", got, 20000-DefaultLimits.Endpoints)
	}
	r := queryFrom(t, m, "10.0.0.1", "db.member1.db.default.svc.clusterset.local.", dns.TypeA, 0, true)
	if len(r.Answer) < 4000 || len(r.Answer) > DefaultLimits.Endpoints {
		t.Errorf("db over TCP: %d addresses, want the ~4,000 of the %d kept that fit 64 KiB", len(r.Answer), DefaultLimits.Endpoints)
	}
	// Removing the service clears what it cut.
	m.store.set("default/db", nil)
	if got := m.store.cutCounts()[cutEndpoints]; got != 0 {
		t.Errorf("cut endpoints %d after the service went, want 0", got)
	}
}

// sharedHostname is a headless service of n endpoints, all with hostname db, in slices of 1,000.
func sharedHostname(n int) *serviceData {
	d := &serviceData{namespace: "default", name: "db", imp: imp("default", "db", object.Headless, nil)}
	for lo := 0; lo < n; lo += 1000 {
		var eps []object.Endpoint
		for i := lo; i < min(n, lo+1000); i++ {
			eps = append(eps, ep("db", "db-"+strconv.Itoa(i), true, v4(i)))
		}
		d.slices = append(d.slices, slice("default", "db", "db-"+strconv.Itoa(lo), "member1", []object.Port{http8080}, eps...))
	}
	return d
}

// Finding 3: 40 endpoints sharing hostname db plus 2 others. Clients without EDNS0 (512 bytes)
// whose window started at db got NOERROR with no answer and no TC: a negative answer NodeLocal
// DNSCache then caches. Every client must get records (or TC), for every name and type.
func TestNoNegativeAnswerWhereRecordsExist(t *testing.T) {
	m := testPlugin()
	var eps []object.Endpoint
	for i := 0; i < 40; i++ {
		eps = append(eps, ep("db", "db-"+strconv.Itoa(i), true, v4(i), fmt.Sprintf("fd00::%x", i+1)))
	}
	eps = append(eps, ep("other-1", "o1", true, "10.30.0.1"), ep("other-2", "o2", true, "10.30.0.2"))
	m.store.set("default/shared", &serviceData{namespace: "default", name: "shared", imp: imp("default", "shared", object.Headless, nil),
		slices: []*object.EndpointSlice{slice("default", "shared", "s1", "member1", []object.Port{http8080, dns53}, eps...)}})
	names := []string{"shared.default.svc.clusterset.local.", "_http._tcp.shared.default.svc.clusterset.local.",
		"db.member1.shared.default.svc.clusterset.local."}
	for c := 0; c < 50; c++ {
		client := "10.99.0." + strconv.Itoa(c+1)
		for _, name := range names {
			for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeSRV} {
				if strings.HasPrefix(name, "_") != (qt == dns.TypeSRV) && !(qt == dns.TypeSRV && strings.HasPrefix(name, "shared.")) {
					continue
				}
				r := queryFrom(t, m, client, name, qt, 0, false)
				if len(r.Answer) == 0 && !r.Truncated {
					t.Errorf("client %s, %s %s: NOERROR without records and without TC", client, name, dns.TypeToString[qt])
				}
			}
		}
	}
}

// Finding 4: a 63-character hostname under long service, namespace and cluster names made a
// per-endpoint name of more than 255 octets: the SRV reply packed, but no client could unpack
// it. Such names are not built (the endpoint keeps answering for the service name) and counted.
func TestNamesOver255OctetsAreNotBuilt(t *testing.T) {
	m := testPlugin()
	svc, ns := strings.Repeat("s", 63), strings.Repeat("n", 63)
	cluster := strings.Repeat("c", 40) + "." + strings.Repeat("x", 30)
	long := ep(strings.Repeat("h", 63), "long", true, "10.40.0.1")
	short := ep("short", "short", true, "10.40.0.2")
	m.store.set(ns+"/"+svc, &serviceData{namespace: ns, name: svc, imp: imp(ns, svc, object.Headless, nil),
		slices: []*object.EndpointSlice{slice(ns, svc, "s1", cluster, []object.Port{http8080}, long, short)}})
	base := svc + "." + ns + ".svc.clusterset.local."
	if l := len(strings.Repeat("h", 63)+"."+cluster+"."+base) + 1; l <= 255 {
		t.Fatalf("test data: the long name has %d octets, want more than 255", l)
	}
	if got := m.store.cutCounts()[cutLongNames]; got != 1 {
		t.Errorf("long names cut %d, want 1", got)
	}
	for _, tcp := range []bool{false, true} {
		srv := queryFrom(t, m, "10.0.0.1", base, dns.TypeSRV, 4096, tcp)
		if len(srv.Answer) != 1 || srv.Answer[0].(*dns.SRV).Target != "short."+cluster+"."+base {
			t.Errorf("SRV: %v, want the short endpoint only", srv.Answer)
		}
		a := queryFrom(t, m, "10.0.0.1", base, dns.TypeA, 4096, tcp)
		if len(a.Answer) != 2 {
			t.Errorf("A: %v, want both endpoints' addresses", a.Answer)
		}
	}
}

// Finding 5: a ServiceImport name may contain dots (it is a CRD object): default/web-0.member1.web
// took over web's per-endpoint name web-0.member1.web…, and deleting it left NXDOMAIN for the
// real name. Only names and namespaces that are DNS labels become names.
func TestDottedImportNamesAreIgnored(t *testing.T) {
	m := testPlugin()
	pod := "web-0.member1.web.default.svc.clusterset.local."
	want := "10.10.0.5"
	check := func(when string) {
		t.Helper()
		r := queryFrom(t, m, "10.0.0.1", pod, dns.TypeA, 0, false)
		if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != want || r.Rcode != dns.RcodeSuccess {
			t.Errorf("%s: %s answered %s %v, want %s", when, pod, dns.RcodeToString[r.Rcode], r.Answer, want)
		}
	}
	nsBefore := m.store.hasImports("default")
	m.store.set("default/web-0.member1.web", &serviceData{namespace: "default", name: "web-0.member1.web",
		imp: imp("default", "web-0.member1.web", object.ClusterSetIP, []string{"10.66.6.6"}, http80)})
	check("with the dotted import")
	if got := m.store.cutCounts()[cutInvalidName]; got != 1 {
		t.Errorf("invalid names counted %d, want 1", got)
	}
	m.store.set("default/web-0.member1.web", nil)
	check("after the dotted import went")
	if got := m.store.cutCounts()[cutInvalidName]; got != 0 {
		t.Errorf("invalid names counted %d after it went, want 0", got)
	}
	if m.store.hasImports("default") != nsBefore {
		t.Error("the dotted import changed whether its namespace has imports")
	}
}

// A second guard beside the label check: a service never takes over, nor removes, a name that
// another service holds.
func TestStoreNamesStayWithTheirOwner(t *testing.T) {
	st := newStore([]string{"clusterset.local."}, 5)
	st.set("a/x", &serviceData{namespace: "a", name: "x", imp: imp("a", "x", object.ClusterSetIP, []string{"10.0.0.1"})})
	n := st.lookup("x.a.svc.clusterset.local.")
	// A build that (wrongly) produced the same name for another key.
	st.mu.Lock()
	st.owned["b/y"] = []string{"x.a.svc.clusterset.local."}
	st.mu.Unlock()
	st.set("b/y", nil)
	if st.lookup("x.a.svc.clusterset.local.") != n {
		t.Error("removing another service removed a/x's name")
	}
}

// Limits: ports over max_ports are left out of SRV answers and counted; the first ports in a
// stable order stay.
func TestPortLimit(t *testing.T) {
	m := testPlugin()
	m.store.limits = Limits{Endpoints: 100, Ports: 3}
	m.store.set("default/many", &serviceData{namespace: "default", name: "many", imp: imp("default", "many", object.Headless, nil),
		slices: []*object.EndpointSlice{slice("default", "many", "m1", "member1", namedPorts(10), ep("a", "a", true, "10.50.0.1"))}})
	if got := m.store.cutCounts()[cutPorts]; got != 7 {
		t.Errorf("ports cut %d, want 7", got)
	}
	r := queryFrom(t, m, "10.0.0.1", "many.default.svc.clusterset.local.", dns.TypeSRV, 4096, false)
	if len(r.Answer) != 3 {
		t.Errorf("SRV: %d records, want 3", len(r.Answer))
	}
	if r := queryFrom(t, m, "10.0.0.1", "_p9._tcp.many.default.svc.clusterset.local.", dns.TypeSRV, 0, false); r.Rcode != dns.RcodeNameError {
		t.Errorf("_p9 (cut): %s, want NXDOMAIN", dns.RcodeToString[r.Rcode])
	}
	// A ClusterSetIP import's ports too.
	m.store.set("default/manyip", &serviceData{namespace: "default", name: "manyip",
		imp: imp("default", "manyip", object.ClusterSetIP, []string{"10.13.0.99"}, namedPorts(10)...)})
	r = queryFrom(t, m, "10.0.0.1", "manyip.default.svc.clusterset.local.", dns.TypeSRV, 4096, false)
	if len(r.Answer) != 3 {
		t.Errorf("ClusterSetIP SRV: %d records, want 3", len(r.Answer))
	}
}

// Finding 7: AXFR and IXFR got an authoritative empty NOERROR; they are refused, as the
// kubernetes plugin does (the server writes REFUSED for the returned code).
func TestZoneTransfersRefused(t *testing.T) {
	m := testPlugin()
	for _, qt := range []uint16{dns.TypeAXFR, dns.TypeIXFR} {
		for _, name := range []string{"clusterset.local.", "serve.default.svc.clusterset.local."} {
			r := new(dns.Msg)
			r.SetQuestion(name, qt)
			w := dnstest.NewRecorder(&test.ResponseWriter{TCP: true})
			rcode, err := m.ServeDNS(context.TODO(), w, r)
			if err != nil || rcode != dns.RcodeRefused || w.Msg != nil {
				t.Errorf("%s %s: rcode %s, err %v, reply %v; want REFUSED left to the server", dns.TypeToString[qt], name, dns.RcodeToString[rcode], err, w.Msg)
			}
		}
	}
}

// BenchmarkBuildSharedHostname builds a headless service whose endpoints all share one hostname
// (10k and 20k endpoints): linear building takes about twice as long for twice the endpoints.
func BenchmarkBuildSharedHostname(b *testing.B) {
	for _, n := range []int{10000, 20000} {
		d := sharedHostname(n)
		lim := Limits{Endpoints: n, Ports: DefaultLimits.Ports}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buildService("clusterset.local.", 5, lim, *d)
			}
		})
	}
}

// BenchmarkBuildHugeExport builds the 1,000 endpoints × 1,000 ports export.
func BenchmarkBuildHugeExport(b *testing.B) {
	eps := make([]object.Endpoint, 1000)
	for i := range eps {
		eps[i] = ep("pod-"+strconv.Itoa(i), "pod-"+strconv.Itoa(i), true, v4(i))
	}
	d := serviceData{namespace: "default", name: "huge", imp: imp("default", "huge", object.Headless, nil),
		slices: []*object.EndpointSlice{slice("default", "huge", "h1", "member1", namedPorts(1000), eps...)}}
	b.ReportAllocs()
	for b.Loop() {
		buildService("clusterset.local.", 5, DefaultLimits, d)
	}
}
