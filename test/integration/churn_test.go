//go:build e2e

package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// timeline records when each address was answerable: from the start of the call that added it
// to the return of the call that removed it (an open end while it is still there).
type timeline struct {
	mu    sync.Mutex
	spans map[string][][2]time.Time
}

func (tl *timeline) add(addr string, at time.Time) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.spans[addr] = append(tl.spans[addr], [2]time.Time{at, {}})
}

func (tl *timeline) remove(addr string, at time.Time) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	s := tl.spans[addr]
	if len(s) > 0 && s[len(s)-1][1].IsZero() {
		s[len(s)-1][1] = at
	}
}

// staleness returns 0 if addr was present at some time in [from, to], else how long before from
// it was removed (negative if it was added only after to).
func (tl *timeline) staleness(addr string, from, to time.Time) time.Duration {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	best := time.Duration(-1 << 62)
	for _, s := range tl.spans[addr] {
		if s[0].After(to) {
			continue
		}
		if s[1].IsZero() || !s[1].Before(from) {
			return 0
		}
		if d := from.Sub(s[1]); best < 0 || d < best {
			best = d
		}
	}
	return best
}

// churnParams: the length of the run and the rates, from the environment (make test runs a short
// run; hack/bench.sh the 60-second one).
func churnParams() (run time.Duration, changesPerSec, checkQPS, loadQPS int) {
	get := func(name string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
			return v
		}
		return def
	}
	return time.Duration(get("CMCS_CHURN_SECONDS", 15)) * time.Second, get("CMCS_CHURN_CHANGES", 10),
		get("CMCS_CHURN_CHECK_QPS", 200), get("CMCS_CHURN_LOAD_QPS", 1000)
}

