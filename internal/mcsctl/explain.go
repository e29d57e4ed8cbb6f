package mcsctl

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
)

// The steps one exported service goes through, in order; explain reports the first that breaks.
const (
	stepExport   = "ServiceExport"
	stepService  = "exported Service"
	stepImport   = "ServiceImport"
	stepWorks    = "Works"
	stepDerived  = "derived Service"
	stepDNS      = "DNS answer"
	executionNS  = "karmada-es-"
	appliedCond  = workv1alpha1.WorkApplied
	zoneSuffix   = ".svc.clusterset.local."
	dnsTimeout   = 3 * time.Second
	explainWidth = 18
)

// Break is where a service's path stops: the step, the member, and why.
type Break struct {
	Step, Member, Why string
}

func (b *Break) String() string {
	where := ""
	if b.Member != "" {
		where = " in " + b.Member
	}
	return fmt.Sprintf("BREAKS at %s%s: %s", b.Step, where, b.Why)
}

// Explain walks one service from its ServiceExports to the DNS answer in each importer, printing
// each step, and ends with one line: where it breaks, or that it works. dnsServers maps a member
// to a DNS server address to ask there (host:port); for the others the expected answer is shown.
// It returns the first break (nil when the path is whole).
func Explain(ctx context.Context, f *Fleet, w io.Writer, key string, dnsServers map[string]string) (*Break, error) {
	ns, name, ok := strings.Cut(key, "/")
	if !ok || ns == "" || name == "" {
		return nil, fmt.Errorf("want <namespace>/<service>, not %q", key)
	}
	clusters, err := f.Clusters(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing Karmada's clusters: %w", err)
	}
	var names []string
	for _, cl := range clusters {
		names = append(names, cl.Name)
	}
	data := f.collect(ctx, names, ns)
	say := func(step, member, format string, args ...any) {
		fmt.Fprintf(w, "%-*s %-10s %s\n", explainWidth, step, member, fmt.Sprintf(format, args...))
	}
	var first *Break
	breaks := func(step, member, format string, args ...any) {
		b := &Break{Step: step, Member: member, Why: fmt.Sprintf(format, args...)}
		say(step, member, "✗ %s", b.Why)
		if first == nil {
			first = b
		}
	}
	fmt.Fprintf(w, "%s\n", key)
	for _, n := range names {
		if d := data[n]; d.err != nil {
			say("member", n, "not readable: %v", d.err)
		}
	}

	// 1-2: the exports and their Services.
	var exporters []string
	var totalReady int
	for _, n := range names {
		d := data[n]
		if d.err != nil || d.exports[key] == nil {
			continue
		}
		e := d.exports[key]
		say(stepExport, n, "%s", conditions(e.Status.Conditions))
		valid := meta.FindStatusCondition(e.Status.Conditions, string(mcsv1beta1.ServiceExportConditionValid))
		svc, err := d.m.Service(ctx, ns, name)
		switch {
		case err != nil:
			breaks(stepService, n, "reading Service %s: %v", key, err)
			continue
		case svc == nil:
			why := "Service " + key + " does not exist"
			if valid != nil && valid.Status != metav1.ConditionTrue {
				why += " (Valid=False " + valid.Reason + ": " + valid.Message + ")"
			}
			breaks(stepService, n, "%s", why)
			continue
		case valid != nil && valid.Status != metav1.ConditionTrue:
			breaks(stepExport, n, "not valid: %s: %s", valid.Reason, valid.Message)
			continue
		}
		ready, all, _, err := d.m.Endpoints(ctx, ns, name)
		if err != nil {
			breaks(stepService, n, "reading its EndpointSlices: %v", err)
			continue
		}
		say(stepService, n, "%s %s, ports %s; %d/%d endpoints ready", svc.Spec.Type, clusterIP(svc), ports(svc.Spec.Ports), ready, all)
		exporters = append(exporters, n)
		totalReady += ready
	}
	switch {
	case first != nil && len(exporters) == 0:
	case len(exporters) == 0:
		breaks(stepExport, "", "no member exports %s (no ServiceExport in any member)", key)
	case totalReady == 0:
		breaks(stepService, strings.Join(exporters, ","), "no ready endpoint in any exporter: nothing to import")
	}

	// 3-6: each importer.
	var importers []string
	for _, n := range names {
		if d := data[n]; d.err == nil && d.imports[key] != nil {
			importers = append(importers, n)
		}
	}
	if len(importers) == 0 && len(exporters) > 0 {
		breaks(stepImport, "", "no member imports %s (no ServiceImport anywhere: is the controller running? it creates them)", key)
	}
	for _, n := range importers {
		d := data[n]
		im := d.imports[key]
		say(stepImport, n, "%s, ips %v, clusters %v; %s", im.Spec.Type, im.Spec.IPs, importClusters(im), conditions(im.Status.Conditions))
		if c := meta.FindStatusCondition(im.Status.Conditions, string(mcsv1beta1.ServiceImportConditionReady)); c != nil && c.Status != metav1.ConditionTrue {
			breaks(stepImport, n, "not Ready: %s: %s", c.Reason, c.Message)
			continue
		}
		if len(exporters) == 0 {
			continue
		}
		if b := f.explainWorks(ctx, n, ns, name, say); b != "" {
			breaks(stepWorks, n, "%s", b)
			continue
		}
		derived, derr := mcs.DerivedServiceOf(f.DerivedPrefix, ns, name, im.Annotations)
		if derr != nil {
			say(stepDerived, n, "note: %v", derr)
		}
		svc, err := d.m.Service(ctx, ns, derived)
		if err != nil || svc == nil {
			breaks(stepDerived, n, "Service %s/%s does not exist (err=%v)", ns, derived, err)
			continue
		}
		ready, all, _, _ := d.m.Endpoints(ctx, ns, derived)
		say(stepDerived, n, "%s %s, ports %s; %d/%d endpoints ready", derived, clusterIP(svc), ports(svc.Spec.Ports), ready, all)
		if ready == 0 {
			breaks(stepDerived, n, "%s has no ready endpoint", derived)
			continue
		}
		want := v4(im.Spec.IPs)
		if len(want) == 0 {
			want = v4(svc.Spec.ClusterIPs)
		}
		if im.Spec.Type == mcsv1beta1.Headless {
			if want, err = d.m.ReadyAddresses(ctx, ns, derived); err != nil {
				breaks(stepDerived, n, "reading %s's EndpointSlices: %v", derived, err)
				continue
			}
		}
		qname := name + "." + ns + zoneSuffix
		server, asked := dnsServers[n]
		if !asked {
			say(stepDNS, n, "%s should answer A %v (give --dns %s=HOST:PORT to ask)", qname, want, n)
			continue
		}
		got, rcode, err := lookupA(server, qname)
		switch {
		case err != nil:
			breaks(stepDNS, n, "asking %s for %s: %v", server, qname, err)
		case !sameSet(got, want):
			breaks(stepDNS, n, "%s answers %s %v for %s, want %v", server, rcode, got, qname, want)
		default:
			say(stepDNS, n, "%s answers A %v", server, got)
		}
	}
	if first != nil {
		fmt.Fprintln(w, first.String())
		return first, nil
	}
	fmt.Fprintf(w, "OK: %s is exported by %s and imported by %s\n", key, strings.Join(exporters, ", "), strings.Join(importers, ", "))
	return nil, nil
}

