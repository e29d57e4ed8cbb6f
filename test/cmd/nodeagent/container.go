package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
)

// attachWait is how long a container with stdin and stdinOnce (what `kubectl run -i` creates)
// waits for its first attach before it starts anyway: kubectl attaches as soon as the pod is
// Running, and a process started before that would print to nobody.
const attachWait = 30 * time.Second

// container is one container's process, supervised as a kubelet would: started in the pod's
// network namespace, restarted by the pod's restartPolicy with a backoff, its output written to
// the CRI log file (`kubectl logs`) and to whoever is attached, its state reported in the pod's
// status.
type container struct {
	a                                           *agent
	key, podUID                                 string
	spec                                        corev1.Container
	argv, env                                   []string
	netns, dir, logFile, exitFile               string
	policy                                      corev1.RestartPolicy
	stop                                        chan struct{} // closed by kill
	done                                        chan struct{} // closed when supervise returns
	gate                                        chan struct{} // closed by the first attach (stdin+stdinOnce containers)
	logW                                        *criLog
	stdoutLog, stderrLog                        *criStream
	mu                                          sync.Mutex
	cond                                        *sync.Cond
	cmd                                         *exec.Cmd
	input                                       io.WriteCloser // the running process's stdin (or its terminal)
	term                                        *os.File       // the terminal's master side (tty containers)
	running, stopped, gateOpen, stdinEOF, final bool
	attached                                    map[*attachment]struct{}
	restarts                                    int32
	startedAt                                   time.Time
	waiting                                     string                           // reason while not running and not terminated
	lastTerm, terminated                        *corev1.ContainerStateTerminated // the previous run's end; the final one
}

type attachment struct {
	out, err io.Writer
	done     chan struct{}
}

func newContainer(a *agent, sb *sandbox, pod *corev1.Pod, spec corev1.Container, argv, env []string, logFile, exitFile string) (*container, error) {
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	c := &container{a: a, key: pod.Namespace + "/" + pod.Name, podUID: string(pod.UID), spec: spec, argv: argv, env: env,
		netns: sb.netns, dir: sb.dir, logFile: logFile, exitFile: exitFile, policy: pod.Spec.RestartPolicy,
		stop: make(chan struct{}), done: make(chan struct{}), gate: make(chan struct{}),
		logW: &criLog{f: f}, attached: map[*attachment]struct{}{}, waiting: "ContainerCreating"}
	c.stdoutLog, c.stderrLog = &criStream{log: c.logW, name: "stdout"}, &criStream{log: c.logW, name: "stderr"}
	c.cond = sync.NewCond(&c.mu)
	if !(spec.Stdin && spec.StdinOnce) {
		close(c.gate)
		c.gateOpen = true
	}
	return c, nil
}

