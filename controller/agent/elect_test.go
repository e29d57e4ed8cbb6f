package agent

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// Two replicas: one leads, the other stands by; the leader stopping hands over at once (the
// lease is released), and never do both lead together. A run that fails ends the election with
// its error, releasing the lease too.
func TestElected(t *testing.T) {
	client := fake.NewClientset()
	timing := Election{Namespace: "karmada-system", LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 100 * time.Millisecond}
	var leaders atomic.Int32
	var overlap atomic.Bool
	runUntilDone := func(ctx context.Context) error {
		if leaders.Add(1) > 1 {
			overlap.Store(true)
		}
		defer leaders.Add(-1)
		<-ctx.Done()
		return nil
	}
	start := func(id string) (context.CancelFunc, *atomic.Bool, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		var leading atomic.Bool
		errc := make(chan error, 1)
		e := timing
		e.Identity = id
		go func() { errc <- Elected(ctx, client, e, &leading, runUntilDone) }()
		return cancel, &leading, errc
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5 s", what)
			}
		}
	}

	stopA, leadingA, errA := start("a")
	waitFor("a leads", leadingA.Load)
	stopB, leadingB, errB := start("b")
	time.Sleep(500 * time.Millisecond)
	if leadingB.Load() {
		t.Fatal("b leads while a holds the lease")
	}
	handover := time.Now()
	stopA()
	if err := <-errA; err != nil {
		t.Errorf("a stopped: %v, want nil", err)
	}
	waitFor("b leads after a stopped", leadingB.Load)
	// Released, not expired: b does not wait out a's lease duration.
	if d := time.Since(handover); d >= timing.LeaseDuration {
		t.Errorf("b took over after %s: the lease was not released", d)
	}
	lease, err := client.CoordinationV1().Leases("karmada-system").Get(context.Background(), LeaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "b" {
		t.Errorf("lease %+v (err %v), want held by b", lease, err)
	}
	stopB()
	if err := <-errB; err != nil {
		t.Errorf("b stopped: %v", err)
	}
	if overlap.Load() {
		t.Error("two replicas led at once")
	}

	// A run that fails ends the election with its error.
	boom := errors.New("informers failed")
	e := timing
	e.Identity = "c"
	if err := Elected(context.Background(), client, e, nil, func(context.Context) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("a failing run: %v, want %v", err, boom)
	}
	if err := Elected(context.Background(), client, Election{}, nil, runUntilDone); err == nil {
		t.Error("no namespace: want an error")
	}
}
