package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

var (
	seGVR   = schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceexports"}
	ppGVR   = schema.GroupVersionResource{Group: "policy.karmada.io", Version: "v1alpha1", Resource: "propagationpolicies"}
	workGVR = schema.GroupVersionResource{Group: "work.karmada.io", Version: "v1alpha1", Resource: "works"}
	rbGVR   = schema.GroupVersionResource{Group: "work.karmada.io", Version: "v1alpha2", Resource: "resourcebindings"}
)

type controlBench struct {
	karmada, m1, m2        kubernetes.Interface
	kdyn, m1dyn, m2dyn     dynamic.Interface
	clusterset, controller string
	controllerArgs         []string
	// lastMode: the controller of the previous propagation run; pending: its cleanup, which
	// runs while the next run of the same controller sets up (none of it overlaps a measurement).
	lastMode string
	// hops: per mode, the times (ms after the export was applied) of the hops in between
	// (scheduled: the export's binding placed; works: our first Work for member2 written).
	hops                 map[string]map[string][]float64
	pending              sync.WaitGroup
	karmadaKC, membersKC string
	dir                  string
	ours                 *exec.Cmd
	oursMode             string // the mode b.ours was started for (landed: --declared-timeout=0)
	dnsPort              int
	dns                  *dnsServer
}