// supervise runs the container until its restartPolicy says it is finished or kill is called.
func (c *container) supervise() {
	defer close(c.done)
	defer c.logW.f.Close()
	select {
	case <-c.gate:
	case <-c.stop:
		return
	case <-time.After(attachWait):
		c.mu.Lock()
		if !c.gateOpen {
			c.gateOpen = true
			close(c.gate)
		}
		c.mu.Unlock()
		klog.Infof("pod %s container %s: nobody attached within %s; starting it anyway", c.key, c.spec.Name, attachWait)
	}
	backoff := time.Second
	for {
		started := time.Now()
		code, err := c.runOnce()
		if c.isStopped() {
			return
		}
		if err != nil {
			fmt.Fprintf(c.stderrLog, "%v\n", err)
			c.stderrLog.flush()
		}
		klog.Infof("pod %s container %s exited with code %d", c.key, c.spec.Name, code)
		restart := c.policy == corev1.RestartPolicyAlways || c.policy == "" || (c.policy == corev1.RestartPolicyOnFailure && code != 0)
		if !restart {
			_ = os.WriteFile(c.exitFile, []byte(fmt.Sprintf("%d\n", code)), 0o644)
			c.mu.Lock()
			c.final = true
			c.mu.Unlock()
			c.a.reportStatus(c.key)
			return
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		c.mu.Lock()
		c.terminated, c.waiting = nil, "CrashLoopBackOff"
		c.restarts++
		c.mu.Unlock()
		c.a.reportStatus(c.key)
		select {
		case <-c.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// runOnce starts the process and waits for it; code is its exit code (128+signal when killed,
// 127/126 when it could not be started).
func (c *container) runOnce() (code int32, err error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", c.netns}, c.argv...)...)
	cmd.Env, cmd.Dir = c.env, c.workDir()
	out, errs := &fanout{c: c, log: c.stdoutLog}, &fanout{c: c, log: c.stderrLog, stderr: true}
	var termDone chan struct{}
	c.mu.Lock()
	if c.spec.TTY {
		term, err := pty.StartWithAttrs(cmd, nil, &syscall.SysProcAttr{Setsid: true, Setctty: true})
		if err != nil {
			c.mu.Unlock()
			return c.startFailed(err)
		}
		c.term, c.input = term, term
		termDone = make(chan struct{})
		go func() { _, _ = io.Copy(out, term); close(termDone) }()
	} else {
		cmd.Stdout, cmd.Stderr = out, errs
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.WaitDelay = 2 * time.Second
		var in io.WriteCloser
		if c.spec.Stdin && !c.stdinEOF {
			if in, err = cmd.StdinPipe(); err != nil {
				c.mu.Unlock()
				return c.startFailed(err)
			}
		}
		if err := cmd.Start(); err != nil {
			c.mu.Unlock()
			return c.startFailed(err)
		}
		c.input = in
	}
	c.cmd, c.running, c.waiting, c.startedAt = cmd, true, "", time.Now()
	c.cond.Broadcast()
	c.mu.Unlock()
	c.a.reportStatus(c.key)

	waitErr := cmd.Wait()
	if termDone != nil {
		select {
		case <-termDone:
		case <-time.After(2 * time.Second): // a child still holds the terminal
		}
		c.term.Close()
	}
	c.stdoutLog.flush()
	c.stderrLog.flush()
	code = exitCode(cmd, waitErr)
	c.mu.Lock()
	t := &corev1.ContainerStateTerminated{ExitCode: code, Reason: "Completed", StartedAt: metav1.NewTime(c.startedAt), FinishedAt: metav1.Now(),
		ContainerID: c.containerID()}
	if code != 0 {
		t.Reason = "Error"
	}
	c.lastTerm, c.terminated = t, t
	c.running, c.cmd, c.input, c.term = false, nil, nil, nil
	for at := range c.attached {
		close(at.done)
		delete(c.attached, at)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	return code, nil
}

func (c *container) startFailed(err error) (int32, error) {
	code := int32(128)
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
		code = 127
	}
	c.mu.Lock()
	t := &corev1.ContainerStateTerminated{ExitCode: code, Reason: "StartError", Message: err.Error(), FinishedAt: metav1.Now()}
	c.lastTerm, c.terminated = t, t
	c.mu.Unlock()
	return code, fmt.Errorf("starting %v: %w", c.argv, err)
}

func exitCode(cmd *exec.Cmd, err error) int32 {
	if ps := cmd.ProcessState; ps != nil {
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int32(ws.Signal())
		}
		return int32(ps.ExitCode())
	}
	if err != nil {
		return 128
	}
	return 0
}

func (c *container) workDir() string {
	if c.spec.WorkingDir != "" {
		if st, err := os.Stat(c.spec.WorkingDir); err == nil && st.IsDir() {
			return c.spec.WorkingDir
		}
	}
	return c.dir
}

func (c *container) containerID() string { return "cmcs://" + c.podUID + "/" + c.spec.Name }

func (c *container) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// kill stops the process (SIGTERM to its process group, SIGKILL after 2 s) and the supervisor.
func (c *container) kill() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		<-c.done
		return
	}
	c.stopped = true
	close(c.stop)
	cmd := c.cmd
	for at := range c.attached {
		close(at.done)
		delete(c.attached, at)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-c.done:
			return
		case <-time.After(2 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	<-c.done
}

// attach streams the container's output to out/err (out only with a terminal) until the current
// run ends (or, for a container waiting for its first attach, the run it starts), and copies in to
// the process's stdin when the container has one.
func (c *container) attach(in io.Reader, out, errw io.Writer, resize <-chan remotecommand.TerminalSize, cancel <-chan struct{}) error {
	c.mu.Lock()
	if c.stopped || (!c.running && c.gateOpen) {
		c.mu.Unlock()
		return fmt.Errorf("container %s of pod %s is not running", c.spec.Name, c.key)
	}
	at := &attachment{out: out, err: errw, done: make(chan struct{})}
	if c.spec.TTY {
		at.err = nil
	}
	c.attached[at] = struct{}{}
	if !c.gateOpen {
		c.gateOpen = true
		close(c.gate)
	}
	c.mu.Unlock()
	if in != nil && c.spec.Stdin {
		go c.copyStdin(in, at.done)
	}
	if resize != nil && c.spec.TTY {
		go func() {
			for s := range resize {
				c.mu.Lock()
				if c.term != nil {
					_ = pty.Setsize(c.term, &pty.Winsize{Rows: s.Height, Cols: s.Width})
				}
				c.mu.Unlock()
			}
		}()
	}
	select {
	case <-at.done:
	case <-cancel:
		c.mu.Lock()
		delete(c.attached, at)
		c.mu.Unlock()
	}
	return nil
}

// copyStdin feeds an attach's stdin to the running process. With stdinOnce, the end of the first
// attach's stdin closes the container's stdin for good, as the kubelet does.
func (c *container) copyStdin(in io.Reader, done <-chan struct{}) {
	buf := make([]byte, 32<<10)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			c.mu.Lock()
			for c.input == nil && !c.stopped && !c.stdinEOF && !c.running && c.lastTerm == nil {
				c.cond.Wait() // the first run is about to start
			}
			w := c.input
			c.mu.Unlock()
			if w == nil {
				return
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if c.spec.StdinOnce && !c.spec.TTY {
				c.mu.Lock()
				c.stdinEOF = true
				if c.input != nil {
					_ = c.input.Close()
					c.input = nil
				}
				c.mu.Unlock()
			}
			return
		}
		select {
		case <-done:
			return
		default:
		}
	}
}

// status is the container's part of the pod status.
func (c *container) status(prev corev1.ContainerStatus) corev1.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := prev
	s.Name, s.Image, s.ContainerID = c.spec.Name, c.spec.Image, c.containerID()
	s.RestartCount = c.restarts
	s.State = corev1.ContainerState{}
	s.LastTerminationState = corev1.ContainerState{}
	if c.lastTerm != nil && c.terminated == nil {
		s.LastTerminationState.Terminated = c.lastTerm
	}
	running := c.running || !c.gateOpen // a container waiting for its attach counts as started
	switch {
	case running:
		started := c.startedAt
		if started.IsZero() {
			started = time.Now()
		}
		s.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(started)}
	case c.terminated != nil:
		s.State.Terminated = c.terminated
	default:
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.waiting}
	}
	s.Ready = running
	s.Started = &running
	return s
}

