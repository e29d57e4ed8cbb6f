package clusterset

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Controller is a running mcs-controller process against the Karmada control plane.
type Controller struct {
	t       testing.TB
	env     *Env
	args    []string
	nbase   int // args before the test's extra flags
	cmd     *exec.Cmd
	log     *bytes.Buffer
	mu      *sync.Mutex
	probe   int
	Metrics string
	exited  chan struct{}
}

// StartController runs the MCS controller (cmd/mcs-controller) with the admin kubeconfig of the
// Karmada control plane until the test ends.
func (e *Env) StartController(t testing.TB, extra ...string) *Controller {
	t.Helper()
	return e.StartControllerWith(t, e.KarmadaConfig, extra...)
}

// StartControllerWith runs the MCS controller with the given kubeconfig of the Karmada control plane.
func (e *Env) StartControllerWith(t testing.TB, kubeconfig string, extra ...string) *Controller {
	t.Helper()
	c := &Controller{t: t, env: e, log: &bytes.Buffer{}, mu: &sync.Mutex{}}
	c.probe = FreePort(t)
	metrics := FreePort(t)
	c.Metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", metrics)
	c.args = []string{
		"--kubeconfig", kubeconfig, "--leader-elect=false",
		// Plain HTTP: the tests read the metrics without a token (the secure default is tested in
		// test/controlplane).
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metrics), "--metrics-secure=false",
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", c.probe),
	}
	// CMCS_CONTROLLER_ARGS: flags for every controller the tests start (the suite run with
	// --work-layout=bundle, say); a test's own flags come after them and win.
	c.args = append(c.args, strings.Fields(os.Getenv("CMCS_CONTROLLER_ARGS"))...)
	c.args = append(c.args, extra...)
	c.nbase = len(c.args) - len(extra)
	c.start()
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("mcs-controller log (tail):\n%s", tail(c.Log(), 60))
		}
	})
	return c
}

func (c *Controller) start() {
	c.t.Helper()
	c.spawn()
	Eventually(c.t, 60*time.Second, "mcs-controller ready", func() error {
		select {
		case <-c.exited:
			return fmt.Errorf("exited: %s", tail(c.Log(), 20))
		default:
		}
		return c.Ready()
	})
}

// Ready reports whether the process answers its readiness probe.
func (c *Controller) Ready() error {
	return HTTPOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", c.probe))
}

// spawn starts the process.
func (c *Controller) spawn() {
	c.t.Helper()
	c.cmd = exec.Command(Binary(c.t, "mcs-controller"), c.args...)
	w := &lockedWriter{b: c.log, mu: c.mu}
	c.cmd.Stdout, c.cmd.Stderr = w, w
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(c.cmd, c.exited)
}

// Kill sends SIGKILL and waits for the process to go.
func (c *Controller) Kill() {
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Signal(syscall.SIGKILL)
		<-c.exited
	}
}

// Restart starts the process again after Kill or Stop, and waits until it is ready.
func (c *Controller) Restart() { c.start() }

// RestartNoWait starts the process again after Kill or Stop, without waiting for it to be ready
// (it cannot be while the Karmada apiserver is stopped, say).
func (c *Controller) RestartNoWait() { c.spawn() }

// Stop terminates the process (SIGTERM, then SIGKILL).
func (c *Controller) Stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	select {
	case <-c.exited:
		return
	default:
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.Kill()
	}
}

// RestartWith stops the controller and starts it again with other extra flags.
func (c *Controller) RestartWith(extra ...string) {
	c.Stop()
	c.args = append(c.args[:c.nbase:c.nbase], extra...)
	c.start()
}

// Log returns what the process printed so far (all runs).
func (c *Controller) Log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.log.String()
}

func tail(s string, n int) string {
	lines := bytes.Split([]byte(s), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
