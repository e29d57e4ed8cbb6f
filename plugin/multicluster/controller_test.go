package multicluster

import (
	"context"
	"errors"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// The fake clients serve no watch-list streams (client-go's WatchListClient, on by default): the
// informers list, then watch, as against older apiservers.
func init() { os.Setenv("KUBE_FEATURE_WatchListClient", "false") }

// flakyDiscovery fails ServerResourcesForGroupVersion while failing is set.
type flakyDiscovery struct {
	*fakediscovery.FakeDiscovery
	failing atomic.Bool
	calls   atomic.Int64
}

func (f *flakyDiscovery) ServerResourcesForGroupVersion(gv string) (*metav1.APIResourceList, error) {
	f.calls.Add(1)
	if f.failing.Load() {
		return nil, errors.New("discovery: the server is currently unable to handle the request")
	}
	return f.FakeDiscovery.ServerResourcesForGroupVersion(gv)
}

func newTestController(t *testing.T) (*dataController, *flakyDiscovery) {
	t.Helper()
	client := fake.NewSimpleClientset()
	disco := &flakyDiscovery{FakeDiscovery: client.Discovery().(*fakediscovery.FakeDiscovery)}
	disco.Resources = []*metav1.APIResourceList{{
		GroupVersion: mcs.Group + "/v1alpha1",
		APIResources: []metav1.APIResource{{Name: "serviceimports", Namespaced: true, Kind: "ServiceImport"}},
	}}
	gvr := schema.GroupVersionResource{Group: mcs.Group, Version: "v1alpha1", Resource: "serviceimports"}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{gvr: "ServiceImportList"})
	c := newDataController(client, dyn, disco, newStore([]string{"clusterset.local."}, 5), mcs.DefaultDerivedPrefix, nil, "clusterset.local.")
	c.pollInterval = 20 * time.Millisecond
	c.Start()
	t.Cleanup(c.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for c.syncState() != stateSynced {
		if time.Now().After(deadline) {
			t.Fatalf("not synced: %s", c.syncState())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return c, disco
}

// waitPolls waits until the supervisor has polled discovery n more times.
func waitPolls(t *testing.T, d *flakyDiscovery, n int64) {
	t.Helper()
	want := d.calls.Load() + n
	deadline := time.Now().Add(10 * time.Second)
	for d.calls.Load() < want {
		if time.Now().After(deadline) {
			t.Fatal("the supervisor stopped polling")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Finding 6: a discovery poll that failed once made every replica replace all its informers
// (a full relist, two copies held meanwhile). Watches that stayed up are kept.
func TestDiscoveryBlipKeepsInformers(t *testing.T) {
	c, disco := newTestController(t)
	base := c.base.Load()
	disco.failing.Store(true)
	waitPolls(t, disco, 3)
	disco.failing.Store(false)
	waitPolls(t, disco, 5)
	if c.base.Load() != base || c.reconnects.Load() != 0 {
		t.Errorf("a failed discovery poll with healthy watches replaced the informers (%d reconnects)", c.reconnects.Load())
	}
	if c.syncState() != stateSynced {
		t.Errorf("state %s after the blip, want synced", c.syncState())
	}

	// A watch that really broke while the apiserver was away: the informers are replaced once
	// it is back (rather than waiting out client-go's backoff).
	disco.failing.Store(true)
	waitPolls(t, disco, 2)
	c.watchErrAt.Store(time.Now().UnixNano())
	waitPolls(t, disco, 2)
	disco.failing.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for c.reconnects.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("informers not replaced after a broken watch: %d reconnects", c.reconnects.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if c.base.Load() == base {
		t.Error("reconnect counted but the informers were not replaced")
	}
}

// A request that fails below HTTP (the apiserver is down: connection refused) marks the
// connections, and with them the watches, broken; an HTTP error answer or a request the caller
// cancelled does not. (client-go's reflectors retry connection errors of their watches without
// reporting them to the watch error handler.)
func TestConnErrorsMarkWatchesBroken(t *testing.T) {
	c, _ := newTestController(t)
	conn := &connErrors{}
	c.connErrors = conn
	since := time.Now()
	fail := errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
	var status int
	rt := conn.wrap(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if status == 0 {
			return nil, fail
		}
		return &http.Response{StatusCode: status, Body: http.NoBody}, nil
	}))
	req := func(ctx context.Context) {
		r, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://127.0.0.1:6443/apis", nil)
		if resp, err := rt.RoundTrip(r); err == nil {
			resp.Body.Close()
		}
	}
	status = http.StatusServiceUnavailable
	req(context.Background())
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	status = 0
	req(cancelled)
	if c.watchBrokenSince(since) {
		t.Fatal("a 503 answer or a cancelled request marked the watches broken")
	}
	req(context.Background())
	if !c.watchBrokenSince(since) {
		t.Fatal("a refused connection did not mark the watches broken")
	}
}
