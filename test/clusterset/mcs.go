package clusterset

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ClusterGVR is Karmada's Cluster resource (served by karmada-aggregated-apiserver).
var ClusterGVR = schema.GroupVersionResource{Group: "cluster.karmada.io", Version: "v1alpha1", Resource: "clusters"}

// PropagateMCSCRDs applies the seed's CRD propagation policies (step 0) and waits until both
// members serve the MCS API and Karmada has noticed it (Cluster.status.apiEnablements): objects of
// a new API created before that can stay unscheduled for minutes.
func (e *Env) PropagateMCSCRDs(t testing.TB) {
	t.Helper()
	e.KubectlT(t, Karmada, "", "apply", "-f", e.Seed("00-crd-propagation.yaml"))
	e.WaitMCSAPI(t, Member1, Member2)
}

// WaitMCSAPI waits until the members serve both MCS CRDs (Established) and Karmada lists the API.
func (e *Env) WaitMCSAPI(t testing.TB, members ...string) {
	t.Helper()
	dyn := e.Dynamic(t, Karmada)
	for _, member := range members {
		for _, crd := range []string{"serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io"} {
			Eventually(t, 90*time.Second, fmt.Sprintf("CRD %s established in %s", crd, member), func() error {
				out, err := e.Run(member, "", "get", "crd", crd, "-o", `jsonpath={.status.conditions[?(@.type=="Established")].status}`)
				if err != nil {
					return err
				}
				if out != "True" {
					return fmt.Errorf("Established=%q", out)
				}
				return nil
			})
		}
		Eventually(t, 90*time.Second, "Karmada lists the MCS API in Cluster "+member, func() error {
			c, err := dyn.Resource(ClusterGVR).Get(context.Background(), member, metav1.GetOptions{})
			if err != nil {
				return err
			}
			// The scheduler filters by kind: both must be listed (a Pull member's karmada-agent
			// reports them on its own schedule, after the CRDs are there).
			status, _ := c.Object["status"].(map[string]any)
			list, _ := status["apiEnablements"].([]any)
			kinds := map[string]bool{}
			for _, x := range list {
				if m, ok := x.(map[string]any); ok && m["groupVersion"] == "multicluster.x-k8s.io/v1alpha1" {
					rs, _ := m["resources"].([]any)
					for _, r := range rs {
						if r, ok := r.(map[string]any); ok {
							kinds[fmt.Sprint(r["kind"])] = true
						}
					}
				}
			}
			if kinds["ServiceExport"] && kinds["ServiceImport"] {
				return nil
			}
			return fmt.Errorf("apiEnablements lists multicluster.x-k8s.io/v1alpha1 kinds %v, want ServiceExport and ServiceImport", kinds)
		})
	}
}

// ApplyMCSCRDs (re-)installs the MCS CRDs the clusterset put on the Karmada control plane
// (CMCS_MCS_CRDS: Karmada's v1alpha1 copy by default, or the mcs-api v0.5 ones).
func (e *Env) ApplyMCSCRDs(t testing.TB) {
	t.Helper()
	dir := e.Vars["CMCS_MCS_CRDS_DIR"]
	flag := "-f"
	if _, err := os.Stat(filepath.Join(dir, "kustomization.yaml")); err == nil {
		flag = "-k"
	}
	e.KubectlT(t, Karmada, "", "apply", "--server-side", flag, dir)
}

// UseMCSAPICRDs installs the mcs-api v0.5.2 CRDs (manifests/crds: v1alpha1 and v1beta1 served,
// v1beta1 stored) in both members directly, over the v1alpha1-only copies Karmada propagated (the
// Karmada control plane keeps its copy: the seed's v1alpha1 policies need Karmada to watch
// v1alpha1, see hack/clusterset.sh), and waits until both members serve v1beta1. There is no way
// back (v1beta1 becomes a stored version): later tests see members serving both versions, as
// hack/bench.sh sets them up. Karmada's Work for those CRDs then fails to apply its older copy,
// which changes nothing else.
func (e *Env) UseMCSAPICRDs(t testing.TB) {
	t.Helper()
	e.PropagateMCSCRDs(t)
	for _, member := range []string{Member1, Member2} {
		e.KubectlT(t, member, "", "apply", "--server-side", "--force-conflicts", "-k", filepath.Join(e.Root, "manifests", "crds"))
		for _, r := range []string{"serviceexports", "serviceimports"} {
			Eventually(t, 90*time.Second, member+" serves "+r+".v1beta1.multicluster.x-k8s.io", func() error {
				_, err := e.Run(member, "", "get", r+".v1beta1.multicluster.x-k8s.io", "-A")
				return err
			})
		}
	}
}
