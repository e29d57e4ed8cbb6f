//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// TestKarmadaOutageAndControllerKills: a flow of 20 services (created, endpoints changed, a
// second exporter added, unexported) during which the Karmada apiserver is stopped (SIGSTOP) for
// 60 s and the controller is SIGKILLed 20 times at random points (restarted at once, ready or
// not). The end state is checked object by object: every live service's derived Service,
// mirrored slices and automatic ServiceImport in both members with the right endpoints, exactly
// the Works they need and none more, nothing left of the unexported ones, and the derived
// Services that existed before the chaos never deleted (same UID).
func TestKarmadaOutageAndControllerKills(t *testing.T) {
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	ctrl := env.StartController(t)
	ns := uniqueNS("chaos")
	memberNamespace(t, ns, "derived-s00")
	m1 := env.Client(t, clusterset.Member1)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("random seed %d", seed)

	const n = 20
	name := func(i int) string { return fmt.Sprintf("s%02d", i) }
	// What the flow leaves: s00–s09 with a changed endpoint, s10–s14 exported by both members,
	// s15–s19 unexported.
	want := map[string][]string{}
	for i := range 15 {
		switch {
		case i < 10:
			want[name(i)] = []string{fmt.Sprintf("10.10.17.%d", i+1)}
		default:
			want[name(i)] = []string{fmt.Sprintf("10.10.7.%d", i+1), fmt.Sprintf("10.12.7.%d", i+1)}
		}
	}

	// Before the chaos: s00–s04 imported everywhere; their derived Services must survive it.
	for i := range 5 {
		serviceIn(t, clusterset.Member1, ns, name(i), fmt.Sprintf("10.10.7.%d", i+1), 8080)
	}
	uids := map[string]types.UID{}
	clusterset.Eventually(t, 90*time.Second, "s00–s04 imported into both members", func() error {
		for i := range 5 {
			for _, c := range []string{clusterset.Member1, clusterset.Member2} {
				svc, err := env.Client(t, c).CoreV1().Services(ns).Get(ctx, "derived-"+name(i), metav1.GetOptions{})
				if err != nil {
					return fmt.Errorf("%s: %v", c, err)
				}
				uids[c+"/"+svc.Name] = svc.UID
			}
		}
		return nil
	})

	var steps []func()
	for i := 5; i < n; i++ {
		steps = append(steps, func() { serviceIn(t, clusterset.Member1, ns, name(i), fmt.Sprintf("10.10.7.%d", i+1), 8080) })
	}
	outageAt := len(steps)
	for i := range 10 {
		steps = append(steps, func() {
			env.KubectlT(t, clusterset.Member1, "", "-n", ns, "patch", "endpointslice", name(i)+"-manual", "--type=json",
				"-p", fmt.Sprintf(`[{"op":"replace","path":"/endpoints/0/addresses/0","value":"10.10.17.%d"}]`, i+1))
		})
	}
	for i := 10; i < 15; i++ {
		steps = append(steps, func() { serviceIn(t, clusterset.Member2, ns, name(i), fmt.Sprintf("10.12.7.%d", i+1), 8080) })
	}
	for i := 15; i < n; i++ {
		steps = append(steps, func() { env.KubectlT(t, clusterset.Member1, "", "-n", ns, "delete", "serviceexport", name(i)) })
	}

	karmadaPid := env.Pid(t, "apiserver-karmada")
	thaw := func() { _ = syscall.Kill(karmadaPid, syscall.SIGCONT) }
	t.Cleanup(thaw)
	var stopped time.Time
	kills := 0
	killAt := map[int]bool{}
	for len(killAt) < n {
		killAt[rng.IntN(len(steps))] = true
	}
	for i, step := range steps {
		if i == outageAt {
			if err := syscall.Kill(karmadaPid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			stopped = time.Now()
			t.Logf("Karmada apiserver stopped after step %d", i)
		}
		step()
		if killAt[i] {
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond) // a random point of its work
			ctrl.Kill()
			ctrl.RestartNoWait()
			kills++
		}
	}
	if d := 60*time.Second - time.Since(stopped); d > 0 {
		time.Sleep(d)
	}
	thaw()
	t.Logf("Karmada apiserver continued after %s; %d controller kills", time.Since(stopped).Round(time.Second), kills)
	if kills != n {
		t.Fatalf("%d kills, want %d", kills, n)
	}
	clusterset.Eventually(t, 120*time.Second, "the controller ready again", ctrl.Ready)

	// The end state, object by object.
	dyn := env.Dynamic(t, clusterset.Karmada)
	exporters := func(svc string) int { return len(want[svc]) }
	clusterset.Eventually(t, 4*time.Minute, "converged after the outage and 20 kills", func() error {
		for _, c := range []string{clusterset.Member1, clusterset.Member2} {
			mc := env.Client(t, c)
			for i := range n {
				svc := name(i)
				ips, items, err := readyIPs(ctx, mc, ns, "kubernetes.io/service-name=derived-"+svc)
				if err != nil {
					return err
				}
				_, getErr := mc.CoreV1().Services(ns).Get(ctx, "derived-"+svc, metav1.GetOptions{})
				si, siErr := env.Dynamic(t, c).Resource(siGVR).Namespace(ns).Get(ctx, svc, metav1.GetOptions{})
				if w, live := want[svc]; live {
					if getErr != nil {
						return fmt.Errorf("%s: derived-%s: %v", c, svc, getErr)
					}
					if !slices.Equal(ips, w) || len(items) != exporters(svc) {
						return fmt.Errorf("%s: derived-%s has %v in %d slices, want %v in %d", c, svc, ips, len(items), w, exporters(svc))
					}
					if siErr != nil {
						return fmt.Errorf("%s: ServiceImport %s: %v", c, svc, siErr)
					}
				} else {
					if getErr == nil || len(items) > 0 {
						return fmt.Errorf("%s: derived-%s of an unexported service still there (%d slices)", c, svc, len(items))
					}
					if siErr == nil && si.GetLabels()["app.kubernetes.io/managed-by"] == ourManager {
						return fmt.Errorf("%s: our ServiceImport %s of an unexported service still there", c, svc)
					}
				}
			}
		}
		// Exactly the objects the live services need, in whichever Work layout the controller
		// runs (CMCS_CONTROLLER_ARGS): per importer, one Service, one ServiceImport (automatic
		// import) and one EndpointSlice per exporter's slice, counted by manifest.
		works, err := dyn.Resource(workGVR).Namespace("").List(ctx, metav1.ListOptions{LabelSelector: "mcs.coredns-mcs.io/service-namespace=" + ns})
		if err != nil {
			return err
		}
		got := map[string]int{}
		for _, w := range works.Items {
			if w.GetDeletionTimestamp() != nil {
				return fmt.Errorf("Work %s/%s still being deleted", w.GetNamespace(), w.GetName())
			}
			kinds := manifestKinds(w)
			if len(kinds) == 0 {
				kinds = []string{"(empty Work)"}
			}
			for _, kind := range kinds {
				got[w.GetNamespace()+"/"+w.GetLabels()["mcs.coredns-mcs.io/service-name"]+"/"+kind]++
			}
		}
		wantWorks := map[string]int{}
		for svc := range want {
			for _, c := range []string{clusterset.Member1, clusterset.Member2} {
				es := "karmada-es-" + c
				wantWorks[es+"/"+svc+"/Service"] = 1
				wantWorks[es+"/"+svc+"/ServiceImport"] = 1
				wantWorks[es+"/"+svc+"/EndpointSlice"] = exporters(svc)
			}
		}
		if diff := countDiff(got, wantWorks); diff != "" {
			return fmt.Errorf("Works: %s", diff)
		}
		return nil
	})
	for key, uid := range uids {
		c, svc, _ := strings.Cut(key, "/")
		cur, err := env.Client(t, c).CoreV1().Services(ns).Get(ctx, svc, metav1.GetOptions{})
		if err != nil || cur.UID != uid {
			t.Errorf("%s: %s was deleted during the chaos (UID %s → %v, err=%v)", c, svc, uid, svcUID(cur), err)
		}
	}
	for i := range n {
		exp := map[string]string{"Valid": "True/Valid", "Ready": "True/Exported"}
		if i >= 15 {
			continue // unexported
		}
		expectConditionsWithin(t, 60*time.Second, clusterset.Member1, ns, name(i), exp)
		if i >= 10 {
			expectConditionsWithin(t, 60*time.Second, clusterset.Member2, ns, name(i), exp)
		}
	}
	// The source objects are the user's: all there.
	for i := range n {
		if _, err := m1.CoreV1().Services(ns).Get(ctx, name(i), metav1.GetOptions{}); err != nil {
			t.Errorf("member1's own Service %s: %v", name(i), err)
		}
	}
}

// countDiff lists the keys whose counts differ between got and want ("" if none).
func countDiff(got, want map[string]int) string {
	var out []string
	for k, w := range want {
		if got[k] != w {
			out = append(out, fmt.Sprintf("%s: %d, want %d", k, got[k], w))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("%s: %d, want none", k, g))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}
