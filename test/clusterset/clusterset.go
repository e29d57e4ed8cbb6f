package clusterset

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Context names, as in the seed and Karmada's local-up.
const (
	Karmada = "karmada-apiserver"
	Member1 = "member1"
	Member2 = "member2"
	// Member3 is the Pull-mode member (karmada-agent and mcs-agent run in it).
	Member3 = "member3"
)

// Env is a running local clusterset.
type Env struct {
	// Root is the repository's root directory.
	Root string
	// Vars are the values `hack/clusterset.sh env` prints (CMCS_*).
	Vars map[string]string
	// KarmadaConfig and MembersConfig are the kubeconfig files of the control plane and members.
	KarmadaConfig, MembersConfig string
	// Kubectl is the path of the kubectl binary built with the clusterset (same version).
	Kubectl string
}

// RepoRoot returns the repository's root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Up brings the clusterset up (idempotent: a running one is reused, and gets the members it
// lacks) and describes it. The tests need one Pull member (member3) besides the two Push ones:
// CMCS_PULL_MEMBERS defaults to 1 here.
func Up() (*Env, error) {
	root := RepoRoot()
	cmd := exec.Command(filepath.Join(root, "hack", "clusterset.sh"), "up")
	cmd.Env = os.Environ()
	if os.Getenv("CMCS_PULL_MEMBERS") == "" {
		cmd.Env = append(cmd.Env, "CMCS_PULL_MEMBERS=1")
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("hack/clusterset.sh up: %w", err)
	}
	out, err := exec.Command(filepath.Join(root, "hack", "clusterset.sh"), "env").Output()
	if err != nil {
		return nil, fmt.Errorf("hack/clusterset.sh env: %w", err)
	}
	e := &Env{Root: root, Vars: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			e.Vars[k] = v
		}
	}
	e.KarmadaConfig = e.Vars["CMCS_KARMADA_KUBECONFIG"]
	e.MembersConfig = e.Vars["CMCS_MEMBERS_KUBECONFIG"]
	e.Kubectl = e.Vars["CMCS_KUBECTL"]
	if e.KarmadaConfig == "" || e.MembersConfig == "" || e.Kubectl == "" {
		return nil, fmt.Errorf("hack/clusterset.sh env printed no kubeconfig or kubectl: %q", out)
	}
	return e, nil
}

// Main is for TestMain: it brings the clusterset up (or reuses it) before the package's tests.
// A clusterset that cannot come up fails the package; it is never skipped.
// after, when given, run once the tests are done (removing what the package built, say).
func Main(m *testing.M, env **Env, after ...func()) {
	e, err := Up()
	if err != nil {
		fmt.Fprintln(os.Stderr, "local clusterset:", err)
		os.Exit(1)
	}
	*env = e
	code := m.Run()
	for _, f := range after {
		f()
	}
	os.Exit(code)
}

// Kubeconfig returns the kubeconfig file holding context ctx.
func (e *Env) Kubeconfig(ctx string) string {
	if ctx == Karmada {
		return e.KarmadaConfig
	}
	return e.MembersConfig
}

// RESTConfig returns a client configuration for context ctx.
func (e *Env) RESTConfig(ctx string) (*rest.Config, error) {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: e.Kubeconfig(ctx)},
		&clientcmd.ConfigOverrides{CurrentContext: ctx}).ClientConfig()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}

// Client returns a typed client for context ctx, failing the test on error.
func (e *Env) Client(t testing.TB, ctx string) kubernetes.Interface {
	t.Helper()
	cfg, err := e.RESTConfig(ctx)
	if err != nil {
		t.Fatalf("client for %s: %v", ctx, err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

// Dynamic returns a dynamic client for context ctx, failing the test on error.
func (e *Env) Dynamic(t testing.TB, ctx string) dynamic.Interface {
	t.Helper()
	cfg, err := e.RESTConfig(ctx)
	if err != nil {
		t.Fatalf("dynamic client for %s: %v", ctx, err)
	}
	return dynamic.NewForConfigOrDie(cfg)
}

// Kubectl runs kubectl against context ctx and returns its standard output; stdin, when not
// empty, is passed to it. It fails the test when kubectl fails.
func (e *Env) KubectlT(t testing.TB, ctx, stdin string, args ...string) string {
	t.Helper()
	out, err := e.Run(ctx, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl --context %s %s: %v", ctx, strings.Join(args, " "), err)
	}
	return out
}

// Run runs kubectl against context ctx and returns its standard output, or an error carrying
// its standard error.
func (e *Env) Run(ctx, stdin string, args ...string) (string, error) {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"--kubeconfig", e.Kubeconfig(ctx), "--context", ctx}, args...)
	cmd := exec.CommandContext(c, e.Kubectl, full...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Eventually polls cond every interval until it returns nil or timeout passes; then it fails the
// test with the last error.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Seed returns the path of one of the seed's manifests (test/testdata/seed).
func (e *Env) Seed(name string) string {
	return filepath.Join(e.Root, "test", "testdata", "seed", name)
}

// TokenKubeconfig mints a token for ServiceAccount ns/sa on context ctx's apiserver (TokenRequest,
// one hour) and writes a kubeconfig that uses only that token, with context name ctx.
func (e *Env) TokenKubeconfig(t testing.TB, ctx, ns, sa string) string {
	t.Helper()
	token := strings.TrimSpace(e.KubectlT(t, ctx, "", "-n", ns, "create", "token", sa, "--duration=1h"))
	server := strings.TrimSpace(e.KubectlT(t, ctx, "", "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"))
	ca := strings.TrimSpace(e.KubectlT(t, ctx, "", "config", "view", "--minify", "--raw", "-o", "jsonpath={.clusters[0].cluster.certificate-authority-data}"))
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %q, certificate-authority-data: %q}
users:
- name: %s
  user: {token: %q}
contexts:
- name: %s
  context: {cluster: c, user: %s}
current-context: %s
`, server, ca, sa, token, ctx, sa, ctx)
	path := filepath.Join(t.TempDir(), sa+"-"+ctx+".config")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// RunWith runs kubectl with a kubeconfig file (its current context) and returns its output.
func (e *Env) RunWith(kubeconfig string, args ...string) (string, error) {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, e.Kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Pid returns the process id of a clusterset process by the name of its pid file under
// _output/clusterset/pids (apiserver-karmada, apiserver-member1, …).
func (e *Env) Pid(t testing.TB, name string) int {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(e.Root, "_output", "clusterset", "pids", name+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}
