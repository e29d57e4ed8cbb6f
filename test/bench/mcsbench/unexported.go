package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// cmdUnexported measures what a member's unexported Services cost the controller: its RSS and
// heap with member1 empty, then with --services Services and --slices-per-service EndpointSlices
// each that nobody exports, its reconciles meanwhile, and its CPU and reconciles for --updates
// updates of those slices. Each controller given (ours, and a baseline build) runs alone, one
// after the other, on the same data. Appends Markdown rows to --out.
func cmdUnexported(args []string) error {
	fs := flag.NewFlagSet("unexported", flag.ExitOnError)
	karmadaKC := fs.String("karmada-kubeconfig", "", "Karmada control plane kubeconfig")
	membersKC := fs.String("members-kubeconfig", "", "members kubeconfig")
	controller := fs.String("controller", "", "mcs-controller binary")
	baseline := fs.String("baseline-controller", "", "another mcs-controller binary (an earlier build), measured the same way")
	controllerArgs := fs.String("controller-args", "", "extra mcs-controller flags")
	services := fs.Int("services", 10000, "unexported Services in member1")
	perService := fs.Int("slices-per-service", 3, "EndpointSlices per Service")
	updates := fs.Int("updates", 1000, "slice updates measured")
	settle := fs.Duration("settle", 10*time.Second, "idle time before memory is read")
	portBase := fs.Int("port-base", 31240, "loopback ports (the controller's metrics and probes)")
	dir := fs.String("dir", "_output/bench", "work directory")
	out := fs.String("out", "_output/bench/unexported.md", "Markdown output (rows are appended)")
	_ = fs.Parse(args)
	if *karmadaKC == "" || *membersKC == "" || *controller == "" {
		return fmt.Errorf("--karmada-kubeconfig, --members-kubeconfig and --controller are required")
	}
	ctx := context.Background()
	cfg, err := restConfig(*membersKC, "member1")
	if err != nil {
		return err
	}
	m1 := kubernetes.NewForConfigOrDie(cfg)
	const ns = "bench-unexported"
	if err := deleteNamespace(ctx, m1, ns); err != nil {
		return err
	}
	defer func() { _ = deleteNamespace(context.Background(), m1, ns) }()

	type ctl struct{ name, bin string }
	ctls := []ctl{{"ours", *controller}}
	if *baseline != "" {
		ctls = append(ctls, ctl{"baseline", *baseline})
	}
	type result struct {
		emptyRSS, emptyHeap, fullRSS, fullHeap float64
		syncReconciles, churnReconciles        float64
		churnCPU                               float64
	}
	res := map[string]*result{}
	run := func(c ctl, phase string) (*proc, error) {
		p, err := startController(c.bin, *karmadaKC, *controllerArgs, *portBase, fmt.Sprintf("%s/mcs-controller-unexported-%s-%s.log", *dir, c.name, phase))
		if err != nil {
			return nil, err
		}
		if err := waitFor(300*time.Second, c.name+" controller ready (member caches synced)", func() (bool, error) {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", *portBase+2))
			if err != nil {
				return false, err
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK, fmt.Errorf("readyz %d", resp.StatusCode)
		}); err != nil {
			p.stop()
			return nil, err
		}
		time.Sleep(*settle)
		return p, nil
	}
	// Empty member1 (no namespace of ours: what every member holds anyway).
	for _, c := range ctls {
		p, err := run(c, "empty")
		if err != nil {
			return err
		}
		r := &result{}
		res[c.name] = r
		r.emptyRSS, r.emptyHeap = p.memory()
		p.stop()
		logf("unexported: %s controller, member1 empty: RSS %.0f MiB, heap in use %.0f MiB", c.name, r.emptyRSS, r.emptyHeap)
	}
	// The unexported data.
	t0 := time.Now()
	if _, err := m1.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := parallel(*services, func(i int) error {
		name := fmt.Sprintf("u%05d", i)
		if _, err := m1.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}},
			metav1.CreateOptions{}); err != nil {
			return err
		}
		for j := 0; j < *perService; j++ {
			if _, err := m1.DiscoveryV1().EndpointSlices(ns).Create(ctx, unexportedSlice(name, j, i, 0), metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("writing the unexported data: %w", err)
	}
	logf("unexported: %d Services and %d EndpointSlices in member1 in %.0fs", *services, *services**perService, time.Since(t0).Seconds())
	for _, c := range ctls {
		r := res[c.name]
		p, err := run(c, "full")
		if err != nil {
			return err
		}
		r.fullRSS, r.fullHeap = p.memory()
		r.syncReconciles, _ = reconcilesTotal(*portBase + 1)
		cpu0, _ := cpuSeconds(p.cmd.Process.Pid)
		rec0 := r.syncReconciles
		round := map[string]int{"ours": 1, "baseline": 2}[c.name]
		if err := parallel(*updates, func(i int) error {
			svc := i % *services
			name := fmt.Sprintf("u%05d-%d", svc, (i / *services)%*perService)
			patch := fmt.Sprintf(`{"endpoints":[{"addresses":["10.%d.%d.%d"],"conditions":{"ready":true}}]}`, 100+round, (svc/250)%250, 1+svc%250+i%3)
			_, err := m1.DiscoveryV1().EndpointSlices(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			return err
		}); err != nil {
			p.stop()
			return fmt.Errorf("updating slices: %w", err)
		}
		time.Sleep(5 * time.Second) // the last events handled
		cpu1, _ := cpuSeconds(p.cmd.Process.Pid)
		rec1, _ := reconcilesTotal(*portBase + 1)
		r.churnCPU, r.churnReconciles = cpu1-cpu0, rec1-rec0
		p.stop()
		logf("unexported: %s controller with the data: RSS %.0f MiB, heap %.0f MiB, %.0f reconciles at start; %d updates: %.2f CPU s, %.0f reconciles",
			c.name, r.fullRSS, r.fullHeap, r.syncReconciles, *updates, r.churnCPU, r.churnReconciles)
	}
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, c := range ctls {
		r := res[c.name]
		_, err = fmt.Fprintf(f, "| %s | %d / %d | %.0f → %.0f (%.2f×) | %.0f → %.0f (%.2f×) | %.0f | %.0f | %.0f |\n", c.name, *services, *services**perService,
			r.emptyRSS, r.fullRSS, r.fullRSS/r.emptyRSS, r.emptyHeap, r.fullHeap, r.fullHeap/r.emptyHeap, r.syncReconciles,
			r.churnCPU*1000*1000/float64(*updates), r.churnReconciles)
		if err != nil {
			return err
		}
	}
	return nil
}

func unexportedSlice(svc string, j, i, round int) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", svc, j), Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", 100+round, (i/250)%250, 1+i%250)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
	}
}

type proc struct {
	cmd         *exec.Cmd
	metricsPort int
	log         *os.File
	stopOnce    sync.Once
}

// startController runs an mcs-controller against the Karmada control plane, its metrics on
// port+1 and probes on port+2 (plain HTTP on loopback), alone (no leader election).
func startController(bin, karmadaKC, extra string, port int, logPath string) (*proc, error) {
	cmd := exec.Command(bin, append([]string{"--kubeconfig", karmadaKC, "--context", "karmada-apiserver", "--leader-elect=false",
		"--metrics-secure=false", fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", port+1),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", port+2)}, strings.Fields(extra)...)...)
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, err
	}
	return &proc{cmd: cmd, metricsPort: port + 1, log: log}, nil
}

// memory is the process's RSS and the Go heap in use (from its metrics), in MiB.
func (p *proc) memory() (rss, heap float64) {
	kb, _ := memKB(p.cmd.Process.Pid, "VmRSS")
	h, _ := metricValue(p.metricsPort, "go_memstats_heap_inuse_bytes")
	return float64(kb) / 1024, h / (1 << 20)
}

func (p *proc) stop() {
	p.stopOnce.Do(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.log.Close()
	})
}
