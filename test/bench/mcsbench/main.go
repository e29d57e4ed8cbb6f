// Command mcsbench measures coredns-mcs and the MCS controller against what users have today, on the
// local clusterset, and writes Markdown tables (hack/bench.sh = `make bench` assembles them):
//
//	mcsbench dns      coredns-mcs vs stock CoreDNS (in-tree multicluster) vs a template ceiling:
//	                  dnsperf QPS, server CPU per query, latency; RSS after sync of a large set
//	mcsbench control  our controller vs Karmada's built-in MCS controllers: export-to-answer
//	                  propagation, endpoint churn, 1,000 exports from cold
//
// Every figure is the median of alternating runs (A B A B …) with min–max; nothing is asserted.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: mcsbench dns|control|pull|fleet|unexported|bare [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "dns":
		err = cmdDNS(os.Args[2:])
	case "control":
		err = cmdControl(os.Args[2:])
	case "pull":
		err = cmdPull(os.Args[2:])
	case "fleet":
		err = cmdFleet(os.Args[2:])
	case "unexported":
		err = cmdUnexported(os.Args[2:])
	case "bare":
		err = cmdBare(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (dns, control, pull, fleet, unexported or bare)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mcsbench:", err)
		os.Exit(1)
	}
}

func restConfig(kubeconfig, context string) (*rest.Config, error) {
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 500, 1000
	// The benchmark writes thousands of objects: the apiserver's warnings about them (headless
	// Services' session affinity, say) are not its output.
	cfg.WarningHandler = rest.NoWarnings{}
	return cfg, nil
}

