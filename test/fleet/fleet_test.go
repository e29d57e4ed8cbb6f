//go:build fleet

// Package fleet runs the controller on a fleet of five Push members (CMCS_MEMBERS=5), on a
// clusterset of its own (port base 29000, _output/clusterset-fleet) that it brings down at the
// end: `make test-fleet`, opt-in (it holds six control planes). make test covers three members
// (two Push, one Pull) in test/e2e and test/controlplane.
package fleet

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

var env *clusterset.Env

var members = []string{"member1", "member2", "member3", "member4", "member5"}

func TestMain(m *testing.M) {
	root := clusterset.RepoRoot()
	for k, v := range map[string]string{"CMCS_MEMBERS": "5", "CMCS_PULL_MEMBERS": "0", "CMCS_PORT_BASE": "29000",
		"CMCS_CLUSTERSET_DIR": filepath.Join(root, "_output", "clusterset-fleet")} {
		if os.Getenv(k) == "" {
			os.Setenv(k, v)
		}
	}
	clusterset.Main(m, &env, func() {
		if os.Getenv("CMCS_KEEP") == "" {
			cmd := exec.Command(filepath.Join(root, "hack", "clusterset.sh"), "down")
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			_ = cmd.Run()
		}
	})
}

var (
	seGVR = schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceexports"}
	siGVR = schema.GroupVersionResource{Group: "multicluster.x-k8s.io", Version: "v1alpha1", Resource: "serviceimports"}
)

