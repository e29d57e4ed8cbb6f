//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// TestManifestsApply: every kustomization applies with a server-side dry run where it belongs:
// the controller's on the Karmada control plane, the member side on both members.
func TestManifestsApply(t *testing.T) {
	dir := filepath.Join(env.Root, "manifests")
	// A dry run does not create the namespace it applies, so the host's must exist already, as it
	// does where Karmada runs.
	env.KubectlT(t, clusterset.Member1, "apiVersion: v1\nkind: Namespace\nmetadata: {name: karmada-system}\n", "apply", "-f", "-")
	for _, tc := range []struct {
		kustomization string
		contexts      []string
	}{
		{"crds", []string{clusterset.Karmada}},
		{"controller/karmada", []string{clusterset.Karmada}},
		{"controller/host", []string{clusterset.Member1}}, // any cluster can play Karmada's host
		{"overlays/production", []string{clusterset.Member1}},
		{"karmada", []string{clusterset.Karmada}},
		{"member", []string{clusterset.Member1, clusterset.Member2}},
		{"agent/member", []string{clusterset.Member1}},
		{"agent/karmada", []string{clusterset.Karmada}}, // through the overlay below
	} {
		path := filepath.Join(dir, tc.kustomization)
		if tc.kustomization == "agent/karmada" {
			// Per Pull member: its namespace set by an overlay, as the kustomization says.
			path = t.TempDir()
			rel, err := filepath.Rel(path, filepath.Join(dir, tc.kustomization)) // kustomize wants it relative
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(path, "kustomization.yaml"), []byte("namespace: karmada-es-member1\nresources: ["+rel+"]\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for _, ctx := range tc.contexts {
			out := env.KubectlT(t, ctx, "", "apply", "--dry-run=server", "-k", path)
			if !strings.Contains(out, "(server dry run)") {
				t.Errorf("%s on %s: %q", tc.kustomization, ctx, out)
			}
		}
	}
}

// TestRBACNoWildcards: no rule in manifests/ grants a "*" verb, resource or API group.
func TestRBACNoWildcards(t *testing.T) {
	rules := 0
	err := filepath.Walk(filepath.Join(env.Root, "manifests"), func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, doc := range strings.Split(string(b), "\n---") {
			var role struct {
				Kind  string              `json:"kind"`
				Rules []rbacv1.PolicyRule `json:"rules"`
			}
			if err := yaml.Unmarshal([]byte(doc), &role); err != nil || (role.Kind != "Role" && role.Kind != "ClusterRole") {
				continue
			}
			for _, r := range role.Rules {
				rules++
				if slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") {
					t.Errorf("%s: wildcard in rule %+v", path, r)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rules == 0 {
		t.Fatal("no RBAC rule found under manifests/")
	}
}

// TestCRDPropagationNamesNoMember: the kustomize CRD policy is the chart's, selects the CRDs the
// seed's policies select, and names no member.
func TestCRDPropagationNamesNoMember(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(env.Root, "manifests", "karmada", "crd-propagation.yaml"))
	must(t, err)
	manifest := objects(t, string(b))["ClusterPropagationPolicy/coredns-mcs-crds"]
	chart := objects(t, helm(t, "template", "coredns-mcs", "charts/coredns-mcs-karmada", "--namespace", "karmada-system"))["ClusterPropagationPolicy/coredns-mcs-crds"]
	if manifest == nil || chart == nil || canonical(t, manifest) != canonical(t, chart) {
		t.Errorf("manifests/karmada/crd-propagation.yaml and the chart's policy differ:\n%s\n%s", canonical(t, manifest), canonical(t, chart))
	}
	if strings.Contains(string(b), "clusterNames") {
		t.Error("manifests/karmada/crd-propagation.yaml names members")
	}
	seed, err := os.ReadFile(env.Seed("00-crd-propagation.yaml"))
	must(t, err)
	for _, crd := range []string{"serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io"} {
		if !strings.Contains(string(seed), crd) || !strings.Contains(canonical(t, manifest), crd) {
			t.Errorf("%s: selected by the seed's policies and ours? seed %v, ours %v", crd, strings.Contains(string(seed), crd), strings.Contains(canonical(t, manifest), crd))
		}
	}
	// Its placement (no cluster names) carries a CRD to every member: the same policy, selecting a
	// throwaway CRD instead of the MCS ones (which the seed's policies hold in this clusterset).
	probe := strings.NewReplacer("coredns-mcs-crds", "coredns-mcs-placement-probe",
		"serviceexports.multicluster.x-k8s.io", "probes.placement.coredns-mcs.io",
		"serviceimports.multicluster.x-k8s.io", "probes.placement.coredns-mcs.io").Replace(string(b))
	crd := `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: probes.placement.coredns-mcs.io}
spec:
  group: placement.coredns-mcs.io
  names: {kind: Probe, plural: probes}
  scope: Namespaced
  versions: [{name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}]
`
	env.KubectlT(t, clusterset.Karmada, crd, "apply", "-f", "-")
	env.KubectlT(t, clusterset.Karmada, probe, "apply", "-f", "-")
	t.Cleanup(func() {
		env.Run(clusterset.Karmada, "", "delete", "clusterpropagationpolicy", "coredns-mcs-placement-probe", "--ignore-not-found")
		env.Run(clusterset.Karmada, "", "delete", "crd", "probes.placement.coredns-mcs.io", "--ignore-not-found")
	})
	for _, m := range []string{clusterset.Member1, clusterset.Member2} {
		clusterset.Eventually(t, 60*time.Second, "the probe CRD in "+m, func() error {
			_, err := env.Run(m, "", "get", "crd", "probes.placement.coredns-mcs.io")
			return err
		})
	}
}

// TestMemberCorefileIsExample keeps manifests/member/Corefile equal to corefile.example.
func TestMemberCorefileIsExample(t *testing.T) {
	a, err := os.ReadFile(filepath.Join(env.Root, "corefile.example"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(env.Root, "manifests", "member", "Corefile"))
	if err != nil {
		t.Fatal(err)
	}
	if string(a) != string(b) {
		t.Error("manifests/member/Corefile differs from corefile.example")
	}
}

// TestCoreDNSDeploymentPatch: the patch that switches a stock CoreDNS Deployment to coredns-mcs
// is accepted by a real apiserver (server-side dry run on a Deployment shaped like kubeadm's).
func TestCoreDNSDeploymentPatch(t *testing.T) {
	stock := `apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 2
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      containers:
      - name: coredns
        image: registry.k8s.io/coredns/coredns:v1.12.0
        args: ["-conf", "/etc/coredns/Corefile"]
        ports: [{containerPort: 53, protocol: UDP, name: dns}]
`
	env.KubectlT(t, clusterset.Member2, stock, "apply", "-f", "-")
	t.Cleanup(func() {
		env.Run(clusterset.Member2, "", "-n", "kube-system", "delete", "deployment", "coredns", "--ignore-not-found")
	})
	out := env.KubectlT(t, clusterset.Member2, "", "-n", "kube-system", "patch", "deployment", "coredns", "--dry-run=server",
		"--type", "strategic", "--patch-file", filepath.Join(env.Root, "manifests", "member", "coredns-deployment-patch.yaml"), "-o",
		"jsonpath={.spec.template.spec.containers[0].image} {.spec.strategy.rollingUpdate.maxUnavailable}")
	var chart struct{ AppVersion string }
	b, err := os.ReadFile(filepath.Join(env.Root, "charts", "coredns-mcs", "Chart.yaml"))
	must(t, err)
	must(t, yaml.Unmarshal(b, &chart))
	if want := "coredns-mcs/coredns-mcs:" + chart.AppVersion + " 0"; out != want {
		t.Errorf("patched Deployment: %q, want %q (the coredns-mcs image at the charts' version, maxUnavailable 0)", out, want)
	}
}

// TestLeastPrivilege runs the seed flow with the controller and coredns-mcs holding only the
// credentials of their manifests' ServiceAccounts (tokens minted from those accounts, not the
// admin certificate): the RBAC in manifests/ is enough.
func TestLeastPrivilege(t *testing.T) {
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	env.KubectlT(t, clusterset.Karmada, "", "apply", "-f", filepath.Join(env.Root, "manifests", "controller", "karmada", "rbac.yaml"))
	env.KubectlT(t, clusterset.Member2, "", "apply", "-f", filepath.Join(env.Root, "manifests", "member", "rbac.yaml"))
	env.KubectlT(t, clusterset.Member2, `apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
`, "apply", "-f", "-")
	karmadaToken := env.TokenKubeconfig(t, clusterset.Karmada, "karmada-system", "coredns-mcs-controller")
	member2Token := env.TokenKubeconfig(t, clusterset.Member2, "kube-system", "coredns")
	// The token really is limited: it cannot read Deployments.
	if out, err := env.RunWith(karmadaToken, "get", "deployments", "-A"); err == nil {
		t.Fatalf("the controller's token can list deployments: %s", out)
	}

	// With leader election on, as in the Deployment: the Lease and its events need RBAC too.
	ctrl := env.StartControllerWith(t, karmadaToken, "--leader-elect=true", "--leader-election-namespace=karmada-system")
	dnsPort, healthPort, readyPort, metricsPort := clusterset.FreePort(t), clusterset.FreePort(t), clusterset.FreePort(t), clusterset.FreePort(t)
	dns := clusterset.StartCoreDNS(t, env.CorefileWith(t, member2Token, clusterset.Member2, dnsPort, healthPort, readyPort, metricsPort),
		dnsPort, healthPort, readyPort, metricsPort, true)
	applySeed(t)

	m2 := env.Client(t, clusterset.Member2)
	var clusterIP string
	clusterset.Eventually(t, 60*time.Second, "derived-serve with endpoints in member2", func() error {
		svc, err := m2.CoreV1().Services("default").Get(ctx, "derived-serve", metav1.GetOptions{})
		if err != nil {
			return err
		}
		ips, _, err := readyIPs(ctx, m2, "default", "kubernetes.io/service-name=derived-serve")
		if err != nil || len(ips) != 1 {
			return fmt.Errorf("endpoints %v (err=%v)", ips, err)
		}
		clusterIP = svc.Spec.ClusterIP
		return nil
	})
	expectConditions(t, clusterset.Karmada, "default", "serve", map[string]string{"Valid": "True/Valid", "Ready": "True/Exported"})
	clusterset.Eventually(t, 10*time.Second, "coredns-mcs (member2 token) answers", func() error {
		r := clusterset.Dig(t, dns.Addr, "serve.default.svc.clusterset.local.", "A")
		if r.Status != "NOERROR" || !slices.Equal(r.Answers, []string{clusterIP}) {
			return fmt.Errorf("%s %v", r.Status, r.Answers)
		}
		return nil
	})
	if strings.Contains(ctrl.Log(), "forbidden") || strings.Contains(dns.Log(), "forbidden") {
		t.Errorf("a request was forbidden:\ncontroller:\n%s\ncoredns-mcs:\n%s", ctrl.Log(), dns.Log())
	}
}
