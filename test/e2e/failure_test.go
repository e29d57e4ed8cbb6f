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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// karmadaReady returns member's Ready condition status in Karmada.
func karmadaReady(member string) string {
	out, _ := env.Run(clusterset.Karmada, "", "get", "cluster", member, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
	return strings.TrimSpace(out)
}

// waitKarmadaWrites waits until an object propagated by Karmada appears in member, then removes it.
func waitKarmadaWrites(t *testing.T, member string) {
	t.Helper()
	name := fmt.Sprintf("probe-%d", time.Now().UnixNano()%1000000)
	env.KubectlT(t, clusterset.Karmada, fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata: {name: %[1]s, namespace: default}
---
apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {name: %[1]s, namespace: default}
spec:
  resourceSelectors: [{apiVersion: v1, kind: ConfigMap, name: %[1]s}]
  placement: {clusterAffinity: {clusterNames: [%[2]s]}}
`, name, member), "apply", "-f", "-")
	defer env.Run(clusterset.Karmada, "", "-n", "default", "delete", "configmap,propagationpolicy", name, "--ignore-not-found")
	clusterset.Eventually(t, 180*time.Second, "Karmada writing to "+member+" again", func() error {
		_, err := env.Run(member, "", "-n", "default", "get", "configmap", name)
		return err
	})
}

// expectDrainedGauge checks the controller's coredns_mcs_controller_member_drained for member1.
func expectDrainedGauge(t *testing.T, ctrl *clusterset.Controller, want string) {
	t.Helper()
	line := `coredns_mcs_controller_member_drained{cluster="member1"} ` + want
	clusterset.Eventually(t, 10*time.Second, line+" on the controller's metrics", func() error {
		body, err := clusterset.Get(ctrl.Metrics)
		if err != nil {
			return err
		}
		if !strings.Contains(body, line+"\n") {
			return fmt.Errorf("not there")
		}
		return nil
	})
}

// TestMemberFailure: member1, which exports echo to member2, loses its apiserver. Under the drain
// policy, once Karmada reports it not Ready for the grace period its endpoints leave member2
// (derived-echo stays, same ClusterIP) and come back when it is Ready again. The keep policy is
// TestMemberFailureKeep (make test-chaos) on a Push member, and TestPullAgentStoppedDrains on the
// Pull member in make test.
func TestMemberFailure(t *testing.T) {
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	ctrl := env.StartController(t, "--member-failure=drain", "--member-failure-grace=5s")
	ns := uniqueNS("failure")
	exportEcho(t, ns, "10.10.6.6")
	// Runs before the namespace cleanup: member1 back, and Karmada writing to it again (it reports
	// the member Ready some time before its execution controller resumes; tests after this one
	// depend on it).
	t.Cleanup(func() {
		env.Script(t, "up")
		waitKarmadaWrites(t, clusterset.Member1)
	})
	m2 := env.Client(t, clusterset.Member2)
	endpoints := func() []string {
		ips, _, err := readyIPs(ctx, m2, ns, "kubernetes.io/service-name=derived-echo")
		if err != nil {
			t.Fatalf("member2 slices: %v", err)
		}
		return ips
	}
	var svc *corev1.Service
	clusterset.Eventually(t, 30*time.Second, "derived-echo with member1's endpoint in member2", func() error {
		if ips := endpoints(); !slices.Equal(ips, []string{"10.10.6.6"}) {
			return fmt.Errorf("endpoints %v", ips)
		}
		// Karmada applies the Works in no set order: the slices may come before the Service.
		var err error
		svc, err = m2.CoreV1().Services(ns).Get(ctx, "derived-echo", metav1.GetOptions{})
		return err
	})

	// drain
	t0 := time.Now()
	env.Script(t, "stop", "apiserver-member1")
	clusterset.Eventually(t, 150*time.Second, "member1's endpoints drained from member2", func() error {
		if ips := endpoints(); len(ips) != 0 {
			return fmt.Errorf("endpoints %v (member1 Ready in Karmada: %q)", ips, karmadaReady("member1"))
		}
		return nil
	})
	t.Logf("drained %v after member1's apiserver stopped (Karmada's not-Ready detection + 5 s grace)", time.Since(t0).Round(time.Second))
	if s, err := m2.CoreV1().Services(ns).Get(ctx, "derived-echo", metav1.GetOptions{}); err != nil || s.Spec.ClusterIP != svc.Spec.ClusterIP {
		t.Errorf("derived-echo during the drain: err=%v; it must stay with ClusterIP %s", err, svc.Spec.ClusterIP)
	}
	if !strings.Contains(ctrl.Log(), "draining the cluster's exported endpoints") {
		t.Errorf("the controller did not log the drain")
	}
	expectDrainedGauge(t, ctrl, "1")
	t1 := time.Now()
	env.Script(t, "up")
	clusterset.Eventually(t, 120*time.Second, "member1's endpoints back in member2", func() error {
		if ips := endpoints(); !slices.Equal(ips, []string{"10.10.6.6"}) {
			return fmt.Errorf("endpoints %v (member1 Ready in Karmada: %q)", ips, karmadaReady("member1"))
		}
		return nil
	})
	t.Logf("restored %v after member1's apiserver started again", time.Since(t1).Round(time.Second))
	expectDrainedGauge(t, ctrl, "0")

	env.Script(t, "up")
}
