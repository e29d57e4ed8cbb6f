//go:build e2e

package integration

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

var importGVR = schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceimports"}

// createImport writes a ServiceImport of type typ (Headless or ClusterSetIP) into member2.
func createImport(t testing.TB, ns, name, typ string) {
	t.Helper()
	if err := createImportErr(t, ns, name, typ); err != nil {
		t.Fatal(err)
	}
}

func createImportErr(t testing.TB, ns, name, typ string) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec":     map[string]any{"type": typ, "ports": []any{map[string]any{"name": "http", "port": int64(80), "protocol": "TCP"}}},
	}}
	if _, err := env.Dynamic(t, clusterset.Member2).Resource(importGVR).Namespace(ns).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create ServiceImport %s/%s: %w", ns, name, err)
	}
	return nil
}

// mcsSlice is an EndpointSlice as the controller mirrors it into an importer.
func mcsSlice(ns, svc, name string, ports []discoveryv1.EndpointPort, eps []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{
			"multicluster.kubernetes.io/service-name":   svc,
			"multicluster.kubernetes.io/source-cluster": "member1",
			"endpointslice.kubernetes.io/managed-by":    "dns-integration-test",
		}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: ports, Endpoints: eps,
	}
}

func readyEndpoint(host, ip string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}
	if host != "" {
		e.Hostname = ptr.To(host)
	}
	return e
}

// member2Namespace creates namespace ns in member2 for the test (deleted at its end) and returns
// a client of member2.
func member2Namespace(t *testing.T, ns string) kubernetes.Interface {
	t.Helper()
	kc := env.Client(t, clusterset.Member2)
	t.Cleanup(func() {
		env.Run(clusterset.Member2, "", "delete", "namespace", ns, "--ignore-not-found", "--wait=false")
	})
	if _, err := kc.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return kc
}

// rssKiB is the resident set of process pid.
func rssKiB(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestHostileExportOnRealAPIServer: one export of 1,000 endpoints × 1,000 ports, applied to a real
// kube-apiserver, costs coredns-mcs a few MiB (it held a SRV record per endpoint × port: ~400 MiB
// of RSS); and clients without EDNS0 never get an empty NOERROR for a name that has records (the
// 40 endpoints sharing hostname db, plus 2 others).
func TestHostileExportOnRealAPIServer(t *testing.T) {
	env.PropagateMCSCRDs(t)
	const ns = "dns-hostile"
	ctx := context.Background()
	kc := member2Namespace(t, ns)
	dns := env.StartMemberDNS(t, clusterset.Member2)
	server := dns.Addr

	t.Run("1000 endpoints x 1000 ports", func(t *testing.T) {
		var ports []discoveryv1.EndpointPort
		for i := 0; i < 1000; i++ {
			ports = append(ports, discoveryv1.EndpointPort{Name: ptr.To("p" + strconv.Itoa(i)), Port: ptr.To(int32(10000 + i)), Protocol: ptr.To(corev1.ProtocolTCP)})
		}
		var eps []discoveryv1.Endpoint
		for i := 0; i < 1000; i++ {
			eps = append(eps, readyEndpoint("pod-"+strconv.Itoa(i), fmt.Sprintf("10.10.%d.%d", 100+i/250, 1+i%250)))
		}
		time.Sleep(2 * time.Second) // let the start-up garbage settle before measuring
		before := rssKiB(t, dns.Pid())
		createImport(t, ns, "huge", "Headless")
		if _, err := kc.DiscoveryV1().EndpointSlices(ns).Create(ctx, mcsSlice(ns, "huge", "huge-member1", ports, eps), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create the 1000 x 1000 slice: %v", err)
		}
		expectDig(t, 30*time.Second, server, "pod-999.member1.huge."+ns+".svc.clusterset.local.", "A", "NOERROR", "10.10.103.250")
		// UDP without EDNS0: a subset that fits 512 bytes, never empty, never truncated.
		r := clusterset.Dig(t, server, "huge."+ns+".svc.clusterset.local.", "SRV", "+noedns", "+ignore")
		if r.Status != "NOERROR" || len(r.Answers) == 0 || digTC(r) {
			t.Errorf("SRV over UDP: %s, %d answers, tc=%v:\n%s", r.Status, len(r.Answers), digTC(r), r.Raw)
		}
		r = clusterset.Dig(t, server, "_p999._tcp.huge."+ns+".svc.clusterset.local.", "SRV", "+tcp")
		if r.Status != "NOERROR" || len(r.Answers) < 500 || !strings.HasPrefix(r.Answers[0], "0 1 10999 pod-") {
			t.Errorf("_p999 over TCP: %s, %d answers (%v…)", r.Status, len(r.Answers), r.Answers[:min(2, len(r.Answers))])
		}
		time.Sleep(2 * time.Second)
		after := rssKiB(t, dns.Pid())
		t.Logf("coredns-mcs RSS %d MiB before, %d MiB after the 1000 x 1000 export (+%d MiB)", before/1024, after/1024, (after-before)/1024)
		if grown := after - before; grown > 64*1024 {
			t.Errorf("the export grew coredns-mcs by %d MiB, want at most 64 MiB (it took ~400 MiB before the fix)", grown/1024)
		}
	})

	t.Run("no empty NOERROR without EDNS0", func(t *testing.T) {
		createImport(t, ns, "shared", "Headless")
		var eps []discoveryv1.Endpoint
		for i := 0; i < 40; i++ {
			eps = append(eps, readyEndpoint("db", fmt.Sprintf("10.10.110.%d", i+1)))
		}
		eps = append(eps, readyEndpoint("other-1", "10.10.111.1"), readyEndpoint("other-2", "10.10.111.2"))
		http := []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(8080)), Protocol: ptr.To(corev1.ProtocolTCP)}}
		if _, err := kc.DiscoveryV1().EndpointSlices(ns).Create(ctx, mcsSlice(ns, "shared", "shared-member1", http, eps), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		expectDig(t, 30*time.Second, server, "other-2.member1.shared."+ns+".svc.clusterset.local.", "A", "NOERROR", "10.10.111.2")
		empty := 0
		for c := 1; c <= 50; c++ {
			src := fmt.Sprintf("127.0.%d.%d", 100+c/200, 1+c%200)
			for _, q := range []struct{ name, qtype string }{
				{"shared." + ns + ".svc.clusterset.local.", "A"},
				{"shared." + ns + ".svc.clusterset.local.", "SRV"},
				{"_http._tcp.shared." + ns + ".svc.clusterset.local.", "SRV"},
				{"db.member1.shared." + ns + ".svc.clusterset.local.", "A"},
			} {
				r := clusterset.Dig(t, server, q.name, q.qtype, "+noedns", "+ignore", "-b", src)
				if r.Status != "NOERROR" || (len(r.Answers) == 0 && !digTC(r)) {
					empty++
					t.Errorf("client %s, %s %s: %s with %d answers and no TC:\n%s", src, q.name, q.qtype, r.Status, len(r.Answers), r.Raw)
				}
			}
		}
		t.Logf("50 clients without EDNS0, 4 names each: %d empty answers", empty)
	})
}

// digTC reports whether dig saw the TC flag.
func digTC(r clusterset.DigResult) bool {
	for _, line := range strings.Split(r.Raw, "\n") {
		if i := strings.Index(line, ";; flags:"); i >= 0 {
			flags := strings.SplitN(line[i+len(";; flags:"):], ";", 2)[0]
			for _, f := range strings.Fields(flags) {
				if f == "tc" {
					return true
				}
			}
		}
	}
	return false
}
