//go:build envtest

// Package controlplane_test is the middle test tier: the controller's reconcilers against real
// kube-apiservers (etcd and kube-apiserver from hack/build-deps.sh's cache, started by
// controller-runtime's envtest): one playing Karmada's control plane, with Karmada's Work and MCS
// CRDs and a stand-in for its aggregated Cluster API, and two members with the mcs-api CRDs. No
// Karmada controller runs: the test plays Karmada's execution controller (executor.go), reading
// Works and applying their manifests to the members. member3 is a Pull-mode member: no Secret of
// it exists on Karmada, and its mcs-agent (controller/agent) runs for the whole tier with a
// Karmada identity that may only touch karmada-es-member3 (pull_test.go). Each test takes seconds.
//
// Run by `make test` (hack/test.sh) before the clusterset tests; alone: make test-controlplane.
package controlplane_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	karmadaclient "github.com/karmada-io/karmada/pkg/generated/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/coredns-mcs/coredns-mcs/controller"
)

// cluster is one started control plane.
type cluster struct {
	name string
	env  *envtest.Environment
	cfg  *rest.Config
	kube kubernetes.Interface
	dyn  dynamic.Interface
	// proxy stands between the controller and a member's apiserver (the Cluster's apiEndpoint),
	// so a test can cut the member off.
	proxy *proxy
}

// proxy forwards TCP connections to an apiserver until cut (connections closed, new ones
// refused) or frozen (bytes held: a request is accepted and never answered, as from an
// apiserver stopped with SIGSTOP).
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	frozen bool
	conns  map[net.Conn]bool
}

func newProxy(target string) (*proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p, nil
}

func (p *proxy) serve(c net.Conn) {
	p.mu.Lock()
	if p.cut {
		p.mu.Unlock()
		c.Close()
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	go p.pipe(up, c)
	p.pipe(c, up)
}

// pipe copies src to dst, holding what it read while the proxy is frozen.
func (p *proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for n > 0 && p.isFrozen() {
			time.Sleep(20 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *proxy) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen && !p.cut
}

// setFrozen freezes or thaws the member.
func (p *proxy) setFrozen(frozen bool) {
	p.mu.Lock()
	p.frozen = frozen
	p.mu.Unlock()
}

// setCut cuts the member off (every connection closed, new ones refused) or reconnects it.
func (p *proxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

var (
	karmada    *cluster
	karmadaAPI karmadaclient.Interface
	members    = map[string]*cluster{}
	memberList = []string{"member1", "member2"}
)

// assets finds the binaries and CRDs: CMCS_ETCD, CMCS_KUBE_APISERVER and CMCS_KARMADA_CRDS, which
// hack/test.sh sets from hack/versions.sh.
func assets() (etcd, apiserver, karmadaCRDs string, err error) {
	etcd, apiserver, karmadaCRDs = os.Getenv("CMCS_ETCD"), os.Getenv("CMCS_KUBE_APISERVER"), os.Getenv("CMCS_KARMADA_CRDS")
	for _, p := range []string{etcd, apiserver, karmadaCRDs} {
		if p == "" {
			return "", "", "", fmt.Errorf("CMCS_ETCD, CMCS_KUBE_APISERVER and CMCS_KARMADA_CRDS must name the cached binaries and Karmada's CRDs (make test-controlplane sets them; run make deps first)")
		}
		if _, err := os.Stat(p); err != nil {
			return "", "", "", err
		}
	}
	return etcd, apiserver, karmadaCRDs, nil
}

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "controlplane tier:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctrl.SetLogger(klog.NewKlogr())
	etcd, apiserver, karmadaCRDs, err := assets()
	if err != nil {
		return 1, err
	}
	repo, _ := filepath.Abs("../..")
	tokens := filepath.Join(os.TempDir(), fmt.Sprintf("cmcs-tokens-%d.csv", os.Getpid()))
	// The controller reaches members as Karmada does: a bearer token from the Cluster's secret.
	if err := os.WriteFile(tokens, []byte(memberToken+`,karmada,karmada,"system:masters"`+"\n"+nobodyToken+",nobody,nobody\n"+
		agentToken+","+agentUser+","+agentUser+"\n"), 0o600); err != nil {
		return 1, err
	}
	defer os.Remove(tokens)
	start := func(name string, crds []string, token bool) (*cluster, error) {
		env := &envtest.Environment{CRDDirectoryPaths: crds, ErrorIfCRDPathMissing: true}
		env.ControlPlane.Etcd = &envtest.Etcd{Path: etcd}
		env.ControlPlane.APIServer = &envtest.APIServer{Path: apiserver}
		if token {
			env.ControlPlane.APIServer.Configure().Append("token-auth-file", tokens)
		}
		if name == "member1" {
			// member1 is dual-stack (its Service CIDRs of both families), member2 IPv4 only:
			// see TestIPFamilies.
			env.ControlPlane.APIServer.Configure().Set("service-cluster-ip-range", "10.0.0.0/24,fd00:10::/108")
		}
		cfg, err := env.Start()
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		cfg.QPS, cfg.Burst = 200, 400
		c := &cluster{name: name, env: env, cfg: cfg}
		c.kube = kubernetes.NewForConfigOrDie(cfg)
		c.dyn = dynamic.NewForConfigOrDie(cfg)
		return c, nil
	}
	defer func() {
		for _, c := range append([]*cluster{karmada}, members["member1"], members["member2"], members[pullMember]) {
			if c != nil {
				_ = c.env.Stop()
			}
		}
	}()
	t0 := time.Now()
	karmada, err = start("karmada", []string{
		filepath.Join(karmadaCRDs, "bases", "work"), filepath.Join(karmadaCRDs, "bases", "multicluster"),
		filepath.Join(repo, "test", "controlplane", "testdata"),
	}, true)
	if err != nil {
		return 1, err
	}
	karmadaAPI = karmadaclient.NewForConfigOrDie(karmada.cfg)
	for _, name := range memberList {
		c, err := start(name, []string{filepath.Join(repo, "manifests", "crds"), filepath.Join(repo, "test", "testdata", "clusterproperty-crd.yaml")}, true)
		if err != nil {
			return 1, err
		}
		members[name] = c
		if err := join(c); err != nil {
			return 1, err
		}
	}
	c, err := start(pullMember, []string{filepath.Join(repo, "manifests", "crds"), filepath.Join(repo, "test", "testdata", "clusterproperty-crd.yaml")}, true)
	if err != nil {
		return 1, err
	}
	members[pullMember] = c
	if err := joinPull(c); err != nil {
		return 1, err
	}
	fmt.Fprintf(os.Stderr, "controlplane tier: 4 control planes up in %s\n", time.Since(t0).Round(100*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go runExecutor(ctx)
	if err := startAgent(); err != nil {
		return 1, err
	}
	defer stopAgent()
	return m.Run(), nil
}

// memberToken is an administrator's on every control plane; nobodyToken authenticates a user
// with no permission.
const (
	memberToken = "cmcs-tier-token"
	nobodyToken = "cmcs-tier-nobody"
)

// join registers a member with the "Karmada" control plane as karmadactl join would: its
// execution namespace, a Secret with its token and CA, and a Push-mode Cluster.
func join(c *cluster) error {
	ctx := context.Background()
	for _, ns := range []string{"karmada-cluster", "karmada-es-" + c.name} {
		if _, err := karmada.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
			metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "karmada-cluster", Name: c.name},
		Data: map[string][]byte{"token": []byte(memberToken), "caBundle": c.cfg.CAData}}
	if _, err := karmada.kube.CoreV1().Secrets("karmada-cluster").Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return err
	}
	u, err := url.Parse(c.cfg.Host)
	if err != nil {
		return err
	}
	if c.proxy, err = newProxy(u.Host); err != nil {
		return err
	}
	cl := &clusterv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: c.name}, Spec: clusterv1alpha1.ClusterSpec{
		SyncMode: clusterv1alpha1.Push, APIEndpoint: "https://" + c.proxy.ln.Addr().String(),
		SecretRef: &clusterv1alpha1.LocalSecretReference{Namespace: "karmada-cluster", Name: c.name},
	}}
	_, err = karmadaAPI.ClusterV1alpha1().Clusters().Create(ctx, cl, metav1.CreateOptions{})
	return err
}

