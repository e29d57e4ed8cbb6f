package multicluster

import (
	"context"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"
)

// FuzzServeDNS feeds arbitrary DNS messages to the plugin: it must never panic, and every reply it
// writes must pack and unpack. FuzzStore fuzzes the stored objects. The seed corpus (testdata/fuzz/FuzzServeDNS) holds one query per name shape.
func FuzzServeDNS(f *testing.F) {
	for _, tc := range dnsCases {
		if b, err := tc.Msg().Pack(); err == nil {
			f.Add(b)
		}
	}
	m := testPlugin()
	bigHeadless(m, 100)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := new(dns.Msg)
		if err := r.Unpack(data); err != nil || len(r.Question) != 1 {
			return
		}
		w := dnstest.NewRecorder(&test.ResponseWriter{})
		if _, err := m.ServeDNS(context.TODO(), w, r); err != nil {
			return
		}
		if w.Msg != nil {
			wire, err := w.Msg.Pack()
			if err != nil {
				t.Fatalf("reply to %s does not pack: %v", r.Question[0].String(), err)
			}
			if err := new(dns.Msg).Unpack(wire); err != nil {
				t.Fatalf("reply to %s does not unpack: %v", r.Question[0].String(), err)
			}
		}
	})
}