// TestChurnAnswersFollowState: dnsperf loads coredns-mcs at a fixed rate while a driver changes
// imports, EndpointSlices and derived Services ten times a second through member2's apiserver,
// and a checker queries the changing names and compares every answer with the state at that
// moment: no SERVFAIL once synced, and no answer names an address later than 1 s after the call
// that removed it returned.
func TestChurnAnswersFollowState(t *testing.T) {
	env.PropagateMCSCRDs(t)
	run, changesPerSec, checkQPS, loadQPS := churnParams()
	const ns = "dns-churn"
	ctx := context.Background()
	kc := member2Namespace(t, ns)
	dnsSrv := env.StartMemberDNS(t, clusterset.Member2)
	tl := &timeline{spans: map[string][][2]time.Time{}}
	zero := time.Time{}
	http := []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}}

	// A headless import of 8 endpoints whose addresses are replaced one at a time (addresses are
	// never reused, so each removal is unambiguous), and 4 ClusterSetIP imports whose derived
	// Services are recreated (new ClusterIP) or whose import is deleted and recreated.
	const hostCount, ipImports = 8, 4
	next := 0
	newAddr := func() string { next++; return fmt.Sprintf("10.77.%d.%d", next/250, 1+next%250) }
	hosts := make([]string, hostCount)
	headless := func() *discoveryv1.EndpointSlice {
		var eps []discoveryv1.Endpoint
		for i, a := range hosts {
			eps = append(eps, readyEndpoint("e"+strconv.Itoa(i), a))
		}
		return mcsSlice(ns, "hl", "hl-member1", http, eps)
	}
	for i := range hosts {
		hosts[i] = newAddr()
		tl.add(hosts[i], zero)
	}
	createImport(t, ns, "hl", "Headless")
	if _, err := kc.DiscoveryV1().EndpointSlices(ns).Create(ctx, headless(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	vip := make([]string, ipImports)
	derived := func(i int) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "derived-ip" + strconv.Itoa(i), Namespace: ns},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	}
	for i := range vip {
		createImport(t, ns, "ip"+strconv.Itoa(i), "ClusterSetIP")
		svc, err := kc.CoreV1().Services(ns).Create(ctx, derived(i), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		vip[i] = svc.Spec.ClusterIP
		tl.add(vip[i], zero)
		if _, err := kc.DiscoveryV1().EndpointSlices(ns).Create(ctx, mcsSlice(ns, "ip"+strconv.Itoa(i), "ip"+strconv.Itoa(i)+"-member1", http,
			[]discoveryv1.Endpoint{readyEndpoint("", newAddr())}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	names := []string{"hl." + ns + ".svc.clusterset.local."}
	for i := 0; i < hostCount; i++ {
		names = append(names, fmt.Sprintf("e%d.member1.hl.%s.svc.clusterset.local.", i, ns))
	}
	for i := range vip {
		names = append(names, fmt.Sprintf("ip%d.%s.svc.clusterset.local.", i, ns))
	}
	for i := range vip {
		expectDig(t, 30*time.Second, dnsSrv.Addr, names[1+hostCount+i], "A", "NOERROR", vip[i])
	}
	expectDig(t, 10*time.Second, dnsSrv.Addr, names[1], "A", "NOERROR", hosts[0])

	// dnsperf: fixed-rate load over the same names, for the whole run.
	qfile := filepath.Join(t.TempDir(), "queries")
	var qs strings.Builder
	for _, n := range names {
		fmt.Fprintf(&qs, "%s A\n", n)
	}
	os.WriteFile(qfile, []byte(qs.String()), 0o644)
	host, port, _ := strings.Cut(dnsSrv.Addr, ":")
	perf := exec.Command("dnsperf", "-s", host, "-p", port, "-d", qfile, "-l", strconv.Itoa(int(run.Seconds())), "-Q", strconv.Itoa(loadQPS), "-c", "4", "-t", "2")
	var perfOut strings.Builder
	perf.Stdout, perf.Stderr = &perfOut, &perfOut
	if err := perf.Start(); err != nil {
		t.Fatalf("dnsperf: %v", err)
	}

	// The driver.
	start := time.Now()
	deadline := start.Add(run)
	var driverErr error
	changes := 0
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(changesPerSec))
		defer tick.Stop()
		importGone := -1
		for k := 0; time.Now().Before(deadline); k++ {
			<-tick.C
			var err error
			switch k % 5 {
			case 0, 1, 2: // replace one endpoint's address
				i := (k / 5 * 3) % hostCount
				old, fresh := hosts[i], newAddr()
				hosts[i] = fresh
				tl.add(fresh, time.Now())
				_, err = kc.DiscoveryV1().EndpointSlices(ns).Update(ctx, headless(), metav1.UpdateOptions{})
				tl.remove(old, time.Now())
			case 3: // recreate a derived Service: a new ClusterIP
				i := (k / 5) % ipImports
				if i == importGone {
					continue
				}
				if err = kc.CoreV1().Services(ns).Delete(ctx, "derived-ip"+strconv.Itoa(i), metav1.DeleteOptions{}); err == nil {
					tl.remove(vip[i], time.Now())
					var svc *corev1.Service
					at := time.Now()
					if svc, err = kc.CoreV1().Services(ns).Create(ctx, derived(i), metav1.CreateOptions{}); err == nil {
						vip[i] = svc.Spec.ClusterIP
						tl.add(vip[i], at)
					}
				}
			case 4: // delete an import, or bring the deleted one back
				if importGone >= 0 {
					i := importGone
					at := time.Now()
					err = createImportErr(t, ns, "ip"+strconv.Itoa(i), "ClusterSetIP")
					tl.add(vip[i], at)
					importGone = -1
					break
				}
				i := (k / 5) % ipImports
				if err = env.Dynamic(t, clusterset.Member2).Resource(importGVR).Namespace(ns).Delete(ctx, "ip"+strconv.Itoa(i), metav1.DeleteOptions{}); err == nil {
					tl.remove(vip[i], time.Now())
					importGone = i
				}
			}
			if err != nil && driverErr == nil {
				driverErr = err
			}
			changes++
		}
	}()

	// The checker.
	type result struct {
		sent, recv time.Time
		name       string
		rcode      int
		addrs      []string
		err        error
	}
	var results []result
	client := &dns.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(checkQPS))
	for q := 0; time.Now().Before(deadline); q++ {
		<-tick.C
		name := names[q%len(names)]
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		sent := time.Now()
		resp, _, err := client.Exchange(m, dnsSrv.Addr)
		r := result{sent: sent, recv: time.Now(), name: name, err: err}
		if err == nil {
			r.rcode = resp.Rcode
			for _, rr := range resp.Answer {
				if a, ok := rr.(*dns.A); ok {
					r.addrs = append(r.addrs, a.A.String())
				}
			}
		}
		results = append(results, r)
	}
	tick.Stop()
	wg.Wait()
	perf.Wait()
	if driverErr != nil {
		t.Errorf("the driver: %v", driverErr)
	}

	// The verdict.
	servfail, timeouts, stale, checked := 0, 0, 0, 0
	var worst time.Duration
	for _, r := range results {
		switch {
		case r.err != nil:
			timeouts++
			continue
		case r.rcode == dns.RcodeServerFailure:
			servfail++
		}
		for _, a := range r.addrs {
			checked++
			d := tl.staleness(a, r.sent, r.recv)
			if d > worst {
				worst = d
			}
			if d > time.Second {
				stale++
				if stale <= 5 {
					t.Errorf("%s at %s answered %s, removed %s before the query", r.name, r.sent.Sub(start).Round(time.Millisecond), a, d.Round(time.Millisecond))
				}
			} else if d < 0 {
				t.Errorf("%s answered %s, which was never added", r.name, a)
			}
		}
	}
	perfServfail := dnsperfRcode(perfOut.String(), "SERVFAIL")
	perfQPS := regexp.MustCompile(`Queries per second:\s+([0-9.]+)`).FindStringSubmatch(perfOut.String())
	lost := regexp.MustCompile(`Queries lost:\s+(\d+)`).FindStringSubmatch(perfOut.String())
	summary := fmt.Sprintf("churn %s: %d changes (%.1f/s) through the apiserver; checker %d queries, %d addresses checked, "+
		"%d SERVFAIL, %d timeouts, %d answers with an address removed over 1 s before, latest removed address still answered %s after its removal; "+
		"dnsperf at %d qps offered: %s qps, %s lost, %d SERVFAIL",
		run, changes, float64(changes)/run.Seconds(), len(results), checked, servfail, timeouts, stale, max(worst, 0).Round(time.Millisecond),
		loadQPS, at(perfQPS, 1), at(lost, 1), perfServfail)
	t.Log(summary)
	if out := os.Getenv("CMCS_CHURN_REPORT"); out != "" {
		os.WriteFile(out, []byte(summary+"\n"), 0o644)
	}
	if servfail > 0 || perfServfail > 0 {
		t.Errorf("SERVFAIL after the first sync: checker %d, dnsperf %d", servfail, perfServfail)
	}
	if stale > 0 {
		t.Errorf("%d answers named an address more than 1 s after its removal", stale)
	}
	if len(results) < checkQPS*int(run.Seconds())/2 || checked == 0 {
		t.Errorf("the checker sent %d queries and checked %d addresses: too few to judge", len(results), checked)
	}
	if timeouts > len(results)/100 {
		t.Errorf("%d of %d checker queries timed out", timeouts, len(results))
	}
	if perfQPS == nil {
		t.Errorf("dnsperf printed no result:\n%s", perfOut.String())
	}
}