// exportIn writes Service name in member with one ready endpoint (hostname host, when given) and
// its ServiceExport.
func exportIn(t *testing.T, member, ns, name, ip string, port int, headless bool, host string) {
	t.Helper()
	spec := ""
	if headless {
		spec = "clusterIP: None, "
	}
	hostname := ""
	if host != "" {
		hostname = ", hostname: " + host
	}
	env.KubectlT(t, member, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[2]s, namespace: %[1]s}
spec: {%[5]sports: [{name: http, port: %[4]d, protocol: TCP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %[2]s-manual, namespace: %[1]s, labels: {kubernetes.io/service-name: %[2]s}}
addressType: IPv4
ports: [{name: http, port: %[4]d, protocol: TCP}]
endpoints: [{addresses: [%[3]q], conditions: {ready: true}%[6]s}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: %[2]s, namespace: %[1]s}
`, ns, name, ip, port, spec, hostname), "apply", "-f", "-")
}

// imported returns the ready endpoint addresses of our slices of derived in member, sorted.
func imported(t *testing.T, member, ns, derived string) []string {
	list, err := env.Client(t, member).DiscoveryV1().EndpointSlices(ns).List(context.Background(),
		metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=" + derived})
	if err != nil {
		return nil
	}
	var ips []string
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				ips = append(ips, e.Addresses...)
			}
		}
	}
	sort.Strings(ips)
	return ips
}

func condition(t *testing.T, member, ns, name, typ string) string {
	u, err := env.Dynamic(t, member).Resource(seGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	for _, c := range mcs.ExportFrom(u).Status.Conditions {
		if c.Type == typ {
			return string(c.Status) + "/" + c.Reason
		}
	}
	return "none"
}

// TestFiveMembers: one service exported from three members is imported by all five (each
// member's ServiceImport lists the three); a conflict among three exporters is said on all
// three, the oldest's port winning; a headless export from three members answers per-host names
// under each one's cluster id; a member removed from Karmada takes its endpoints with it.
func TestFiveMembers(t *testing.T) {
	ctx := context.Background()
	// The project's own CRD propagation (no member names): it reaches all five.
	env.KubectlT(t, clusterset.Karmada, "", "apply", "-k", filepath.Join(env.Root, "manifests", "karmada"))
	env.WaitMCSAPI(t, members...)
	env.StartController(t)
	ns := "fleet"
	for _, m := range members {
		env.KubectlT(t, m, "", "create", "namespace", ns)
	}
	exporters := map[string]string{"member1": "10.10.5.1", "member3": "10.14.5.3", "member5": "10.18.5.5"}
	for m, ip := range exporters {
		exportIn(t, m, ns, "api", ip, 80, false, "")
	}
	all := []string{"10.10.5.1", "10.14.5.3", "10.18.5.5"}
	for _, m := range members {
		clusterset.Eventually(t, 120*time.Second, m+" imports api from three members", func() error {
			if got := imported(t, m, ns, "derived-api"); !slices.Equal(got, all) {
				return fmt.Errorf("endpoints %v", got)
			}
			u, err := env.Dynamic(t, m).Resource(siGVR).Namespace(ns).Get(ctx, "api", metav1.GetOptions{})
			if err != nil {
				return err
			}
			var clusters []string
			for _, c := range mcs.ImportFrom(u).Status.Clusters {
				clusters = append(clusters, c.Cluster)
			}
			if !slices.Equal(clusters, []string{"member1", "member3", "member5"}) {
				return fmt.Errorf("status.clusters %v", clusters)
			}
			return nil
		})
	}

	// Oldest wins across three exporters of different ports.
	for i, m := range []string{"member4", "member2", "member5"} {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond) // creation timestamps are in seconds
		}
		exportIn(t, m, ns, "web", fmt.Sprintf("10.%d.6.%d", 8+2*(i+1), i+1), 8080+i, false, "")
	}
	for _, m := range []string{"member4", "member2", "member5"} {
		clusterset.Eventually(t, 60*time.Second, m+"'s export of web in conflict", func() error {
			if got := condition(t, m, ns, "web", "Conflict"); !strings.HasPrefix(got, "True/") {
				return fmt.Errorf("Conflict=%s", got)
			}
			return nil
		})
	}
	clusterset.Eventually(t, 60*time.Second, "member1's derived-web has member4's port (the oldest export)", func() error {
		svc, err := env.Client(t, "member1").CoreV1().Services(ns).Get(ctx, "derived-web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(svc.Spec.Ports) == 0 || svc.Spec.Ports[0].Port != 8080 {
			return fmt.Errorf("ports %v", svc.Spec.Ports)
		}
		return nil
	})

	// Per-host names under many cluster ids.
	dns := env.StartMemberDNS(t, "member2")
	for i, m := range []string{"member1", "member3", "member5"} {
		exportIn(t, m, ns, "db", fmt.Sprintf("10.%d.7.%d", 8+2*(2*i+1), i+1), 5432, true, "db-0")
	}
	for i, m := range []string{"member1", "member3", "member5"} {
		name := fmt.Sprintf("db-0.%s.db.%s.svc.clusterset.local.", m, ns)
		want := fmt.Sprintf("10.%d.7.%d", 8+2*(2*i+1), i+1)
		clusterset.Eventually(t, 60*time.Second, "member2 answers "+name, func() error {
			r := clusterset.Dig(t, dns.Addr, name, "A")
			if r.Status != "NOERROR" || !slices.Equal(r.Answers, []string{want}) {
				return fmt.Errorf("%s %v, want %s", r.Status, r.Answers, want)
			}
			return nil
		})
	}

	// member5 leaves Karmada (karmadactl unjoin: its Cluster and Secrets go): its endpoints leave
	// every importer.
	env.KubectlT(t, clusterset.Karmada, "", "delete", "cluster", "member5", "--wait=false")
	env.Run(clusterset.Karmada, "", "-n", "karmada-cluster", "delete", "secret", "member5", "member5-impersonator", "--ignore-not-found")
	for _, m := range []string{"member1", "member2", "member3", "member4"} {
		clusterset.Eventually(t, 120*time.Second, m+" imports api without member5", func() error {
			if got := imported(t, m, ns, "derived-api"); !slices.Equal(got, []string{"10.10.5.1", "10.14.5.3"}) {
				return fmt.Errorf("endpoints %v", got)
			}
			u, err := env.Dynamic(t, m).Resource(siGVR).Namespace(ns).Get(ctx, "api", metav1.GetOptions{})
			if err != nil {
				return err
			}
			var clusters []string
			for _, c := range mcs.ImportFrom(u).Status.Clusters {
				clusters = append(clusters, c.Cluster)
			}
			if !slices.Equal(clusters, []string{"member1", "member3"}) {
				return fmt.Errorf("status.clusters %v", clusters)
			}
			return nil
		})
	}
}
