//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
	"github.com/coredns-mcs/coredns-mcs/internal/report"
	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// member3 is a Pull-mode member: a real karmada-agent v1.16.0 registered it (no Secret of it on
// Karmada), and the project's mcs-agent reports it, with the RBAC of manifests/agent. The
// controller never calls its apiserver.

// pullMCSAPI installs the mcs-api CRDs in member3, as an operator installs them in a Pull member
// (the seed's CRD policies name member1 and member2), and waits until its agent reports them.
func pullMCSAPI(t *testing.T) {
	t.Helper()
	env.PropagateMCSCRDs(t)
	env.KubectlT(t, clusterset.Member3, "", "apply", "--server-side", "--force-conflicts", "-k", filepath.Join(env.Root, "manifests", "crds"))
	// Karmada's scheduler places a ServiceImport template on member3 only once member3's
	// karmada-agent has listed the API in its Cluster; before that the binding stays unscheduled
	// (ScheduleBindingFailed "did not have the API resource") for longer than any test waits.
	env.WaitMCSAPI(t, clusterset.Member3)
	karmada := env.Dynamic(t, clusterset.Karmada)
	clusterset.Eventually(t, 60*time.Second, "member3's agent reports the MCS API", func() error {
		w, err := karmada.Resource(workGVR).Namespace(report.ExecutionNamespace(clusterset.Member3)).Get(context.Background(), report.ClusterWorkName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !strings.Contains(fmt.Sprint(w.Object["spec"]), "importVersion") {
			return fmt.Errorf("no MCS versions in the cluster report yet")
		}
		return nil
	})
}

// importStatusClusters reads status.clusters of ServiceImport ns/name in member.
func importStatusClusters(t *testing.T, member, ns, name string) ([]string, error) {
	u, err := env.Dynamic(t, member).Resource(siGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range mcs.ImportFrom(u).Status.Clusters {
		out = append(out, c.Cluster)
	}
	sort.Strings(out)
	return out, nil
}

// TestPullMemberImportsTheSeed: the seed with member3 (Pull) as the importer — the seed's step 3
// literally (kubectl run -i --rm) from member3, by derived-serve's ClusterIP and by the clusterset
// name through member3's cluster DNS; member3's ServiceImport status comes from the controller
// through its agent.
func TestPullMemberImportsTheSeed(t *testing.T) {
	env.RequireDataPath(t)
	ctx := context.Background()
	pullMCSAPI(t)
	env.StartController(t)
	env.StartClusterDNS(t, clusterset.Member3)
	t.Cleanup(func() {
		deleteSeed(t)
		expectGone(t, env.Client(t, clusterset.Member3), "derived-serve")
	})
	// Registered after the controller: runs before it stops, while the state is as it failed.
	t.Cleanup(func() { logKarmadaPath(t, "default", "serve", clusterset.Member3) })
	for _, f := range []string{"01-workload.yaml", "02-export.yaml"} {
		env.KubectlT(t, clusterset.Karmada, "", "apply", "-f", env.Seed(f))
	}
	// The seed's import, placed on member3 instead of member2.
	raw, err := os.ReadFile(env.Seed("03-import.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	env.KubectlT(t, clusterset.Karmada, strings.Replace(string(raw), "        - member2", "        - member3", 1), "apply", "-f", "-")

	m1, m3 := env.Client(t, clusterset.Member1), env.Client(t, clusterset.Member3)
	var cip string
	clusterset.Eventually(t, 90*time.Second, "derived-serve in member3 with member1's serve pod behind it", func() error {
		svc, err := m3.CoreV1().Services("default").Get(ctx, "derived-serve", metav1.GetOptions{})
		if err != nil {
			return err
		}
		want, err := servePodIPs(ctx, m1)
		if err != nil || len(want) != 1 {
			return fmt.Errorf("member1 serve pods %v (err=%v), want 1", want, err)
		}
		got, _, err := readyIPs(ctx, m3, "default", "kubernetes.io/service-name=derived-serve")
		if err != nil || !slices.Equal(got, want) {
			return fmt.Errorf("member3 slices %v (err=%v), want %v", got, err, want)
		}
		cip = svc.Spec.ClusterIP
		return nil
	})
	clusterset.Eventually(t, 60*time.Second, "member3's ServiceImport lists member1 (written by its mcs-agent)", func() error {
		got, err := importStatusClusters(t, clusterset.Member3, "default", "serve")
		if err == nil && !slices.Equal(got, []string{"member1"}) {
			err = fmt.Errorf("status.clusters %v", got)
		}
		return err
	})
	// kubectl mcs reads member3 from its agent's reports (Karmada's cluster proxy does not reach a
	// Pull member).
	clusterset.Eventually(t, 30*time.Second, "kubectl mcs status shows member3 (Pull) importing the seed", func() error {
		r := kubectlMCS(t, "status")
		for _, re := range []string{
			`(?m)^member3\s+Pull\s+True\s+True\s+False\s+member3\s*$`,
			`(?m)^default/serve\s+member1 \(1\)\s+member3 \(derived-serve ` + regexp.QuoteMeta(cip) + `, 1\)\s+True\s+-\s*$`,
		} {
			if !regexp.MustCompile(re).MatchString(r.Stdout) {
				return fmt.Errorf("no line matching %s in:\n%s%s", re, r.Stdout, r.Stderr)
			}
		}
		return nil
	})
	if r := kubectlMCS(t, "explain", "default/serve"); r.Code != 0 || lastLine(r.Stdout) != "OK: default/serve is exported by member1 and imported by member3" {
		t.Errorf("kubectl mcs explain default/serve: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	env.WaitProgrammed(t, clusterset.Member3, cip)
	for _, address := range []string{cip, "serve.default.svc.clusterset.local"} {
		got := hellosIn(t, clusterset.Member3, "request-pull", address, "--duration=3s")
		if len(got) < 2 {
			t.Fatalf("request from member3 against %s: %d answers, want >= 2", address, len(got))
		}
		for _, h := range got {
			if h.node != "member1-control-plane" {
				t.Errorf("answer %+v: want member1's serve pod", h)
			}
		}
	}
}

// TestPullMemberExports: member3 exports a headless StatefulSet under its cluster id; member1 and
// member2 import it automatically, with per-pod names carrying member3's id; then a conflict
// between a Push exporter (member2, older) and the Pull one is said on both exports.
func TestPullMemberExports(t *testing.T) {
	env.RequireDataPath(t)
	ctx := context.Background()
	pullMCSAPI(t)
	env.StartController(t)
	dns := env.StartMemberDNS(t, clusterset.Member1)
	ns := uniqueNS("pull-export")
	memberNamespaceIn(t, ns, "derived-db", clusterset.Member1, clusterset.Member2, clusterset.Member3)
	env.KubectlT(t, clusterset.Member3, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: db, namespace: %[1]s}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: db, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: %[1]s}
spec:
  serviceName: db
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: jeremyot/serve:0a40de8, ports: [{containerPort: 8080}]}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: db, namespace: %[1]s}
`, ns), "apply", "-f", "-")
	m3 := env.Client(t, clusterset.Member3)
	podIP := map[string]string{}
	clusterset.Eventually(t, 90*time.Second, "2 ready db pods in member3, imported by member1 and member2", func() error {
		pods, err := m3.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=db"})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if podReady(&p) && p.Status.PodIP != "" {
				podIP[p.Name] = p.Status.PodIP
			}
		}
		if len(podIP) != 2 {
			return fmt.Errorf("ready pods %v", podIP)
		}
		for _, m := range []string{clusterset.Member1, clusterset.Member2} {
			ips, items, err := readyIPs(ctx, env.Client(t, m), ns, "kubernetes.io/service-name=derived-db")
			if err != nil || len(ips) != 2 {
				return fmt.Errorf("%s lists %v (err=%v)", m, ips, err)
			}
			for _, s := range items {
				if got := s.Labels["multicluster.kubernetes.io/source-cluster"]; got != clusterset.Member3 {
					return fmt.Errorf("%s: slice %s from %q, want member3", m, s.Name, got)
				}
			}
		}
		return nil
	})
	for pod, ip := range podIP {
		name := fmt.Sprintf("%s.member3.db.%s.svc.clusterset.local.", pod, ns)
		clusterset.Eventually(t, 30*time.Second, "member1 answers "+name, func() error {
			r := clusterset.Dig(t, dns.Addr, name, "A")
			if r.Status != "NOERROR" || !slices.Equal(r.Answers, []string{ip}) {
				return fmt.Errorf("%s %v, want %s", r.Status, r.Answers, ip)
			}
			return nil
		})
	}
	expectExportCondition(t, clusterset.Member3, ns, "db", "Ready", "True")

	// A conflict: member2 exports "api" first (port 443), member3 then with port 8443.
	serviceIn(t, clusterset.Member2, ns, "api", "10.12.9.9", 443)
	expectExportCondition(t, clusterset.Member2, ns, "api", "Ready", "True")
	time.Sleep(1100 * time.Millisecond) // creation timestamps are in seconds
	serviceIn(t, clusterset.Member3, ns, "api", "10.14.9.9", 8443)
	for _, m := range []string{clusterset.Member2, clusterset.Member3} {
		expectExportCondition(t, m, ns, "api", "Conflict", "True")
	}
}

// expectExportCondition waits until ServiceExport ns/name in member has condition typ of status.
func expectExportCondition(t *testing.T, member, ns, name, typ, status string) {
	t.Helper()
	dyn := env.Dynamic(t, member)
	clusterset.Eventually(t, 60*time.Second, fmt.Sprintf("%s's ServiceExport %s/%s %s=%s", member, ns, name, typ, status), func() error {
		u, err := dyn.Resource(seGVR).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range mcs.ExportFrom(u).Status.Conditions {
			if c.Type == typ {
				if string(c.Status) == status {
					return nil
				}
				return fmt.Errorf("%s=%s (%s: %s)", typ, c.Status, c.Reason, c.Message)
			}
		}
		return fmt.Errorf("no %s condition", typ)
	})
}

// killAgent SIGKILLs a process of member3 (its mcs-agent, or karmada-agent) and starts it again
// (hack/clusterset.sh start).
func killAgent(t *testing.T, name string) {
	t.Helper()
	pid := env.Pid(t, name)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	clusterset.Eventually(t, 10*time.Second, "the killed "+name+" gone", func() error {
		if !exited(pid) {
			return fmt.Errorf("still running")
		}
		return nil
	})
	env.Script(t, "start", name)
}

// exited says whether process pid has ended (gone, or a zombie nobody reaped: the clusterset's
// processes are reparented to a PID 1 that does not reap them).
func exited(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err != nil || strings.Contains(string(stat), ") Z ")
}

// reportedObjects lists what member3's report Works carry (kind/ns/name), and the status Works'
// objects.
func reportedObjects(t *testing.T) (reports, statuses []string) {
	t.Helper()
	list, err := env.Dynamic(t, clusterset.Karmada).Resource(workGVR).Namespace(report.ExecutionNamespace(clusterset.Member3)).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range list.Items {
		ref := w.GetAnnotations()[report.AnnotationObject]
		switch w.GetLabels()[report.LabelManagedBy] {
		case report.ManagedByAgent:
			reports = append(reports, ref)
		case report.ManagedByController:
			statuses = append(statuses, ref)
		}
	}
	return reports, statuses
}

// TestPullAgentKilled: member3's agents SIGKILLed 5 times each (its mcs-agent, which reports
// the exports, and karmada-agent, which applies member3's own imports) while services are
// exported and unexported there; it converges: member1 and member3 import exactly what member3
// exports, and no report or status Work is left of an object that is gone.
func TestPullAgentKilled(t *testing.T) {
	ctx := context.Background()
	pullMCSAPI(t)
	env.StartController(t)
	ns := uniqueNS("pull-kill")
	memberNamespaceIn(t, ns, "derived-s0", clusterset.Member1, clusterset.Member2, clusterset.Member3)
	for i := range 5 {
		serviceIn(t, clusterset.Member3, ns, fmt.Sprintf("s%d", i), fmt.Sprintf("10.14.7.%d", i+1), 80)
		if i >= 2 {
			env.KubectlT(t, clusterset.Member3, "", "-n", ns, "delete", "serviceexport.v1alpha1.multicluster.x-k8s.io", fmt.Sprintf("s%d", i-2))
		}
		killAgent(t, "mcs-agent-member3")
		killAgent(t, "karmada-agent-member3")
	}
	for _, m1 := range []kubernetes.Interface{env.Client(t, clusterset.Member1), env.Client(t, clusterset.Member3)} {
		for i := range 5 {
			want := []string{}
			if i >= 3 {
				want = []string{fmt.Sprintf("10.14.7.%d", i+1)}
			}
			name := fmt.Sprintf("derived-s%d", i)
			clusterset.Eventually(t, 90*time.Second, fmt.Sprintf("member1 imports %s as %v", name, want), func() error {
				ips, _, err := readyIPs(ctx, m1, ns, "kubernetes.io/service-name="+name)
				if err != nil {
					return err
				}
				if ips == nil {
					ips = []string{}
				}
				if !slices.Equal(ips, want) {
					return fmt.Errorf("endpoints %v", ips)
				}
				if len(want) == 0 {
					if _, err := m1.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
						return fmt.Errorf("%s still there (err=%v)", name, err)
					}
				}
				return nil
			})
		}
	}
	// Nothing orphaned: every report and status Work of this namespace names an object member3 has.
	dyn := env.Dynamic(t, clusterset.Member3)
	clusterset.Eventually(t, 60*time.Second, "no report or status Work of a gone object", func() error {
		reports, statuses := reportedObjects(t)
		for _, ref := range append(reports, statuses...) {
			parts := strings.SplitN(ref, "/", 3)
			if len(parts) != 3 || parts[1] != ns {
				continue
			}
			var err error
			switch parts[0] {
			case "ServiceExport":
				_, err = dyn.Resource(seGVR).Namespace(ns).Get(ctx, parts[2], metav1.GetOptions{})
			case "ServiceImport":
				_, err = dyn.Resource(siGVR).Namespace(ns).Get(ctx, parts[2], metav1.GetOptions{})
			case "Service":
				// A Service is reported while it exists and is exported, or is a derived one
				// (member3 imports its own exports too).
				_, err = env.Client(t, clusterset.Member3).CoreV1().Services(ns).Get(ctx, parts[2], metav1.GetOptions{})
				if _, e := dyn.Resource(seGVR).Namespace(ns).Get(ctx, parts[2], metav1.GetOptions{}); err == nil && apierrors.IsNotFound(e) &&
					!strings.HasPrefix(parts[2], "derived-") {
					err = fmt.Errorf("Service %s reported though neither exported nor derived", parts[2])
				}
			case "EndpointSlice":
				_, err = env.Client(t, clusterset.Member3).DiscoveryV1().EndpointSlices(ns).Get(ctx, parts[2], metav1.GetOptions{})
			}
			if err != nil {
				return fmt.Errorf("%s: %v", ref, err)
			}
		}
		return nil
	})
}

// TestPullAgentStoppedDrains: with the drain policy, member3's exports leave every importer once
// its mcs-agent has stopped renewing its report (lease) and the grace has passed, and come back
// when it runs again; with keep, they stay.
func TestPullAgentStoppedDrains(t *testing.T) {
	ctx := context.Background()
	pullMCSAPI(t)
	ctrl := env.StartController(t, "--member-failure-grace=3s")
	t.Cleanup(func() {
		if t.Failed() {
			var lines []string
			for _, l := range strings.Split(ctrl.Log(), "\n") {
				if strings.Contains(l, "member3") {
					lines = append(lines, l)
				}
			}
			t.Logf("the controller on member3:\n%s", strings.Join(lines, "\n"))
		}
	})
	ns := uniqueNS("pull-drain")
	memberNamespaceIn(t, ns, "derived-edge", clusterset.Member1, clusterset.Member2, clusterset.Member3)
	serviceIn(t, clusterset.Member3, ns, "edge", "10.14.8.8", 80)
	m1 := env.Client(t, clusterset.Member1)
	imported := func(want ...string) {
		t.Helper()
		clusterset.Eventually(t, 90*time.Second, fmt.Sprintf("member1 imports edge as %v", want), func() error {
			ips, _, err := readyIPs(ctx, m1, ns, "kubernetes.io/service-name=derived-edge")
			if err == nil && !slices.Equal(ips, want) {
				err = fmt.Errorf("endpoints %v", ips)
			}
			return err
		})
	}
	imported("10.14.8.8")
	env.Script(t, "stop", "mcs-agent-member3")
	t.Cleanup(func() { env.Script(t, "start", "mcs-agent-member3") })
	stopped := time.Now()
	imported()
	t.Logf("drained %s after member3's mcs-agent stopped (lease 8 s, grace 3 s)", time.Since(stopped).Round(time.Second))
	// The lease (8 s) counts from the last renewal, made once a quarter of it is old and looked
	// at every 2 s: at most 4 s before the stop. Then the grace (3 s).
	if d := time.Since(stopped); d < 4*time.Second+3*time.Second-time.Second {
		t.Errorf("drained after %s: before the agent's lease and the grace ran out", d)
	}
	env.Script(t, "start", "mcs-agent-member3")
	imported("10.14.8.8")

	// Under keep, the endpoints stay while the agent is gone, past its lease and the grace.
	ctrl.RestartWith("--member-failure=keep", "--member-failure-grace=3s")
	env.Script(t, "stop", "mcs-agent-member3")
	time.Sleep(8*time.Second + 2*3*time.Second)
	imported("10.14.8.8")
	if !strings.Contains(ctrl.Log(), "has not renewed its report within its lease") {
		t.Error("the controller did not log the agent's lease running out")
	}
	env.Script(t, "start", "mcs-agent-member3")
}
