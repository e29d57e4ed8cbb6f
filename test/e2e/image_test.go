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
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// imageConfig is the part of an image's configuration the tests check.
type imageConfig struct {
	User       string
	Entrypoint []string
	Cmd        []string
	Labels     map[string]string
}

// builtImages: both images, built once per test binary with `make image BASE=scratch` (the same
// Containerfile as the published distroless ones), their configurations, and the filesystem of
// the coredns-mcs image as a runtime unpacks it (file capabilities included).
type builtImages struct {
	repo, version string
	config        map[string]imageConfig // by image name
	rootfs        string                 // of coredns-mcs
	// controllerFiles lists the files of the mcs-controller image (tar -t).
	controllerFiles string
	err             error
}

var (
	imagesOnce sync.Once
	images     builtImages
)

func buildImages(t *testing.T) *builtImages {
	t.Helper()
	imagesOnce.Do(func() { images = doBuildImages() })
	if images.err != nil {
		t.Fatal(images.err)
	}
	return &images
}

func doBuildImages() builtImages {
	b := builtImages{repo: "localhost/coredns-mcs-test", config: map[string]imageConfig{}}
	engine, err := exec.LookPath("podman")
	if err != nil {
		b.err = fmt.Errorf("podman is needed to build the images (hack/install-packages.sh installs it): %v", err)
		return b
	}
	sh := func(dir, name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("%s %s: %v\n%s\n%s", name, strings.Join(args, " "), err, out, stderr.String())
		}
		return string(out), nil
	}
	out, err := sh(env.Root, "git", "describe", "--tags", "--always", "--dirty")
	if err != nil {
		b.err = err
		return b
	}
	b.version = strings.TrimSpace(out)
	if _, b.err = sh(env.Root, "make", "image", "BASE=scratch", "IMAGE_ENGINE=podman", "IMAGE_REPO="+b.repo, "VERSION="+b.version); b.err != nil {
		return b
	}
	defer func() {
		_ = exec.Command(engine, "rmi", "-f", b.repo+"/coredns-mcs:"+b.version, b.repo+"/mcs-controller:"+b.version).Run()
		_ = exec.Command(engine, "image", "prune", "-f").Run()
	}()
	for _, name := range []string{"coredns-mcs", "mcs-controller"} {
		out, err := sh("", engine, "image", "inspect", b.repo+"/"+name+":"+b.version)
		if err != nil {
			b.err = err
			return b
		}
		var cfg []struct{ Config imageConfig }
		if err := json.Unmarshal([]byte(out), &cfg); err != nil || len(cfg) != 1 {
			b.err = fmt.Errorf("podman image inspect %s: %v", name, err)
			return b
		}
		b.config[name] = cfg[0].Config
	}
	dir, err := os.MkdirTemp("", "coredns-mcs-image-")
	if err != nil {
		b.err = err
		return b
	}
	b.rootfs = filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(b.rootfs, 0o755); err != nil {
		b.err = err
		return b
	}
	// The controller image carries the Pull members' agent too.
	ctrl, err := sh("", engine, "create", b.repo+"/mcs-controller:"+b.version)
	if err != nil {
		b.err = err
		return b
	}
	defer func() { _ = exec.Command(engine, "rm", "-f", strings.TrimSpace(ctrl)).Run() }()
	if b.controllerFiles, b.err = sh("", "sh", "-c", fmt.Sprintf("%s export %s | tar -tf -", engine, strings.TrimSpace(ctrl))); b.err != nil {
		return b
	}
	cid, err := sh("", engine, "create", b.repo+"/coredns-mcs:"+b.version)
	if err != nil {
		b.err = err
		return b
	}
	defer func() { _ = exec.Command(engine, "rm", "-f", strings.TrimSpace(cid)).Run() }()
	_, b.err = sh("", "sh", "-c", fmt.Sprintf("%s export %s | tar --xattrs --xattrs-include='*' -xf - -C %s", engine, strings.TrimSpace(cid), b.rootfs))
	return b
}

