package multicluster

import (
	"context"
	"slices"
	"testing"

	"github.com/coredns/coredns/plugin/pkg/dnstest"
	"github.com/coredns/coredns/plugin/test"
	"github.com/miekg/dns"

	"github.com/coredns-mcs/coredns-mcs/plugin/multicluster/object"
)

// A headless import whose derived Service prefers close endpoints (trafficDistribution) answers
// its service names with this cluster's ready endpoints while it has any, every cluster's when it
// has none or does not know its id; without the preference, every cluster's. Each endpoint keeps
// its own name either way.
func TestPreferLocalEndpoints(t *testing.T) {
	data := func(prefer bool, local string, member2Ready bool) *serviceData {
		return &serviceData{
			namespace: "default", name: "db", local: local,
			imp:     imp("default", "db", object.Headless, nil),
			derived: &object.Service{PreferClose: prefer},
			slices: []*object.EndpointSlice{
				slice("default", "db", "a", "member1", []object.Port{http8080},
					ep("db-0", "db-0", true, "10.10.0.1"), ep("db-1", "db-1", true, "10.10.0.2")),
				slice("default", "db", "b", "member2", []object.Port{http8080},
					ep("db-0", "db-0", member2Ready, "10.12.0.1")),
			},
		}
	}
	query := func(d *serviceData, name string, qtype uint16) []string {
		t.Helper()
		st := newStore([]string{"clusterset.local."}, 5)
		st.set("default/db", d)
		m := &MultiCluster{Zones: []string{"clusterset.local."}, ttl: 5, store: st,
			ctrl: &fakeSource{state: stateSynced, namespaces: map[string]bool{"default": true}}, Next: test.NextHandler(dns.RcodeRefused, nil)}
		rec := dnstest.NewRecorder(&test.ResponseWriter{})
		req := new(dns.Msg)
		req.SetQuestion(name, qtype)
		if _, err := m.ServeDNS(context.Background(), rec, req); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, rr := range rec.Msg.Answer {
			switch r := rr.(type) {
			case *dns.A:
				out = append(out, r.A.String())
			case *dns.SRV:
				out = append(out, r.Target)
			}
		}
		slices.Sort(out)
		return out
	}
	svc := "db.default.svc.clusterset.local."
	for _, tc := range []struct {
		name         string
		prefer       bool
		local        string
		member2Ready bool
		want         []string
		wantSRV      []string
	}{
		{"preferring, local ready", true, "member2", true, []string{"10.12.0.1"}, []string{"db-0.member2." + svc}},
		{"preferring, local none ready", true, "member2", false, []string{"10.10.0.1", "10.10.0.2"}, nil},
		{"preferring, id unknown", true, "", true, []string{"10.10.0.1", "10.10.0.2", "10.12.0.1"}, nil},
		{"not preferring", false, "member2", true, []string{"10.10.0.1", "10.10.0.2", "10.12.0.1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := data(tc.prefer, tc.local, tc.member2Ready)
			if got := query(d, svc, dns.TypeA); !slices.Equal(got, tc.want) {
				t.Errorf("A %s: %v, want %v", svc, got, tc.want)
			}
			if tc.wantSRV != nil {
				if got := query(d, "_http._tcp."+svc, dns.TypeSRV); !slices.Equal(got, tc.wantSRV) {
					t.Errorf("SRV: %v, want %v", got, tc.wantSRV)
				}
			}
			// Per-endpoint names of every cluster answer as ever.
			if got := query(d, "db-1.member1."+svc, dns.TypeA); !slices.Equal(got, []string{"10.10.0.2"}) {
				t.Errorf("db-1.member1: %v", got)
			}
		})
	}
}
