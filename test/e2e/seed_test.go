//go:build e2e

// Package e2e runs the seed's flow on the local clusterset: real kube-apiservers, real Karmada,
// kwok nodes. Build tag e2e; `make test` runs it.
package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

var env *clusterset.Env

func TestMain(m *testing.M) { clusterset.Main(m, &env) }

var clusterGVR = schema.GroupVersionResource{Group: "cluster.karmada.io", Version: "v1alpha1", Resource: "clusters"}

// propagateMCSCRDs applies the seed's CRD propagation policies and waits until both members serve
// the MCS API and Karmada has noticed it (Cluster.status.apiEnablements): objects of a new API
// created before that can stay unscheduled for minutes.
func propagateMCSCRDs(t *testing.T) {
	t.Helper()
	env.KubectlT(t, clusterset.Karmada, "", "apply", "-f", env.Seed("00-crd-propagation.yaml"))
	for _, member := range []string{clusterset.Member1, clusterset.Member2} {
		for _, crd := range []string{"serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io"} {
			clusterset.Eventually(t, 60*time.Second, fmt.Sprintf("CRD %s established in %s", crd, member), func() error {
				out, err := env.Run(member, "", "get", "crd", crd, "-o", `jsonpath={.status.conditions[?(@.type=="Established")].status}`)
				if err != nil {
					return err
				}
				if out != "True" {
					return fmt.Errorf("Established=%q", out)
				}
				return nil
			})
		}
		dyn := env.Dynamic(t, clusterset.Karmada)
		clusterset.Eventually(t, 90*time.Second, "Karmada lists the MCS API in Cluster "+member, func() error {
			c, err := dyn.Resource(clusterGVR).Get(context.Background(), member, metav1.GetOptions{})
			if err != nil {
				return err
			}
			list, _, _ := unstructuredSlice(c.Object, "status", "apiEnablements")
			for _, e := range list {
				if m, ok := e.(map[string]any); ok && m["groupVersion"] == "multicluster.x-k8s.io/v1alpha1" {
					return nil
				}
			}
			return fmt.Errorf("apiEnablements has no multicluster.x-k8s.io/v1alpha1 yet")
		})
	}
}

// TestSeedStep1 is the seed's step 1, with its YAML as written: the workload goes to member1 only.
func TestSeedStep1(t *testing.T) {
	ctx := context.Background()
	propagateMCSCRDs(t)
	t.Cleanup(func() {
		env.Run(clusterset.Karmada, "", "delete", "--ignore-not-found", "--wait=false", "-f", env.Seed("01-workload.yaml"))
	})
	env.KubectlT(t, clusterset.Karmada, "", "apply", "-f", env.Seed("01-workload.yaml"))

	m1 := env.Client(t, clusterset.Member1)
	m2 := env.Client(t, clusterset.Member2)
	podCIDR := netip.MustParsePrefix(env.Vars["CMCS_MEMBER1_POD_CIDR"])

	var podIP string
	clusterset.Eventually(t, 60*time.Second, "a Running pod of serve with an IP in member1", func() error {
		pods, err := m1.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=serve"})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.DeletionTimestamp == nil {
				ip, err := netip.ParseAddr(p.Status.PodIP)
				if err != nil || !podCIDR.Contains(ip) {
					return fmt.Errorf("pod %s has IP %q, outside member1's pod CIDR %s", p.Name, p.Status.PodIP, podCIDR)
				}
				podIP = p.Status.PodIP
				return nil
			}
		}
		return fmt.Errorf("%d pods, none Running with an IP", len(pods.Items))
	})

	if _, err := m1.AppsV1().Deployments("default").Get(ctx, "serve", metav1.GetOptions{}); err != nil {
		t.Fatalf("Deployment serve in member1: %v", err)
	}
	svc, err := m1.CoreV1().Services("default").Get(ctx, "serve", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Service serve in member1: %v", err)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 80 || svc.Spec.Ports[0].TargetPort.IntValue() != 8080 {
		t.Errorf("Service serve ports = %+v, want 80 -> 8080", svc.Spec.Ports)
	}

	clusterset.Eventually(t, 30*time.Second, "member1's EndpointSlice of serve lists the pod IP", func() error {
		list, err := m1.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=serve"})
		if err != nil {
			return err
		}
		var ips []string
		for _, s := range list.Items {
			for _, e := range s.Endpoints {
				ips = append(ips, e.Addresses...)
			}
		}
		if !slices.Equal(ips, []string{podIP}) {
			return fmt.Errorf("slices list %v, want [%s]", ips, podIP)
		}
		return nil
	})

	// Placement is member1 only: nothing of the workload in member2.
	if _, err := m2.AppsV1().Deployments("default").Get(ctx, "serve", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment serve in member2: got err=%v, want NotFound", err)
	}
	if _, err := m2.CoreV1().Services("default").Get(ctx, "serve", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Service serve in member2: got err=%v, want NotFound", err)
	}
	pods, err := m2.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=serve"})
	if err != nil || len(pods.Items) != 0 {
		t.Errorf("pods of serve in member2: %d (err=%v), want none", len(pods.Items), err)
	}
}

func unstructuredSlice(obj map[string]any, fields ...string) ([]any, bool, error) {
	cur := any(obj)
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false, nil
		}
		cur = m[f]
	}
	s, ok := cur.([]any)
	return s, ok, nil
}