// TestImages checks both images' configuration, and runs coredns-mcs from the exported filesystem
// of its image — the bytes users deploy — with the image's own Corefile, as its non-root user,
// against member2: it binds :53 through its file capability and answers the seed's clusterset name.
func TestImages(t *testing.T) {
	env.RequireDataPath(t)
	img := buildImages(t)
	for name, want := range map[string]imageConfig{
		"coredns-mcs":    {User: "65532:65532", Entrypoint: []string{"/coredns-mcs"}, Cmd: []string{"-conf", "/etc/coredns/Corefile"}},
		"mcs-controller": {User: "65532:65532", Entrypoint: []string{"/mcs-controller"}},
	} {
		got := img.config[name]
		if got.User != want.User || !slices.Equal(got.Entrypoint, want.Entrypoint) || !slices.Equal(got.Cmd, want.Cmd) ||
			got.Labels["org.opencontainers.image.version"] != img.version || got.Labels["org.opencontainers.image.licenses"] != "Apache-2.0" {
			t.Errorf("%s: config %+v; want user %s, entrypoint %v, cmd %v, version label %s", name, got, want.User, want.Entrypoint, want.Cmd, img.version)
		}
	}
	if caps := run(t, "", "getcap", filepath.Join(img.rootfs, "coredns-mcs")); !strings.Contains(caps, "cap_net_bind_service") {
		t.Errorf("/coredns-mcs in the image has file capabilities %q; want cap_net_bind_service", caps)
	}
	if v := run(t, "", filepath.Join(img.rootfs, "coredns-mcs"), "-version"); !strings.Contains(v, "coredns-mcs "+img.version) {
		t.Errorf("/coredns-mcs -version: %q, want coredns-mcs %s", v, img.version)
	}
	for _, f := range []string{"mcs-controller", "mcs-agent"} {
		if !slices.Contains(strings.Fields(img.controllerFiles), f) {
			t.Errorf("the mcs-controller image has no /%s (files: %q)", f, img.controllerFiles)
		}
	}

	netns := env.Vars["CMCS_NETNS"] + "-imagetest"
	_ = exec.Command("ip", "netns", "del", netns).Run()
	run(t, "", "ip", "netns", "add", netns)
	t.Cleanup(func() { killNetns(netns); _ = exec.Command("ip", "netns", "del", netns).Run() })
	run(t, "", "ip", "-n", netns, "link", "set", "lo", "up")

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
	env.KubectlT(t, clusterset.Member2, "", "apply", "-f", filepath.Join(env.Root, "manifests", "member", "rbac.yaml"))
	env.KubectlT(t, clusterset.Member2, "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: coredns, namespace: kube-system}\n", "apply", "-f", "-")
	dns := runImage(t, img, clusterset.Member2, netns, "kube-system", "coredns", "")
	clusterset.Eventually(t, 30*time.Second, "coredns-mcs from the image answers serve.default.svc.clusterset.local on :53", func() error {
		r := clusterset.DigIn(t, netns, "127.0.0.1:53", "serve.default.svc.clusterset.local.", "A")
		if r.Status != "NOERROR" || !slices.Equal(r.Answers, []string{cip}) {
			return fmt.Errorf("%s %v, want %s", r.Status, r.Answers, cip)
		}
		return nil
	})
	// It runs as the image's user, not root.
	out := run(t, "", "ps", "-o", "user=", "-p", fmt.Sprint(childPid(dns.Process.Pid)))
	if u := strings.TrimSpace(out); u != "65532" {
		t.Errorf("coredns-mcs from the image runs as %q, want 65532", u)
	}
}

