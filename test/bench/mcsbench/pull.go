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

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// cmdPull measures, in one run, export → DNS answer in a Push importer (member2) and in a Pull
// importer (member3, read through its mcs-agent's reports and written to through Karmada's
// agent): services exported in member1 back to back, imported automatically by both, each
// importer's coredns-mcs polled for the name.
func cmdPull(args []string) error {
	fs := flag.NewFlagSet("pull", flag.ExitOnError)
	karmadaKC := fs.String("karmada-kubeconfig", "", "Karmada control plane kubeconfig")
	membersKC := fs.String("members-kubeconfig", "", "members kubeconfig (member1, member2, member3)")
	controller := fs.String("controller", "", "mcs-controller binary")
	controllerArgs := fs.String("controller-args", "", "extra mcs-controller flags")
	ours := fs.String("coredns", "", "coredns-mcs binary")
	services := fs.Int("services", 50, "services exported back to back")
	portBase := fs.Int("port-base", 31220, "loopback ports of the two coredns-mcs")
	dir := fs.String("dir", "_output/bench", "work directory")
	out := fs.String("out", "_output/bench/pull.md", "Markdown output")
	_ = fs.Parse(args)
	if *karmadaKC == "" || *membersKC == "" || *controller == "" || *ours == "" {
		return fmt.Errorf("--karmada-kubeconfig, --members-kubeconfig, --controller and --coredns are required")
	}
	ctx := context.Background()
	cfg, err := restConfig(*membersKC, "member1")
	if err != nil {
		return err
	}
	m1, m1dyn := kubernetes.NewForConfigOrDie(cfg), dynamic.NewForConfigOrDie(cfg)
	importers := []string{"member2", "member3"}
	var servers []*dnsServer
	for i, m := range importers {
		s := &dnsServer{name: "coredns-mcs-" + m, bin: *ours, port: *portBase + i, corefile: fmt.Sprintf(
			"clusterset.local:%d {\n    multicluster {\n        kubeconfig %s %s\n    }\n}\n", *portBase+i, *membersKC, m)}
		if err := s.start(*dir, "0-1"); err != nil {
			return err
		}
		defer s.stop()
		servers = append(servers, s)
	}
	ctrl := exec.Command(*controller, append([]string{"--kubeconfig", *karmadaKC, "--context", "karmada-apiserver", "--leader-elect=false",
		"--metrics-bind-address=0", fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", *portBase+5)}, strings.Fields(*controllerArgs)...)...)
	log, err := os.Create(*dir + "/mcs-controller-pull.log")
	if err != nil {
		return err
	}
	ctrl.Stdout, ctrl.Stderr = log, log
	if err := ctrl.Start(); err != nil {
		return err
	}
	defer func() { _ = ctrl.Process.Kill(); _ = ctrl.Wait() }()

	ns := "bench-pull"
	for _, m := range []string{"member1", "member2", "member3"} {
		c, err := restConfig(*membersKC, m)
		if err != nil {
			return err
		}
		if _, err := kubernetes.NewForConfigOrDie(c).CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("namespace in %s: %w", m, err)
		}
	}
	if err := waitFor(60*time.Second, "the controller ready", func() (bool, error) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", *portBase+5))
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("readyz %d", resp.StatusCode)
	}); err != nil {
		return err
	}
	seGVR := schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceexports"}
	n := *services
	t0 := make([]time.Time, n)
	at := make([][]time.Time, len(importers))
	for i := range at {
		at[i] = make([]time.Time, n)
	}
	var mu sync.Mutex
	done := make(chan struct{})
	var wg sync.WaitGroup
	for k := range importers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				left := 0
				for i := 0; i < n; i++ {
					mu.Lock()
					started, seen := !t0[i].IsZero(), !at[k][i].IsZero()
					mu.Unlock()
					if !started || seen {
						left += map[bool]int{true: 0, false: 1}[seen]
						continue
					}
					left++
					if rc, a, err := query(servers[k].port, fmt.Sprintf("p%03d.%s.svc.clusterset.local.", i, ns), dns.TypeA); err == nil && rc == "NOERROR" && len(a) > 0 {
						mu.Lock()
						at[k][i] = time.Now()
						mu.Unlock()
					}
				}
				if left == 0 {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("p%03d", i)
		if _, err := m1.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		if _, err := m1.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{fmt.Sprintf("10.10.%d.%d", 100+i/250, 1+i%250)}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
		mu.Lock()
		t0[i] = time.Now()
		mu.Unlock()
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
			"metadata": map[string]any{"name": name, "namespace": ns}}}
		if _, err := m1dyn.Resource(seGVR).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(180 * time.Second):
		close(done)
		<-finished
	}
	var md strings.Builder
	fmt.Fprintf(&md, "### Pull vs Push importer: ServiceExport in member1 → `dig` answers in the importer\n\n")
	fmt.Fprintf(&md, "%d services exported from member1 back to back (Service, EndpointSlice, ServiceExport written in the member), imported automatically "+
		"by member2 (Push: the controller reads and Karmada writes through its apiserver) and member3 (Pull: read from its mcs-agent's reports, "+
		"written by karmada-agent from its Works); coredns-mcs of each importer polled every 20 ms. The same run for both; "+
		"both include the controller's 3 s wait before importing automatically (a template may follow the export).\n\n", n)
	fmt.Fprintf(&md, "| importer | answered | p50 ms | p99 ms |\n|---|---|---|---|\n")
	for k, m := range importers {
		var obs []float64
		for i := 0; i < n; i++ {
			if !at[k][i].IsZero() {
				obs = append(obs, float64(at[k][i].Sub(t0[i]).Milliseconds()))
			}
		}
		mode := map[string]string{"member2": "member2 (Push)", "member3": "member3 (Pull)"}[m]
		fmt.Fprintf(&md, "| %s | %d/%d | %.0f | %.0f |\n", mode, len(obs), n, quantile(obs, .5), quantile(obs, .99))
		logf("pull bench: %s answered %d/%d, p50 %.0f ms p99 %.0f ms", mode, len(obs), n, quantile(obs, .5), quantile(obs, .99))
	}
	fmt.Fprintln(&md)
	return os.WriteFile(*out, []byte(md.String()), 0o644)
}
