package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/creack/pty"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
	utilexec "k8s.io/utils/exec"
)

// The kubelet's defaults for streaming connections.
const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = 30 * time.Second
)

// kubeletServer is the node's kubelet API as the member's apiserver reaches it (the Node's
// daemonEndpoints port): exec, attach and port-forward are served here, in the pods' network
// namespaces; every other path (containerLogs, healthz, metrics, …) goes on to kwok, which plays
// the rest of the kubelet.
//
// Only clients with a certificate of the clusterset's CA are served: the apiserver's
// --kubelet-client-certificate.
func (a *agent) kubeletServer(addr, certFile, keyFile, caFile, upstream string) (*http.Server, error) {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	for _, p := range []string{"/exec/{ns}/{pod}/{container}", "/exec/{ns}/{pod}/{uid}/{container}"} {
		mux.HandleFunc(p, a.serveExec)
	}
	for _, p := range []string{"/attach/{ns}/{pod}/{container}", "/attach/{ns}/{pod}/{uid}/{container}"} {
		mux.HandleFunc(p, a.serveAttach)
	}
	for _, p := range []string{"/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"} {
		mux.HandleFunc(p, a.servePortForward)
	}
	if upstream != "" {
		u, err := url.Parse(upstream)
		if err != nil {
			return nil, err
		}
		rp := httputil.NewSingleHostReverseProxy(u)
		rp.FlushInterval = -1 // `kubectl logs -f` streams
		rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
		mux.Handle("/", rp)
	}
	return &http.Server{
		Addr:    addr,
		Handler: mux,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}, nil
}

