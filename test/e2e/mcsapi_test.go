//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// Behaviour of the current MCS API (mcs-api v0.5.2) on the clusterset with its CRDs.

// portsIn writes, in member, Service echo with the given ports (name:protocol/port) and one
// ready endpoint, and its ServiceExport.
func portsIn(t *testing.T, member, ns, ip string, ports ...string) {
	t.Helper()
	var list []string
	for _, p := range ports {
		name, rest, _ := strings.Cut(p, ":")
		proto, num, _ := strings.Cut(rest, "/")
		list = append(list, fmt.Sprintf("{name: %s, protocol: %s, port: %s}", name, proto, num))
	}
	env.KubectlT(t, member, exportYAML(ns, "echo", "", "["+strings.Join(list, ", ")+"]", "IPv4",
		fmt.Sprintf("[{addresses: [%q], conditions: {ready: true}}]", ip)),
		// Server-side: a client-side apply merges Service ports by number alone, and TCP/42 and
		// UDP/42 are one port to it.
		"apply", "--server-side", "--force-conflicts", "--field-manager=e2e", "-f", "-")
}

func portNames(ports []corev1.ServicePort) []string {
	var out []string
	for _, p := range ports {
		out = append(out, fmt.Sprintf("%s:%s/%d", p.Name, p.Protocol, p.Port))
	}
	slices.Sort(out)
	return out
}