// dnsperfRcode returns the count dnsperf gives for rcode in its "Response codes:" line.
func dnsperfRcode(out, rcode string) int {
	m := regexp.MustCompile(rcode + ` (\d+)`).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func at(m []string, i int) string {
	if len(m) > i {
		return m[i]
	}
	return "?"
}

// TestChurnTimeline: the checker's judge. An address answered while present, or within the
// window of the query, is fresh; one removed before the query was sent is as stale as the gap.
func TestChurnTimeline(t *testing.T) {
	tl := &timeline{spans: map[string][][2]time.Time{}}
	t0 := time.Unix(1000, 0)
	tl.add("a", t0)
	tl.remove("a", t0.Add(2*time.Second))
	tl.add("a", t0.Add(5*time.Second)) // back again, still there
	tl.add("b", t0.Add(3*time.Second))
	for _, c := range []struct {
		addr     string
		from, to time.Duration
		want     time.Duration
	}{
		{"a", time.Second, time.Second + time.Millisecond, 0},
		{"a", 2500 * time.Millisecond, 2600 * time.Millisecond, 500 * time.Millisecond},
		{"a", 4 * time.Second, 4100 * time.Millisecond, 2 * time.Second},
		{"a", 4990 * time.Millisecond, 5010 * time.Millisecond, 0},
		{"a", 9 * time.Second, 9 * time.Second, 0},
		{"b", time.Second, 2 * time.Second, -1 << 62}, // not yet added: never valid
	} {
		if got := tl.staleness(c.addr, t0.Add(c.from), t0.Add(c.to)); got != c.want {
			t.Errorf("%s in [%s, %s]: staleness %s, want %s", c.addr, c.from, c.to, got, c.want)
		}
	}
}