func (a *agent) serveExec(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		http.Error(w, "no command given", http.StatusBadRequest)
		return
	}
	remotecommand.ServeExec(w, r, a, r.PathValue("ns")+"/"+r.PathValue("pod"), r.PathValue("uid"), r.PathValue("container"),
		cmd, opts, streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (a *agent) serveAttach(w http.ResponseWriter, r *http.Request) {
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	remotecommand.ServeAttach(w, r, a, r.PathValue("ns")+"/"+r.PathValue("pod"), r.PathValue("uid"), r.PathValue("container"),
		opts, streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (a *agent) servePortForward(w http.ResponseWriter, r *http.Request) {
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(w, r, a, r.PathValue("ns")+"/"+r.PathValue("pod"), r.PathValue("uid"), opts,
		streamIdleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
}

// sandboxWait is how long exec, attach and port-forward wait for the sandbox of a pod that is
// scheduled here: kwok reports a pod Running as soon as it gives it an IP, and `kubectl run -i`
// attaches right then, while the agent may still be creating the namespace, or be busy tearing down
// the pods of a deleted namespace. A pod the agent does not know (not scheduled here, gone) fails
// after unknownPodWait.
var (
	sandboxWait    = 90 * time.Second
	unknownPodWait = 5 * time.Second
)

// lookup finds the sandbox of "namespace/name" (and, when given, of that UID), waiting for one
// being created.
func (a *agent) lookup(ctx context.Context, key, uid string) (*sandbox, error) {
	start := time.Now()
	for {
		a.mu.Lock()
		sb, lastErr := a.sandboxes[key], a.syncErr[key]
		a.mu.Unlock()
		if sb != nil && (uid == "" || uid == sb.uid) {
			if d := time.Since(start); d > time.Second {
				klog.Infof("pod %s: sandbox ready %s after the stream asked for it", key, d.Round(time.Millisecond))
			}
			return sb, nil
		}
		waited := time.Since(start)
		expected := a.expected(key, uid)
		if (!expected && waited > unknownPodWait) || waited > sandboxWait {
			why := "not scheduled on this node, or gone"
			if expected {
				why = fmt.Sprintf("not started within %s", sandboxWait)
			}
			if lastErr != nil {
				why += "; last error creating it: " + lastErr.Error()
			}
			return nil, fmt.Errorf("pod %s has no sandbox on this node (%s)", key, why)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// expected says whether the agent's pod cache holds key (with that UID, when given) as a pod
// that should have a sandbox here soon.
func (a *agent) expected(key, uid string) bool {
	if a.pods == nil {
		return false
	}
	obj, ok, err := a.pods.GetByKey(key)
	if err != nil || !ok {
		return false
	}
	pod := obj.(*corev1.Pod)
	return (uid == "" || uid == string(pod.UID)) && sandboxed(pod)
}

// ExecInContainer runs cmd in the pod's network namespace (its IP, its resolv.conf) with the
// container's environment, using the host's programs.
func (a *agent) ExecInContainer(ctx context.Context, key, uid, container string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	sb, err := a.lookup(ctx, key, uid)
	if err != nil {
		return err
	}
	env, ok := sb.env[container]
	if !ok {
		return fmt.Errorf("pod %s has no container %q", key, container)
	}
	args, err := hostProgram(cmd)
	if err != nil {
		if errw != nil {
			fmt.Fprintf(errw, "%v\n", err)
		} else if out != nil {
			fmt.Fprintf(out, "%v\r\n", err)
		}
		return utilexec.CodeExitError{Err: err, Code: 127}
	}
	c := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", sb.netns}, args...)...)
	c.Env, c.Dir = env, sb.dir
	c.WaitDelay = 2 * time.Second
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	klog.V(2).Infof("pod %s container %s: exec %q (tty %v)", key, container, cmd, tty)
	if tty {
		if env != nil {
			c.Env = append(append([]string{}, env...), "TERM=xterm")
		}
		term, err := pty.StartWithAttrs(c, nil, &syscall.SysProcAttr{Setsid: true, Setctty: true})
		if err != nil {
			return err
		}
		defer term.Close()
		if resize != nil {
			go func() {
				for s := range resize {
					_ = pty.Setsize(term, &pty.Winsize{Rows: s.Height, Cols: s.Width})
				}
			}()
		}
		if in != nil {
			go func() { _, _ = io.Copy(term, in) }()
		}
		copied := make(chan struct{})
		go func() { _, _ = io.Copy(out, term); close(copied) }()
		err = c.Wait()
		select {
		case <-copied:
		case <-time.After(2 * time.Second):
		}
		return exitError(err)
	}
	if in != nil {
		c.Stdin = in
	}
	if out != nil {
		c.Stdout = out
	}
	if errw != nil {
		c.Stderr = errw
	}
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return exitError(c.Run())
}

// exitError turns a command's non-zero exit into the error the streaming server reports as the
// exit code (kubectl exits with it).
func exitError(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code := ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		return utilexec.CodeExitError{Err: err, Code: code}
	}
	return err
}

// AttachContainer streams a running container's output (and stdin, when it has one).
func (a *agent) AttachContainer(ctx context.Context, key, uid, container string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	sb, err := a.lookup(ctx, key, uid)
	if err != nil {
		return err
	}
	c := sb.containers[container]
	if c == nil {
		if _, ok := sb.env[container]; ok {
			return fmt.Errorf("container %q of pod %s runs no process here (its image is not run by the local clusterset)", container, key)
		}
		return fmt.Errorf("pod %s has no container %q", key, container)
	}
	var o, e io.Writer
	if out != nil {
		o = out
	}
	if errw != nil {
		e = errw
	}
	return c.attach(in, o, e, resize, ctx.Done())
}

// PortForward connects stream to port on the pod's loopback, as the kubelet does.
func (a *agent) PortForward(ctx context.Context, key, uid string, port int32, stream io.ReadWriteCloser) error {
	sb, err := a.lookup(ctx, key, uid)
	if err != nil {
		return err
	}
	defer stream.Close()
	c := exec.CommandContext(ctx, "ip", "netns", "exec", sb.netns, "socat", "STDIO", "TCP4:127.0.0.1:"+strconv.Itoa(int(port)))
	c.Stdin, c.Stdout = stream, stream
	var stderr strings.Builder
	c.Stderr = &stderr
	c.WaitDelay = time.Second
	if err := c.Run(); err != nil {
		return fmt.Errorf("port %d of pod %s: %v: %s", port, key, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
