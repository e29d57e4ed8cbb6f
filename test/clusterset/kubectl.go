package clusterset

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
)

// Result is one kubectl run: its standard output and error kept apart, and its exit code.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// KubectlRun runs kubectl against context ctx with stdin (may be empty) and returns what it printed
// and its exit code; err is set only when kubectl could not be run or did not finish in timeout.
func (e *Env) KubectlRun(ctx, stdin string, timeout time.Duration, args ...string) (Result, error) {
	c, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := append([]string{"--kubeconfig", e.Kubeconfig(ctx), "--context", ctx}, args...)
	cmd := exec.CommandContext(c, e.Kubectl, full...)
	cmd.Stdin = strings.NewReader(stdin)
	return result(c, cmd)
}

// result runs cmd and returns its streams and exit code; err only when it could not run or c ended.
func result(c context.Context, cmd *exec.Cmd) (Result, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case c.Err() != nil:
		return r, c.Err()
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		return r, err
	}
	return r, nil
}

// ExecTTY runs cmd in a container with a terminal, through the member's apiserver and the node's
// kubelet API (the path `kubectl exec -it` takes), and returns what the terminal showed.
func (e *Env) ExecTTY(member, ns, pod, container string, cmd []string) (string, error) {
	cfg, err := e.RESTConfig(member)
	if err != nil {
		return "", err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	req := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: cmd, Stdin: true, Stdout: true, TTY: true}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(cfg, "POST", req.URL())
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: strings.NewReader(""), Stdout: &out, Tty: true})
	return out.String(), err
}

// KubectlPlugin runs kubectl ARGS with dir first on PATH (where a kubectl plugin is) and
// KUBECONFIG set to kubeconfig, as a user invokes a plugin: kubectl passes it no flags of its own.
func (e *Env) KubectlPlugin(dir, kubeconfig string, args ...string) (Result, error) {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, e.Kubectl, args...)
	cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"), "KUBECONFIG="+kubeconfig)
	return result(c, cmd)
}
