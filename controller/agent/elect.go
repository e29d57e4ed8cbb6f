package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// LeaseName is the member's Lease the agent's replicas elect their leader with.
const LeaseName = "coredns-mcs-agent"

// Election configures the agent's leader election in its member: only the replica holding the
// Lease reports and writes status, so a second replica (a rolling update, a node drain) stands by
// instead of writing every report twice.
type Election struct {
	// Namespace of the Lease (the agent's own).
	Namespace string
	// Identity of this replica (default: hostname and a random suffix).
	Identity string
	// LeaseDuration, RenewDeadline, RetryPeriod: client-go's (defaults 15 s, 10 s, 2 s, those
	// of controller-runtime and the kube-controller-manager).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Elected runs run while this replica leads. It returns when ctx ends (releasing the Lease, so a
// standby takes over at once) or with an error when leadership is lost: run's context is
// cancelled then, and the process should exit, as controller-runtime's managers do, rather than
// lead again with state the new leader may have changed.
func Elected(ctx context.Context, member kubernetes.Interface, e Election, leading *atomic.Bool, run func(context.Context) error) error {
	if e.Namespace == "" {
		return errors.New("the leader election namespace is required")
	}
	if e.Identity == "" {
		host, _ := os.Hostname()
		e.Identity = host + "_" + string(uuid.NewUUID())
	}
	if e.LeaseDuration <= 0 {
		e.LeaseDuration = 15 * time.Second
	}
	if e.RenewDeadline <= 0 {
		e.RenewDeadline = 10 * time.Second
	}
	if e.RetryPeriod <= 0 {
		e.RetryPeriod = 2 * time.Second
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.Namespace, Name: LeaseName},
		Client:     member.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.Identity},
	}
	logger := klog.FromContext(ctx).WithValues("lease", e.Namespace+"/"+LeaseName, "identity", e.Identity)
	// lctx ends the election when run returns on its own (an error): the lease is released and
	// the process exits, so a standby takes over.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		runErr error
		begun  atomic.Bool
		done   = make(chan struct{})
	)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, Name: LeaseName, ReleaseOnCancel: true,
		LeaseDuration: e.LeaseDuration, RenewDeadline: e.RenewDeadline, RetryPeriod: e.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			// Called in a goroutine of its own, with a context that ends with the leadership.
			OnStartedLeading: func(ctx context.Context) {
				begun.Store(true)
				defer close(done)
				if leading != nil {
					leading.Store(true)
				}
				leaderGauge.Set(1)
				logger.Info("leading: reporting the member")
				runErr = run(ctx)
				cancel()
			},
			OnStoppedLeading: func() {
				if leading != nil {
					leading.Store(false)
				}
				leaderGauge.Set(0)
			},
			OnNewLeader: func(id string) {
				if id != e.Identity {
					logger.Info("standing by", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return err
	}
	logger.Info("waiting for the lease")
	// Run returns when lctx ends, or when the lease could not be renewed (it only gives up
	// acquiring when lctx ends); run's context has ended then.
	le.Run(lctx)
	if begun.Load() {
		<-done
	}
	switch {
	case runErr != nil:
		return runErr
	case ctx.Err() != nil:
		return nil
	case begun.Load():
		return fmt.Errorf("stopped leading (the lease %s/%s was not renewed in time, or the agent stopped)", e.Namespace, LeaseName)
	}
	return nil
}

// PodNamespace is the namespace the agent runs in (its ServiceAccount's), or def outside a pod.
func PodNamespace(def string) string {
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return def
}
