package multicluster

import (
	"context"
	"net"
	"testing"

	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// packWriter packs every reply, as the server does, so benchmarks include the wire encoding.
type packWriter struct {
	test.ResponseWriter
	buf []byte
}

func (w *packWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.PackBuffer(w.buf)
	w.buf = b[:cap(b)]
	return err
}

func (w *packWriter) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(10, 12, 0, 9), Port: 40212}
}

// BenchmarkServeDNS measures the hot path per query kind: lookup, copy and pack of the answer.
func BenchmarkServeDNS(b *testing.B) {
	m := testPlugin()
	bigHeadless(m, 100)
	cases := []struct {
		name  string
		qname string
		qtype uint16
	}{
		{"ClusterSetIP_A", "serve.default.svc.clusterset.local.", dns.TypeA},
		{"ClusterSetIP_SRV", "_http._tcp.serve.default.svc.clusterset.local.", dns.TypeSRV},
		{"Headless100_A", "big.default.svc.clusterset.local.", dns.TypeA},
		{"Headless100_SRV", "big.default.svc.clusterset.local.", dns.TypeSRV},
		{"Pod_A", "web-0.member1.web.default.svc.clusterset.local.", dns.TypeA},
		{"NXDOMAIN", "nope.default.svc.clusterset.local.", dns.TypeA},
		{"NODATA", "serve.default.svc.clusterset.local.", dns.TypeAAAA},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r := new(dns.Msg)
			r.SetQuestion(c.qname, c.qtype)
			r.SetEdns0(1232, false)
			w := &packWriter{}
			ctx := context.TODO()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.ServeDNS(ctx, w, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
