package lab

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process supervision: every process runs in its own session (so it outlives the command that
// started it, and its whole group can be stopped), logs to logs/<name>.log and is named by
// pids/<name>.pid. Anything else the project starts beside the clusterset (coredns-mcs, the
// controller, test helpers) registers a pid file there too, and `down` stops it.

func (c *Config) pidOf(name string) int {
	b, err := os.ReadFile(c.pidFile(name))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// alive: the process exists and is not a zombie (one killed whose parent has not reaped it yet).
func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) state ...: comm may hold spaces and parentheses, the state follows the last ')'.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// Running reports whether the process of that name runs.
func (c *Config) Running(name string) bool { return alive(c.pidOf(name)) }

func portBusy(port int) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return true
	}
	ln.Close()
	return false
}

// start runs argv as process name unless it runs already; ports are checked free first.
func (c *Config) start(name string, ports []int, argv ...string) error {
	if c.Running(name) {
		return nil
	}
	for _, p := range ports {
		if portBusy(p) {
			return fmt.Errorf("port 127.0.0.1:%d (for %s) is taken by a process this clusterset did not start; stop it or set CMCS_PORT_BASE", p, name)
		}
	}
	log, err := os.OpenFile(c.logFile(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	if err := os.WriteFile(c.pidFile(name), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return err
	}
	// What it was started with, for `start NAME` after a `stop NAME`.
	spec, err := json.Marshal(startSpec{Ports: ports, Argv: argv})
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.specFile(name), spec, 0o644); err != nil {
		return err
	}
	return cmd.Process.Release()
}

type startSpec struct {
	Ports []int    `json:"ports"`
	Argv  []string `json:"argv"`
}

func (c *Config) specFile(name string) string { return filepath.Join(c.Dir, "pids", name+".start") }

// restart starts process name again as it was started last (it is kept if it runs).
func (c *Config) restart(name string) error {
	raw, err := os.ReadFile(c.specFile(name))
	if err != nil {
		return fmt.Errorf("process %s was never started here: run up", name)
	}
	var s startSpec
	if err := json.Unmarshal(raw, &s); err != nil {
		return err
	}
	return c.start(name, s.Ports, s.Argv...)
}

// stop stops process name and its group: TERM, then KILL after 5 s.
func (c *Config) stop(name string) {
	pid := c.pidOf(name)
	if pid == 0 {
		return
	}
	if alive(pid) {
		if syscall.Kill(-pid, syscall.SIGTERM) != nil {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		for i := 0; i < 50 && alive(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if syscall.Kill(-pid, syscall.SIGKILL) != nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for i := 0; i < 50 && alive(pid); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	_ = os.Remove(c.pidFile(name))
}

// pidNames are the names of every pid file.
func (c *Config) pidNames() []string {
	files, _ := filepath.Glob(filepath.Join(c.Dir, "pids", "*.pid"))
	var out []string
	for _, f := range files {
		out = append(out, strings.TrimSuffix(filepath.Base(f), ".pid"))
	}
	sort.Strings(out)
	return out
}

// waitFor retries f until it succeeds or timeout passes.
func (c *Config) waitFor(what string, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s (logs: %s): %v", timeout, what, filepath.Join(c.Dir, "logs"), err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// diagnose appends the last lines of the log of every registered process that is not running.
func (c *Config) diagnose(err error) error {
	var b strings.Builder
	for _, n := range c.pidNames() {
		if c.Running(n) {
			continue
		}
		raw, _ := os.ReadFile(c.logFile(n))
		lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
		if len(lines) > 5 {
			lines = lines[len(lines)-5:]
		}
		fmt.Fprintf(&b, "\n%s is not running; last lines of %s:\n    %s", n, c.logFile(n), strings.Join(lines, "\n    "))
	}
	if b.Len() == 0 {
		return err
	}
	return fmt.Errorf("%w%s", err, b.String())
}

// run runs a command to its end and returns its standard output, or an error with its
// standard error.
func run(stdin string, argv ...string) (string, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// kubectl runs the clusterset's kubectl against cluster (karmada or a member) as admin.
func (c *Config) kubectl(cluster, stdin string, args ...string) (string, error) {
	return run(stdin, append([]string{c.Kubectl(), "--kubeconfig", c.kubeconfig(cluster)}, args...)...)
}

// apply applies manifests (YAML on stdin, or args such as -f DIR / -k DIR) server-side.
func (c *Config) apply(cluster, stdin string, args ...string) error {
	if len(args) == 0 {
		args = []string{"-f", "-"}
	}
	_, err := c.kubectl(cluster, stdin, append([]string{"apply", "--server-side", "--force-conflicts", "--field-manager", "clusterset"}, args...)...)
	return err
}

var errNotYet = errors.New("not yet")

// lock takes the clusterset's lock (up, down, stop and dns change the set of processes: one at a
// time). It lives beside the state directory, which down removes.
func (c *Config) lock() (func(), error) {
	if err := os.MkdirAll(filepath.Dir(c.Dir), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(c.Dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}
