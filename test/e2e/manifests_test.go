//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// TestManifestsApply: every kustomization applies with a server-side dry run where it belongs:
// the controller's on the Karmada control plane, the member side on both members.
func TestManifestsApply(t *testing.T) {
	dir := filepath.Join(env.Root, "manifests")
	for _, tc := range []struct {
		kustomization string
		contexts      []string
	}{
		{"crds", []string{clusterset.Karmada}},
		{"controller", []string{clusterset.Karmada}},
		{"member", []string{clusterset.Member1, clusterset.Member2}},
	} {
		for _, ctx := range tc.contexts {
			out := env.KubectlT(t, ctx, "", "apply", "--dry-run=server", "-k", filepath.Join(dir, tc.kustomization))
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
