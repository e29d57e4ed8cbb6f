package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

var siGVR = schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceimports"}

// dnsServer is one CoreDNS process under test, pinned to the server core.
type dnsServer struct {
	name, bin, corefile, logFile string
	port                         int
	cmd                          *exec.Cmd
	// argv: a server that is not CoreDNS (the bare responder), started as is.
	argv []string
}

func (s *dnsServer) start(dir, cpu string) error {
	conf := filepath.Join(dir, "Corefile."+s.name)
	if err := os.WriteFile(conf, []byte(s.corefile), 0o644); err != nil {
		return err
	}
	s.logFile = filepath.Join(dir, s.name+".log")
	out, err := os.Create(s.logFile)
	if err != nil {
		return err
	}
	argv := []string{s.bin, "-conf", conf}
	if s.argv != nil {
		argv = s.argv
	}
	s.cmd = exec.Command("taskset", append([]string{"-c", cpu}, argv...)...)
	s.cmd.Env = append(os.Environ(), "GOMAXPROCS=1")
	s.cmd.Stdout, s.cmd.Stderr = out, out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return s.cmd.Start()
}

func (s *dnsServer) pid() int { return s.cmd.Process.Pid }

func (s *dnsServer) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		_ = s.cmd.Wait()
	}
}

// query asks the server once and returns the rcode and the answer RRs' data, sorted.
func query(port int, name string, qtype uint16) (string, []string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(4096, false)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return "", nil, err
	}
	var data []string
	for _, rr := range r.Answer {
		h := rr.Header()
		data = append(data, strings.TrimPrefix(rr.String(), h.String()))
	}
	sort.Strings(data)
	return dns.RcodeToString[r.Rcode], data, nil
}

// waitAnswer polls until name has an answer with n records (any number if n < 0): the server has it.
func waitAnswer(s *dnsServer, name string, qtype uint16, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if s.cmd.ProcessState != nil {
			return fmt.Errorf("%s exited; log %s", s.name, s.logFile)
		}
		rc, data, err := query(s.port, name, qtype)
		if err == nil && rc == "NOERROR" && (len(data) == n || (n < 0 && len(data) > 0)) {
			return nil
		}
		last = fmt.Sprintf("%s %d records (err=%v)", rc, len(data), err)
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s: %s %s not answered with %d records in %v (last: %s; log %s)", s.name, name, dns.TypeToString[qtype], n, timeout, last, s.logFile)
}

// dataset is what the DNS servers serve, written into one member's apiserver.
type dataset struct {
	ns                     string
	imports, headless, eps int
	slicesPerImport        int
	kube                   kubernetes.Interface
	dyn                    dynamic.Interface
	zone                   string
}

func (d *dataset) csipName(i int) string        { return fmt.Sprintf("svc-%05d", i) }
func (d *dataset) headlessSvcName(i int) string { return fmt.Sprintf("hl-%03d", i) }
func (d *dataset) fqdn(svc string) string       { return fmt.Sprintf("%s.%s.svc.%s.", svc, d.ns, d.zone) }

// create writes the imports and slices (idempotent), with parallel workers.
func (d *dataset) create(ctx context.Context) error {
	t0 := time.Now()
	if _, err := d.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	err := parallel(d.imports+d.headless, func(i int) error {
		if i < d.imports {
			svc := d.csipName(i)
			vip := fmt.Sprintf("10.%d.%d.%d", 200+i/65536, (i/256)%256, i%256)
			if err := d.createImport(ctx, svc, "ClusterSetIP", []string{vip}); err != nil {
				return err
			}
			for s := 0; s < d.slicesPerImport; s++ {
				if err := d.createSlice(ctx, svc, s, []string{fmt.Sprintf("10.%d.%d.%d", 100+s, (i/256)%256, i%256)}); err != nil {
					return err
				}
			}
			return nil
		}
		h := i - d.imports
		svc := d.headlessSvcName(h)
		var ips []string
		for e := 0; e < d.eps; e++ {
			ips = append(ips, fmt.Sprintf("10.99.%d.%d", h, e+1))
		}
		if err := d.createImport(ctx, svc, "Headless", nil); err != nil {
			return err
		}
		return d.createSlice(ctx, svc, 0, ips)
	})
	if err != nil {
		return err
	}
	logf("dataset %s: %d ClusterSetIP imports (%d slice(s) each), %d headless imports with %d endpoints, written in %v",
		d.ns, d.imports, d.slicesPerImport, d.headless, d.eps, time.Since(t0).Round(time.Millisecond))
	return nil
}

