package controller

import (
	"fmt"
	"runtime"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// BenchmarkCachedObjectCost measures what one cached object costs in the Go heap: the
// EndpointSlices and Services of a member that nobody exports, as the bench's unexported section
// writes them (one endpoint, one port), cached whole (what the controller does) and as their
// metadata only (what a metadata-only watch would keep, the floor of any cluster-wide cache).
// Reported as bytes per object (B/obj); go test -run '^$' -bench CachedObjectCost ./controller/.
func BenchmarkCachedObjectCost(b *testing.B) {
	const n = 10000
	for _, c := range []struct {
		name string
		obj  func(i int) any
		idx  cache.Indexers
	}{
		{"slice/full", func(i int) any { return benchSlice(i) }, sliceIndexers},
		{"slice/metadata", func(i int) any { return metaOnly(&benchSlice(i).ObjectMeta, "EndpointSlice") }, nil},
		{"service/full", func(i int) any { return benchService(i) }, nil},
		{"service/metadata", func(i int) any { return metaOnly(&benchService(i).ObjectMeta, "Service") }, nil},
	} {
		b.Run(c.name, func(b *testing.B) {
			var per float64
			for r := 0; r < b.N; r++ {
				before := heapInUse()
				store := cache.NewIndexer(cache.MetaNamespaceKeyFunc, c.idx)
				for i := 0; i < n; i++ {
					obj, _ := trimMeta(c.obj(i))
					_ = store.Add(obj)
				}
				per = float64(heapInUse()-before) / n
				runtime.KeepAlive(store)
			}
			b.ReportMetric(per, "B/obj")
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func benchMeta(name string, i int, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: "bench-unexported", Labels: labels,
		UID: types.UID(fmt.Sprintf("5f0c7a52-1b6e-4a8e-9d1c-%012d", i)), ResourceVersion: fmt.Sprint(100000 + i), Generation: 1,
		CreationTimestamp: metav1.Now()}
}

func benchSlice(i int) *discoveryv1.EndpointSlice {
	svc := fmt.Sprintf("svc-%05d", i/3)
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  benchMeta(fmt.Sprintf("%s-%d", svc, i%3), i, map[string]string{discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}),
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr[int32](80), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{fmt.Sprintf("10.100.%d.%d", (i/250)%250, 1+i%250)},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}, NodeName: ptr("member1-control-plane"),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "bench-unexported", Name: fmt.Sprintf("pod-%05d", i), UID: types.UID(fmt.Sprintf("pod-uid-%08d", i))}}},
	}
}

func benchService(i int) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: benchMeta(fmt.Sprintf("svc-%05d", i), i, map[string]string{"app": fmt.Sprintf("svc-%05d", i)}),
		Spec: corev1.ServiceSpec{ClusterIP: fmt.Sprintf("10.101.%d.%d", (i/250)%250, 1+i%250), ClusterIPs: []string{fmt.Sprintf("10.101.%d.%d", (i/250)%250, 1+i%250)},
			Type: corev1.ServiceTypeClusterIP, Selector: map[string]string{"app": fmt.Sprintf("svc-%05d", i)},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
}

func metaOnly(om *metav1.ObjectMeta, kind string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{Kind: kind}, ObjectMeta: *om}
}
