package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
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

// cmdFleet measures what N members cost: on a running clusterset of N Push members, K services
// exported from member1 are imported automatically by all N; converged when every member has
// every derived slice with its endpoint. Reported: the time, the controller's reconciles (in all,
// per export, per export and member), its peak RSS and CPU, and coredns-mcs's RSS in member2 once
// it answers every name. Appends one Markdown table row to --out.
func cmdFleet(args []string) error {
	fs := flag.NewFlagSet("fleet", flag.ExitOnError)
	karmadaKC := fs.String("karmada-kubeconfig", "", "Karmada control plane kubeconfig")
	membersKC := fs.String("members-kubeconfig", "", "members kubeconfig (member1..memberN)")
	n := fs.Int("members", 2, "members (member1..memberN)")
	controller := fs.String("controller", "", "mcs-controller binary")
	controllerArgs := fs.String("controller-args", "", "extra mcs-controller flags")
	ours := fs.String("coredns", "", "coredns-mcs binary")
	services := fs.Int("services", 20, "services exported from member1")
	portBase := fs.Int("port-base", 29230, "loopback ports (coredns-mcs, the controller's metrics and probes)")
	dir := fs.String("dir", "_output/bench", "work directory")
	out := fs.String("out", "_output/bench/fleet.md", "Markdown output (a row is appended)")
	_ = fs.Parse(args)
	if *karmadaKC == "" || *membersKC == "" || *controller == "" || *ours == "" {
		return fmt.Errorf("--karmada-kubeconfig, --members-kubeconfig, --controller and --coredns are required")
	}
	ctx := context.Background()
	ns := "bench-fleet"
	var kube []kubernetes.Interface
	var m1dyn dynamic.Interface
	for i := 1; i <= *n; i++ {
		cfg, err := restConfig(*membersKC, fmt.Sprintf("member%d", i))
		if err != nil {
			return err
		}
		c := kubernetes.NewForConfigOrDie(cfg)
		kube = append(kube, c)
		if i == 1 {
			m1dyn = dynamic.NewForConfigOrDie(cfg)
		}
		if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("namespace in member%d: %w", i, err)
		}
	}
	// The exports first, then the controller: converging is the controller's work only.
	seGVR := schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceexports"}
	for i := 0; i < *services; i++ {
		name := fmt.Sprintf("f%03d", i)
		if _, err := kube[0].CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}, metav1.CreateOptions{}); err != nil {
			return err
		}
		if _, err := kube[0].DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{fmt.Sprintf("10.10.%d.%d", 100+i/250, 1+i%250)}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		}, metav1.CreateOptions{}); err != nil {
			return err
		}
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
			"metadata": map[string]any{"name": name, "namespace": ns}}}
		if _, err := m1dyn.Resource(seGVR).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	metrics := *portBase + 1
	start := time.Now()
	ctrl, err := startController(*controller, *karmadaKC, *controllerArgs, *portBase, fmt.Sprintf("%s/mcs-controller-fleet-%d.log", *dir, *n))
	if err != nil {
		return err
	}
	defer ctrl.stop()
	want := *services * *n
	err = waitFor(300*time.Second, fmt.Sprintf("%d derived slices with an endpoint in %d members", want, *n), func() (bool, error) {
		have := 0
		for _, c := range kube {
			list, err := c.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "endpointslice.kubernetes.io/managed-by=mcs-controller.coredns-mcs.io"})
			if err != nil {
				return false, err
			}
			for _, s := range list.Items {
				if len(s.Endpoints) > 0 {
					have++
				}
			}
		}
		return have >= want, fmt.Errorf("%d of %d", have, want)
	})
	if err != nil {
		return err
	}
	conv := time.Since(start).Seconds()
	time.Sleep(3 * time.Second) // the status writes after the last import
	pid := ctrl.cmd.Process.Pid
	peak, _ := memKB(pid, "VmHWM")
	cpu, _ := cpuSeconds(pid)
	reconciles, err := reconcilesTotal(metrics)
	if err != nil {
		return err
	}
	// coredns-mcs in member2 once it answers every name.
	s := &dnsServer{name: fmt.Sprintf("coredns-mcs-fleet-%d", *n), bin: *ours, port: *portBase, corefile: fmt.Sprintf(
		"clusterset.local:%d {\n    multicluster {\n        kubeconfig %s member2\n    }\n}\n", *portBase, *membersKC)}
	if err := s.start(*dir, "0-1"); err != nil {
		return err
	}
	defer s.stop()
	if err := waitFor(120*time.Second, "coredns-mcs in member2 answers every name", func() (bool, error) {
		for i := 0; i < *services; i++ {
			rc, a, err := query(*portBase, fmt.Sprintf("f%03d.%s.svc.clusterset.local.", i, ns), dns.TypeA)
			if err != nil || rc != "NOERROR" || len(a) == 0 {
				return false, fmt.Errorf("f%03d: %s %v %v", i, rc, a, err)
			}
		}
		return true, nil
	}); err != nil {
		return err
	}
	dnsRSS, _ := memKB(s.pid(), "VmRSS")
	logf("fleet %d members: %d exports converged in %.1fs, %0.f reconciles, controller peak RSS %.0f MiB, %.1f CPU s; coredns-mcs RSS %.0f MiB",
		*n, *services, conv, reconciles, float64(peak)/1024, cpu, float64(dnsRSS)/1024)
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "| %d | %d | %.1f | %.0f | %.1f | %.2f | %.0f | %.1f | %.0f |\n", *n, *services, conv, reconciles,
		reconciles/float64(*services), reconciles/float64(*services)/float64(*n), float64(peak)/1024, cpu, float64(dnsRSS)/1024)
	return err
}

// reconcilesTotal counts the reconciles of exported services (controller-runtime's count of the
// mcs-service controller, over its results); those of Clusters (mcs-cluster) are not per export.
func reconcilesTotal(port int) (float64, error) {
	return metricValueWhere(port, "controller_runtime_reconcile_total", `controller="mcs-service"`)
}

// metricValueWhere sums the series of name whose labels contain label; an error when none.
func metricValueWhere(port int, name, label string) (float64, error) {
	total, n, err := metricSum(port, name, label)
	if err == nil && n == 0 {
		err = fmt.Errorf("no series %s{%s}", name, label)
	}
	return total, err
}

// metricValue sums metric name over its series on the plain-HTTP metrics endpoint at port (0
// when it has none).
func metricValue(port int, name string) (float64, error) {
	total, _, err := metricSum(port, name, "")
	return total, err
}

// metricSum sums the series of name whose labels contain label (every series when label is
// empty) on the plain-HTTP metrics endpoint at port, and counts them.
func metricSum(port int, name, label string) (total float64, series int, err error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		labels, ok := strings.CutPrefix(l, name+"{")
		if ok {
			labels = labels[:strings.IndexByte(labels+"}", '}')]
		} else if !strings.HasPrefix(l, name+" ") {
			continue
		}
		if label != "" && !strings.Contains(labels, label) {
			continue
		}
		f := strings.Fields(l)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			total, series = total+v, series+1
		}
	}
	return total, series, sc.Err()
}
