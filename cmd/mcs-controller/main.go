// Command mcs-controller runs the coredns-mcs MCS controller against a Karmada control plane.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/coredns-mcs/coredns-mcs/controller"
	"github.com/coredns-mcs/coredns-mcs/internal/version"
)

func main() {
	var (
		kubecontext   string
		metricsAddr   string
		probeAddr     string
		leaderElect   bool
		leaderNS      string
		workers       int
		derivedPrefix string
		memberFailure string
		workLayout    string
		failureGrace  time.Duration
		declaredTO    time.Duration
		apiQPS        float64
		apiBurst      int
		memberQPS     float64
		memberBurst   int
		memberTimeout time.Duration
		secretNS      string
		metricsSecure bool
		metricsCerts  string
		showVersion   bool
	)
	flag.BoolVar(&showVersion, "version", false, "print the version and exit")
	flag.StringVar(&kubecontext, "context", "", "context in --kubeconfig (its current context when empty)")
	flag.StringVar(&metricsAddr, "metrics-bind-address", ":8443", "address of the Prometheus metrics endpoint (0 disables it)")
	flag.BoolVar(&metricsSecure, "metrics-secure", true, "serve metrics over HTTPS, each request authenticated and authorized by the Karmada apiserver (get on /metrics); false: plain HTTP, for a local lab only")
	flag.StringVar(&metricsCerts, "metrics-cert-dir", "", "directory with tls.crt and tls.key for the metrics endpoint (a self-signed certificate when empty)")
	flag.StringVar(&probeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	flag.BoolVar(&leaderElect, "leader-elect", true, "elect a leader among replicas; only the leader writes")
	flag.StringVar(&leaderNS, "leader-election-namespace", "karmada-system", "namespace of the leader election Lease on the Karmada control plane")
	flag.IntVar(&workers, "workers", 4, "services reconciled in parallel")
	flag.StringVar(&workLayout, "work-layout", controller.WorkLayoutObject, "how the objects written into an importer are grouped into Karmada Works: object (one Work per derived Service, slice and ServiceImport) or bundle (the derived Service and its slices in one Work per importer and service: half the Works for Karmada to apply)")
	flag.StringVar(&memberFailure, "member-failure", controller.MemberFailureDrain, "when Karmada reports a member not Ready: drain (withdraw its exported endpoints from every importer after --member-failure-grace, restore them when it is back) or keep (leave them, as Karmada does)")
	flag.DurationVar(&declaredTO, "declared-timeout", 60*time.Second, "how long a member a ServiceExport or ServiceImport template is scheduled to (its ResourceBinding) counts as exporting or importing before the object lands there; 0: only objects in the members count")
	flag.DurationVar(&failureGrace, "member-failure-grace", 60*time.Second, "how long a member may be not Ready before its endpoints are drained")
	flag.Float64Var(&apiQPS, "kube-api-qps", 100, "requests per second to the Karmada apiserver (client-side limit)")
	flag.IntVar(&apiBurst, "kube-api-burst", 200, "burst of requests to the Karmada apiserver")
	flag.Float64Var(&memberQPS, "member-api-qps", 50, "requests per second to each member's apiserver (client-side limit)")
	flag.IntVar(&memberBurst, "member-api-burst", 100, "burst of requests to each member's apiserver")
	flag.DurationVar(&memberTimeout, "member-request-timeout", 15*time.Second, "bound of each request to a member's apiserver (watches excepted): a member that hangs holds a worker no longer")
	flag.StringVar(&secretNS, "cluster-secret-namespace", "karmada-cluster", "comma-separated namespaces on the Karmada control plane where Cluster credentials (secretRef) may be read; a Cluster pointing elsewhere is refused")
	flag.StringVar(&derivedPrefix, "derived-prefix", "derived-", "prefix of derived Service names (Karmada's is derived-)")
	// --kubeconfig (of the Karmada control plane; in-cluster credentials when empty) is
	// controller-runtime's own flag.
	klog.InitFlags(nil)
	flag.Parse()
	if showVersion {
		fmt.Println(version.String("mcs-controller"))
		return
	}
	ctrl.SetLogger(klog.NewKlogr())
	log := ctrl.Log.WithName("setup")

	if workers < 1 {
		log.Error(errors.New("--workers must be at least 1"), "bad flag")
		os.Exit(2)
	}
	cfg, err := config.GetConfigWithContext(kubecontext)
	if err != nil {
		log.Error(err, "no configuration for the Karmada control plane")
		os.Exit(1)
	}
	// controller-runtime's default (20 QPS) made 1,000 exports take minutes: every export writes
	// Works per importer and a status.
	cfg.QPS, cfg.Burst = float32(apiQPS), apiBurst
	lease := 15 * time.Second
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Metrics:                       controller.MetricsOptions(metricsAddr, metricsSecure, metricsCerts),
		HealthProbeBindAddress:        probeAddr,
		LeaderElection:                leaderElect,
		LeaderElectionID:              "coredns-mcs-controller",
		LeaderElectionNamespace:       leaderNS,
		LeaseDuration:                 &lease,
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		log.Error(err, "creating the manager")
		os.Exit(1)
	}
	c, err := controller.New(cfg, controller.Options{DerivedPrefix: derivedPrefix, Workers: workers, MemberQPS: float32(memberQPS), MemberBurst: memberBurst,
		MemberFailure: memberFailure, FailureGrace: failureGrace, MemberTimeout: memberTimeout, DeclaredTimeout: declaredTimeout(declaredTO), WorkLayout: workLayout,
		SecretNamespaces: strings.Split(secretNS, ","), StatusNamespace: leaderNS})
	if err != nil {
		log.Error(err, "creating the controller")
		os.Exit(1)
	}
	if err := c.SetupWithManager(mgr); err != nil {
		log.Error(err, "adding the controller")
		os.Exit(1)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		log.Error(err, "health check")
		os.Exit(1)
	}
	// Ready: a standby replica is ready (it only waits for the lease); the leader once its caches
	// of every member are synced.
	elected := mgr.Elected()
	if err := mgr.AddReadyzCheck("synced", func(_ *http.Request) error {
		select {
		case <-elected:
			if !c.Synced() {
				return errors.New("member caches not synced yet")
			}
		default:
		}
		return nil
	}); err != nil {
		log.Error(err, "ready check")
		os.Exit(1)
	}
	log.Info("starting", "leaderElection", leaderElect, "workers", workers)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager stopped")
		os.Exit(1)
	}
}

// declaredTimeout maps the flag (0: off) to controller.Options (0: the default; negative: off).
func declaredTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