func cmdControl(args []string) error {
	fs := flag.NewFlagSet("control", flag.ExitOnError)
	karmadaKC := fs.String("karmada-kubeconfig", "", "Karmada control plane kubeconfig (context karmada-apiserver)")
	membersKC := fs.String("members-kubeconfig", "", "members kubeconfig (contexts member1, member2)")
	controller := fs.String("controller", "", "mcs-controller binary")
	controllerArgs := fs.String("controller-args", "", "extra mcs-controller flags, space-separated (client limits, say)")
	ours := fs.String("coredns", "", "coredns-mcs binary (DNS answers on member2)")
	clusterset := fs.String("clusterset", "hack/clusterset.sh", "hack/clusterset.sh, to switch Karmada's built-in MCS controllers")
	services := fs.Int("services", 50, "services exported back to back per propagation run")
	runs := fs.Int("runs", 5, "alternating propagation runs per controller")
	churn := fs.Int("churn", 4, "pod IP changes measured per propagation run")
	landed := fs.Bool("landed", true, "also run ours with the declared path off (--declared-timeout=0: it waits for the export to land in member1), to isolate that path's effect")
	bundle := fs.Bool("bundle", true, "also run ours with --work-layout=bundle (one Work per importer and service), to measure fewer Works")
	scale := fs.Int("scale", 1000, "exports of the from-cold scale run (0: skip)")
	scaleKarmada := fs.Int("scale-karmada", 200, "exports of Karmada's from-cold scale run (0: skip): setting them up goes through Karmada's propagation, minutes per thousand")
	scaleRuns := fs.Int("scale-runs", 1, "alternating scale runs per controller")
	dnsPort := fs.Int("dns-port", 31210, "loopback port of coredns-mcs for member2")
	dir := fs.String("dir", "_output/bench", "work directory")
	out := fs.String("out", "_output/bench/control.md", "Markdown output")
	_ = fs.Parse(args)
	if *karmadaKC == "" || *membersKC == "" || *controller == "" || *ours == "" {
		return fmt.Errorf("--karmada-kubeconfig, --members-kubeconfig, --controller and --coredns are required")
	}
	b := &controlBench{clusterset: *clusterset, controller: *controller, controllerArgs: strings.Fields(*controllerArgs), karmadaKC: *karmadaKC, membersKC: *membersKC, dir: *dir, dnsPort: *dnsPort}
	for _, c := range []struct {
		kc, ctx string
		dst     *kubernetes.Interface
		dyn     *dynamic.Interface
	}{{*karmadaKC, "karmada-apiserver", &b.karmada, &b.kdyn}, {*membersKC, "member1", &b.m1, &b.m1dyn}, {*membersKC, "member2", &b.m2, &b.m2dyn}} {
		cfg, err := restConfig(c.kc, c.ctx)
		if err != nil {
			return err
		}
		*c.dst = kubernetes.NewForConfigOrDie(cfg)
		*c.dyn = dynamic.NewForConfigOrDie(cfg)
	}
	ctx := context.Background()
	b.dns = &dnsServer{name: "coredns-mcs-member2", bin: *ours, port: *dnsPort, corefile: fmt.Sprintf(
		"clusterset.local:%d {\n    multicluster {\n        kubeconfig %s member2\n    }\n}\n", *dnsPort, *membersKC)}
	if err := b.dns.start(*dir, "0-1"); err != nil {
		return err
	}
	defer b.dns.stop()
	defer b.stopOurs()
	defer func() { _ = b.switchKarmadaMCS("off") }()

	var md strings.Builder
	// --- propagation and churn ------------------------------------------------------------------
	prop := map[string][]float64{}
	seHop := map[string][]float64{}
	own := map[string][]float64{}
	propDNS := map[string][]float64{}
	churnObs := map[string][]float64{}
	for r := 0; r < *runs; r++ {
		modes := []string{"ours", "karmada"}
		if *landed {
			modes = append(modes, oursLanded)
		}
		if *bundle {
			modes = append(modes, oursBundle)
		}
		if r%2 == 1 {
			slices.Reverse(modes)
		}
		for _, mode := range modes {
			ns := fmt.Sprintf("bench-prop-%s-%d", mode, r)
			eps, dnsT, ch, hop, o, err := b.propagationRun(ctx, mode, ns, *services, *churn)
			if err != nil {
				return fmt.Errorf("propagation run %s %d: %w", mode, r+1, err)
			}
			prop[mode] = append(prop[mode], eps...)
			seHop[mode] = append(seHop[mode], hop...)
			own[mode] = append(own[mode], o...)
			propDNS[mode] = append(propDNS[mode], dnsT...)
			churnObs[mode] = append(churnObs[mode], ch...)
			logf("propagation %s run %d: ServiceExport in member1 p50 %.0f ms; derived slices with endpoints in member2 p50 %.0f ms p99 %.0f ms (after the export reached member1: p50 %.0f ms); DNS p50 %.0f ms; churn p50 %.0f ms",
				mode, r+1, quantile(hop, .5), quantile(eps, .5), quantile(eps, .99), quantile(o, .5), quantile(dnsT, .5), quantile(ch, .5))
		}
	}
	b.pending.Wait()
	fmt.Fprintf(&md, "### Propagation: ServiceExport applied on Karmada → member2\n\n")
	fmt.Fprintf(&md, "%d services per run (Deployment + Service → member1, ServiceImport → member2, all in place), then their ServiceExports applied back to back; "+
		"%d runs per controller, alternating; percentiles over all services of all runs (n = %d each).\n\n", *services, *runs, len(prop["ours"]))
	fmt.Fprintf(&md, "| controller | ServiceExport reached member1 (Karmada's propagation, before any MCS controller acts), p50 / p99 ms | `derived-<svc>` slice with a ready endpoint in member2, p50 / p99 ms | of that, after the export reached member1 (the MCS controller's part), p50 / p99 ms | `dig` via coredns-mcs on member2 answers, p50 / p99 ms |\n|---|---|---|---|---|\n")
	oursRows := []string{"ours"}
	if *landed {
		oursRows = append(oursRows, oursLanded)
	}
	if *bundle {
		oursRows = append(oursRows, oursBundle)
	}
	for _, m := range oursRows {
		fmt.Fprintf(&md, "| %s | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f |\n", modeTitle[m], quantile(seHop[m], .5), quantile(seHop[m], .99),
			quantile(prop[m], .5), quantile(prop[m], .99), quantile(own[m], .5), quantile(own[m], .99), quantile(propDNS[m], .5), quantile(propDNS[m], .99))
	}
	fmt.Fprintf(&md, "| Karmada v1.16 built-in MCS | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f | — (stock CoreDNS has no answer for Karmada's imports: empty `spec.ips`) |\n",
		quantile(seHop["karmada"], .5), quantile(seHop["karmada"], .99), quantile(prop["karmada"], .5), quantile(prop["karmada"], .99), quantile(own["karmada"], .5), quantile(own["karmada"], .99))
	fmt.Fprintf(&md, "\nRatio ours / Karmada, end to end: p50 %.2f×, p99 %.2f×; after the export reached member1: p50 %.2f×, p99 %.2f×.\n\n",
		quantile(prop["ours"], .5)/quantile(prop["karmada"], .5), quantile(prop["ours"], .99)/quantile(prop["karmada"], .99),
		quantile(own["ours"], .5)/quantile(own["karmada"], .5), quantile(own["ours"], .99)/quantile(own["karmada"], .99))
	if *landed {
		fmt.Fprintf(&md, "With the declared path off (ours waits for the export to land): end to end p50 %.2f×, p99 %.2f× Karmada's; "+
			"the export's own propagation to member1 p50 %.0f ms vs %.0f ms with the declared path on and %.0f ms with Karmada's controllers.\n\n",
			quantile(prop[oursLanded], .5)/quantile(prop["karmada"], .5), quantile(prop[oursLanded], .99)/quantile(prop["karmada"], .99),
			quantile(seHop[oursLanded], .5), quantile(seHop["ours"], .5), quantile(seHop["karmada"], .5))
	}
	fmt.Fprintf(&md, "Where the time goes, p50 / p99 ms after the ServiceExport was applied on Karmada: the scheduler placing it (its ResourceBinding gets `spec.clusters`), "+
		"our first Work for member2 written, the export in member1, the derived slice in member2.\n\n")
	fmt.Fprintf(&md, "| controller | scheduled | our Work written | export in member1 | derived slice in member2 |\n|---|---|---|---|---|\n")
	for _, m := range append(slices.Clone(oursRows), "karmada") {
		works := "—"
		if isOurs(m) {
			works = fmt.Sprintf("%.0f / %.0f", quantile(b.hops[m]["works"], .5), quantile(b.hops[m]["works"], .99))
		}
		fmt.Fprintf(&md, "| %s | %.0f / %.0f | %s | %.0f / %.0f | %.0f / %.0f |\n", modeTitle[m], quantile(b.hops[m]["scheduled"], .5), quantile(b.hops[m]["scheduled"], .99),
			works, quantile(seHop[m], .5), quantile(seHop[m], .99), quantile(prop[m], .5), quantile(prop[m], .99))
	}
	fmt.Fprintln(&md)
	fmt.Fprintf(&md, "Our controller's writes per export in these runs (its metrics, from the first export applied to 3 s after the last import; mean per run): ")
	for i, m := range oursRows {
		if i > 0 {
			fmt.Fprintf(&md, "; ")
		}
		fmt.Fprintf(&md, "%s: %s Work writes, %s status writes", modeTitle[m], fmtList(b.hops[m]["workWrites"]), fmtList(b.hops[m]["statusWrites"]))
	}
	fmt.Fprintf(&md, ".\n\n")
	fmt.Fprintf(&md, "### Endpoint churn: a pod IP change in member1 → member2's imported slice\n\n")
	fmt.Fprintf(&md, "A service scaled from 1 to 2 pods; time from member1's EndpointSlice listing the new pod IP to member2's derived slice listing it. %d per run.\n\n", *churn)
	fmt.Fprintf(&md, "| controller | n | p50 ms | p99 ms |\n|---|---|---|---|\n")
	for _, m := range append(oursRows, "karmada") {
		fmt.Fprintf(&md, "| %s | %d | %.0f | %.0f |\n", modeTitle[m],
			len(churnObs[m]), quantile(churnObs[m], .5), quantile(churnObs[m], .99))
	}
	fmt.Fprintln(&md)

	// --- scale from cold -----------------------------------------------------------------------
	if *scale > 0 {
		conv := map[string]sample{}
		rate := map[string]sample{}
		rss := map[string]sample{}
		cpu := map[string]sample{}
		worksAt := map[string]sample{}
		failed := map[string][]string{}
		for r := 0; r < *scaleRuns; r++ {
			// Karmada's first: its built-in controllers stalled (no derived slices, its
			// controller-manager idle) in two runs made right after ours; not understood yet.
			modes := []string{"karmada", "ours"}
			if *bundle {
				modes = append(modes, oursBundle)
			}
			if r%2 == 1 {
				slices.Reverse(modes)
			}
			for _, mode := range modes {
				size := map[string]int{"ours": *scale, oursBundle: *scale, "karmada": *scaleKarmada}[mode]
				if size == 0 {
					continue
				}
				c, m, p, ws, err := b.scaleRun(ctx, mode, fmt.Sprintf("bench-scale-%s-%d", mode, r), size)
				if err != nil {
					// Reported in the table, not fatal: the other sections stay.
					logf("scale run %s %d failed: %v", mode, r+1, err)
					failed[mode] = append(failed[mode], fmt.Sprintf("run %d: %v", r+1, err))
					continue
				}
				conv[mode] = append(conv[mode], c)
				rate[mode] = append(rate[mode], float64(size)/c)
				rss[mode] = append(rss[mode], m)
				cpu[mode] = append(cpu[mode], p)
				worksAt[mode] = append(worksAt[mode], ws)
				logf("scale %s run %d: %d exports converged in %.1fs, peak RSS %.0f MiB, %.1f CPU s", mode, r+1, size, c, m, p)
			}
		}
		fmt.Fprintf(&md, "### Scale: exports to 2 importers, from cold\n\n")
		fmt.Fprintf(&md, "Every Service (selector-less, 1 endpoint), ServiceExport (member1) and ServiceImport (member1 and member2) in place, then the controller started; "+
			"converged when both members have a `derived-<svc>` slice with the endpoint for every service. %d run(s) per controller. "+
			"Our controller gets its objects written straight into the members; Karmada's built-in controllers need them propagated from the control plane, "+
			"which takes minutes per thousand objects here, hence its smaller set. Our controller writes 2 Works per export and importer (derived Service, "+
			"mirrored slice) that Karmada's execution controller applies: converged minus \"Works all written\" is Karmada's part.\n\n", *scaleRuns)
		fmt.Fprintf(&md, "| controller | exports | converge s | its own Works all written, s | exports/s | peak RSS MiB | CPU s |\n|---|---|---|---|---|---|---|\n")
		fmt.Fprintf(&md, "| ours (mcs-controller process) | %d | %s | %s | %s | %s | %s |\n", *scale, fmtRange(conv["ours"], "%.1f"), fmtRange(worksAt["ours"], "%.1f"), fmtRange(rate["ours"], "%.1f"), fmtRange(rss["ours"], "%.0f"), fmtRange(cpu["ours"], "%.1f"))
		if *bundle {
			fmt.Fprintf(&md, "| ours, `--work-layout=bundle` (1 Work per export and importer) | %d | %s | %s | %s | %s | %s |\n", *scale, fmtRange(conv[oursBundle], "%.1f"), fmtRange(worksAt[oursBundle], "%.1f"), fmtRange(rate[oursBundle], "%.1f"), fmtRange(rss[oursBundle], "%.0f"), fmtRange(cpu[oursBundle], "%.1f"))
		}
		fmt.Fprintf(&md, "| Karmada v1.16 built-in MCS (whole karmada-controller-manager) | %d | %s | — | %s | %s | %s |\n", *scaleKarmada, fmtRange(conv["karmada"], "%.1f"), fmtRange(rate["karmada"], "%.1f"), fmtRange(rss["karmada"], "%.0f"), fmtRange(cpu["karmada"], "%.1f"))
		for _, mode := range []string{"ours", oursBundle, "karmada"} {
			for _, f := range failed[mode] {
				fmt.Fprintf(&md, "\n**%s: a scale run failed** (not in the figures): %s\n", mode, f)
			}
		}
		fmt.Fprintf(&md, "\nKarmada's figures are those of its whole controller-manager process (every controller it runs), from its restart with the MCS controllers on.\n\n")
	}
	return os.WriteFile(*out, []byte(md.String()), 0o644)
}

