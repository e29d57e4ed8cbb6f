package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
