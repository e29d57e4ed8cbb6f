//go:build envtest

package controlplane_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	karmadaclient "github.com/karmada-io/karmada/pkg/generated/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	"sigs.k8s.io/yaml"

	"github.com/coredns-mcs/coredns-mcs/controller"
	"github.com/coredns-mcs/coredns-mcs/controller/agent"
	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
	"github.com/coredns-mcs/coredns-mcs/internal/report"
)

// member3 is a Pull-mode member, as karmadactl register leaves one: a Cluster of syncMode Pull
// with no apiEndpoint and no Secret on Karmada; its agent holds the member's credentials and a
// Karmada identity bound only to karmada-es-member3 (the Role of manifests/agent).
const (
	pullMember = "member3"
	// The agent's ServiceAccount of manifests/agent/karmada, in karmada-es-member3.
	agentUser  = "system:serviceaccount:karmada-es-member3:coredns-mcs-agent"
	agentToken = "cmcs-tier-agent-member3"
)

func joinPull(c *cluster) error {
	ns := report.ExecutionNamespace(c.name)
	if _, err := karmada.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	// The agent's RBAC on Karmada is the one manifests/agent/karmada installs.
	raw, err := os.ReadFile(filepath.Join("..", "..", "manifests", "agent", "karmada", "rbac.yaml"))
	if err != nil {
		return err
	}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var kind struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &kind); err != nil {
			return err
		}
		switch kind.Kind {
		case "Role":
			var role rbacv1.Role
			if err := yaml.UnmarshalStrict([]byte(doc), &role); err != nil {
				return err
			}
			if _, err := karmada.kube.RbacV1().Roles(ns).Create(ctx, &role, metav1.CreateOptions{}); err != nil {
				return err
			}
		case "RoleBinding":
			var rb rbacv1.RoleBinding
			if err := yaml.UnmarshalStrict([]byte(doc), &rb); err != nil {
				return err
			}
			for i := range rb.Subjects {
				rb.Subjects[i].Namespace = ns // kustomize's namespace: sets it
			}
			if _, err := karmada.kube.RbacV1().RoleBindings(ns).Create(ctx, &rb, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
	}
	cl := &clusterv1alpha1.Cluster{ObjectMeta: metav1.ObjectMeta{Name: c.name}, Spec: clusterv1alpha1.ClusterSpec{SyncMode: clusterv1alpha1.Pull}}
	_, err = karmadaAPI.ClusterV1alpha1().Clusters().Create(ctx, cl, metav1.CreateOptions{})
	return err
}

// agentConfig is the agent's Karmada identity (only its Role in karmada-es-member3).
func agentConfig() *rest.Config {
	cfg := rest.AnonymousClientConfig(karmada.cfg)
	cfg.BearerToken = agentToken
	return cfg
}

var agentRun struct {
	mu     sync.Mutex
	a      *agent.Agent
	cancel context.CancelFunc
	done   chan error
}

// startAgent runs member3's agent until stopAgent (lease: its report's; 0 for the default).
func startAgent() error { return startAgentWith(0) }

func startAgentWith(lease time.Duration) error {
	a, err := agent.New(members[pullMember].cfg, agentConfig(), agent.Options{Cluster: pullMember, ClusterInterval: time.Second, Lease: lease})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	agentRun.mu.Lock()
	agentRun.a, agentRun.cancel, agentRun.done = a, cancel, done
	agentRun.mu.Unlock()
	return nil
}

func stopAgent() {
	agentRun.mu.Lock()
	defer agentRun.mu.Unlock()
	if agentRun.cancel != nil {
		agentRun.cancel()
		<-agentRun.done
		agentRun.cancel = nil
	}
}

func agentSynced() bool {
	agentRun.mu.Lock()
	defer agentRun.mu.Unlock()
	return agentRun.a != nil && agentRun.cancel != nil && agentRun.a.Synced()
}

// pullNamespace creates namespace name in member3 too (namespace makes it elsewhere).
func pullNamespace(t *testing.T, name string) string {
	t.Helper()
	ns := namespace(t, name)
	if _, err := members[pullMember].kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// importClusters reads status.clusters of the ServiceImport ns/name in c.
func importClusters(c *cluster, ns, name string) ([]string, error) {
	u, err := c.dyn.Resource(siGVR).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, cl := range mcs.ImportFrom(u).Status.Clusters {
		out = append(out, cl.Cluster)
	}
	sort.Strings(out)
	return out, nil
}

func expectImportClusters(t *testing.T, c *cluster, ns, name string, want ...string) {
	t.Helper()
	sort.Strings(want)
	eventually(t, 30*time.Second, fmt.Sprintf("%s's ServiceImport %s/%s lists %v", c.name, ns, name, want), func() error {
		got, err := importClusters(c, ns, name)
		if err == nil && !slices.Equal(got, want) {
			err = fmt.Errorf("status.clusters %v", got)
		}
		return err
	})
}

// sourceClusters are the source-cluster labels of our mirrored slices of ns/name in c.
func sourceClusters(c *cluster, ns, name string) ([]string, error) {
	list, err := c.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: mcs.LabelServiceName + "=" + name})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range list.Items {
		if s.Labels[discoveryv1.LabelManagedBy] == controller.ManagedBy {
			out = append(out, s.Labels[mcs.LabelSourceCluster])
		}
	}
	sort.Strings(out)
	return out, nil
}