// switchKarmadaMCS runs hack/clusterset.sh up with CMCS_KARMADA_MCS (restarts only Karmada's
// controller-manager when the setting changes).
func (b *controlBench) switchKarmadaMCS(v string) error {
	cmd := exec.Command(b.clusterset, "up")
	cmd.Env = append(os.Environ(), "CMCS_KARMADA_MCS="+v)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("CMCS_KARMADA_MCS=%s %s up: %v\n%s", v, b.clusterset, err, out)
	}
	return nil
}

func (b *controlBench) hop(mode, name string, v float64) {
	if b.hops == nil {
		b.hops = map[string]map[string][]float64{}
	}
	if b.hops[mode] == nil {
		b.hops[mode] = map[string][]float64{}
	}
	b.hops[mode][name] = append(b.hops[mode][name], v)
}

func fmtList(v []float64) string {
	var out []string
	for _, x := range v {
		out = append(out, fmt.Sprintf("%.1f", x))
	}
	return strings.Join(out, " / ")
}

func (b *controlBench) metricsPort() int { return b.dnsPort + 5 }

// writes reads our controller's Karmada and member writes so far: Works written (created,
// updated, deleted) and status writes.
func (b *controlBench) writes() (works, status float64) {
	works, _ = metricValue(b.metricsPort(), "coredns_mcs_controller_work_writes_total")
	status, _ = metricValue(b.metricsPort(), "coredns_mcs_controller_status_writes_total")
	return works, status
}

