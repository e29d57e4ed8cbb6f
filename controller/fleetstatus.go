package controller

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"

	"github.com/coredns-mcs/coredns-mcs/internal/mcs"
	"github.com/coredns-mcs/coredns-mcs/internal/version"
)

// The controller's view of the fleet is published for people and tools (`kubectl mcs status`) as
// a ConfigMap on the Karmada control plane, as cluster-autoscaler publishes
// kube-system/cluster-autoscaler-status: what only the controller knows (whether it follows a
// member, whether it drained one, the cluster ids it accepted) next to what Karmada says.

const (
	statusRefresh  = 30 * time.Second
	statusInterval = 5 * time.Second
)

// publishStatus writes the FleetStatus every statusInterval when it changed, and every
// statusRefresh anyway. It runs on the leader only.
func (c *Controller) publishStatus(ctx context.Context, namespace string) {
	logger := klog.FromContext(ctx).WithValues("configmap", namespace+"/"+mcs.StatusConfigMap)
	var last []byte
	var written time.Time
	var lastErr string
	t := time.NewTicker(statusInterval)
	defer t.Stop()
	for {
		st := c.fleetStatus(ctx)
		body, _ := json.Marshal(struct {
			M []mcs.MemberStatus
			K []string
		}{st.Members, st.KarmadaMCS})
		if string(body) != string(last) || time.Since(written) >= statusRefresh {
			st.Updated = metav1.Now()
			if err := c.writeStatusConfigMap(ctx, namespace, st); err != nil {
				if err.Error() != lastErr { // said once per different error, not every interval
					logger.Error(err, "writing the fleet status")
				}
				lastErr = err.Error()
			} else {
				last, written, lastErr = body, time.Now(), ""
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Controller) fleetStatus(ctx context.Context) mcs.FleetStatus {
	st := mcs.FleetStatus{Version: version.Get(), KarmadaMCS: c.detectKarmadaMCS(ctx)}
	c.mu.RLock()
	c.syncMu.Lock()
	for _, obj := range c.clusterInf.GetStore().List() {
		cl := obj.(*clusterv1alpha1.Cluster)
		ready, _ := clusterReady(cl)
		ms := mcs.MemberStatus{Name: cl.Name, Mode: string(cl.Spec.SyncMode), Ready: ready, Drained: c.drainedNow[cl.Name]}
		if m := c.members[cl.Name]; m != nil {
			ms.Synced = c.syncedNow[cl.Name]
			ms.ClusterID = m.clusterID()
			ms.NotServed = c.refusedNow[cl.Name]
			if m.pull != nil {
				ms.Agent = m.agentVersion()
			}
			switch {
			case !ms.Synced && ms.NotServed == "" && m.pull != nil:
				ms.NotServed = "its mcs-agent has not reported every object of the member yet (not installed, not running, or no access to karmada-es-" + cl.Name + ")"
			case !ms.Synced && ms.NotServed == "":
				ms.NotServed = "the controller's caches of the member are not synced (not joined yet, no working credentials, or unreachable)"
			}
		} else {
			ms.NotServed = "not joined by the controller (no apiEndpoint, or credentials refused or unreadable: see the Cluster's events)"
		}
		st.Members = append(st.Members, ms)
	}
	c.syncMu.Unlock()
	c.mu.RUnlock()
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].Name < st.Members[j].Name })
	return st
}

func (c *Controller) writeStatusConfigMap(ctx context.Context, namespace string, st mcs.FleetStatus) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, KarmadaRequestTimeout)
	defer cancel()
	cms := c.kube.CoreV1().ConfigMaps(namespace)
	cm, err := cms.Get(ctx, mcs.StatusConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: mcs.StatusConfigMap, Namespace: namespace, Labels: map[string]string{labelManagedBy: ManagedBy}},
			Data:       map[string]string{mcs.StatusKey: string(b)},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	cm.Data = map[string]string{mcs.StatusKey: string(b)}
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// Karmada's own MCS controllers leave these behind them on the control plane.
var (
	karmadaMCSWorkLabels = []string{"endpointslice.karmada.io/name", "multiclusterservice.karmada.io/name"}
	karmadaMCSSliceOwner = "endpointslice.kubernetes.io/managed-by in (endpointslice-controller.karmada.io,endpointslice-dispatch-controller.karmada.io)"
)

// detectKarmadaMCS looks for the Works and EndpointSlices Karmada's own MCS controllers write
// (serviceExport/endpointsliceCollect report Works, imported-* slices, dispatched slices). Found,
// it is said in the fleet status, in coredns_mcs_controller_karmada_mcs_detected and once as a
// Warning event on the object found.
func (c *Controller) detectKarmadaMCS(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, KarmadaRequestTimeout)
	defer cancel()
	var found []string
	var first runtime.Object
	for _, l := range karmadaMCSWorkLabels {
		list, err := c.karmada.WorkV1alpha1().Works(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: l, Limit: 1})
		if err != nil {
			klog.FromContext(ctx).V(2).Info("looking for Karmada's own MCS Works", "err", err)
			continue
		}
		for i := range list.Items {
			w := &list.Items[i]
			found = append(found, "Work "+w.Namespace+"/"+w.Name+" (label "+l+")")
			if first == nil {
				first = w
			}
		}
	}
	slices, err := c.kube.DiscoveryV1().EndpointSlices(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: karmadaMCSSliceOwner, Limit: 1})
	if err == nil {
		for i := range slices.Items {
			s := &slices.Items[i]
			found = append(found, "EndpointSlice "+s.Namespace+"/"+s.Name+" (managed-by "+s.Labels["endpointslice.kubernetes.io/managed-by"]+")")
			if first == nil {
				first = s
			}
		}
	}
	v := 0.0
	if len(found) > 0 {
		v = 1
	}
	karmadaMCSGauge.Set(v)
	c.syncMu.Lock()
	was := c.karmadaMCSSeen
	c.karmadaMCSSeen = len(found) > 0
	c.syncMu.Unlock()
	if len(found) > 0 && !was {
		msg := "Karmada's own MCS controllers are running beside coredns-mcs (found " + found[0] +
			"): both write derived Services and EndpointSlices; turn off serviceExport, endpointSlice, serviceImport, " +
			"multiclusterservice, endpointsliceCollect and endpointsliceDispatch in karmada-controller-manager and karmada-agent"
		klog.FromContext(ctx).Info(msg)
		c.recorder.Event(first, corev1.EventTypeWarning, "KarmadaMCSControllersRunning", msg)
	}
	return found
}
