//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// TestImages builds both images offline (`make image BASE=scratch`, the same Containerfile as
// the published distroless ones), checks their configuration, and runs coredns-mcs from the
// exported filesystem of its image — the bytes users deploy — with the image's own Corefile,
// as its non-root user, against member2: it binds :53 through its file capability and answers
// the seed's clusterset name.
func TestImages(t *testing.T) {
	env.RequireDataPath(t)
	engine, err := exec.LookPath("podman")
	if err != nil {
		t.Fatalf("podman is needed to build the images (hack/install-packages.sh installs it): %v", err)
	}
	version := strings.TrimSpace(run(t, env.Root, "git", "describe", "--tags", "--always", "--dirty"))
	repo := "localhost/coredns-mcs-test"
	run(t, env.Root, "make", "image", "BASE=scratch", "IMAGE_ENGINE=podman", "IMAGE_REPO="+repo, "VERSION="+version)
	t.Cleanup(func() {
		_ = exec.Command(engine, "rmi", "-f", repo+"/coredns-mcs:"+version, repo+"/mcs-controller:"+version).Run()
		_ = exec.Command(engine, "image", "prune", "-f").Run()
	})

	type config struct {
		User       string
		Entrypoint []string
		Cmd        []string
		Labels     map[string]string
	}
	inspect := func(image string) config {
		var out []struct{ Config config }
		if err := json.Unmarshal([]byte(run(t, "", engine, "image", "inspect", image)), &out); err != nil || len(out) != 1 {
			t.Fatalf("podman image inspect %s: %v", image, err)
		}
		return out[0].Config
	}
	for name, want := range map[string]config{
		"coredns-mcs":    {User: "65532:65532", Entrypoint: []string{"/coredns-mcs"}, Cmd: []string{"-conf", "/etc/coredns/Corefile"}},
		"mcs-controller": {User: "65532:65532", Entrypoint: []string{"/mcs-controller"}},
	} {
		image := repo + "/" + name + ":" + version
		got := inspect(image)
		if got.User != want.User || !slices.Equal(got.Entrypoint, want.Entrypoint) || !slices.Equal(got.Cmd, want.Cmd) ||
			got.Labels["org.opencontainers.image.version"] != version || got.Labels["org.opencontainers.image.licenses"] != "Apache-2.0" {
			t.Errorf("%s: config %+v; want user %s, entrypoint %v, cmd %v, version label %s", image, got, want.User, want.Entrypoint, want.Cmd, version)
		}
	}

	// The image's filesystem, as a runtime would unpack it (file capabilities included).
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	image := repo + "/coredns-mcs:" + version
	cid := strings.TrimSpace(run(t, "", engine, "create", image))
	t.Cleanup(func() { _ = exec.Command(engine, "rm", "-f", cid).Run() })
	run(t, "", "sh", "-c", fmt.Sprintf("%s export %s | tar --xattrs --xattrs-include='*' -xf - -C %s", engine, cid, root))
	if caps := run(t, "", "getcap", filepath.Join(root, "coredns-mcs")); !strings.Contains(caps, "cap_net_bind_service") {
		t.Errorf("/coredns-mcs in the image has file capabilities %q; want cap_net_bind_service", caps)
	}
	if v := run(t, "", filepath.Join(root, "coredns-mcs"), "-version"); !strings.Contains(v, "coredns-mcs "+version) {
		t.Errorf("/coredns-mcs -version: %q, want coredns-mcs %s", v, version)
	}

	// What a pod of it gets from its kubelet: the service account's token and CA, resolv.conf,
	// KUBERNETES_SERVICE_HOST/PORT (the member's apiserver, forwarded into a namespace of its own).
	env.PropagateMCSCRDs(t)
	env.KubectlT(t, clusterset.Member2, "", "apply", "-f", filepath.Join(env.Root, "manifests", "member", "rbac.yaml"))
	env.KubectlT(t, clusterset.Member2, "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: coredns, namespace: kube-system}\n", "apply", "-f", "-")
	token := strings.TrimSpace(env.KubectlT(t, clusterset.Member2, "", "-n", "kube-system", "create", "token", "coredns", "--duration=1h"))
	sa := filepath.Join(t.TempDir(), "serviceaccount")
	must(t, os.MkdirAll(sa, 0o755))
	must(t, os.WriteFile(filepath.Join(sa, "token"), []byte(token), 0o644))
	ca, err := os.ReadFile(filepath.Join(env.Vars["CMCS_CLUSTERSET_DIR"], "pki", "ca.crt"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(sa, "ca.crt"), ca, 0o644))
	must(t, os.WriteFile(filepath.Join(sa, "namespace"), []byte("kube-system"), 0o644))
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	// An upstream that is not itself (the Corefile's loop plugin would stop a server forwarding
	// to itself), unreachable here: only clusterset.local is asked.
	must(t, os.WriteFile(resolv, []byte("nameserver 192.0.2.1\n"), 0o644))

	netns := env.Vars["CMCS_NETNS"] + "-imagetest"
	_ = exec.Command("ip", "netns", "del", netns).Run()
	run(t, "", "ip", "netns", "add", netns)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "pids", netns).Output(); err == nil {
			for _, p := range strings.Fields(string(out)) {
				_ = exec.Command("kill", "-9", p).Run()
			}
		}
		_ = exec.Command("ip", "netns", "del", netns).Run()
	})
	run(t, "", "ip", "-n", netns, "link", "set", "lo", "up")
	port := env.Vars["CMCS_MEMBER2_PORT"]
	sock := filepath.Join(env.Vars["CMCS_CLUSTERSET_DIR"], "net", "member2-apiserver.sock")
	fwd := exec.Command("ip", "netns", "exec", netns, "socat", "TCP-LISTEN:"+port+",bind=127.0.0.1,fork,reuseaddr", "UNIX-CONNECT:"+sock)
	must(t, fwd.Start())
	t.Cleanup(func() { _ = fwd.Process.Kill(); _ = fwd.Wait() })

	// The seed, imported into member2 by our controller.
	ctx := context.Background()
	env.StartController(t)
	applySeed(t)
	m2 := env.Client(t, clusterset.Member2)
	var cip string
	clusterset.Eventually(t, 60*time.Second, "derived-serve in member2", func() error {
		svc, err := m2.CoreV1().Services("default").Get(ctx, "derived-serve", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cip = svc.Spec.ClusterIP
		return nil
	})

	script := fmt.Sprintf(`set -e
mkdir -p %[1]s/var/run/secrets/kubernetes.io/serviceaccount %[1]s/etc %[1]s/proc
touch %[1]s/etc/resolv.conf
mount -t proc proc %[1]s/proc
mount --bind %[2]s %[1]s/var/run/secrets/kubernetes.io/serviceaccount
mount --bind %[3]s %[1]s/etc/resolv.conf
exec chroot --userspec=65532:65532 %[1]s /coredns-mcs -conf /etc/coredns/Corefile`, root, sa, resolv)
	logFile := filepath.Join(t.TempDir(), "coredns.log")
	lf, err := os.Create(logFile)
	must(t, err)
	dns := exec.Command("ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	dns.Env = append(os.Environ(), "KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT="+port)
	dns.Stdout, dns.Stderr = lf, lf
	must(t, dns.Start())
	t.Cleanup(func() {
		_ = dns.Process.Kill()
		_ = dns.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("coredns-mcs from the image, log:\n%s", b)
		}
	})
	clusterset.Eventually(t, 30*time.Second, "coredns-mcs from the image answers serve.default.svc.clusterset.local on :53", func() error {
		r := clusterset.DigIn(t, netns, "127.0.0.1:53", "serve.default.svc.clusterset.local.", "A")
		if r.Status != "NOERROR" || !slices.Equal(r.Answers, []string{cip}) {
			return fmt.Errorf("%s %v, want %s", r.Status, r.Answers, cip)
		}
		return nil
	})
	// It runs as the image's user, not root.
	out := run(t, "", "ps", "-o", "user=", "-p", fmt.Sprint(childPid(t, dns.Process.Pid)))
	if u := strings.TrimSpace(out); u != "65532" {
		t.Errorf("coredns-mcs from the image runs as %q, want 65532", u)
	}
}

// childPid follows exec'd children down to the process without children (the server).
func childPid(t *testing.T, pid int) int {
	for i := 0; i < 10; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err != nil || strings.TrimSpace(string(b)) == "" {
			return pid
		}
		fmt.Sscan(strings.Fields(string(b))[0], &pid)
	}
	return pid
}

func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s\n%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