// TestCompatiblePortsConflict: member1 exports echo with a TCP/42 and u UDP/42, member2 with
// a TCP/42 and b TCP/142 — compatible, not identical. mcs-api v0.5: Conflict=True/PortConflict on
// both exports, the message naming the differing ports; the import (derived Service and automatic
// ServiceImport in both members) still exposes the union. Made identical, the conflict clears and
// the import has the common ports.
func TestCompatiblePortsConflict(t *testing.T) {
	ctx := context.Background()
	env.UseMCSAPICRDs(t)
	env.StartController(t)
	ns := uniqueNS("ports")
	memberNamespace(t, ns, "derived-echo")
	portsIn(t, clusterset.Member1, ns, "10.10.9.41", "a:TCP/42", "u:UDP/42")
	time.Sleep(1100 * time.Millisecond) // member1's export is the older
	portsIn(t, clusterset.Member2, ns, "10.12.9.41", "a:TCP/42", "b:TCP/142")

	for _, m := range []string{clusterset.Member1, clusterset.Member2} {
		expectConditionsWithin(t, 60*time.Second, m, ns, "echo", map[string]string{"Valid": "True/Valid", "Conflict": "True/PortConflict"})
		u, err := env.Dynamic(t, m).Resource(seGVR).Namespace(ns).Get(ctx, "echo", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, msg := condition(u, "Conflict"); !strings.Contains(msg, `"b" TCP/142`) || !strings.Contains(msg, `"u" UDP/42`) {
			t.Errorf("%s: Conflict message %q does not name the differing ports", m, msg)
		}
	}
	imported := func(want ...string) {
		t.Helper()
		clusterset.Eventually(t, 60*time.Second, fmt.Sprintf("the import in both members has %v", want), func() error {
			for _, m := range []string{clusterset.Member1, clusterset.Member2} {
				svc, err := env.Client(t, m).CoreV1().Services(ns).Get(ctx, "derived-echo", metav1.GetOptions{})
				if err != nil {
					return fmt.Errorf("%s: %v", m, err)
				}
				if got := portNames(svc.Spec.Ports); !slices.Equal(got, want) {
					return fmt.Errorf("%s: derived-echo ports %v", m, got)
				}
				si, err := env.Dynamic(t, m).Resource(siV1beta1GVR).Namespace(ns).Get(ctx, "echo", metav1.GetOptions{})
				if err != nil {
					return fmt.Errorf("%s: ServiceImport: %v", m, err)
				}
				var got []string
				list, _, _ := unstructured.NestedSlice(si.Object, "spec", "ports")
				for _, p := range list {
					p, _ := p.(map[string]any)
					got = append(got, fmt.Sprintf("%v:%v/%v", p["name"], p["protocol"], p["port"]))
				}
				if slices.Sort(got); !slices.Equal(got, want) {
					return fmt.Errorf("%s: ServiceImport ports %v", m, got)
				}
			}
			return nil
		})
	}
	imported("a:TCP/42", "b:TCP/142", "u:UDP/42")

	portsIn(t, clusterset.Member2, ns, "10.12.9.41", "a:TCP/42", "u:UDP/42")
	for _, m := range []string{clusterset.Member1, clusterset.Member2} {
		expectConditionsWithin(t, 60*time.Second, m, ns, "echo", map[string]string{"Conflict": "False/NoConflicts"})
	}
	imported("a:TCP/42", "u:UDP/42")
}

// TestImportStatusEndpointSliceObjects: status.endpointSliceObjects (mcs-api v0.5.2) is Present on
// an import with mirrored slices, Absent on one nobody exports.
func TestImportStatusEndpointSliceObjects(t *testing.T) {
	ctx := context.Background()
	env.UseMCSAPICRDs(t)
	env.StartController(t)
	ns := uniqueNS("sliceobjects")
	memberNamespace(t, ns, "derived-echo")
	env.KubectlT(t, clusterset.Member2, fmt.Sprintf(`apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceImport
metadata: {name: ghost, namespace: %s}
spec: {type: ClusterSetIP, ports: [{name: http, port: 80, protocol: TCP}]}
`, ns), "apply", "-f", "-")
	echoIn(t, clusterset.Member1, ns, "10.10.9.51", 8080)
	for _, tc := range []struct{ member, name, want string }{
		{clusterset.Member1, "echo", "Present"},
		{clusterset.Member2, "echo", "Present"},
		{clusterset.Member2, "ghost", "Absent"},
	} {
		clusterset.Eventually(t, 60*time.Second, fmt.Sprintf("%s: ServiceImport %s endpointSliceObjects=%s", tc.member, tc.name, tc.want), func() error {
			si, err := env.Dynamic(t, tc.member).Resource(siV1beta1GVR).Namespace(ns).Get(ctx, tc.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if got := nested(si, "status", "endpointSliceObjects"); got != tc.want {
				return fmt.Errorf("endpointSliceObjects %q", got)
			}
			return nil
		})
	}
	env.KubectlT(t, clusterset.Member2, "", "-n", ns, "delete", "serviceimport.v1beta1.multicluster.x-k8s.io", "ghost")
}

// TestTrafficDistributionAndHints: PreferSameZone (Kubernetes ≥ 1.33) against PreferClose is a
// TrafficDistributionConflict; alone, the derived Service carries it and the mirrored slices the
// endpoints' zone and zone hints.
func TestTrafficDistributionAndHints(t *testing.T) {
	ctx := context.Background()
	env.UseMCSAPICRDs(t)
	env.StartController(t)
	ns := uniqueNS("topology")
	memberNamespace(t, ns, "derived-echo")
	zoned := func(member, ip, dist string) {
		env.KubectlT(t, member, exportYAML(ns, "echo", "trafficDistribution: "+dist, "[{name: http, port: 8080, protocol: TCP}]", "IPv4",
			fmt.Sprintf("[{addresses: [%q], conditions: {ready: true}, zone: zone-a, nodeName: node-of-the-exporter, hints: {forZones: [{name: zone-a}]}}]", ip)),
			"apply", "-f", "-")
	}
	zoned(clusterset.Member1, "10.10.9.71", "PreferSameZone")
	m2 := env.Client(t, clusterset.Member2)
	clusterset.Eventually(t, 60*time.Second, "derived-echo in member2 with PreferSameZone and zone hints", func() error {
		svc, err := m2.CoreV1().Services(ns).Get(ctx, "derived-echo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if svc.Spec.TrafficDistribution == nil || *svc.Spec.TrafficDistribution != "PreferSameZone" {
			return fmt.Errorf("trafficDistribution %v", svc.Spec.TrafficDistribution)
		}
		_, items, err := readyIPs(ctx, m2, ns, "kubernetes.io/service-name=derived-echo")
		if err != nil || len(items) != 1 || len(items[0].Endpoints) != 1 {
			return fmt.Errorf("%d slices (err=%v)", len(items), err)
		}
		e := items[0].Endpoints[0]
		if e.Zone == nil || *e.Zone != "zone-a" || e.Hints == nil || len(e.Hints.ForZones) != 1 || e.Hints.ForZones[0].Name != "zone-a" {
			return fmt.Errorf("endpoint zone %v hints %+v", e.Zone, e.Hints)
		}
		if e.NodeName != nil {
			return fmt.Errorf("nodeName %q of the exporter's cluster copied", *e.NodeName)
		}
		return nil
	})
	time.Sleep(1100 * time.Millisecond) // member1's export is the older
	zoned(clusterset.Member2, "10.12.9.71", "PreferClose")
	for _, m := range []string{clusterset.Member1, clusterset.Member2} {
		expectConditionsWithin(t, 60*time.Second, m, ns, "echo", map[string]string{"Conflict": "True/TrafficDistributionConflict"})
	}
}

// TestPublishNotReadyAddresses: a headless export whose Service publishes not-ready addresses:
// member2's coredns-mcs answers its not-ready endpoint too; without it, only the ready one.
func TestPublishNotReadyAddresses(t *testing.T) {
	env.UseMCSAPICRDs(t)
	env.StartController(t)
	dns := env.StartMemberDNS(t, clusterset.Member2)
	ns := uniqueNS("notready")
	memberNamespace(t, ns, "derived-db")
	db := func(publish bool) {
		env.KubectlT(t, clusterset.Member1, exportYAML(ns, "db", fmt.Sprintf("clusterIP: None, publishNotReadyAddresses: %t", publish),
			"[{name: pg, port: 5432, protocol: TCP}]", "IPv4",
			`[{addresses: ["10.10.9.81"], hostname: db-0, conditions: {ready: true}}, {addresses: ["10.10.9.82"], hostname: db-1, conditions: {ready: false}}]`),
			"apply", "-f", "-")
	}
	name := "db." + ns + ".svc.clusterset.local."
	answers := func(want ...string) {
		t.Helper()
		clusterset.Eventually(t, 60*time.Second, fmt.Sprintf("dig %s answers %v", name, want), func() error {
			r := clusterset.Dig(t, dns.Addr, name, "A")
			got := slices.Clone(r.Answers)
			slices.Sort(got)
			if r.Status != "NOERROR" || !slices.Equal(got, want) {
				return fmt.Errorf("%s %v", r.Status, got)
			}
			return nil
		})
	}
	db(true)
	answers("10.10.9.81", "10.10.9.82")
	if r := clusterset.Dig(t, dns.Addr, "db-1.member1."+name, "A"); r.Status != "NOERROR" || !slices.Equal(r.Answers, []string{"10.10.9.82"}) {
		t.Errorf("db-1.member1.%s: %s %v, want the not-ready pod's address", name, r.Status, r.Answers)
	}
	db(false)
	answers("10.10.9.81")
}

// TestDerivedServiceNameChosen: the user's ServiceImport template on Karmada (as the seed's
// 03-import.yaml, placed in member2) names the derived Service in its
// multicluster.kubernetes.io/derived-service annotation (what users ask of Karmada and GKE
// offers): that Service is written in member2 (no derived-echo), and member2's coredns-mcs answers
// with its ClusterIP. The annotation changed to the service's own name, the Service echo replaces
// it.
func TestDerivedServiceNameChosen(t *testing.T) {
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	env.StartController(t)
	dns := env.StartMemberDNS(t, clusterset.Member2)
	ns := uniqueNS("chosen")
	memberNamespace(t, ns, "derived-echo")
	m2 := env.Client(t, clusterset.Member2)
	env.KubectlT(t, clusterset.Karmada, "", "create", "namespace", ns)
	t.Cleanup(func() {
		env.Run(clusterset.Karmada, "", "-n", ns, "delete", "serviceimports.v1alpha1.multicluster.x-k8s.io,propagationpolicies.policy.karmada.io", "--all")
		env.Run(clusterset.Karmada, "", "delete", "namespace", ns, "--ignore-not-found", "--wait=false")
	})
	importAs := func(derived string) {
		env.KubectlT(t, clusterset.Karmada, fmt.Sprintf(`apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata:
  name: echo
  namespace: %[1]s
  annotations: {multicluster.kubernetes.io/derived-service: %[2]s}
spec: {type: ClusterSetIP, ports: [{name: http, port: 8080, protocol: TCP}]}
---
apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {name: echo-import-policy, namespace: %[1]s}
spec:
  resourceSelectors: [{apiVersion: multicluster.x-k8s.io/v1alpha1, kind: ServiceImport, name: echo}]
  placement: {clusterAffinity: {clusterNames: [member2]}}
`, ns, derived), "apply", "-f", "-")
	}
	importAs("echo-from-afar")
	echoIn(t, clusterset.Member1, ns, "10.10.9.91", 8080)
	name := "echo." + ns + ".svc.clusterset.local."
	served := func(derived, gone string) {
		t.Helper()
		var ip string
		clusterset.Eventually(t, 60*time.Second, fmt.Sprintf("member2 imports echo as %s", derived), func() error {
			svc, err := m2.CoreV1().Services(ns).Get(ctx, derived, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if svc.Labels["app.kubernetes.io/managed-by"] != ourManager {
				return fmt.Errorf("Service %s is not ours: %v", derived, svc.Labels)
			}
			ip = svc.Spec.ClusterIP
			ips, _, err := readyIPs(ctx, m2, ns, "kubernetes.io/service-name="+derived)
			if err != nil || !slices.Equal(ips, []string{"10.10.9.91"}) {
				return fmt.Errorf("endpoints %v (err=%v)", ips, err)
			}
			return nil
		})
		expectGoneWithin(t, 60*time.Second, m2, ns, gone)
		clusterset.Eventually(t, 30*time.Second, "dig "+name+" answers "+derived+"'s ClusterIP", func() error {
			r := clusterset.Dig(t, dns.Addr, name, "A")
			if r.Status != "NOERROR" || !slices.Equal(r.Answers, []string{ip}) {
				return fmt.Errorf("%s %v, want %s", r.Status, r.Answers, ip)
			}
			return nil
		})
	}
	served("echo-from-afar", "derived-echo")
	importAs("echo")
	served("echo", "echo-from-afar")
	expectConditions(t, clusterset.Member1, ns, "echo", map[string]string{"Valid": "True/Valid", "Ready": "True/Exported"})
}

// TestHeadlessPreferClose: db exported headless from member1 and member2 with
// trafficDistribution PreferClose; member2 knows its cluster id from its ClusterProperty. Its
// coredns-mcs answers db with member2's endpoint only while that one is ready, with member1's when
// it is not; once the preference is gone (the oldest export, member1's, decides), with both.
func TestHeadlessPreferClose(t *testing.T) {
	env.PropagateMCSCRDs(t)
	clusterPropertyIn(t, clusterset.Member2, "member2")
	env.StartController(t)
	dns := env.StartMemberDNS(t, clusterset.Member2)
	ns := uniqueNS("close")
	memberNamespace(t, ns, "derived-db")
	db := func(member, ip string) {
		env.KubectlT(t, member, exportYAML(ns, "db", "clusterIP: None, trafficDistribution: PreferClose", "[{name: pg, port: 5432, protocol: TCP}]", "IPv4",
			fmt.Sprintf("[{addresses: [%q], hostname: db-0, conditions: {ready: true}}]", ip)), "apply", "-f", "-")
	}
	db(clusterset.Member1, "10.10.9.101")
	time.Sleep(1100 * time.Millisecond) // member1's export is the older
	db(clusterset.Member2, "10.12.9.101")
	name := "db." + ns + ".svc.clusterset.local."
	answers := func(what string, want ...string) {
		t.Helper()
		clusterset.Eventually(t, 60*time.Second, fmt.Sprintf("dig %s answers %v (%s)", name, want, what), func() error {
			r := clusterset.Dig(t, dns.Addr, name, "A")
			got := slices.Clone(r.Answers)
			slices.Sort(got)
			if r.Status != "NOERROR" || !slices.Equal(got, want) {
				return fmt.Errorf("%s %v", r.Status, got)
			}
			return nil
		})
	}
	setReady := func(ready bool) {
		env.KubectlT(t, clusterset.Member2, "", "-n", ns, "patch", "endpointslice", "db-manual", "--type=json",
			"-p", fmt.Sprintf(`[{"op":"replace","path":"/endpoints/0/conditions/ready","value":%t}]`, ready))
	}
	answers("member2's own while ready", "10.12.9.101")
	if r := clusterset.Dig(t, dns.Addr, "db-0.member1."+name, "A"); !slices.Equal(r.Answers, []string{"10.10.9.101"}) {
		t.Errorf("db-0.member1.%s: %s %v, want member1's endpoint by its own name", name, r.Status, r.Answers)
	}
	setReady(false)
	answers("member1's while member2 has none ready", "10.10.9.101")
	setReady(true)
	answers("member2's own again", "10.12.9.101")
	for _, m := range []string{clusterset.Member1, clusterset.Member2} {
		env.KubectlT(t, m, "", "-n", ns, "patch", "service", "db", "--type=merge", "-p", `{"spec":{"trafficDistribution":null}}`)
	}
	answers("every cluster's without the preference", "10.10.9.101", "10.12.9.101")
}

// TestIPFamilyNotSupported: member1's Service CIDRs are dual-stack, member2's IPv4 only. An
// IPv6-only export of member1 is imported in member1 and not in member2: member2's ServiceImport
// is Ready=False/IPFamilyNotSupported, the export Ready=False/IPFamilyNotSupported naming member2,
// and no derived Service is written there. A dual-stack export is imported in member2 with IPv4.
func TestIPFamilyNotSupported(t *testing.T) {
	ctx := context.Background()
	env.UseMCSAPICRDs(t)
	env.StartController(t)
	ns := uniqueNS("families")
	memberNamespace(t, ns, "derived-v6")
	m1, m2 := env.Client(t, clusterset.Member1), env.Client(t, clusterset.Member2)
	export := func(name, policy, families, addrType, ip string) {
		env.KubectlT(t, clusterset.Member1, exportYAML(ns, name, "ipFamilyPolicy: "+policy+", ipFamilies: "+families,
			"[{name: http, port: 8080, protocol: TCP}]", addrType, fmt.Sprintf("[{addresses: [%q], conditions: {ready: true}}]", ip)),
			"apply", "-f", "-")
	}
	export("v6", "SingleStack", "[IPv6]", "IPv6", "fd00:10::1")
	export("dual", "RequireDualStack", "[IPv6, IPv4]", "IPv4", "10.10.9.111")

	expectConditionsWithin(t, 60*time.Second, clusterset.Member1, ns, "v6", map[string]string{"Ready": "False/IPFamilyNotSupported"})
	u, err := env.Dynamic(t, clusterset.Member1).Resource(seGVR).Namespace(ns).Get(ctx, "v6", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, msg := condition(u, "Ready"); !strings.Contains(msg, "member2") || !strings.Contains(msg, "IPv6") {
		t.Errorf("export's Ready message %q names neither member2 nor IPv6", msg)
	}
	families := func(c kubernetes.Interface, name string) ([]corev1.IPFamily, error) {
		svc, err := c.CoreV1().Services(ns).Get(ctx, "derived-"+name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return svc.Spec.IPFamilies, nil
	}
	clusterset.Eventually(t, 60*time.Second, "derived-v6 in member1 (IPv6), derived-dual in both (member2: IPv4 only)", func() error {
		if f, err := families(m1, "v6"); err != nil || !slices.Equal(f, []corev1.IPFamily{corev1.IPv6Protocol}) {
			return fmt.Errorf("member1 derived-v6 %v (err=%v)", f, err)
		}
		if f, err := families(m1, "dual"); err != nil || !slices.Equal(f, []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}) {
			return fmt.Errorf("member1 derived-dual %v (err=%v)", f, err)
		}
		if f, err := families(m2, "dual"); err != nil || !slices.Equal(f, []corev1.IPFamily{corev1.IPv4Protocol}) {
			return fmt.Errorf("member2 derived-dual %v (err=%v)", f, err)
		}
		return nil
	})
	if _, err := m2.CoreV1().Services(ns).Get(ctx, "derived-v6", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("derived-v6 in IPv4-only member2: err=%v, want NotFound", err)
	}
	// member2 asks for v6 with a ServiceImport of its own: it says why it has nothing.
	env.KubectlT(t, clusterset.Member2, fmt.Sprintf(`apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceImport
metadata: {name: v6, namespace: %s}
spec: {type: ClusterSetIP, ports: [{name: http, port: 8080, protocol: TCP}]}
`, ns), "apply", "-f", "-")
	clusterset.Eventually(t, 60*time.Second, "member2's ServiceImport v6 Ready=False/IPFamilyNotSupported", func() error {
		si, err := env.Dynamic(t, clusterset.Member2).Resource(siV1beta1GVR).Namespace(ns).Get(ctx, "v6", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if s, r, msg := condition(si, "Ready"); s+"/"+r != "False/IPFamilyNotSupported" {
			return fmt.Errorf("Ready %s/%s (%s)", s, r, msg)
		}
		return nil
	})
}