// oursLanded is our controller with the declared path off: it acts once the export landed;
// oursBundle ours with the bundle Work layout.
const (
	oursLanded = "ours-landed"
	oursBundle = "ours-bundle"
)

var modeTitle = map[string]string{"ours": "ours (mcs-controller)", oursLanded: "ours, declared path off (`--declared-timeout=0`)", oursBundle: "ours, one Work per importer and service (`--work-layout=bundle`)",
	"karmada": "Karmada v1.16 built-in MCS"}

// isOurs: mode runs our controller (with or without the declared path).
func isOurs(mode string) bool { return mode == "ours" || mode == oursLanded || mode == oursBundle }

func (b *controlBench) startOurs(mode string) error {
	if b.ours != nil && b.oursMode == mode {
		return nil
	}
	b.stopOurs()
	b.oursMode = mode
	// Metrics on plain HTTP beside the DNS port: the writes per export are read from them.
	args := append([]string{"--kubeconfig", b.karmadaKC, "--leader-elect=false",
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", b.metricsPort()), "--metrics-secure=false", "--health-probe-bind-address=0"}, b.controllerArgs...)
	if mode == oursBundle {
		args = append(args, "--work-layout=bundle")
	}
	if mode == oursLanded {
		args = append(args, "--declared-timeout=0") // the last flag wins
	}
	f, err := os.OpenFile(filepath.Join(b.dir, "mcs-controller.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	b.ours = exec.Command(b.controller, args...)
	b.ours.Stdout, b.ours.Stderr = f, f
	b.ours.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return b.ours.Start()
}

func (b *controlBench) stopOurs() {
	if b.ours != nil {
		_ = syscall.Kill(-b.ours.Process.Pid, syscall.SIGTERM)
		_ = b.ours.Wait()
		b.ours = nil
	}
}

// use makes mode's controller the only one running.
func (b *controlBench) use(mode string) error {
	if isOurs(mode) {
		if err := b.switchKarmadaMCS("off"); err != nil {
			return err
		}
		return b.startOurs(mode)
	}
	b.stopOurs()
	return b.switchKarmadaMCS("on")
}

func (b *controlBench) apply(ctx context.Context, gvr schema.GroupVersionResource, ns string, obj map[string]any) error {
	u := &unstructured.Unstructured{Object: obj}
	_, err := b.kdyn.Resource(gvr).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func policy(name string, kinds [][2]string, clusters ...string) map[string]any {
	var sel []any
	for _, k := range kinds {
		sel = append(sel, map[string]any{"apiVersion": k[0], "kind": k[1]})
	}
	var cl []any
	for _, c := range clusters {
		cl = append(cl, c)
	}
	return map[string]any{"apiVersion": "policy.karmada.io/v1alpha1", "kind": "PropagationPolicy",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"resourceSelectors": sel, "placement": map[string]any{"clusterAffinity": map[string]any{"clusterNames": cl}}}}
}

func mcsObject(kind, name string, spec map[string]any) map[string]any {
	o := map[string]any{"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": kind, "metadata": map[string]any{"name": name}}
	if spec != nil {
		o["spec"] = spec
	}
	return o
}

func siSpec() map[string]any {
	return map[string]any{"type": "ClusterSetIP", "ports": []any{map[string]any{"port": int64(80), "protocol": "TCP"}}}
}

// namespace creates ns on Karmada after removing whatever an earlier run left there.
func (b *controlBench) namespace(ctx context.Context, ns string) error {
	for _, c := range []kubernetes.Interface{b.karmada, b.m1, b.m2} {
		if err := deleteNamespace(ctx, c, ns); err != nil {
			return err
		}
	}
	_, err := b.karmada.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	return err
}

// cleanup deletes ns everywhere and waits, so the next controller never sees this run's objects.
// The three deletions run in parallel (deleting it on Karmada deletes it in the members too).
func (b *controlBench) cleanup(ctx context.Context, ns string, ours bool) {
	t0 := time.Now()
	var wg sync.WaitGroup
	for _, c := range []kubernetes.Interface{b.karmada, b.m1, b.m2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := deleteNamespace(ctx, c, ns); err != nil {
				logf("cleanup %s: %v", ns, err)
			}
		}()
	}
	wg.Wait()
	// Our controller deletes its Works once the exports are gone; it must not be stopped
	// before (left behind, they kept Karmada's execution controller busy in the next run).
	if ours {
		for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(time.Second) {
			l, err := b.kdyn.Resource(workGVR).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
				LabelSelector: "mcs.coredns-mcs.io/service-namespace=" + ns})
			if err == nil && len(l.Items) == 0 {
				break
			}
			if time.Now().After(deadline) {
				logf("cleanup %s: our Works still there after 5 minutes (%v)", ns, err)
				break
			}
		}
	}
	logf("cleanup %s: %.0fs", ns, time.Since(t0).Seconds())
}

// sliceWatch records, per derived service, when member2 (or another member) first had a slice
// of it with a ready endpoint, and every address seen.
type sliceWatch struct {
	mu    sync.Mutex
	first map[string]time.Time            // service-name label value -> time
	addrs map[string]map[string]time.Time // service -> address -> first seen
	stop  chan struct{}
}

func watchSlices(c kubernetes.Interface, ns string) (*sliceWatch, error) {
	w := &sliceWatch{first: map[string]time.Time{}, addrs: map[string]map[string]time.Time{}, stop: make(chan struct{})}
	f := informers.NewSharedInformerFactoryWithOptions(c, 0, informers.WithNamespace(ns))
	inf := f.Discovery().V1().EndpointSlices().Informer()
	seen := func(obj any) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return
		}
		svc := s.Labels["kubernetes.io/service-name"]
		now := time.Now()
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			if _, ok := w.first[svc]; !ok {
				w.first[svc] = now
			}
			if w.addrs[svc] == nil {
				w.addrs[svc] = map[string]time.Time{}
			}
			for _, a := range e.Addresses {
				if _, ok := w.addrs[svc][a]; !ok {
					w.addrs[svc][a] = now
				}
			}
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: seen, UpdateFunc: func(_, n any) { seen(n) }})
	f.Start(w.stop)
	if !cache.WaitForCacheSync(w.stop, inf.HasSynced) {
		return nil, fmt.Errorf("slice informer did not sync")
	}
	return w, nil
}

