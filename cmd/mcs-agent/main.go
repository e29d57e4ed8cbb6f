// Command mcs-agent runs in a Pull-mode Karmada member: it reports the member's MCS objects to
// the Karmada control plane and applies the status the MCS controller decided (controller/agent).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/coredns-mcs/coredns-mcs/controller/agent"
	"github.com/coredns-mcs/coredns-mcs/internal/version"
)

func main() {
	var (
		kubeconfig, kubecontext       string
		karmadaKubeconfig, karmadaCtx string
		cluster, derivedPrefix        string
		metricsAddr, probeAddr        string
		workers                       int
		leaderElect                   bool
		leaderNS                      string
		election                      agent.Election
		timeout, interval, lease      time.Duration
		showVersion                   bool
	)
	flag.BoolVar(&showVersion, "version", false, "print the version and exit")
	flag.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the member (in-cluster credentials when empty)")
	flag.StringVar(&kubecontext, "context", "", "context in --kubeconfig")
	flag.StringVar(&karmadaKubeconfig, "karmada-kubeconfig", "", "kubeconfig of the Karmada control plane (required): its user needs only the agent's Role in karmada-es-<cluster-name>")
	flag.StringVar(&karmadaCtx, "karmada-context", "", "context in --karmada-kubeconfig")
	flag.StringVar(&cluster, "cluster-name", "", "the member's name in Karmada (its Cluster object; required)")
	flag.StringVar(&derivedPrefix, "derived-prefix", "derived-", "the controller's --derived-prefix")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz (ready once every object of the member is reported)")
	flag.IntVar(&workers, "workers", 2, "items processed in parallel")
	flag.DurationVar(&timeout, "request-timeout", 15*time.Second, "bound of each request (watches excepted)")
	flag.DurationVar(&interval, "cluster-interval", 10*time.Second, "how often the cluster id, IP families and MCS versions are re-read")
	flag.DurationVar(&lease, "lease-duration", 40*time.Second, "how long a cluster report vouches for the agent (renewed every quarter of it): the controller takes a member whose agent's report is older for not Ready")
	flag.BoolVar(&leaderElect, "leader-elect", true, "elect a leader among replicas with a Lease in the member; only the leader reports and writes status")
	flag.StringVar(&leaderNS, "leader-election-namespace", agent.PodNamespace("karmada-system"), "namespace of the leader election Lease in the member (default: the agent's own)")
	flag.DurationVar(&election.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long a standby waits before taking over a leader that stopped renewing (keep it below --lease-duration)")
	flag.DurationVar(&election.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader retries renewing before it gives up leading (and exits)")
	flag.DurationVar(&election.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "how often replicas try to acquire or renew the lease")
	klog.InitFlags(nil)
	flag.Parse()
	if showVersion {
		fmt.Println(version.String("mcs-agent"))
		return
	}
	if leaderElect {
		election.Namespace = leaderNS
		if election.LeaseDuration >= lease {
			klog.InfoS("warning: --leader-elect-lease-duration is not below --lease-duration: a leader that dies takes the member to not Ready before a standby takes over",
				"leaderElectLeaseDuration", election.LeaseDuration, "leaseDuration", lease)
		}
	}
	if err := run(kubeconfig, kubecontext, karmadaKubeconfig, karmadaCtx, metricsAddr, probeAddr, election, agent.Options{
		Cluster: cluster, DerivedPrefix: derivedPrefix, Workers: workers, RequestTimeout: timeout, ClusterInterval: interval, Lease: lease,
	}); err != nil {
		klog.ErrorS(err, "mcs-agent")
		os.Exit(1)
	}
}

func config(path, context string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
}

// run runs the agent, as the elected leader when election names a namespace.
func run(kubeconfig, kubecontext, karmadaKubeconfig, karmadaCtx, metricsAddr, probeAddr string, election agent.Election, opts agent.Options) error {
	if karmadaKubeconfig == "" {
		return errors.New("--karmada-kubeconfig is required")
	}
	memberCfg, err := config(kubeconfig, kubecontext)
	if err != nil {
		return fmt.Errorf("the member's configuration: %w", err)
	}
	karmadaCfg, err := config(karmadaKubeconfig, karmadaCtx)
	if err != nil {
		return fmt.Errorf("the Karmada control plane's configuration: %w", err)
	}
	for _, c := range []*rest.Config{memberCfg, karmadaCfg} {
		c.QPS, c.Burst, c.UserAgent = 50, 100, "coredns-mcs-agent/"+version.Get()
	}
	a, err := agent.New(memberCfg, karmadaCfg, opts)
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(agent.Collectors()...)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	serve := func(addr string, h http.Handler) {
		if addr == "0" || addr == "" {
			return
		}
		srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				klog.ErrorS(err, "serving", "addr", addr)
				stop()
			}
		}()
		go func() { <-ctx.Done(); _ = srv.Close() }()
	}
	metrics := http.NewServeMux()
	metrics.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	serve(metricsAddr, metrics)
	probes := http.NewServeMux()
	probes.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	var leading atomic.Bool
	probes.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		// A standby replica is ready (it only waits for the lease), so a rolling update is not
		// held up by it; the leader once every object of the member is reported.
		if election.Namespace != "" && !leading.Load() {
			_, _ = w.Write([]byte("ok (standing by)"))
			return
		}
		if !a.Synced() {
			http.Error(w, "the member is not fully reported yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	serve(probeAddr, probes)
	klog.InfoS("starting", "cluster", opts.Cluster, "version", version.Get(), "leaderElection", election.Namespace != "")
	if election.Namespace == "" {
		return a.Run(ctx)
	}
	member, err := kubernetes.NewForConfig(memberCfg)
	if err != nil {
		return err
	}
	return agent.Elected(ctx, member, election, &leading, a.Run)
}
