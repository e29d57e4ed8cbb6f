//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// TestDeclaredExportNeverLands: a ServiceExport template on Karmada, scheduled to member1, where
// an admission policy refuses it, so it never lands. The controller counts member1 as an exporter
// from the template's binding (declared.go) and withdraws it once Karmada reports the apply
// failed: member2 ends with nothing imported, and the template carries a Warning event that
// says why.
func TestDeclaredExportNeverLands(t *testing.T) {
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	env.StartController(t)
	name := fmt.Sprintf("refused-%d", time.Now().UnixNano()%1000000)
	derived := "derived-" + name
	m1, m2 := env.Client(t, clusterset.Member1), env.Client(t, clusterset.Member2)

	// member1 refuses this ServiceExport (a ValidatingAdmissionPolicy: no webhook to run).
	policy := fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: deny-%[1]s}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - {apiGroups: [multicluster.x-k8s.io], apiVersions: ["*"], operations: [CREATE, UPDATE], resources: [serviceexports]}
  validations:
    - {expression: "object.metadata.name != '%[1]s'", message: "exports of %[1]s are not allowed in this cluster"}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: deny-%[1]s}
spec: {policyName: deny-%[1]s, validationActions: [Deny]}
`, name)
	template := fmt.Sprintf(`apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: %[1]s, namespace: default}
---
apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {name: %[1]s, namespace: default}
spec:
  resourceSelectors:
    - {apiVersion: multicluster.x-k8s.io/v1alpha1, kind: ServiceExport, name: %[1]s}
  placement: {clusterAffinity: {clusterNames: [member1]}}
`, name)
	t.Cleanup(func() {
		env.Run(clusterset.Karmada, template, "delete", "--ignore-not-found", "-f", "-")
		env.Run(clusterset.Member1, policy, "delete", "--ignore-not-found", "-f", "-")
		env.Run(clusterset.Member1, "", "-n", "default", "delete", "--ignore-not-found", "service/"+name, "endpointslice/"+name+"-manual")
		env.Run(clusterset.Member2, "", "-n", "default", "delete", "--ignore-not-found", "serviceimports.v1alpha1.multicluster.x-k8s.io/"+name)
		expectGoneNS(t, m2, "default", derived)
		expectNoWorks(t, "mcs.coredns-mcs.io/service-namespace=default,mcs.coredns-mcs.io/service-name="+name)
	})
	env.KubectlT(t, clusterset.Member1, policy, "apply", "-f", "-")
	clusterset.Eventually(t, 30*time.Second, "member1's admission policy in force", func() error {
		_, err := env.Run(clusterset.Member1, fmt.Sprintf("apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: %s, namespace: default}\n", name),
			"create", "--dry-run=server", "-f", "-")
		if err == nil || !strings.Contains(err.Error(), "not allowed") {
			return fmt.Errorf("a ServiceExport %s is still accepted (%v)", name, err)
		}
		return nil
	})

	// member1 serves the Service (as if Karmada had propagated it earlier); member2 imports it.
	env.KubectlT(t, clusterset.Member1, fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: default}
spec: {ports: [{name: http, port: 8080, protocol: TCP}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %[1]s-manual, namespace: default, labels: {kubernetes.io/service-name: %[1]s}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints: [{addresses: ["10.10.9.9"], conditions: {ready: true}}]
`, name), "apply", "-f", "-")
	env.KubectlT(t, clusterset.Member2, fmt.Sprintf(`apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: %s, namespace: default}
spec: {type: ClusterSetIP, ports: [{name: http, port: 8080, protocol: TCP}]}
`, name), "apply", "-f", "-")

	// The export is declared on Karmada; Karmada schedules it to member1, where it is refused.
	env.KubectlT(t, clusterset.Karmada, template, "apply", "-f", "-")
	clusterset.Eventually(t, 90*time.Second, "the controller tells on the template that member1's export is withdrawn", func() error {
		out, err := env.Run(clusterset.Karmada, "", "-n", "default", "get", "events", "--field-selector",
			"reason=DeclaredServiceExportApplyFailed,involvedObject.name="+name, "-o", "jsonpath={.items[*].message}")
		if err != nil || !strings.Contains(out, "member1") || !strings.Contains(out, "not allowed") {
			return fmt.Errorf("no such event yet: %q (err=%v)", out, err)
		}
		return nil
	})
	expectGoneWithin(t, 60*time.Second, m2, "default", derived)
	// And it stays withdrawn: Karmada keeps retrying the refused apply.
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		if _, err := m2.CoreV1().Services("default").Get(ctx, derived, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("%s back in member2 after the withdrawal (err=%v)", derived, err)
		}
	}
	if _, err := m1.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Fatalf("member1's Service %s: %v", name, err)
	}
}
