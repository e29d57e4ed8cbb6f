package clusterset

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// CoreDNS is a running coredns-mcs process.
type CoreDNS struct {
	// Addr is the DNS address (127.0.0.1:port), Ready the ready plugin's URL, Metrics the
	// prometheus plugin's URL.
	Addr, Ready, Metrics string
	cmd                  *exec.Cmd
	log                  *bytes.Buffer
	mu                   *sync.Mutex
}

var (
	buildMu   sync.Mutex
	buildDone = map[string]bool{}
)

// Binary returns _output/bin/<name> (a command under cmd/), building it when it is missing
// (make test builds them first).
func Binary(t testing.TB, name string) string {
	t.Helper()
	bin := filepath.Join(RepoRoot(), "_output", "bin", name)
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDone[name] {
		return bin
	}
	if _, err := os.Stat(bin); err != nil {
		cmd := exec.Command("go", "build", "-o", bin, "./cmd/"+name)
		cmd.Dir = RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v: %s", name, err, out)
		}
	}
	buildDone[name] = true
	return bin
}

// CoreDNSBinary returns the coredns-mcs binary.
func CoreDNSBinary(t testing.TB) string { return Binary(t, "coredns-mcs") }

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago (and whose UDP twin is free).
func FreePort(t testing.TB) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// MemberCorefile turns corefile.example (the in-cluster Corefile) into one that runs here against
// member: kubeconfig lines for both kubernetes and multicluster, loopback ports, and an upstream
// on loopback (nothing may leave the machine).
func (e *Env) MemberCorefile(t testing.TB, member string, dnsPort, healthPort, readyPort, metricsPort int) string {
	t.Helper()
	return e.CorefileWith(t, e.MembersConfig, member, dnsPort, healthPort, readyPort, metricsPort)
}

// CorefileWith is MemberCorefile with the plugins reading kubeconfig (context ctx).
func (e *Env) CorefileWith(t testing.TB, kubeconfig, ctx string, dnsPort, healthPort, readyPort, metricsPort int) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(e.Root, "hack", "member-corefile.sh"), kubeconfig, ctx,
		strconv.Itoa(dnsPort), strconv.Itoa(healthPort), strconv.Itoa(readyPort), strconv.Itoa(metricsPort), strconv.Itoa(FreePort(t)))
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("hack/member-corefile.sh: %v", err)
	}
	out := string(b)
	for _, want := range []string{fmt.Sprintf(".:%d", dnsPort), fmt.Sprintf("clusterset.local:%d", dnsPort), fmt.Sprintf("ready 127.0.0.1:%d", readyPort)} {
		if !strings.Contains(out, want) || strings.Count(out, "kubeconfig") != 2 {
			t.Fatalf("corefile.example changed shape: %q not produced", want)
		}
	}
	return out
}

// StartCoreDNS runs coredns-mcs with corefile until the test ends and waits until it is ready
// (or, with waitReady false, until it answers on its health port).
func StartCoreDNS(t testing.TB, corefile string, dnsPort, healthPort, readyPort, metricsPort int, waitReady bool) *CoreDNS {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "Corefile")
	if err := os.WriteFile(conf, []byte(corefile), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &CoreDNS{
		Addr:    fmt.Sprintf("127.0.0.1:%d", dnsPort),
		Ready:   fmt.Sprintf("http://127.0.0.1:%d/ready", readyPort),
		Metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort),
		log:     &bytes.Buffer{},
		mu:      &sync.Mutex{},
	}
	c.cmd = exec.Command(CoreDNSBinary(t), "-conf", conf)
	w := &lockedWriter{b: c.log, mu: c.mu}
	c.cmd.Stdout, c.cmd.Stderr = w, w
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.cmd.Process.Kill()
		c.cmd.Wait()
		if t.Failed() {
			t.Logf("coredns-mcs log:\n%s", c.Log())
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/health", healthPort)
	if waitReady {
		url = c.Ready
	}
	Eventually(t, 30*time.Second, "coredns-mcs up ("+url+")", func() error {
		if c.cmd.ProcessState != nil {
			return fmt.Errorf("exited: %s", c.Log())
		}
		return HTTPOK(url)
	})
	return c
}

// Log returns what the process printed so far.
func (c *CoreDNS) Log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.String()
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// HTTPOK reports whether url answers 200 OK.
func HTTPOK(url string) error {
	_, err := Get(url)
	return err
}

// Get returns the body of url (a metrics page, say); an error unless the status is 200.
func Get(url string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(body), nil
}

// DigResult is what dig printed: the status (NOERROR, NXDOMAIN, …), the answer records' data
// (e.g. "10.13.0.10" or "0 100 80 serve.default.svc.clusterset.local."), and the EDE text if any.
type DigResult struct {
	Status  string
	Answers []string
	EDE     string
	Raw     string
}

// Dig runs the real dig (bind9-dnsutils) against server for name and qtype.
func Dig(t testing.TB, server, name, qtype string, extra ...string) DigResult {
	t.Helper()
	return DigIn(t, "", server, name, qtype, extra...)
}

// DigIn is Dig run inside network namespace netns (the host's when empty).
func DigIn(t testing.TB, netns, server, name, qtype string, extra ...string) DigResult {
	t.Helper()
	host, port, _ := net.SplitHostPort(server)
	args := append([]string{"dig", "@" + host, "-p", port, "+tries=1", "+time=2", "+nocmd", "+noall", "+answer", "+comments", name, qtype}, extra...)
	if netns != "" {
		args = append([]string{"ip", "netns", "exec", netns}, args...)
	}
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	res := DigResult{Raw: string(out)}
	if err != nil {
		res.Status = "ERROR: " + err.Error()
		return res
	}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, "status: "); i >= 0 && strings.Contains(line, "->>HEADER<<-") {
			res.Status = strings.TrimSuffix(strings.Fields(line[i+len("status: "):])[0], ",")
		}
		if i := strings.Index(line, "; EDE: "); i >= 0 {
			res.EDE = line[i+len("; EDE: "):]
		}
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 5 {
			res.Answers = append(res.Answers, strings.Join(f[4:], " "))
		}
	}
	return res
}

// Pid returns the process id.
func (c *CoreDNS) Pid() int { return c.cmd.Process.Pid }

// StartMemberDNS runs coredns-mcs with corefile.example against member until the test ends.
func (e *Env) StartMemberDNS(t testing.TB, member string) *CoreDNS {
	t.Helper()
	dnsPort, healthPort, readyPort, metricsPort := FreePort(t), FreePort(t), FreePort(t), FreePort(t)
	corefile := e.MemberCorefile(t, member, dnsPort, healthPort, readyPort, metricsPort)
	return StartCoreDNS(t, corefile, dnsPort, healthPort, readyPort, metricsPort, true)
}