func cmdDNS(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "members kubeconfig")
	kctx := fs.String("context", "member2", "the member the DNS servers serve")
	ours := fs.String("ours", "", "coredns-mcs binary")
	stock := fs.String("stock", "", "stock CoreDNS binary (same version)")
	baseline := fs.String("baseline", "", "another coredns-mcs binary (an earlier build) measured beside ours in the throughput runs")
	imports := fs.Int("imports", 1000, "ClusterSetIP imports")
	headless := fs.Int("headless", 100, "headless imports")
	eps := fs.Int("endpoints", 100, "ready endpoints per headless import")
	runs := fs.Int("runs", 5, "alternating runs per figure")
	dur := fs.Duration("duration", 10*time.Second, "length of a throughput run")
	latQPS := fs.Int("latency-qps", 2000, "fixed rate of the latency runs")
	latDur := fs.Duration("latency-duration", 3*time.Second, "length of a latency run")
	memImports := fs.Int("mem-imports", 10000, "imports of the memory measurement (2 slices each)")
	memRuns := fs.Int("mem-runs", 5, "alternating runs of the memory measurement")
	hostile := fs.Int("hostile-scale", 1000, "the hostile exports: N endpoints x N ports, and 20 x N endpoints sharing one hostname (0: skip)")
	portBase := fs.Int("port-base", 31200, "first of three loopback ports for the servers")
	serverCPU := fs.String("server-cpu", "0", "core the DNS servers are pinned to")
	loadCPU := fs.String("load-cpu", "1", "core dnsperf is pinned to")
	dir := fs.String("dir", "_output/bench", "work directory")
	out := fs.String("out", "_output/bench/dns.md", "Markdown output")
	_ = fs.Parse(args)
	if *kubeconfig == "" || *ours == "" || *stock == "" {
		return fmt.Errorf("--kubeconfig, --ours and --stock are required")
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	cfg, err := restConfig(*kubeconfig, *kctx)
	if err != nil {
		return err
	}
	kube := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	ctx := context.Background()

	kc := fmt.Sprintf("kubeconfig %s %s", *kubeconfig, *kctx)
	servers := func(base int) (o, s, t *dnsServer) {
		o = &dnsServer{name: "coredns-mcs", bin: *ours, port: base, corefile: fmt.Sprintf(
			"clusterset.local:%d {\n    multicluster {\n        %s\n    }\n}\n", base, kc)}
		s = &dnsServer{name: "stock-coredns", bin: *stock, port: base + 1, corefile: fmt.Sprintf(
			"clusterset.local:%d {\n    kubernetes clusterset.local {\n        %s\n        multicluster clusterset.local\n    }\n}\n", base+1, kc)}
		t = &dnsServer{name: "template-ceiling", bin: *ours, port: base + 2, corefile: fmt.Sprintf(
			"clusterset.local:%d {\n    template IN A clusterset.local {\n        answer \"{{ .Name }} 5 IN A 10.0.0.1\"\n    }\n}\n", base+2)}
		return
	}
	// The true ceilings, in the same runs: a bare miekg/dns responder (the floor of this stack)
	// and CoreDNS's cheapest plugin path (whoami: no lookup, one record built per query).
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bare := &dnsServer{name: "bare-miekg-ceiling", port: *portBase + 4, argv: []string{self, "bare", "--port", fmt.Sprint(*portBase + 4)}}
	whoami := &dnsServer{name: "whoami-ceiling", bin: *ours, port: *portBase + 5, corefile: fmt.Sprintf("clusterset.local:%d {\n    whoami\n}\n", *portBase+5)}

	var md strings.Builder
	// --- throughput and latency -------------------------------------------------------------
	d := &dataset{ns: "bench-dns", imports: *imports, headless: *headless, eps: *eps, slicesPerImport: 1, kube: kube, dyn: dyn, zone: "clusterset.local"}
	if err := d.create(ctx); err != nil {
		return fmt.Errorf("dataset: %w", err)
	}
	mixes, err := d.writeMixes(*dir)
	if err != nil {
		return err
	}
	o, s, t := servers(*portBase)
	all, answering := []*dnsServer{o, s, t, bare, whoami}, []*dnsServer{o, s}
	var b *dnsServer
	if *baseline != "" {
		b = &dnsServer{name: "coredns-mcs-baseline", bin: *baseline, port: *portBase + 3, corefile: strings.Replace(o.corefile,
			fmt.Sprintf(":%d {", o.port), fmt.Sprintf(":%d {", *portBase+3), 1)}
		all, answering = append(all, b), append(answering, b)
	}
	for _, srv := range all {
		if err := srv.start(*dir, *serverCPU); err != nil {
			return err
		}
		defer srv.stop()
	}
	for _, srv := range answering {
		if err := waitAnswer(srv, d.fqdn(d.csipName(d.imports-1)), dns.TypeA, 1, 120*time.Second); err != nil {
			return err
		}
		if d.headless > 0 {
			if err := waitAnswer(srv, d.fqdn(d.headlessSvcName(d.headless-1)), dns.TypeA, d.eps, 120*time.Second); err != nil {
				return err
			}
		}
	}
	for _, c := range []*dnsServer{t, bare, whoami} {
		n := 1
		if c == whoami {
			n = 0 // whoami answers in the additional section
		}
		if err := waitAnswer(c, "x.clusterset.local.", dns.TypeA, n, 30*time.Second); err != nil {
			return err
		}
	}
	// Same questions, same answers? (Records compared as sets; differences are reported.)
	var diffs []string
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{d.fqdn(d.csipName(0)), dns.TypeA}, {d.fqdn(d.csipName(d.imports / 2)), dns.TypeA},
		{"_http._tcp." + d.fqdn(d.csipName(1)), dns.TypeSRV}, {d.fqdn("nx-00001"), dns.TypeA},
		{d.fqdn(d.headlessSvcName(0)), dns.TypeA},
	} {
		rc1, a1, e1 := query(o.port, q.name, q.qtype)
		rc2, a2, e2 := query(s.port, q.name, q.qtype)
		if e1 != nil || e2 != nil || rc1 != rc2 || strings.Join(a1, "|") != strings.Join(a2, "|") {
			diffs = append(diffs, fmt.Sprintf("`%s %s`: coredns-mcs %s %d records, stock %s %d records (errors: %v, %v)",
				q.name, dns.TypeToString[q.qtype], rc1, len(a1), rc2, len(a2), e1, e2))
		}
	}

	fmt.Fprintf(&md, "### DNS throughput and latency\n\n")
	fmt.Fprintf(&md, "Data in %s: %d ClusterSetIP imports (`spec.ips` set, 1 slice each), %d headless imports with %d ready endpoints each. "+
		"Servers pinned to core %s with GOMAXPROCS=1, dnsperf (`-e -c 4 -q 200`) to core %s; %d alternating runs of %v per server and mix; "+
		"latency runs at a fixed %d qps for %v with per-query times (`-v`).\n\n",
		*kctx, d.imports, d.headless, d.eps, *serverCPU, *loadCPU, *runs, *dur, *latQPS, *latDur)
	if len(diffs) == 0 {
		fmt.Fprintf(&md, "Answers checked before measuring: coredns-mcs and stock CoreDNS give the same rcode and records for a sample of every mix.\n\n")
	} else {
		fmt.Fprintf(&md, "Answers that differ between the servers (checked before measuring):\n\n")
		for _, l := range diffs {
			fmt.Fprintf(&md, "- %s\n", l)
		}
		fmt.Fprintln(&md)
	}
	fmt.Fprintf(&md, "| mix | server | QPS | ratio to stock | server CPU µs/query | p50 / p99 ms at %d qps | dnsperf CPU share | rcodes |\n|---|---|---|---|---|---|---|---|\n", *latQPS)
	for i, m := range mixes {
		order := []*dnsServer{o, s}
		if b != nil {
			order = append(order, b)
		}
		if i == 0 {
			order = append(order, t, whoami, bare)
		}
		qps := map[string]sample{}
		cpu := map[string]sample{}
		load := map[string]sample{}
		p50 := map[string]sample{}
		p99 := map[string]sample{}
		codes := map[string]string{}
		for r := 0; r < *runs; r++ {
			for j := range order {
				srv := order[(j+r)%len(order)] // alternate who goes first
				res, err := runDNSPerf(*loadCPU, srv, m, *dur, 0, false)
				if err != nil {
					return err
				}
				qps[srv.name] = append(qps[srv.name], res.qps)
				cpu[srv.name] = append(cpu[srv.name], res.serverCPUPerQueryUS)
				load[srv.name] = append(load[srv.name], res.loadCPUShare)
				codes[srv.name] = res.rcodes
				lat, err := runDNSPerf(*loadCPU, srv, m, *latDur, *latQPS, true)
				if err != nil {
					return err
				}
				p50[srv.name] = append(p50[srv.name], quantile(lat.latencies, 0.5))
				p99[srv.name] = append(p99[srv.name], quantile(lat.latencies, 0.99))
				logf("%s / %s run %d: %.0f qps, %.1f µs CPU/query, dnsperf CPU %.0f%%, p50 %.3f ms p99 %.3f ms",
					m.name, srv.name, r+1, res.qps, res.serverCPUPerQueryUS, res.loadCPUShare*100, quantile(lat.latencies, 0.5), quantile(lat.latencies, 0.99))
			}
		}
		for _, srv := range order {
			rat := ratio(qps[srv.name], qps[s.name])
			if srv == t || srv == whoami || srv == bare {
				// At equal server CPU: queries per CPU-second, ours against the ceiling's.
				rat = "ours = " + ratio(qps[o.name], qps[srv.name]) + " of its QPS, " + ratio(cpu[srv.name], cpu[o.name]) + " of its queries per CPU-second"
			}
			if srv == b {
				rat += "; ours = " + ratio(qps[o.name], qps[b.name]) + " of it"
			}
			fmt.Fprintf(&md, "| %s | %s | %s | %s | %s | %s / %s | %s | %s |\n", m.name, srv.name,
				fmtRange(qps[srv.name], "%.0f"), rat, fmtRange(cpu[srv.name], "%.1f"),
				fmtRange(p50[srv.name], "%.3f"), fmtRange(p99[srv.name], "%.3f"), fmtRange(load[srv.name], "%.2f"), codes[srv.name])
		}
	}
	fmt.Fprintf(&md, "\nA dnsperf CPU share near 1.00 means the load generator, not the server, was the limit of that run; "+
		"the server CPU per query is then the better comparison.\n\n")
	for _, srv := range all {
		srv.stop()
	}

	// --- memory after sync ---------------------------------------------------------------------
	if *memImports > 0 {
		logf("memory: removing %s, writing %d imports with 2 slices each", d.ns, *memImports)
		if err := deleteNamespace(ctx, kube, d.ns); err != nil {
			return err
		}
		dm := &dataset{ns: "bench-mem", imports: *memImports, slicesPerImport: 2, kube: kube, dyn: dyn, zone: "clusterset.local"}
		if err := dm.create(ctx); err != nil {
			return err
		}
		rss := map[string]sample{}
		syncT := map[string]sample{}
		for r := 0; r < *memRuns; r++ {
			o, s, _ := servers(*portBase)
			pair := []*dnsServer{o, s}
			if r%2 == 1 {
				pair = []*dnsServer{s, o}
			}
			for _, srv := range pair {
				t0 := time.Now()
				if err := srv.start(*dir, *serverCPU); err != nil {
					return err
				}
				err := waitAnswer(srv, dm.fqdn(dm.csipName(dm.imports-1)), dns.TypeA, 1, 180*time.Second)
				if err != nil {
					srv.stop()
					return err
				}
				syncT[srv.name] = append(syncT[srv.name], time.Since(t0).Seconds())
				time.Sleep(3 * time.Second)
				kb, err := memKB(srv.pid(), "VmRSS")
				srv.stop()
				if err != nil {
					return err
				}
				rss[srv.name] = append(rss[srv.name], kb/1024)
				logf("memory run %d %s: %.1f MiB RSS, answering after %.1fs", r+1, srv.name, kb/1024, syncT[srv.name][len(syncT[srv.name])-1])
			}
		}
		fmt.Fprintf(&md, "### Memory after sync\n\n%d ClusterSetIP imports with 2 EndpointSlices each (%d slices) in %s; RSS 3 s after the last import answers; %d alternating starts each.\n\n",
			dm.imports, 2*dm.imports, *kctx, *memRuns)
		fmt.Fprintf(&md, "| server | RSS MiB | ratio to stock | start to last import answered, s |\n|---|---|---|---|\n")
		for _, n := range []string{"coredns-mcs", "stock-coredns"} {
			fmt.Fprintf(&md, "| %s | %s | %s | %s |\n", n, fmtRange(rss[n], "%.1f"), ratio(rss[n], rss["stock-coredns"]), fmtRange(syncT[n], "%.1f"))
		}
		fmt.Fprintln(&md)
		if err := deleteNamespace(ctx, kube, dm.ns); err != nil {
			logf("deleting %s: %v", dm.ns, err)
		}
	} else {
		_ = deleteNamespace(ctx, kube, d.ns)
	}
	if *hostile > 0 {
		o, s, _ := servers(*portBase)
		dh := &dataset{ns: "bench-hostile", kube: kube, dyn: dyn, zone: "clusterset.local"}
		n := *hostile
		part, err := hostileMemory(ctx, dh, []*dnsServer{o, s}, *dir, *serverCPU, []hostileExport{
			{name: "huge", what: fmt.Sprintf("%d endpoints x %d ports", n, n), endpoints: n, ports: n, probe: n - 1, probeN: 1},
			{name: "db", what: fmt.Sprintf("%d endpoints sharing hostname db", 20*n), endpoints: 20 * n, ports: 1, sharedHost: "db", probeN: -1},
		})
		if err != nil {
			return err
		}
		md.WriteString(part)
	}
	return os.WriteFile(*out, []byte(md.String()), 0o644)
}

func deleteNamespace(ctx context.Context, kube kubernetes.Interface, ns string) error {
	if err := kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("deleting namespace %s: %w", ns, err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		if _, err := kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
			return nil
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("namespace %s not gone after 5 minutes", ns)
}