// watchNames records when each object of gvr in ns first appeared in a member.
// watchNames records when each object of gvr in ns (every namespace when empty: keys are then
// namespace/name) matching selector was first seen.
func watchNames(d dynamic.Interface, gvr schema.GroupVersionResource, ns, selector string) (*sliceWatch, error) {
	return watchKeyed(d, gvr, ns, selector, func(u *unstructured.Unstructured) string {
		if ns == metav1.NamespaceAll {
			return u.GetNamespace() + "/" + u.GetName()
		}
		return u.GetName()
	})
}

// watchKeyed records when keyOf first returned a key ("" : not yet) for an object of gvr in ns
// matching selector, added or updated.
func watchKeyed(d dynamic.Interface, gvr schema.GroupVersionResource, ns, selector string, keyOf func(*unstructured.Unstructured) string) (*sliceWatch, error) {
	w := &sliceWatch{first: map[string]time.Time{}, stop: make(chan struct{})}
	f := dynamicinformer.NewFilteredDynamicSharedInformerFactory(d, 0, ns, func(o *metav1.ListOptions) { o.LabelSelector = selector })
	inf := f.ForResource(gvr).Informer()
	seen := func(obj any) {
		if u, ok := obj.(*unstructured.Unstructured); ok {
			key := keyOf(u)
			if key == "" {
				return
			}
			w.mu.Lock()
			if _, ok := w.first[key]; !ok {
				w.first[key] = time.Now()
			}
			w.mu.Unlock()
		}
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: seen, UpdateFunc: func(_, n any) { seen(n) }})
	f.Start(w.stop)
	if !cache.WaitForCacheSync(w.stop, inf.HasSynced) {
		return nil, fmt.Errorf("%s informer did not sync", gvr.Resource)
	}
	return w, nil
}

func (w *sliceWatch) firstSeen(svc string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.first[svc]
	return t, ok
}

func (w *sliceWatch) addrSeen(svc, addr string) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t, ok := w.addrs[svc][addr]
	return t, ok
}

