package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// hostileExport is one export a careless or hostile member can publish: endpoints × ports in
// slices of at most 1,000 endpoints, every endpoint with hostname shared (when set) or its own.
type hostileExport struct {
	name          string // the import's name
	what          string // for the table
	endpoints     int
	ports         int
	sharedHost    string
	probe, probeN int // a name that answers once the server has it, and how many A records
}

// hostileMemory measures what one hostile export adds to each server's RSS: both servers run
// side by side on an empty namespace, the export is written, and RSS is read 3 s after each
// server answers for it.
func hostileMemory(ctx context.Context, d *dataset, servers []*dnsServer, dir, cpu string, exports []hostileExport) (string, error) {
	var md strings.Builder
	fmt.Fprintf(&md, "### Memory a hostile export adds\n\nOne export written into an empty namespace of %s while both servers run; RSS 3 s after the server answers for one of its endpoints and then the service's SRV and A over TCP (`GOMAXPROCS=1`).\n\n", "member2")
	fmt.Fprintf(&md, "| export | server | RSS before, MiB | after, MiB | added, MiB | answered after, s |\n|---|---|---|---|---|---|\n")
	for _, x := range exports {
		if err := deleteNamespace(ctx, d.kube, d.ns); err != nil {
			return "", err
		}
		if _, err := d.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return "", err
		}
		for _, s := range servers {
			if err := s.start(dir, cpu); err != nil {
				return "", err
			}
		}
		stop := func() {
			for _, s := range servers {
				s.stop()
			}
		}
		before := map[string]float64{}
		for _, s := range servers {
			if err := waitRcode(s, d.fqdn(x.name), 60*time.Second); err != nil {
				stop()
				return "", err
			}
		}
		time.Sleep(3 * time.Second)
		for _, s := range servers {
			before[s.name], _ = memKB(s.pid(), "VmRSS")
		}
		t0 := time.Now()
		if err := writeHostile(ctx, d, x); err != nil {
			stop()
			return "", err
		}
		logf("hostile export %s written in %v", x.what, time.Since(t0).Round(time.Millisecond))
		for _, s := range servers {
			took := "did not answer in 120 s"
			if err := waitAnswer(s, fmt.Sprintf("%s.member1.%s.%s.svc.%s.", probeHost(x), x.name, d.ns, d.zone), dns.TypeA, x.probeN, 120*time.Second); err == nil {
				took = fmt.Sprintf("%.1f", time.Since(t0).Seconds())
			} else {
				logf("%v", err)
			}
			// The service's SRV and A over TCP: a server that computes answers on demand pays
			// for them now.
			for _, qt := range []uint16{dns.TypeSRV, dns.TypeA} {
				if _, _, err := queryTCP(s.port, d.fqdn(x.name), qt); err != nil {
					logf("%s: %s %s over TCP: %v", s.name, x.name, dns.TypeToString[qt], err)
				}
			}
			time.Sleep(3 * time.Second)
			after, _ := memKB(s.pid(), "VmRSS")
			logf("hostile export %s, %s: RSS %.1f -> %.1f MiB", x.what, s.name, before[s.name]/1024, after/1024)
			fmt.Fprintf(&md, "| %s | %s | %.1f | %.1f | %+.1f | %s |\n", x.what, s.name, before[s.name]/1024, after/1024, (after-before[s.name])/1024, took)
		}
		stop()
	}
	fmt.Fprintln(&md)
	return md.String(), deleteNamespace(ctx, d.kube, d.ns)
}

func probeHost(x hostileExport) string {
	if x.sharedHost != "" {
		return x.sharedHost
	}
	return fmt.Sprintf("pod-%d", x.probe)
}

// waitRcode waits until the server answers name with NOERROR or NXDOMAIN (synced).
func waitRcode(s *dnsServer, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if rc, _, err := query(s.port, name, dns.TypeA); err == nil && (rc == "NOERROR" || rc == "NXDOMAIN") {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s: not answering for %s after %v (log %s)", s.name, name, timeout, s.logFile)
}

func writeHostile(ctx context.Context, d *dataset, x hostileExport) error {
	if err := d.createImport(ctx, x.name, "Headless", nil); err != nil {
		return err
	}
	var ports []discoveryv1.EndpointPort
	for p := 0; p < x.ports; p++ {
		ports = append(ports, discoveryv1.EndpointPort{Name: ptr.To(fmt.Sprintf("p%d", p)), Port: ptr.To(int32(10000 + p)), Protocol: ptr.To(corev1.ProtocolTCP)})
	}
	for lo, n := 0, 0; lo < x.endpoints; lo, n = lo+1000, n+1 {
		s := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-member1-%d", x.name, n), Namespace: d.ns, Labels: map[string]string{
				"multicluster.kubernetes.io/service-name":   x.name,
				"multicluster.kubernetes.io/source-cluster": "member1",
				"endpointslice.kubernetes.io/managed-by":    "bench.coredns-mcs.io",
			}},
			AddressType: discoveryv1.AddressTypeIPv4, Ports: ports,
		}
		for i := lo; i < min(lo+1000, x.endpoints); i++ {
			host := x.sharedHost
			if host == "" {
				host = fmt.Sprintf("pod-%d", i)
			}
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.%d.%d.%d", 120+i>>16, (i>>8)&255, i&255)},
				Hostname: ptr.To(host), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
		}
		if _, err := d.kube.DiscoveryV1().EndpointSlices(d.ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("slice %s: %w", s.Name, err)
		}
	}
	return nil
}

// queryTCP asks once over TCP and returns the rcode and the number of answers.
func queryTCP(port int, name string, qtype uint16) (string, int, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	c := &dns.Client{Net: "tcp", Timeout: 30 * time.Second}
	r, _, err := c.Exchange(m, fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return "", 0, err
	}
	return dns.RcodeToString[r.Rcode], len(r.Answer), nil
}