// finished reports whether the container ran to its end and will not run again.
func (c *container) finished() (bool, int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.final && c.terminated != nil {
		return true, c.terminated.ExitCode
	}
	return false, 0
}

// fanout is one output stream of the process: every byte goes to the CRI log and to each attach.
type fanout struct {
	c      *container
	log    *criStream
	stderr bool
}

func (f *fanout) Write(p []byte) (int, error) {
	_, _ = f.log.Write(p)
	f.c.mu.Lock()
	var ws []io.Writer
	for at := range f.c.attached {
		w := at.out
		if f.stderr && at.err != nil {
			w = at.err
		}
		if w != nil {
			ws = append(ws, w)
		}
	}
	f.c.mu.Unlock()
	for _, w := range ws {
		_, _ = w.Write(p)
	}
	return len(p), nil
}

// finishedBefore marks a container that ran to its end before this agent restarted.
func (c *container) finishedBefore(code int32) {
	reason := "Completed"
	if code != 0 {
		reason = "Error"
	}
	c.endWithout(&corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, ContainerID: c.containerID()})
}

// failStart marks a container whose program cannot run on this host: it terminates with 127 and
// the reason in its log and status, and is not restarted (nothing would change).
func (c *container) failStart(err error) {
	fmt.Fprintf(c.stderrLog, "%v\n", err)
	c.stderrLog.flush()
	klog.Infof("pod %s container %s: %v", c.key, c.spec.Name, err)
	c.endWithout(&corev1.ContainerStateTerminated{ExitCode: 127, Reason: "StartError", Message: err.Error(), FinishedAt: metav1.Now(),
		ContainerID: c.containerID()})
}

// endWithout makes a container that never runs (now) final in state t, without a supervisor.
func (c *container) endWithout(t *corev1.ContainerStateTerminated) {
	c.mu.Lock()
	c.terminated = t
	c.lastTerm, c.final, c.gateOpen, c.stopped = t, true, true, true
	close(c.stop)
	close(c.done)
	c.mu.Unlock()
	_ = c.logW.f.Close()
	c.a.reportStatus(c.key)
}
