//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

// TestConflictingExports: the same service exported from member1 (first) and member2 with a port
// that has the same name and another number. Both exports get Conflict=True/PortConflict naming
// the clusters; the import is one service with the endpoints of both and member1's port (oldest
// export wins); once member2's port agrees, the conflict clears on both. Then session affinity
// and traffic distribution, the same way.
func TestConflictingExports(t *testing.T) {
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	env.StartController(t)
	ns := uniqueNS("conflict")
	memberNamespace(t, ns, "derived-echo")
	m2 := env.Client(t, clusterset.Member2)

	importEcho(t, ns)
	echoIn(t, clusterset.Member1, ns, "10.10.9.1", 8080)
	time.Sleep(1100 * time.Millisecond) // creationTimestamp has one-second resolution: member1's export is older
	echoIn(t, clusterset.Member2, ns, "10.12.9.1", 9090)

	for _, m := range []string{clusterset.Member1, clusterset.Member2} {
		expectConditions(t, m, ns, "echo", map[string]string{"Valid": "True/Valid", "Conflict": "True/PortConflict"})
	}
	u, err := env.Dynamic(t, clusterset.Member2).Resource(seGVR).Namespace(ns).Get(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, msg := condition(u, "Conflict"); !strings.Contains(msg, "member2") || !strings.Contains(msg, "9090") || !strings.Contains(msg, "8080") {
		t.Errorf("Conflict message %q should name member2 and both ports", msg)
	}
	clusterset.Eventually(t, 30*time.Second, "derived-echo in member2: member1's port, both exporters' endpoints", func() error {
		svc, err := m2.CoreV1().Services(ns).Get(ctx, "derived-echo", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "http" || svc.Spec.Ports[0].Port != 8080 {
			return fmt.Errorf("ports %+v, want only http 8080", svc.Spec.Ports)
		}
		ips, items, err := readyIPs(ctx, m2, ns, "kubernetes.io/service-name=derived-echo")
		if err != nil || !slices.Equal(ips, []string{"10.10.9.1", "10.12.9.1"}) {
			return fmt.Errorf("endpoints %v (err=%v), want both exporters'", ips, err)
		}
		for _, s := range items {
			if c := s.Labels["multicluster.kubernetes.io/source-cluster"]; c != "member1" && c != "member2" {
				return fmt.Errorf("slice %s source-cluster %q", s.Name, c)
			}
		}
		return nil
	})

	// member2 agrees now: the conflict clears on both exports.
	echoIn(t, clusterset.Member2, ns, "10.12.9.1", 8080)
	noConflict := func() {
		t.Helper()
		for _, m := range []string{clusterset.Member1, clusterset.Member2} {
			expectConditions(t, m, ns, "echo", map[string]string{"Conflict": "False/NoConflicts", "Ready": "True/Exported"})
		}
	}
	noConflict()

	// Other properties, one at a time on member2's Service: the reason follows, member1's value
	// (the oldest export's) is the one imported, and undoing it clears the conflict.
	for _, tc := range []struct{ patch, undo, reason string }{
		{`{"spec":{"sessionAffinity":"ClientIP"}}`, `{"spec":{"sessionAffinity":"None"}}`, "SessionAffinityConflict"},
		{`{"spec":{"trafficDistribution":"PreferClose"}}`, `{"spec":{"trafficDistribution":null}}`, "TrafficDistributionConflict"},
	} {
		env.KubectlT(t, clusterset.Member2, "", "-n", ns, "patch", "service", "echo", "--type=merge", "-p", tc.patch)
		for _, m := range []string{clusterset.Member1, clusterset.Member2} {
			expectConditions(t, m, ns, "echo", map[string]string{"Conflict": "True/" + tc.reason})
		}
		svc, err := m2.CoreV1().Services(ns).Get(ctx, "derived-echo", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if svc.Spec.SessionAffinity == "ClientIP" || svc.Spec.TrafficDistribution != nil {
			t.Errorf("%s: derived-echo took member2's value (sessionAffinity %s, trafficDistribution %v), want member1's", tc.reason,
				svc.Spec.SessionAffinity, svc.Spec.TrafficDistribution)
		}
		env.KubectlT(t, clusterset.Member2, "", "-n", ns, "patch", "service", "echo", "--type=merge", "-p", tc.undo)
		noConflict()
	}
}
