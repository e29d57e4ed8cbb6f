//go:build e2e

// Package e2e runs the seed's flow on the local clusterset: real kube-apiservers, real Karmada,
// kwok nodes. Build tag e2e; `make test` runs it.
package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/coredns-mcs/coredns-mcs/test/clusterset"
)

var env *clusterset.Env

func TestMain(m *testing.M) {
	clusterset.Main(m, &env, func() {
		if images.rootfs != "" {
			_ = os.RemoveAll(filepath.Dir(images.rootfs))
		}
	})
}

// TestSeedStep1 is the seed's step 1, with its YAML as written: the workload goes to member1 only.
func TestSeedStep1(t *testing.T) {
	ctx := context.Background()
	env.PropagateMCSCRDs(t)
	deleteSeed(t) // start from nothing, whatever ran before
	t.Cleanup(func() { deleteSeed(t) })
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
	// Karmada propagates the Deployment and the Service separately: the pod can run before the
	// Service is there.
	var svc *corev1.Service
	clusterset.Eventually(t, 30*time.Second, "Service serve in member1", func() error {
		var err error
		svc, err = m1.CoreV1().Services("default").Get(ctx, "serve", metav1.GetOptions{})
		return err
	})
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
