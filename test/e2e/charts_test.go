//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// helm runs the helm binary the clusterset built (hack/build-deps.sh helm) and returns stdout.
func helm(t *testing.T, args ...string) string {
	t.Helper()
	bin := env.Vars["CMCS_HELM"]
	if bin == "" {
		t.Fatal("hack/clusterset.sh env names no helm (CMCS_HELM); hack/build-deps.sh helm builds it")
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = env.Root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s\n%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// objects splits a multi-document YAML stream into objects, keyed kind/name.
func objects(t *testing.T, stream string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range strings.Split(stream, "\n---") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, doc)
		}
		if len(o) == 0 {
			continue
		}
		md, _ := o["metadata"].(map[string]any)
		out[o["kind"].(string)+"/"+md["name"].(string)] = o
	}
	return out
}

// TestCharts: the three Helm charts lint, render for every mode, name no :latest image (nor do
// the kustomize manifests: both pin the chart's appVersion), and agree with the kustomize
// manifests where both say the same thing (the controller's RBAC on Karmada, the member
// Corefile); their output is accepted by the apiservers they target (server-side dry run:
// Karmada for coredns-mcs-karmada, member1 as the host cluster for mcs-controller, member2 for
// coredns-mcs in both modes).
func TestCharts(t *testing.T) {
	charts := []string{"charts/coredns-mcs-karmada", "charts/mcs-controller", "charts/coredns-mcs"}
	controllerValues := []string{"--set", "karmada.server=https://karmada-apiserver.karmada-system.svc:5443", "--set", "karmada.token=t0ken", "--set", "karmada.caData=pem"}
	for _, c := range charts {
		args := []string{"lint", "--strict", c}
		if strings.HasSuffix(c, "mcs-controller") {
			args = append(args, controllerValues...)
		}
		helm(t, args...)
	}
	appVersion := func(chart string) string {
		var c struct{ AppVersion string }
		b, err := os.ReadFile(filepath.Join(env.Root, chart, "Chart.yaml"))
		must(t, err)
		must(t, yaml.Unmarshal(b, &c))
		return c.AppVersion
	}
	version := appVersion("charts/mcs-controller")
	for _, c := range charts {
		if v := appVersion(c); v != version {
			t.Errorf("%s appVersion %s, %s has %s: the charts move together", c, v, "charts/mcs-controller", version)
		}
	}

	karmadaSide := helm(t, "template", "coredns-mcs", "charts/coredns-mcs-karmada", "--namespace", "karmada-system", "--include-crds")
	host := helm(t, append([]string{"template", "mcs-controller", "charts/mcs-controller", "--namespace", "karmada-system"}, controllerValues...)...)
	beside := helm(t, "template", "coredns-mcs", "charts/coredns-mcs", "--namespace", "kube-system", "--set", "mode=beside",
		"--set", "beside.service.clusterIP=10.13.0.53", "--set", "beside.customConfigMap.name=coredns-custom")
	replace := helm(t, "template", "coredns-mcs", "charts/coredns-mcs", "--namespace", "kube-system", "--set", "mode=replace")

	// Images: the chart's appVersion, never :latest, and the same in the kustomize manifests.
	imageRE := regexp.MustCompile(`image: "?([^"\s]+)"?`)
	for name, out := range map[string]string{"mcs-controller": host, "coredns-mcs beside": beside, "coredns-mcs replace": replace} {
		for _, m := range imageRE.FindAllStringSubmatch(out, -1) {
			if !strings.HasSuffix(m[1], ":"+version) {
				t.Errorf("chart %s renders image %s, want tag %s", name, m[1], version)
			}
		}
	}
	var manifestImages []string
	must(t, filepath.Walk(filepath.Join(env.Root, "manifests"), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range imageRE.FindAllStringSubmatch(string(b), -1) {
			manifestImages = append(manifestImages, m[1])
		}
		return nil
	}))
	if len(manifestImages) == 0 {
		t.Error("no image found in manifests/")
	}
	for _, img := range manifestImages {
		if !strings.HasSuffix(img, ":"+version) {
			t.Errorf("manifests/ names image %s, want tag %s (the charts' appVersion)", img, version)
		}
	}

	// The controller's RBAC on Karmada: the chart's rules are the kustomize manifest's.
	manifestRBAC, err := os.ReadFile(filepath.Join(env.Root, "manifests", "controller", "karmada", "rbac.yaml"))
	must(t, err)
	want, got := objects(t, string(manifestRBAC)), objects(t, karmadaSide)
	for k, o := range want {
		if !strings.HasPrefix(k, "ClusterRole/") && !strings.HasPrefix(k, "Role/") {
			continue
		}
		g, ok := got[k]
		if !ok {
			t.Errorf("chart coredns-mcs-karmada has no %s (manifests/controller/karmada/rbac.yaml has)", k)
			continue
		}
		if a, b := canonical(t, o["rules"]), canonical(t, g["rules"]); a != b {
			t.Errorf("%s rules differ between the manifests and the chart:\nmanifests:\n%s\nchart:\n%s", k, a, b)
		}
	}
	if p := got["ClusterPropagationPolicy/coredns-mcs-crds"]; p == nil {
		t.Error("chart coredns-mcs-karmada has no ClusterPropagationPolicy for the MCS CRDs")
	} else if strings.Contains(canonical(t, p), "clusterNames") {
		t.Errorf("the chart's CRD propagation names members: %s", canonical(t, p))
	}

	// coredns-mcs's RBAC in a member: the chart's (beside mode) is the kustomize manifest's.
	memberRBAC, err := os.ReadFile(filepath.Join(env.Root, "manifests", "member", "rbac.yaml"))
	must(t, err)
	if a, b := objects(t, string(memberRBAC))["ClusterRole/coredns-mcs"], objects(t, beside)["ClusterRole/coredns-mcs-coredns-mcs"]; a == nil || b == nil ||
		canonical(t, a["rules"]) != canonical(t, b["rules"]) {
		t.Errorf("coredns-mcs's ClusterRole differs between manifests/member/rbac.yaml and the chart (beside):\n%v\n%v", a, b)
	}

	// The member Corefile: replace mode renders corefile.example (comments aside).
	example, err := os.ReadFile(filepath.Join(env.Root, "corefile.example"))
	must(t, err)
	cm := objects(t, replace)["ConfigMap/coredns-mcs"]
	if cm == nil {
		t.Fatal("coredns-mcs replace mode renders no ConfigMap coredns-mcs")
	}
	if a, b := directives(string(example)), directives(cm["data"].(map[string]any)["Corefile"].(string)); a != b {
		t.Errorf("replace mode's Corefile differs from corefile.example:\nexample:\n%s\nchart:\n%s", a, b)
	}
	bo := objects(t, beside)
	if bo["Service/coredns-mcs"] == nil || bo["ConfigMap/coredns-custom"] == nil {
		t.Errorf("beside mode renders no coredns-mcs Service or custom ConfigMap: %v", keys(bo))
	}
	if !strings.Contains(canonical(t, bo["ConfigMap/coredns-custom"]), "forward . 10.13.0.53") {
		t.Errorf("beside mode's stanza for the cluster's CoreDNS does not forward to the Service IP: %s", canonical(t, bo["ConfigMap/coredns-custom"]))
	}
	if dep := canonical(t, objects(t, replace)["Deployment/coredns-mcs"]); !strings.Contains(dep, "k8s-app: kube-dns") {
		t.Errorf("replace mode's pods are not labelled k8s-app=kube-dns:\n%s", dep)
	}

	// Monitoring: the alert rules and the dashboard render (the Prometheus operator's CRDs are not
	// on the clusterset, so these are not dry-run).
	mon := objects(t, helm(t, append([]string{"template", "mcs-controller", "charts/mcs-controller", "--namespace", "karmada-system",
		"--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.grafanaDashboard.enabled=true",
		"--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.bearerTokenSecret.name=scraper"}, controllerValues...)...))
	if r := mon["PrometheusRule/coredns-mcs-controller"]; r == nil || !strings.Contains(canonical(t, r), "CoreDNSMCSMemberDrained") {
		t.Errorf("no PrometheusRule with the controller's alerts: %v", keys(mon))
	}
	if d := mon["ConfigMap/coredns-mcs-controller-dashboard"]; d == nil {
		t.Errorf("no dashboard ConfigMap: %v", keys(mon))
	} else {
		var dash struct{ Panels []any }
		if err := json.Unmarshal([]byte(d["data"].(map[string]any)["coredns-mcs.json"].(string)), &dash); err != nil || len(dash.Panels) < 10 {
			t.Errorf("the dashboard's JSON: %v, %d panels", err, len(dash.Panels))
		}
	}
	if mon["ServiceMonitor/coredns-mcs-controller"] == nil {
		t.Errorf("no ServiceMonitor: %v", keys(mon))
	}

	// Accepted by the apiservers they target.
	env.PropagateMCSCRDs(t)
	dryRun(t, clusterset.Karmada, karmadaSide)
	env.Run(clusterset.Member1, "", "create", "namespace", "karmada-system")
	dryRun(t, clusterset.Member1, host)
	dryRun(t, clusterset.Member2, beside)
	dryRun(t, clusterset.Member2, replace)
}

func dryRun(t *testing.T, ctx, stream string) {
	t.Helper()
	if out, err := env.Run(ctx, stream, "apply", "--dry-run=server", "-f", "-"); err != nil {
		t.Errorf("server-side dry run on %s: %v\n%s", ctx, err, out)
	}
}

func canonical(t *testing.T, v any) string {
	t.Helper()
	b, err := yaml.Marshal(v)
	must(t, err)
	return string(b)
}

// directives is a Corefile without comments and blank lines, each line trimmed.
func directives(corefile string) string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(corefile))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func keys(m map[string]map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
