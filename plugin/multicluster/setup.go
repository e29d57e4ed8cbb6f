package multicluster

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/plugin"
	"github.com/miekg/dns"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

func init() { plugin.Register(pluginName, setup) }

const (
	defaultZone           = "clusterset.local."
	defaultTTL            = 5
	maxTTL                = 3600
	defaultStartupTimeout = 5 * time.Second
	// maxLimit bounds max_endpoints and max_ports: beyond it one service could cost hundreds of MiB.
	maxLimit = 100000
)

// options are the Corefile settings that are not part of MultiCluster itself.
type options struct {
	kubeconfig, context string
	startupTimeout      time.Duration
	derivedPrefix       string
	// clusterID, when set, is this cluster's id; otherwise its ClusterProperty's is followed.
	clusterID string
}

func setup(c *caddy.Controller) error {
	m, opts, err := parse(c)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	cfg, err := opts.restConfig()
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	conn := &connErrors{}
	cfg.Wrap(conn.wrap)
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return plugin.Error(pluginName, err)
	}
	ctrl := newDataController(client, dyn, disco, m.store, opts.derivedPrefix, m.namespaces, m.Zones[0])
	ctrl.fixedID = opts.clusterID
	ctrl.connErrors = conn
	m.ctrl = ctrl

	c.OnStartup(func() error {
		ctrl.Start()
		// Wait for the caches, but never longer than startup_timeout: until synced the zone
		// answers SERVFAIL, which clients retry, rather than holding the whole server back.
		deadline := time.Now().Add(opts.startupTimeout)
		for time.Now().Before(deadline) {
			if s := ctrl.syncState(); s == stateSynced || (s == stateNoAPI && ctrl.baseSynced()) {
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		log.Warningf("caches of zone %s not synced after startup_timeout %s; answering SERVFAIL for it until they are", m.Zones[0], opts.startupTimeout)
		return nil
	})
	c.OnShutdown(func() error {
		ctrl.Stop()
		return nil
	})
	dnsserver.GetConfig(c).AddPlugin(func(next plugin.Handler) plugin.Handler {
		m.Next = next
		return m
	})
	return nil
}

func (o options) restConfig() (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if o.kubeconfig != "" {
		overrides := &clientcmd.ConfigOverrides{CurrentContext: o.context}
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: o.kubeconfig}, overrides).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", o.kubeconfig, err)
		}
	} else {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("not running in a cluster and no kubeconfig given: %w", err)
		}
	}
	cfg.UserAgent = "coredns-mcs/multicluster"
	cfg.QPS, cfg.Burst = 50, 100
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return cfg, nil
}

// parse reads one multicluster block. Errors name the offending line (c.Errf / c.ArgErr).
func parse(c *caddy.Controller) (*MultiCluster, options, error) {
	opts := options{startupTimeout: defaultStartupTimeout, derivedPrefix: mcs.DefaultDerivedPrefix}
	m := &MultiCluster{ttl: defaultTTL}
	limits := DefaultLimits
	blocks := 0
	for c.Next() {
		if blocks++; blocks > 1 {
			return nil, opts, plugin.ErrOnce
		}
		args := c.RemainingArgs()
		// Zones: the arguments; else the server block's zones; else (a root server block such as
		// `.:53`) clusterset.local.
		m.Zones = plugin.OriginsFromArgsOrServerBlock(args, c.ServerBlockKeys)
		if len(args) == 0 && (len(m.Zones) == 0 || slices.Contains(m.Zones, ".")) {
			m.Zones = []string{defaultZone}
		}
		for _, z := range m.Zones {
			if z == "." || dns.CountLabel(z) == 0 {
				return nil, opts, c.Errf("zone %q: the multicluster zone must be a proper zone, normally clusterset.local", z)
			}
			if strings.EqualFold(z, "cluster.local.") {
				return nil, opts, c.Errf("zone %q is the cluster-local zone: multi-cluster names live in clusterset.local (KEP-1645); serve cluster.local with the kubernetes plugin", z)
			}
		}
		for c.NextBlock() {
			switch c.Val() {
			case "kubeconfig":
				a := c.RemainingArgs()
				if len(a) != 1 && len(a) != 2 {
					return nil, opts, c.ArgErr()
				}
				opts.kubeconfig = a[0]
				if len(a) == 2 {
					opts.context = a[1]
				}
			case "ttl":
				a := c.RemainingArgs()
				if len(a) != 1 {
					return nil, opts, c.ArgErr()
				}
				t, err := strconv.Atoi(a[0])
				if err != nil || t < 0 || t > maxTTL {
					return nil, opts, c.Errf("ttl must be an integer in [0, %d], got %q", maxTTL, a[0])
				}
				m.ttl = uint32(t)
			case "fallthrough":
				m.Fall.SetZonesFromArgs(c.RemainingArgs())
			case "namespaces":
				a := c.RemainingArgs()
				if len(a) == 0 {
					return nil, opts, c.ArgErr()
				}
				m.namespaces = map[string]bool{}
				for _, ns := range a {
					if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
						return nil, opts, c.Errf("namespaces: %q is not a namespace name: %s", ns, strings.Join(errs, "; "))
					}
					m.namespaces[ns] = true
				}
			case "startup_timeout":
				a := c.RemainingArgs()
				if len(a) != 1 {
					return nil, opts, c.ArgErr()
				}
				d, err := time.ParseDuration(a[0])
				if err != nil || d < 0 {
					return nil, opts, c.Errf("startup_timeout must be a non-negative duration such as 5s, got %q", a[0])
				}
				opts.startupTimeout = d
			case "max_endpoints", "max_ports":
				name := c.Val()
				a := c.RemainingArgs()
				if len(a) != 1 {
					return nil, opts, c.ArgErr()
				}
				v, err := strconv.Atoi(a[0])
				if err != nil || v < 1 || v > maxLimit {
					return nil, opts, c.Errf("%s must be an integer in [1, %d], got %q", name, maxLimit, a[0])
				}
				if name == "max_endpoints" {
					limits.Endpoints = v
				} else {
					limits.Ports = v
				}
			case "derived_prefix":
				a := c.RemainingArgs()
				if len(a) != 1 {
					return nil, opts, c.ArgErr()
				}
				if errs := validation.IsDNS1035Label(strings.TrimSuffix(a[0], "-") + "x"); len(errs) > 0 || len(a[0]) > 52 {
					return nil, opts, c.Errf("derived_prefix %q cannot start a Service name", a[0])
				}
				opts.derivedPrefix = a[0]
			case "clusterid":
				a := c.RemainingArgs()
				if len(a) != 1 {
					return nil, opts, c.ArgErr()
				}
				if !validClusterID(a[0]) {
					return nil, opts, c.Errf("clusterid %q must be one or two DNS labels of at most 63 characters", a[0])
				}
				opts.clusterID = a[0]
			default:
				return nil, opts, c.Errf("unknown property '%s'", c.Val())
			}
		}
	}
	if len(m.Zones) == 0 {
		return nil, opts, errors.New("no zone")
	}
	m.store = newStore(m.Zones, m.ttl)
	m.store.limits = limits
	return m, opts, nil
}