// explainWorks reports the controller's Works for the service in an importer's execution
// namespace; a non-empty result is why they break the path.
func (f *Fleet) explainWorks(ctx context.Context, importer, ns, name string, say func(step, member, format string, args ...any)) string {
	list, err := f.KarmadaClusters.WorkV1alpha1().Works(executionNS+importer).List(ctx, metav1.ListOptions{
		LabelSelector: mcs.LabelWorkNamespace + "=" + ns + "," + mcs.LabelWorkName + "=" + name})
	if err != nil {
		return fmt.Sprintf("listing the Works in %s%s: %v", executionNS, importer, err)
	}
	if len(list.Items) == 0 {
		return fmt.Sprintf("the controller wrote no Work for it in %s%s (is mcs-controller running? see kubectl mcs status)", executionNS, importer)
	}
	var notApplied []string
	for _, wk := range list.Items {
		c := meta.FindStatusCondition(wk.Status.Conditions, appliedCond)
		if c == nil || c.Status != metav1.ConditionTrue {
			why := "not applied yet"
			if c != nil {
				why = c.Reason + ": " + c.Message
			}
			notApplied = append(notApplied, wk.Name+" ("+why+")")
		}
	}
	say(stepWorks, importer, "%d Works in %s%s, %d applied", len(list.Items), executionNS, importer, len(list.Items)-len(notApplied))
	if len(notApplied) > 0 {
		sort.Strings(notApplied)
		return "Karmada has not applied " + strings.Join(notApplied, ", ")
	}
	return ""
}

func v4(ips []string) []string {
	var out []string
	for _, ip := range ips {
		if !strings.Contains(ip, ":") {
			out = append(out, ip)
		}
	}
	return out
}

func lookupA(server, qname string) ([]string, string, error) {
	m := new(dns.Msg)
	m.SetQuestion(qname, dns.TypeA)
	c := &dns.Client{Timeout: dnsTimeout}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return nil, "", err
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	sort.Strings(out)
	return out, dns.RcodeToString[r.Rcode], nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

func conditions(cs []metav1.Condition) string {
	if len(cs) == 0 {
		return "no conditions yet"
	}
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s=%s (%s)", c.Type, c.Status, c.Reason))
	}
	return strings.Join(parts, ", ")
}

func importClusters(im *mcsv1beta1.ServiceImport) []string {
	var out []string
	for _, c := range im.Status.Clusters {
		out = append(out, c.Cluster)
	}
	return out
}

func clusterIP(s *corev1.Service) string {
	if s.Spec.ClusterIP == corev1.ClusterIPNone {
		return "headless"
	}
	return strings.Join(s.Spec.ClusterIPs, ",")
}

func ports(ps []corev1.ServicePort) string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
	}
	return strings.Join(out, ",")
}