func waitFor(timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s (last error: %v)", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func svcName(i int) string { return fmt.Sprintf("svc-%04d", i) }

// propagationRun measures, for n services, export-to-endpoints in member2 (and to a DNS answer
// with our controller), then churn pod IP changes.
func (b *controlBench) propagationRun(ctx context.Context, mode, ns string, n, churn int) (eps, dnsT, ch, seHop, own []float64, err error) {
	setup := time.Now()
	if mode != b.lastMode {
		// Switching stops our controller or restarts Karmada's: the previous run's namespace
		// (and our Works) must be gone first.
		b.pending.Wait()
	}
	if err := b.use(mode); err != nil {
		return nil, nil, nil, nil, nil, err
	}
	b.lastMode = mode
	if err := b.namespace(ctx, ns); err != nil {
		return nil, nil, nil, nil, nil, err
	}
	defer func() {
		b.pending.Add(1)
		go func() {
			defer b.pending.Done()
			b.cleanup(ctx, ns, isOurs(mode))
		}()
	}()
	if err := b.apply(ctx, ppGVR, ns, policy("workload", [][2]string{{"apps/v1", "Deployment"}, {"v1", "Service"}}, "member1")); err != nil {
		return nil, nil, nil, nil, nil, err
	}
	if err := b.apply(ctx, ppGVR, ns, policy("exports", [][2]string{{"multicluster.x-k8s.io/v1alpha1", "ServiceExport"}}, "member1")); err != nil {
		return nil, nil, nil, nil, nil, err
	}
	if err := b.apply(ctx, ppGVR, ns, policy("imports", [][2]string{{"multicluster.x-k8s.io/v1alpha1", "ServiceImport"}}, "member2")); err != nil {
		return nil, nil, nil, nil, nil, err
	}
	for i := 0; i < n; i++ {
		name := svcName(i)
		labels := map[string]string{"app": name}
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](1), Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					// No grace period: the cleanup after each run does not wait 30 s per pod.
					Spec: corev1.PodSpec{TerminationGracePeriodSeconds: ptr.To[int64](0),
						Containers: []corev1.Container{{Name: "serve", Image: "registry.k8s.io/pause:3.10"}}}}}}
		if _, err := b.karmada.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			return nil, nil, nil, nil, nil, err
		}
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ServiceSpec{Selector: labels,
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
		if _, err := b.karmada.CoreV1().Services(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return nil, nil, nil, nil, nil, err
		}
		if err := b.apply(ctx, siGVR, ns, mcsObject("ServiceImport", name, siSpec())); err != nil {
			return nil, nil, nil, nil, nil, err
		}
	}
	src, err := watchSlices(b.m1, ns)
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	defer close(src.stop)
	if err := waitFor(180*time.Second, fmt.Sprintf("member1 slices with endpoints for %d services in %s", n, ns), func() (bool, error) {
		for i := 0; i < n; i++ {
			if _, ok := src.firstSeen(svcName(i)); !ok {
				return false, fmt.Errorf("%s has none", svcName(i))
			}
		}
		return true, nil
	}); err != nil {
		return nil, nil, nil, nil, nil, err
	}
	b.pending.Wait() // the previous run's cleanup, before anything is measured
	logf("propagation %s %s: %d services running in member1 (and the previous run cleaned up) after %.0fs", mode, ns, n, time.Since(setup).Seconds())
	dst, err := watchSlices(b.m2, ns)
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	defer close(dst.stop)
	seW, err := watchNames(b.m1dyn, seGVR, ns, "")
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	defer close(seW.stop)
	// The hops in between: Karmada's scheduler placing the ServiceExport template (its binding
	// gets spec.clusters), and our Works for member2 written (ours only).
	schedW, err := watchKeyed(b.kdyn, rbGVR, ns, "", func(u *unstructured.Unstructured) string {
		kind, _, _ := unstructured.NestedString(u.Object, "spec", "resource", "kind")
		clusters, _, _ := unstructured.NestedSlice(u.Object, "spec", "clusters")
		if kind != "ServiceExport" || len(clusters) == 0 {
			return ""
		}
		name, _, _ := unstructured.NestedString(u.Object, "spec", "resource", "name")
		return name
	})
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	defer close(schedW.stop)
	worksW, err := watchKeyed(b.kdyn, workGVR, "karmada-es-member2", mcs.LabelWorkNamespace+"="+ns, func(u *unstructured.Unstructured) string {
		return u.GetLabels()[mcs.LabelWorkName]
	})
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	defer close(worksW.stop)

	// Export back to back; DNS answers are polled meanwhile (ours only), every 20 ms for the
	// services whose ServiceExport has reached member1 (none can answer before): polling every
	// name flat out took enough of the 2 cores to slow Karmada's own propagation in our runs only.
	t0 := make([]time.Time, n)
	dnsAt := make([]time.Time, n)
	var wg sync.WaitGroup
	done := make(chan struct{})
	if isOurs(mode) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pending := n
			for pending > 0 {
				select {
				case <-done:
					return
				default:
				}
				pending = 0
				for i := 0; i < n; i++ {
					if !dnsAt[i].IsZero() {
						continue
					}
					pending++
					if _, ok := seW.firstSeen(svcName(i)); !ok {
						continue
					}
					if rc, a, err := query(b.dnsPort, fmt.Sprintf("%s.%s.svc.clusterset.local.", svcName(i), ns), dns.TypeA); err == nil && rc == "NOERROR" && len(a) > 0 {
						dnsAt[i] = time.Now()
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	var works0, status0 float64
	if isOurs(mode) {
		works0, status0 = b.writes()
	}
	for i := 0; i < n; i++ {
		t0[i] = time.Now()
		if err := b.apply(ctx, seGVR, ns, mcsObject("ServiceExport", svcName(i), nil)); err != nil {
			close(done)
			return nil, nil, nil, nil, nil, err
		}
	}
	err = waitFor(120*time.Second, fmt.Sprintf("member2 derived slices with endpoints for %d services (%s)", n, mode), func() (bool, error) {
		for i := 0; i < n; i++ {
			if _, ok := dst.firstSeen("derived-" + svcName(i)); !ok {
				return false, fmt.Errorf("derived-%s has none", svcName(i))
			}
		}
		return true, nil
	})
	if err == nil && isOurs(mode) {
		err = waitFor(30*time.Second, "DNS answers for every service", func() (bool, error) {
			for i := 0; i < n; i++ {
				if dnsAt[i].IsZero() {
					return false, nil
				}
			}
			return true, nil
		})
	}
	close(done)
	wg.Wait()
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	if isOurs(mode) {
		time.Sleep(3 * time.Second) // the status writes that follow the last import
		works1, status1 := b.writes()
		b.hop(mode, "workWrites", (works1-works0)/float64(n))
		b.hop(mode, "statusWrites", (status1-status0)/float64(n))
	}
	for i := 0; i < n; i++ {
		t, _ := dst.firstSeen("derived-" + svcName(i))
		eps = append(eps, ms(t.Sub(t0[i])))
		if ts, ok := seW.firstSeen(svcName(i)); ok {
			seHop = append(seHop, ms(ts.Sub(t0[i])))
			own = append(own, ms(t.Sub(ts)))
		}
		if isOurs(mode) {
			dnsT = append(dnsT, ms(dnsAt[i].Sub(t0[i])))
		}
		if ts, ok := schedW.firstSeen(svcName(i)); ok {
			b.hop(mode, "scheduled", ms(ts.Sub(t0[i])))
		}
		if ts, ok := worksW.firstSeen(svcName(i)); ok && isOurs(mode) {
			b.hop(mode, "works", ms(ts.Sub(t0[i])))
		}
	}

	// Churn: service k scaled from 1 to 2 replicas on Karmada; the new pod's IP, from member1's
	// slice to member2's derived slice. (A deleted pod's replacement gets the same IP from kwok.)
	for k := 0; k < churn && k < n; k++ {
		name := svcName(k)
		known := map[string]bool{}
		src.mu.Lock()
		for a := range src.addrs[name] {
			known[a] = true
		}
		src.mu.Unlock()
		if _, err := b.karmada.AppsV1().Deployments(ns).Patch(ctx, name, types.MergePatchType, []byte(`{"spec":{"replicas":2}}`), metav1.PatchOptions{}); err != nil {
			return nil, nil, nil, nil, nil, err
		}
		var newIP string
		if err := waitFor(60*time.Second, "a new pod IP of "+name+" in member1's slice", func() (bool, error) {
			src.mu.Lock()
			defer src.mu.Unlock()
			for a := range src.addrs[name] {
				if !known[a] {
					newIP = a
					return true, nil
				}
			}
			return false, nil
		}); err != nil {
			return nil, nil, nil, nil, nil, err
		}
		ta, _ := src.addrSeen(name, newIP)
		if err := waitFor(60*time.Second, "member2's derived slice of "+name+" with "+newIP, func() (bool, error) {
			_, ok := dst.addrSeen("derived-"+name, newIP)
			return ok, nil
		}); err != nil {
			return nil, nil, nil, nil, nil, err
		}
		tb, _ := dst.addrSeen("derived-"+name, newIP)
		ch = append(ch, ms(tb.Sub(ta)))
	}
	return eps, dnsT, ch, seHop, own, nil
}

// scaleRun: n selector-less Services with one endpoint each, exported from member1 and imported by
// member1 and member2, all in place with no MCS controller running; then mode's controller is
// started and the time until every importer has every derived slice is measured.
//
// For our controller the objects are written straight into the members (it reads exports and
// imports there, wherever they came from). Karmada's built-in controllers need the ServiceImports
// on the Karmada control plane, so for them everything goes through Karmada with propagation
// policies, which at Karmada's default client limits takes minutes per thousand objects.
func (b *controlBench) scaleRun(ctx context.Context, mode, ns string, n int) (conv, rssMiB, cpuS, worksS float64, err error) {
	b.stopOurs()
	if err := b.switchKarmadaMCS("off"); err != nil {
		return 0, 0, 0, 0, err
	}
	if err := b.namespace(ctx, ns); err != nil {
		return 0, 0, 0, 0, err
	}
	// Deferred calls run last first: the namespace is cleaned up while mode's controller still
	// runs (so it removes its own Works and derived objects), then the controller is stopped.
	defer func() { _ = b.switchKarmadaMCS("off") }()
	defer b.stopOurs()
	defer b.cleanup(ctx, ns, isOurs(mode))
	t0 := time.Now()
	service := func(i int) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: svcName(i)}, Spec: corev1.ServiceSpec{
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}}}
	}
	if isOurs(mode) {
		for _, c := range []kubernetes.Interface{b.m1, b.m2} {
			if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return 0, 0, 0, 0, err
			}
		}
		err := parallel(n, func(i int) error {
			if _, err := b.m1.CoreV1().Services(ns).Create(ctx, service(i), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			for _, x := range []struct {
				d    dynamic.Interface
				gvr  schema.GroupVersionResource
				kind string
				spec map[string]any
			}{{b.m1dyn, seGVR, "ServiceExport", nil}, {b.m1dyn, siGVR, "ServiceImport", siSpec()}, {b.m2dyn, siGVR, "ServiceImport", siSpec()}} {
				u := &unstructured.Unstructured{Object: mcsObject(x.kind, svcName(i), x.spec)}
				if _, err := x.d.Resource(x.gvr).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, 0, 0, 0, err
		}
	} else {
		for _, p := range []map[string]any{
			policy("services", [][2]string{{"v1", "Service"}, {"multicluster.x-k8s.io/v1alpha1", "ServiceExport"}}, "member1"),
			policy("imports", [][2]string{{"multicluster.x-k8s.io/v1alpha1", "ServiceImport"}}, "member1", "member2"),
		} {
			if err := b.apply(ctx, ppGVR, ns, p); err != nil {
				return 0, 0, 0, 0, err
			}
		}
		err := parallel(n, func(i int) error {
			if _, err := b.karmada.CoreV1().Services(ns).Create(ctx, service(i), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			if err := b.apply(ctx, seGVR, ns, mcsObject("ServiceExport", svcName(i), nil)); err != nil {
				return err
			}
			return b.apply(ctx, siGVR, ns, mcsObject("ServiceImport", svcName(i), siSpec()))
		})
		if err != nil {
			return 0, 0, 0, 0, err
		}
		if err := waitFor(900*time.Second, fmt.Sprintf("Karmada to propagate %d Services to member1 and ServiceImports to member2", n), func() (bool, error) {
			s, err := b.m1.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
			if err != nil || len(s.Items) < n {
				return false, err
			}
			si, err := b.m2dyn.Resource(siGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			return len(si.Items) >= n, nil
		}); err != nil {
			return 0, 0, 0, 0, err
		}
	}
	err = parallel(n, func(i int) error {
		name := svcName(i)
		s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Labels: map[string]string{
			"kubernetes.io/service-name": name, "endpointslice.kubernetes.io/managed-by": "bench.coredns-mcs.io"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{fmt.Sprintf("10.10.%d.%d", 100+i/250, i%250+1)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}}}
		_, err := b.m1.DiscoveryV1().EndpointSlices(ns).Create(ctx, s, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return 0, 0, 0, 0, err
	}
	logf("scale %s: %d exports in place in %.0fs", mode, n, time.Since(t0).Seconds())
	w1, err := watchSlices(b.m1, ns)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer close(w1.stop)
	w2, err := watchSlices(b.m2, ns)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer close(w2.stop)

	// Our controller's Works (its labels name the service's namespace), to tell its own part
	// (writing them) from Karmada's (applying them).
	works, err := watchNames(b.kdyn, workGVR, metav1.NamespaceAll, "mcs.coredns-mcs.io/service-namespace="+ns)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer close(works.stop)
	start := time.Now()
	var pid int
	var cpu0 float64
	if isOurs(mode) {
		if err := b.startOurs(mode); err != nil {
			return 0, 0, 0, 0, err
		}
		pid = b.ours.Process.Pid
	} else {
		if err := b.switchKarmadaMCS("on"); err != nil {
			return 0, 0, 0, 0, err
		}
		raw, err := os.ReadFile(filepath.Join(filepath.Dir(b.karmadaKC), "pids", "karmada-controller-manager.pid"))
		if err != nil {
			return 0, 0, 0, 0, err
		}
		pid, _ = strconv.Atoi(strings.TrimSpace(string(raw)))
	}
	peak := 0.0
	err = waitFor(300*time.Second, fmt.Sprintf("%d derived slices in member1 and member2 (%s)", n, mode), func() (bool, error) {
		if kb, err := memKB(pid, "VmHWM"); err == nil && kb > peak {
			peak = kb
		}
		for i := 0; i < n; i++ {
			d := "derived-" + svcName(i)
			if _, ok := w1.firstSeen(d); !ok {
				return false, nil
			}
			if _, ok := w2.firstSeen(d); !ok {
				return false, nil
			}
		}
		return true, nil
	})
	conv = time.Since(start).Seconds()
	cpu1, _ := cpuSeconds(pid)
	if kb, e := memKB(pid, "VmHWM"); e == nil && kb > peak {
		peak = kb
	}
	if err != nil {
		return 0, 0, 0, 0, err
	}
	if isOurs(mode) {
		works.mu.Lock()
		var last time.Time
		for _, t := range works.first {
			if t.After(last) {
				last = t
			}
		}
		logf("scale ours: %d Works written, the last %.1fs after the start", len(works.first), last.Sub(start).Seconds())
		worksS = last.Sub(start).Seconds()
		works.mu.Unlock()
	}
	return conv, peak / 1024, cpu1 - cpu0, worksS, nil
}