// runImage runs coredns-mcs from the image's filesystem in network namespace netns as a kubelet
// would run its container: chroot into the image, its user (65532), its entrypoint and cmd, the
// service account's token and CA at /var/run/secrets/kubernetes.io/serviceaccount,
// KUBERNETES_SERVICE_HOST/PORT reaching member's apiserver (forwarded into the namespace), and
// corefile (the image's own when empty) at /etc/coredns/Corefile. It is stopped when the test ends.
func runImage(t *testing.T, img *builtImages, member, netns, saNamespace, sa, corefile string) *exec.Cmd {
	t.Helper()
	token := strings.TrimSpace(env.KubectlT(t, member, "", "-n", saNamespace, "create", "token", sa, "--duration=1h"))
	secrets := filepath.Join(t.TempDir(), "serviceaccount")
	must(t, os.MkdirAll(secrets, 0o755))
	must(t, os.WriteFile(filepath.Join(secrets, "token"), []byte(token), 0o644))
	ca, err := os.ReadFile(filepath.Join(env.Vars["CMCS_CLUSTERSET_DIR"], "pki", "ca.crt"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(secrets, "ca.crt"), ca, 0o644))
	must(t, os.WriteFile(filepath.Join(secrets, "namespace"), []byte(saNamespace), 0o644))
	// An upstream that is not itself (the Corefile's loop plugin would stop a server forwarding
	// to itself), unreachable here: only what coredns-mcs answers itself is asked.
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	must(t, os.WriteFile(resolv, []byte("nameserver 192.0.2.1\n"), 0o644))
	mounts := fmt.Sprintf("mount --bind %s %s/var/run/secrets/kubernetes.io/serviceaccount\nmount --bind %s %s/etc/resolv.conf\n", secrets, "$ROOT", resolv, "$ROOT")
	if corefile != "" {
		conf := filepath.Join(t.TempDir(), "coredns")
		must(t, os.MkdirAll(conf, 0o755))
		must(t, os.WriteFile(filepath.Join(conf, "Corefile"), []byte(corefile), 0o644))
		mounts += fmt.Sprintf("mount --bind %s $ROOT/etc/coredns\n", conf)
	}

	port := env.Vars["CMCS_"+strings.ToUpper(member)+"_PORT"]
	sock := filepath.Join(env.Vars["CMCS_CLUSTERSET_DIR"], "net", member+"-apiserver.sock")
	fwd := exec.Command("ip", "netns", "exec", netns, "socat", "TCP-LISTEN:"+port+",bind=127.0.0.1,fork,reuseaddr", "UNIX-CONNECT:"+sock)
	must(t, fwd.Start())
	t.Cleanup(func() { _ = fwd.Process.Kill(); _ = fwd.Wait() })

	script := `set -e
ROOT=` + img.rootfs + `
mkdir -p $ROOT/var/run/secrets/kubernetes.io/serviceaccount $ROOT/etc/coredns $ROOT/proc
touch $ROOT/etc/resolv.conf
mount -t proc proc $ROOT/proc
` + mounts + `exec chroot --userspec=65532:65532 $ROOT /coredns-mcs -conf /etc/coredns/Corefile`
	dns := exec.Command("ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	dns.Env = append(os.Environ(), "KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT="+port)
	startLogged(t, "coredns-mcs from the image in "+netns, dns)
	return dns
}

// startLogged starts cmd with its output in a file, and kills it when the test ends (showing the
// output if the test failed).
func startLogged(t *testing.T, what string, cmd *exec.Cmd) {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), "out.log")
	lf, err := os.Create(logFile)
	must(t, err)
	cmd.Stdout, cmd.Stderr = lf, lf
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("%s, output:\n%s", what, b)
		}
	})
}

// killNetns kills every process in a network namespace.
func killNetns(netns string) {
	if out, err := exec.Command("ip", "netns", "pids", netns).Output(); err == nil {
		for _, p := range strings.Fields(string(out)) {
			_ = exec.Command("kill", "-9", p).Run()
		}
	}
}

// childPid follows exec'd children down to the process without children (the server).
func childPid(pid int) int {
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
