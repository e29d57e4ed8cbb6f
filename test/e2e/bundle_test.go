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

// TestSeedBundleLayout: the seed with --work-layout=bundle on real Karmada (v1.16's execution
// controller applying multi-manifest Works): member2 gets derived-serve and member1's endpoints
// from one Work, mcs-imp-…, that Karmada reports Applied; member2's DNS answers; the export going
// takes the Work, the Service and the slices with it.
func TestSeedBundleLayout(t *testing.T) {
	ctx := context.Background()
	env.StartController(t, "--work-layout=bundle")
	dns := env.StartMemberDNS(t, clusterset.Member2)
	applySeed(t)
	m1, m2 := env.Client(t, clusterset.Member1), env.Client(t, clusterset.Member2)
	works := env.Dynamic(t, clusterset.Karmada).Resource(workGVR).Namespace("karmada-es-member2")
	selector := "mcs.coredns-mcs.io/service-namespace=default,mcs.coredns-mcs.io/service-name=serve"

	clusterset.Eventually(t, 60*time.Second, "member2 imports member1's serve pods through one Applied mcs-imp Work", func() error {
		want, err := servePodIPs(ctx, m1)
		if err != nil || len(want) == 0 {
			return fmt.Errorf("member1 serve pods %v (err=%v)", want, err)
		}
		got, _, err := readyIPs(ctx, m2, "default", "kubernetes.io/service-name=derived-serve")
		if err != nil || !slices.Equal(got, want) {
			return fmt.Errorf("member2 slices %v (err=%v), want %v", got, err, want)
		}
		if _, err := m2.CoreV1().Services("default").Get(ctx, "derived-serve", metav1.GetOptions{}); err != nil {
			return err
		}
		list, err := works.List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return err
		}
		if len(list.Items) != 1 || !strings.HasPrefix(list.Items[0].GetName(), "mcs-imp-") {
			var names []string
			for _, w := range list.Items {
				names = append(names, w.GetName())
			}
			return fmt.Errorf("Works in karmada-es-member2: %v, want one mcs-imp-…", names)
		}
		if s, r, _ := condition(&list.Items[0], "Applied"); s != "True" {
			return fmt.Errorf("%s Applied=%s/%s", list.Items[0].GetName(), s, r)
		}
		return nil
	})
	clusterset.Eventually(t, 30*time.Second, "member2's coredns-mcs answers serve.default.svc.clusterset.local", func() error {
		if r := clusterset.Dig(t, dns.Addr, "serve.default.svc.clusterset.local", "A"); r.Status != "NOERROR" || len(r.Answers) != 1 {
			return fmt.Errorf("%s %v", r.Status, r.Answers)
		}
		return nil
	})

	deleteSeed(t) // waits for derived-serve to leave member2 and for our Works to go
	if ips, _, err := readyIPs(ctx, m2, "default", "kubernetes.io/service-name=derived-serve"); err != nil || len(ips) > 0 {
		t.Errorf("member2 still holds derived-serve endpoints %v (err=%v)", ips, err)
	}
}