func (d *dataset) createImport(ctx context.Context, name, typ string, ips []string) error {
	spec := map[string]any{"type": typ, "ports": []any{map[string]any{"name": "http", "port": int64(80), "protocol": "TCP"}}}
	if len(ips) > 0 {
		var l []any
		for _, ip := range ips {
			l = append(l, ip)
		}
		spec["ips"] = l
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceImport",
		"metadata": map[string]any{"name": name, "namespace": d.ns}, "spec": spec,
	}}
	_, err := d.dyn.Resource(siGVR).Namespace(d.ns).Create(ctx, u, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// createSlice writes a slice as the controller writes imported ones: labelled with the service
// name, the source cluster and the derived Service.
func (d *dataset) createSlice(ctx context.Context, svc string, n int, ips []string) error {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-member1-%d", svc, n), Namespace: d.ns, Labels: map[string]string{
			"multicluster.kubernetes.io/service-name":   svc,
			"multicluster.kubernetes.io/source-cluster": "member1",
			"kubernetes.io/service-name":                "derived-" + svc,
			"endpointslice.kubernetes.io/managed-by":    "bench.coredns-mcs.io",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, ip := range ips {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	_, err := d.kube.DiscoveryV1().EndpointSlices(d.ns).Create(ctx, s, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// mix is one query file.
type mix struct {
	name, file string
	queries    int
}

func (d *dataset) writeMixes(dir string) ([]mix, error) {
	type gen struct {
		name  string
		lines func() []string
	}
	gens := []gen{
		{"ClusterSetIP A", func() (l []string) {
			for i := 0; i < d.imports; i++ {
				l = append(l, d.fqdn(d.csipName(i))+" A")
			}
			return
		}},
		{fmt.Sprintf("headless-%d A", d.eps), func() (l []string) {
			for i := 0; i < d.headless; i++ {
				l = append(l, d.fqdn(d.headlessSvcName(i))+" A")
			}
			return
		}},
		{"SRV _http._tcp", func() (l []string) {
			for i := 0; i < d.imports; i++ {
				l = append(l, "_http._tcp."+d.fqdn(d.csipName(i))+" SRV")
			}
			return
		}},
		{"NXDOMAIN", func() (l []string) {
			for i := 0; i < d.imports; i++ {
				l = append(l, d.fqdn(fmt.Sprintf("nx-%05d", i))+" A")
			}
			return
		}},
	}
	var mixes []mix
	for i, g := range gens {
		f := filepath.Join(dir, fmt.Sprintf("queries-%d.txt", i))
		lines := g.lines()
		if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
		mixes = append(mixes, mix{g.name, f, len(lines)})
	}
	return mixes, nil
}

// perfResult is one dnsperf run.
type perfResult struct {
	qps, avgLatencyMS, lost float64
	serverCPUPerQueryUS     float64
	loadCPUShare            float64 // dnsperf's CPU time / wall time: ~1 means it was the limit
	rcodes                  string
	latencies               []float64 // ms, with -v only
}

var (
	reQPS   = regexp.MustCompile(`Queries per second:\s+([\d.]+)`)
	reDone  = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	reLost  = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	reAvg   = regexp.MustCompile(`Average Latency \(s\):\s+([\d.]+)`)
	reCodes = regexp.MustCompile(`Response codes:\s+(.*)`)
)

// dnsperf runs the load generator pinned to cpu against port for dur; qps 0 means as fast as the
// server answers. With verbose the per-query latencies are collected.
func runDNSPerf(cpu string, s *dnsServer, m mix, dur time.Duration, qps int, verbose bool) (perfResult, error) {
	args := []string{"-c", cpu, "dnsperf", "-s", "127.0.0.1", "-p", strconv.Itoa(s.port), "-d", m.file,
		"-l", fmt.Sprintf("%.1f", dur.Seconds()), "-e", "-c", "4", "-q", "200", "-t", "2"}
	if qps > 0 {
		args = append(args, "-Q", strconv.Itoa(qps))
	}
	if verbose {
		args = append(args, "-v")
	}
	cmd := exec.Command("taskset", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return perfResult{}, err
	}
	cpu0, _ := cpuSeconds(s.pid())
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return perfResult{}, err
	}
	var r perfResult
	var text strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		l := sc.Text()
		if verbose && strings.HasPrefix(l, "> ") {
			f := strings.Fields(l)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				r.latencies = append(r.latencies, v*1000)
			}
			continue
		}
		text.WriteString(l + "\n")
	}
	if err := cmd.Wait(); err != nil {
		return r, fmt.Errorf("dnsperf: %v\n%s", err, text.String())
	}
	wall := time.Since(t0).Seconds()
	cpu1, _ := cpuSeconds(s.pid())
	st := text.String()
	get := func(re *regexp.Regexp) float64 {
		if m := re.FindStringSubmatch(st); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			return v
		}
		return 0
	}
	r.qps, r.lost, r.avgLatencyMS = get(reQPS), get(reLost), get(reAvg)*1000
	if done := get(reDone); done > 0 {
		r.serverCPUPerQueryUS = (cpu1 - cpu0) / done * 1e6
	}
	if ps := cmd.ProcessState; ps != nil && wall > 0 {
		r.loadCPUShare = (ps.UserTime() + ps.SystemTime()).Seconds() / wall
	}
	if m := reCodes.FindStringSubmatch(st); m != nil {
		r.rcodes = strings.TrimSpace(m[1])
	}
	return r, nil
}