// The seed with a Pull member as the importer, and as the exporter: the controller reads
// member3 only from its agent's reports, and member3's ServiceExport and ServiceImport status
// come from the controller through the agent. The agent's Karmada identity can touch nothing of
// the other members.
func TestPullMember(t *testing.T) {
	startController(t, controller.Options{})
	ns := pullNamespace(t, "pull")
	m1, m2, m3 := members["member1"], members["member2"], members[pullMember]

	// member3 imports member1's export automatically: derived Service, slices, ServiceImport
	// with its status (written by the agent).
	serve(t, m1, ns, "serve", false, 80, "10.10.0.5")
	export(t, m1, ns, "serve")
	expectImported(t, m3, ns, "serve", "10.10.0.5")
	expectDerived(t, m3, ns, "derived-serve")
	expectImportClusters(t, m3, ns, "serve", "member1")
	expectExportCondition(t, m1, ns, "serve", string(mcsv1beta1.ServiceExportConditionReady), "True/Exported")
	eventually(t, 30*time.Second, "member3's derived ClusterIP in its ServiceImport", func() error {
		svc, err := m3.kube.CoreV1().Services(ns).Get(ctx, "derived-serve", metav1.GetOptions{})
		if err != nil {
			return err
		}
		u, err := m3.dyn.Resource(siGVR).Namespace(ns).Get(ctx, "serve", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ips := mcs.ImportFrom(u).Spec.IPs; !slices.Contains(ips, svc.Spec.ClusterIP) {
			return fmt.Errorf("spec.ips %v, derived ClusterIP %s", ips, svc.Spec.ClusterIP)
		}
		return nil
	})

	// member3 exports a headless service under its own cluster id: member1 and member2 import
	// it with member3's id on the slices, and member3's export is Valid and Ready (from the
	// controller, through the agent).
	setClusterProperty(t, m3, "edge-3")
	serve(t, m3, ns, "db", true, 5432, "10.14.0.7", "10.14.0.8")
	export(t, m3, ns, "db")
	expectExportCondition(t, m3, ns, "db", string(mcsv1beta1.ServiceExportConditionValid), "True/Valid")
	expectExportCondition(t, m3, ns, "db", string(mcsv1beta1.ServiceExportConditionReady), "True/Exported")
	for _, m := range []*cluster{m1, m2} {
		expectImported(t, m, ns, "db", "10.14.0.7", "10.14.0.8")
		eventually(t, 30*time.Second, m.name+" imports db from edge-3", func() error {
			got, err := sourceClusters(m, ns, "db")
			if err == nil && (len(got) == 0 || slices.ContainsFunc(got, func(s string) bool { return s != "edge-3" })) {
				err = fmt.Errorf("source clusters %v", got)
			}
			return err
		})
		expectImportClusters(t, m, ns, "db", "edge-3")
	}

	// A conflict between a Push and a Pull exporter: member2's export is older, so its port
	// wins; both exports say Conflict=True.
	serve(t, m2, ns, "pay", false, 443, "10.12.0.9")
	export(t, m2, ns, "pay")
	expectExportCondition(t, m2, ns, "pay", string(mcsv1beta1.ServiceExportConditionReady), "True/Exported")
	time.Sleep(1100 * time.Millisecond) // creation timestamps are in seconds
	serve(t, m3, ns, "pay", false, 8443, "10.14.0.9")
	export(t, m3, ns, "pay")
	for _, m := range []*cluster{m2, m3} {
		expectExportCondition(t, m, ns, "pay", string(mcsv1beta1.ServiceExportConditionConflict), "True/PortConflict")
	}
	eventually(t, 30*time.Second, "member1's derived-pay has member2's port", func() error {
		svc, err := m1.kube.CoreV1().Services(ns).Get(ctx, "derived-pay", metav1.GetOptions{})
		if err != nil {
			return err
		}
		var ports []int32
		for _, p := range svc.Spec.Ports {
			ports = append(ports, p.Port)
		}
		if !slices.Contains(ports, 443) {
			return fmt.Errorf("ports %v", ports)
		}
		return nil
	})

	// The agent's Karmada identity: its own execution namespace only.
	ak := karmadaclient.NewForConfigOrDie(agentConfig())
	if _, err := ak.WorkV1alpha1().Works("karmada-es-member1").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("the agent listed member1's Works: %v", err)
	}
	if _, err := karmada.kube.CoreV1().Secrets("karmada-cluster").Get(ctx, pullMember, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Secret of the Pull member exists on Karmada: %v", err)
	}
	// Nothing of the reports was applied anywhere (Karmada skips suspended Works).
	cms, err := m3.kube.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range cms.Items {
		if strings.HasPrefix(cm.Name, "mcsr-") || strings.HasPrefix(cm.Name, "mcss-") {
			t.Errorf("a report carrier was applied in member3: %s/%s", cm.Namespace, cm.Name)
		}
	}

	// Unexport in member3: member1 and member2 lose db, and member3's status Work goes.
	unexport(t, m3, ns, "db")
	for _, m := range []*cluster{m1, m2} {
		expectImported(t, m, ns, "db")
	}
	eventually(t, 30*time.Second, "db's status Work gone", func() error {
		_, err := karmadaAPI.WorkV1alpha1().Works(report.ExecutionNamespace(pullMember)).Get(ctx,
			report.WorkName(true, report.KindServiceExport, ns, "db"), metav1.GetOptions{})
		if err == nil {
			return errors.New("still there")
		}
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

// What changes while the agent is away is reported when it is back; a report Work deleted or
// edited by someone else is put back; a report Work that does not decode is ignored.
func TestPullAgentRestart(t *testing.T) {
	startController(t, controller.Options{})
	ns := pullNamespace(t, "pullrestart")
	m1, m3 := members["member1"], members[pullMember]
	serve(t, m3, ns, "a", false, 80, "10.14.1.1")
	serve(t, m3, ns, "b", false, 80, "10.14.1.2")
	export(t, m3, ns, "a")
	export(t, m3, ns, "b")
	expectImported(t, m1, ns, "a", "10.14.1.1")
	expectImported(t, m1, ns, "b", "10.14.1.2")

	stopAgent()
	t.Cleanup(func() {
		if !agentSynced() {
			stopAgent()
			if err := startAgent(); err != nil {
				t.Error(err)
			}
		}
	})
	unexport(t, m3, ns, "a")
	setEndpoints(t, m3, ns, "b", "10.14.1.2", "10.14.1.3")
	// Gone while the agent is away: the controller still holds the last report.
	time.Sleep(2 * time.Second)
	expectImported(t, m1, ns, "a", "10.14.1.1")
	if err := startAgent(); err != nil {
		t.Fatal(err)
	}
	expectImported(t, m1, ns, "a")
	expectImported(t, m1, ns, "b", "10.14.1.2", "10.14.1.3")

	// Someone deletes a report Work: the agent puts it back (b stays imported).
	works := karmadaAPI.WorkV1alpha1().Works(report.ExecutionNamespace(pullMember))
	name := report.WorkName(false, report.KindEndpointSlice, ns, "b-src")
	if err := works.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the report Work of b's slice put back", func() error {
		_, err := works.Get(ctx, name, metav1.GetOptions{})
		return err
	})
	expectImported(t, m1, ns, "b", "10.14.1.2", "10.14.1.3")

	// A report Work of another object's name (a second Work claiming b's slice) is ignored.
	w, err := works.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	forged := w.DeepCopy()
	forged.ObjectMeta = metav1.ObjectMeta{Name: report.WorkName(false, report.KindEndpointSlice, ns, "forged"), Namespace: w.Namespace, Labels: w.Labels,
		Annotations: map[string]string{report.AnnotationObject: report.ObjectRef(report.KindEndpointSlice, ns, "forged")}}
	if _, err := works.Create(ctx, forged, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The agent removes it (no such slice in member3), and meanwhile nothing changes.
	eventually(t, 30*time.Second, "the forged report Work removed by the agent", func() error {
		_, err := works.Get(ctx, forged.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
	expectImported(t, m1, ns, "b", "10.14.1.2", "10.14.1.3")
}

// A Pull member whose mcs-agent stops renewing its report is not Ready for the failure policy:
// under drain, its exports leave every importer after the grace, and come back with the agent.
func TestPullAgentGoneDrains(t *testing.T) {
	stopAgent()
	if err := startAgentWith(4 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopAgent()
		if err := startAgent(); err != nil {
			t.Error(err)
		}
	})
	startController(t, controller.Options{FailureGrace: time.Second})
	ns := pullNamespace(t, "pulldrain")
	m1, m3 := members["member1"], members[pullMember]
	serve(t, m3, ns, "edge", false, 80, "10.14.2.1")
	export(t, m3, ns, "edge")
	expectImported(t, m1, ns, "edge", "10.14.2.1")
	before := expectDerived(t, m1, ns, "derived-edge")

	stopAgent()
	start := time.Now()
	expectImported(t, m1, ns, "edge")
	// The lease (4 s) runs from the last renewal, made once a quarter of it is old, looked at
	// every 0.5 s: at most 1.5 s before the stop. Then the grace (1 s).
	if d := time.Since(start); d < 3*time.Second {
		t.Errorf("drained %s after the agent stopped: before its lease (4 s, renewed at most 1.5 s before) and the grace (1 s) ran out", d)
	}
	after := expectDerived(t, m1, ns, "derived-edge")
	if after.Spec.ClusterIP != before.Spec.ClusterIP {
		t.Errorf("derived-edge's ClusterIP changed while drained: %s -> %s", before.Spec.ClusterIP, after.Spec.ClusterIP)
	}
	if err := startAgentWith(4 * time.Second); err != nil {
		t.Fatal(err)
	}
	expectImported(t, m1, ns, "edge", "10.14.2.1")
}
