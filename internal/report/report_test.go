package report

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func work(t *testing.T, kind string, obj any) []byte {
	t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWorkNames(t *testing.T) {
	seen := map[string]string{}
	for _, ref := range [][3]string{
		{KindService, "a", "b"}, {KindService, "a-b", ""}, {KindEndpointSlice, "a", "b"}, {KindService, "ab", ""},
		{KindNamespace, "", "default"}, {KindService, "default", strings.Repeat("x", 253)},
	} {
		for _, status := range []bool{false, true} {
			n := WorkName(status, ref[0], ref[1], ref[2])
			if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
				t.Errorf("WorkName%v = %q: %v", ref, n, errs)
			}
			if prev, dup := seen[n]; dup {
				t.Errorf("WorkName%v = %q, as for %s", ref, n, prev)
			}
			seen[n] = ObjectRef(ref[0], ref[1], ref[2])
		}
	}
}

// A report Work decodes to its object, with the Work's resourceVersion; one that names another
// object, carries a bad name or is not a carrier is refused.
func TestDecode(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "serve", ResourceVersion: "7"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}}
	w, err := NewWork("member3", WorkName(false, KindService, "ns", "serve"), ManagedByAgent, KindService,
		ObjectRef(KindService, "ns", "serve"), work(t, KindService, svc))
	if err != nil {
		t.Fatal(err)
	}
	w.ResourceVersion = "42"
	if !*w.Spec.SuspendDispatching || w.Namespace != "karmada-es-member3" {
		t.Errorf("work %s/%s, suspended %v", w.Namespace, w.Name, *w.Spec.SuspendDispatching)
	}
	o, err := Decode(KindService, w)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.(*corev1.Service); got.Spec.ClusterIP != "10.0.0.1" || got.ResourceVersion != "42" {
		t.Errorf("decoded %+v", got)
	}

	// Another object's Work name.
	forged := w.DeepCopy()
	forged.Name = WorkName(false, KindService, "ns", "other")
	if _, err := Decode(KindService, forged); err == nil {
		t.Error("a Work claiming another object's name decoded")
	}
	// A bad namespace.
	bad := svc.DeepCopy()
	bad.Namespace = "Not_A_Namespace"
	w2, _ := NewWork("member3", WorkName(false, KindService, bad.Namespace, "serve"), ManagedByAgent, KindService, "", work(t, KindService, bad))
	if _, err := Decode(KindService, w2); err == nil {
		t.Error("an invalid namespace decoded")
	}
	// Not a carrier.
	w3 := w.DeepCopy()
	w3.Spec.Workload.Manifests[0].Raw = []byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"serve"}}`)
	if _, err := Decode(KindService, w3); err == nil {
		t.Error("a Work without a payload decoded")
	}
	// Too large.
	w4, _ := NewWork("member3", w.Name, ManagedByAgent, KindService, "", []byte(`"`+strings.Repeat("x", MaxPayload+1)+`"`))
	if _, err := Payload(w4); err == nil {
		t.Error("a payload above MaxPayload was read")
	}
}

func TestLease(t *testing.T) {
	now := time.Now()
	c := &Cluster{RenewTime: metav1.NewMicroTime(now.Add(-50 * time.Second)), LeaseSeconds: 40}
	if gone, at := c.Expired(now); !gone || !at.Equal(c.RenewTime.Add(40*time.Second)) {
		t.Errorf("Expired = %v %v", gone, at)
	}
	c.RenewTime = metav1.NewMicroTime(now.Add(-10 * time.Second))
	if gone, _ := c.Expired(now); gone {
		t.Error("a lease renewed 10 s ago of 40 s expired")
	}
	if gone, _ := (&Cluster{}).Expired(now); gone {
		t.Error("a report without a lease expired")
	}
}