// startController runs the controller (as cmd/mcs-controller does, without leader election or
// servers) until the test ends or stop is called, and waits until it is synced.
func startController(t *testing.T, opts controller.Options) (stop func()) {
	t.Helper()
	c, stop := runController(t, opts)
	eventually(t, 30*time.Second, "controller synced", func() error {
		if !c.Synced() {
			return fmt.Errorf("not synced")
		}
		return nil
	})
	return stop
}

// startControllerUnsynced runs the controller without waiting for every member to sync.
func startControllerUnsynced(t *testing.T, opts controller.Options) (stop func()) {
	t.Helper()
	_, stop = runController(t, opts)
	return stop
}

func runController(t *testing.T, opts controller.Options) (*controller.Controller, func()) {
	t.Helper()
	return runControllerWith(t, opts, metricsserver.Options{BindAddress: "0"})
}

func runControllerWith(t *testing.T, opts controller.Options, metrics metricsserver.Options) (*controller.Controller, func()) {
	t.Helper()
	mgr, err := ctrl.NewManager(karmada.cfg, ctrl.Options{
		Metrics: metrics, HealthProbeBindAddress: "0", LeaderElection: false,
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := controller.New(karmada.cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("controller stopped with %v", err)
		}
	}
	t.Cleanup(stop)
	return c, stop
}

// eventually retries f until it succeeds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// namespace creates a fresh namespace of that name in every member and on the Karmada control
// plane (for templates). Without a namespace controller, namespaces are never deleted here: each
// test takes its own.
func namespace(t *testing.T, name string) string {
	t.Helper()
	name = strings.ToLower(name)
	for _, c := range append([]*cluster{karmada}, members["member1"], members["member2"]) {
		if _, err := c.kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}},
			metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return name
}
