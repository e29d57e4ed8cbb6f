package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func TestRepository(t *testing.T) {
	for in, want := range map[string]string{
		"jeremyot/serve:0a40de8":                   "jeremyot/serve",
		"jeremyot/request":                         "jeremyot/request",
		"docker.io/jeremyot/serve:0a40de8":         "jeremyot/serve",
		"localhost:5000/jeremyot/serve@sha256:abc": "jeremyot/serve",
		"registry.k8s.io/pause:3.10":               "pause",
	} {
		if got := repository(in); got != want {
			t.Errorf("repository(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFieldValue(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "serve-1", Namespace: "default", Labels: map[string]string{"app": "serve"}},
		Spec:       corev1.PodSpec{NodeName: "member1-control-plane"},
		Status:     corev1.PodStatus{PodIP: "10.10.0.5"},
	}
	for path, want := range map[string]string{
		"metadata.name": "serve-1", "metadata.namespace": "default", "spec.nodeName": "member1-control-plane",
		"status.podIP": "10.10.0.5", "metadata.labels['app']": "serve", "metadata.labels['x']": "", "spec.unknown": "",
	} {
		if got := fieldValue(pod, path); got != want {
			t.Errorf("fieldValue(%q) = %q, want %q", path, got, want)
		}
	}
}

// The log file must be in the CRI format kwok parses for `kubectl logs`, whatever the writes' sizes.
func TestCRILog(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "c.log"))
	if err != nil {
		t.Fatal(err)
	}
	l := &criLog{f: f}
	out, errs := &criStream{log: l, name: "stdout"}, &criStream{log: l, name: "stderr"}
	out.Write([]byte("hel"))
	out.Write([]byte("lo\nwor"))
	errs.Write([]byte("oops\n"))
	out.Write([]byte("ld\ntail"))
	out.flush()
	f.Close()
	b, _ := os.ReadFile(f.Name())
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\S+Z (stdout|stderr) F (.*)$`)
	var got []string
	for _, line := range lines {
		m := re.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("line %q is not in CRI log format", line)
		}
		got = append(got, m[1]+":"+m[2])
	}
	want := []string{"stdout:hello", "stderr:oops", "stdout:world", "stdout:tail"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("lines %v, want %v", got, want)
	}
}

// Kubernetes' rules for command and args over the image's ENTRYPOINT and CMD, with $(VAR)
// expansion, resolved against the host.
func TestArgv(t *testing.T) {
	sh, _ := exec.LookPath("sh")
	sleep, _ := exec.LookPath("sleep")
	socat, _ := exec.LookPath("socat")
	env := map[string]string{"POD_NAME": "web-0"}
	for _, tc := range []struct {
		name string
		c    corev1.Container
		want []string
		ok   bool
	}{
		{"stand-in", corev1.Container{Image: "jeremyot/serve:0a40de8", Command: []string{"/ignored"}, Args: []string{"--message=$(POD_NAME)"}},
			[]string{"/bin/dir/serve", "--message=web-0"}, true},
		{"image CMD", corev1.Container{Image: "docker.io/library/busybox:1.36"}, []string{sh}, true},
		{"args replace CMD", corev1.Container{Image: "busybox", Args: []string{"sleep", "infinity"}}, []string{sleep, "infinity"}, true},
		{"command drops CMD", corev1.Container{Image: "alpine:3", Command: []string{"/bin/sh", "-c", "echo $$(POD_NAME) $(POD_NAME) $(NOPE)"}},
			[]string{"/bin/sh", "-c", "echo $(POD_NAME) web-0 $(NOPE)"}, true},
		{"entrypoint and args", corev1.Container{Image: "alpine/socat", Args: []string{"TCP-LISTEN:7000"}}, []string{socat, "TCP-LISTEN:7000"}, true},
		{"agnhost pause", corev1.Container{Image: "registry.k8s.io/e2e-test-images/agnhost:2.53", Args: []string{"pause"}}, []string{sleep, "infinity"}, true},
		{"unknown image", corev1.Container{Image: "example.com/app:1"}, nil, false},
	} {
		got, ok, err := argv(tc.c, "/bin/dir", env)
		if ok != tc.ok || err != nil || strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s: argv = %q, %v, %v; want %q, %v", tc.name, got, ok, err, tc.want, tc.ok)
		}
	}
	if _, ok, err := argv(corev1.Container{Image: "busybox", Command: []string{"no-such-program-xyz"}}, "", nil); !ok || err == nil {
		t.Errorf("a program the host lacks: ok %v, err %v; want an error naming it", ok, err)
	}
	if _, _, err := argv(corev1.Container{Image: "registry.k8s.io/e2e-test-images/agnhost:2.53", Args: []string{"netexec"}}, "", nil); err == nil {
		t.Errorf("agnhost netexec: no error; want one saying it is not played")
	}
}

func TestLookupWaitsForAnExpectedPod(t *testing.T) {
	defer func(s, u time.Duration) { sandboxWait, unknownPodWait = s, u }(sandboxWait, unknownPodWait)
	sandboxWait, unknownPodWait = 3*time.Second, 200*time.Millisecond
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(pods.Add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "request", Namespace: "default", UID: "u1"}}))
	a := &agent{pods: pods, sandboxes: map[string]*sandbox{}, syncErr: map[string]error{}}

	// A pod scheduled here whose sandbox comes later than unknownPodWait: the stream waits for it.
	go func() {
		time.Sleep(600 * time.Millisecond)
		a.mu.Lock()
		a.sandboxes["default/request"] = &sandbox{uid: "u1"}
		a.mu.Unlock()
	}()
	sb, err := a.lookup(context.Background(), "default/request", "u1")
	if err != nil || sb.uid != "u1" {
		t.Fatalf("lookup of an expected pod = %v, %v; want its sandbox", sb, err)
	}

	// A pod this node does not run fails after unknownPodWait, not sandboxWait.
	start := time.Now()
	if _, err := a.lookup(context.Background(), "default/elsewhere", ""); err == nil || !strings.Contains(err.Error(), "not scheduled on this node") {
		t.Fatalf("lookup of an unknown pod: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("lookup of an unknown pod took %s, want about %s", d, unknownPodWait)
	}

	// A pod whose sandbox keeps failing: the error says why, after sandboxWait.
	must(pods.Add(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "broken", Namespace: "default", UID: "u2"}}))
	a.syncErr["default/broken"] = errors.New("ip netns add: file exists")
	_, err = a.lookup(context.Background(), "default/broken", "u2")
	if err == nil || !strings.Contains(err.Error(), "not started within 3s") || !strings.Contains(err.Error(), "ip netns add: file exists") {
		t.Fatalf("lookup of a failing pod: %v", err)
	}

	// A different UID (the pod was replaced) is not the sandbox asked for.
	_, err = a.lookup(context.Background(), "default/request", "u-old")
	if err == nil {
		t.Fatal("lookup with a stale UID returned a sandbox")
	}
}
