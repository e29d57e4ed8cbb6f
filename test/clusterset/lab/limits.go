package lab

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// inotifyInstances is the kernel's per-user limit on inotify instances. Every kube-apiserver and
// kube-controller-manager opens six (certificate and file watches), Karmada's control plane about
// thirteen: the default of 128 stops a clusterset at about nine members, with "too many open files"
// from whichever process starts next (karmada-webhook, at ten members here).
const inotifyInstances = "/proc/sys/fs/inotify/max_user_instances"

// perMemberInotify is what one member's processes hold, with room to spare; the base covers
// Karmada's control plane, a second clusterset on the machine and the tests' own processes.
const (
	perMemberInotify  = 16
	baseInotify       = 256
	inotifyHintFormat = "sysctl fs.inotify.max_user_instances=%d"
)

// raiseHostLimits makes room for the clusterset's processes before any starts:
//   - the open-file limit its children inherit is raised to the hard limit (Go raises its own soft
//     limit but restores the original one in the processes it starts, unless the program set it);
//   - fs.inotify.max_user_instances is raised to what the members need when it is lower, as kind's
//     documentation asks for larger clusters. It is only ever raised, never restored on down: a
//     second clusterset or another program on the machine may be using the room by then.
func (c *Config) raiseHostLimits() error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			c.logf("warning: cannot raise the open-file limit to %d: %v", lim.Max, err)
		}
	}
	want := baseInotify + perMemberInotify*len(c.All())
	raw, err := os.ReadFile(inotifyInstances)
	if err != nil {
		return nil // not Linux, or no procfs: nothing to raise
	}
	have, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || have >= want {
		return nil
	}
	if err := os.WriteFile(inotifyInstances, []byte(strconv.Itoa(want)+"\n"), 0o644); err != nil {
		if len(c.All()) <= 8 {
			return nil // the default holds this many members
		}
		return fmt.Errorf("%d members need more inotify instances than the %d this machine allows, and raising it failed (%v): run "+inotifyHintFormat+" as root", len(c.All()), have, err, want)
	}
	c.logf("raised fs.inotify.max_user_instances from %d to %d for %d members (it stays raised)", have, want, len(c.All()))
	return nil
}
