package multicluster

import (
	"strings"
	"testing"
	"time"

	"github.com/coredns/caddy"
)

func TestParse(t *testing.T) {
	tests := []struct {
		input      string
		keys       []string
		zones      []string
		ttl        uint32
		kubeconfig string
		context    string
		timeout    time.Duration
		prefix     string
		namespaces int
		fallZone   string // a name fallthrough must apply to, if set
		limits     Limits // zero: the defaults
		err        string // substring of the expected error
	}{
		{input: `multicluster`, keys: []string{"."}, zones: []string{"clusterset.local."}, ttl: 5, timeout: 5 * time.Second, prefix: "derived-"},
		{input: `multicluster`, keys: []string{"clusterset.local.:53"}, zones: []string{"clusterset.local."}, ttl: 5, timeout: 5 * time.Second, prefix: "derived-"},
		{input: `multicluster example.org`, keys: []string{"."}, zones: []string{"example.org."}, ttl: 5, timeout: 5 * time.Second, prefix: "derived-"},
		{input: `multicluster clusterset.local {
			kubeconfig /etc/member2.config member2
			ttl 30
			fallthrough
			namespaces default prod
			startup_timeout 10s
			derived_prefix imported-
		}`, keys: []string{"."}, zones: []string{"clusterset.local."}, ttl: 30, kubeconfig: "/etc/member2.config", context: "member2",
			timeout: 10 * time.Second, prefix: "imported-", namespaces: 2, fallZone: "x.clusterset.local."},
		{input: "multicluster {\nmax_endpoints 200\nmax_ports 16\n}", keys: []string{"."}, zones: []string{"clusterset.local."}, ttl: 5,
			timeout: 5 * time.Second, prefix: "derived-", limits: Limits{Endpoints: 200, Ports: 16}},
		{input: "multicluster {\nttl 0\n}", keys: []string{"."}, zones: []string{"clusterset.local."}, ttl: 0, timeout: 5 * time.Second, prefix: "derived-"},
		{input: "multicluster {\nkubeconfig /a\n}", keys: []string{"."}, zones: []string{"clusterset.local."}, ttl: 5, kubeconfig: "/a", timeout: 5 * time.Second, prefix: "derived-"},
		// Errors name the problem and the line.
		{input: "multicluster {\nttl 3601\n}", keys: []string{"."}, err: "ttl must be an integer in [0, 3600]"},
		{input: "multicluster {\nttl -1\n}", keys: []string{"."}, err: "ttl must be"},
		{input: "multicluster {\nttl\n}", keys: []string{"."}, err: "Wrong argument count"},
		{input: `multicluster {
			bogus 1
		}`, keys: []string{"."}, err: "Testfile:2 - Error during parsing: unknown property 'bogus'"},
		{input: "multicluster {\nkubeconfig\n}", keys: []string{"."}, err: "Wrong argument count"},
		{input: "multicluster {\nkubeconfig a b c\n}", keys: []string{"."}, err: "Wrong argument count"},
		{input: "multicluster {\nstartup_timeout soon\n}", keys: []string{"."}, err: "startup_timeout must be a non-negative duration"},
		{input: "multicluster {\nnamespaces\n}", keys: []string{"."}, err: "Wrong argument count"},
		{input: "multicluster {\nnamespaces Default\n}", keys: []string{"."}, err: "is not a namespace name"},
		{input: "multicluster {\nderived_prefix UPPER-\n}", keys: []string{"."}, err: "cannot start a Service name"},
		{input: "multicluster {\nclusterid Member_2\n}", keys: []string{"."}, err: "clusterid \"Member_2\" must be one or two DNS labels"},
		{input: "multicluster {\nclusterid a.b.c\n}", keys: []string{"."}, err: "must be one or two DNS labels"},
		{input: "multicluster {\nclusterid\n}", keys: []string{"."}, err: "Wrong argument count"},
		{input: "multicluster {\nmax_endpoints 0\n}", keys: []string{"."}, err: "max_endpoints must be an integer in [1, 100000]"},
		{input: "multicluster {\nmax_ports many\n}", keys: []string{"."}, err: "max_ports must be an integer in [1, 100000]"},
		{input: "multicluster {\nmax_ports 1 2\n}", keys: []string{"."}, err: "Wrong argument count"},
		{input: `multicluster cluster.local`, keys: []string{"."}, err: "is the cluster-local zone"},
		{input: "multicluster\nmulticluster", keys: []string{"."}, err: "this plugin can only be used once per Server Block"},
	}
	for i, tc := range tests {
		c := caddy.NewTestController("dns", tc.input)
		c.ServerBlockKeys = tc.keys
		m, opts, err := parse(c)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("test %d: error %v, want one containing %q", i, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("test %d: unexpected error %v", i, err)
			continue
		}
		if strings.Join(m.Zones, ",") != strings.Join(tc.zones, ",") {
			t.Errorf("test %d: zones %v, want %v", i, m.Zones, tc.zones)
		}
		if m.ttl != tc.ttl || opts.kubeconfig != tc.kubeconfig || opts.context != tc.context ||
			opts.startupTimeout != tc.timeout || opts.derivedPrefix != tc.prefix || len(m.namespaces) != tc.namespaces {
			t.Errorf("test %d: got ttl=%d kubeconfig=%q context=%q timeout=%s prefix=%q namespaces=%d", i,
				m.ttl, opts.kubeconfig, opts.context, opts.startupTimeout, opts.derivedPrefix, len(m.namespaces))
		}
		if want := DefaultLimits; tc.limits != (Limits{}) {
			if m.store.limits != tc.limits {
				t.Errorf("test %d: limits %+v, want %+v", i, m.store.limits, tc.limits)
			}
		} else if m.store.limits != want {
			t.Errorf("test %d: limits %+v, want the defaults %+v", i, m.store.limits, want)
		}
		if tc.fallZone != "" && !m.Fall.Through(tc.fallZone) {
			t.Errorf("test %d: fallthrough does not apply to %s", i, tc.fallZone)
		}
		if tc.fallZone == "" && m.Fall.Through("x.clusterset.local.") {
			t.Errorf("test %d: fallthrough set without the option", i)
		}
	}
}
