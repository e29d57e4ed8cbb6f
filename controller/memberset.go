package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	clusterv1alpha1 "github.com/karmada-io/karmada/pkg/apis/cluster/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// syncCluster keeps the member of Karmada Cluster name in step with its object and credentials:
// it joins, reconnects (new endpoint or credentials) or leaves, and follows its readiness.
func (c *Controller) syncCluster(ctx context.Context, name string) error {
	logger := klog.FromContext(ctx).WithValues("cluster", name)
	obj, exists, err := c.clusterInf.GetStore().GetByKey(name)
	if err != nil {
		return err
	}
	c.mu.Lock()
	old := c.members[name]
	c.mu.Unlock()
	if !exists {
		if old != nil {
			logger.Info("cluster left Karmada; forgetting it")
			c.removeMember(name)
		}
		return nil
	}
	cl := obj.(*clusterv1alpha1.Cluster)
	c.trackReadiness(ctx, cl)
	if cl.Spec.SyncMode == clusterv1alpha1.Pull {
		return c.syncPullCluster(ctx, cl, old)
	}
	if old != nil && old.pull != nil {
		logger.Info("cluster is in Push mode now; reading it from its apiserver")
		c.removeMember(name)
		old = nil
	}
	if cl.Spec.APIEndpoint == "" || cl.Spec.SecretRef == nil || cl.Spec.SecretRef.Name == "" {
		return fmt.Errorf("cluster %s has no apiEndpoint or secretRef", name)
	}
	token, ca, err := c.credentials(ctx, cl)
	if errors.Is(err, errSecretRefNotAllowed) {
		// Refused before anything is read or sent; the Cluster's next change is looked at again.
		logger.Info(err.Error())
		c.recorder.Event(cl, corev1.EventTypeWarning, "SecretRefNotAllowed", err.Error())
		if old != nil {
			c.removeMember(name)
		}
		return nil
	} else if err != nil {
		return err
	}
	insecure := cl.Spec.InsecureSkipTLSVerification
	fp := fingerprint(cl.Spec.APIEndpoint, token, ca, insecure)
	if old != nil && old.fingerprint == fp {
		return nil
	}
	m, err := newMember(name, restConfigFor(cl.Spec.APIEndpoint, token, ca, insecure, c.opts.MemberQPS, c.opts.MemberBurst), c.opts.MemberTimeout, fp, c.enqueue, c.enqueueNamespace, c.declared.scheduledTo)
	if err != nil {
		return err
	}
	if old != nil {
		logger.Info("cluster credentials or endpoint changed; reconnecting")
		old.stop()
	} else {
		logger.Info("cluster joined", "apiEndpoint", cl.Spec.APIEndpoint)
	}
	// Once its caches are synced, every service is looked at again: Works held while the
	// member was unknown may go now.
	m.start(c.ctx, c.enqueue, c.enqueueAll)
	c.mu.Lock()
	c.members[name] = m
	memberGauge.Set(float64(len(c.members)))
	c.mu.Unlock()
	c.enqueueAll()
	return nil
}

// syncPullCluster keeps the Pull member of Cluster cl (old: as known) read from its agent's
// reports; nothing of its credentials is read, and its apiserver is never called.
func (c *Controller) syncPullCluster(ctx context.Context, cl *clusterv1alpha1.Cluster, old *member) error {
	if old != nil && old.pull != nil {
		return nil
	}
	logger := klog.FromContext(ctx).WithValues("cluster", cl.Name)
	if old != nil {
		logger.Info("cluster is in Pull mode now; reading it from its agent's reports")
		c.removeMember(cl.Name)
	}
	cluster := func(name string) reconcile.Request {
		return reconcile.Request{NamespacedName: types.NamespacedName{Name: name}}
	}
	m, err := newPullMember(cl.Name, c.karmadaWatch, c.karmada, c.statusWorks, c.enqueue, c.enqueueNamespace, func(string) { c.enqueueAll() },
		func(name string) { c.clusters.Add(cluster(name)) })
	if err != nil {
		return err
	}
	logger.Info("Pull-mode cluster joined; reading it from its agent's reports", "namespace", ExecutionNamespacePrefix+cl.Name)
	m.start(c.ctx, c.enqueue, c.enqueueAll)
	c.mu.Lock()
	c.members[cl.Name] = m
	memberGauge.Set(float64(len(c.members)))
	c.mu.Unlock()
	c.enqueueAll()
	return nil
}

func (c *Controller) removeMember(name string) {
	c.mu.Lock()
	m := c.members[name]
	delete(c.members, name)
	memberGauge.Set(float64(len(c.members)))
	c.mu.Unlock()
	// The member's series go with it (a departed member is no member with zeroes).
	for _, g := range []*prometheus.GaugeVec{syncedGauge, drainedGauge} {
		g.DeleteLabelValues(name)
	}
	for _, cv := range []*prometheus.CounterVec{unexportedEvents, statusWriteErrors} {
		cv.DeleteLabelValues(name)
	}
	c.syncMu.Lock()
	delete(c.syncedNow, name)
	delete(c.refusedNow, name)
	c.syncMu.Unlock()
	if m != nil {
		m.stop()
	}
	c.enqueueAll()
}

// enqueueAll enqueues every service any member exports or imports, or we have Works for.
func (c *Controller) enqueueAll() {
	for _, k := range c.works.GetIndexer().ListIndexFuncValues(byServiceIndex) {
		c.enqueue(k)
	}
	for _, k := range c.declared.keys("") {
		c.enqueue(k)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, m := range c.members {
		_, ex, im := m.mcsInformers()
		for _, inf := range []cache.SharedIndexInformer{ex, im} {
			if inf != nil {
				for _, k := range inf.GetStore().ListKeys() {
					c.enqueue(k)
				}
			}
		}
	}
}

// enqueueNamespace enqueues every service exported in namespace ns (a member just created it:
// automatic imports reach it).
func (c *Controller) enqueueNamespace(ns string) {
	for _, k := range c.declared.keys(ns) {
		c.enqueue(k)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, m := range c.members {
		if _, ex, _ := m.mcsInformers(); ex != nil {
			for _, k := range ex.GetStore().ListKeys() {
				if strings.HasPrefix(k, ns+"/") {
					c.enqueue(k)
				}
			}
		}
	}
}

// fleet returns the members whose caches are synced, by name, and the names of the Clusters
// that are not: not joined yet (a controller just started), without working credentials,
// unreachable, or (Pull) whose agent has not reported everything yet. What those export and import is unknown, so a reconcile holds
// their Works as they are (see held) instead of reading their absence as "nothing".
func (c *Controller) fleet() ([]*member, map[string]bool) {
	unknown := map[string]bool{}
	var synced []*member
	c.mu.RLock()
	for _, obj := range c.clusterInf.GetStore().List() {
		cl := obj.(*clusterv1alpha1.Cluster)
		if cl.DeletionTimestamp != nil {
			continue
		}
		if m := c.members[cl.Name]; m != nil && m.synced() {
			synced = append(synced, m)
		} else {
			unknown[cl.Name] = true
		}
	}
	c.mu.RUnlock()
	sort.Slice(synced, func(i, j int) bool { return synced[i].name < synced[j].name })
	for _, m := range synced {
		c.noteSynced(m.name, true)
	}
	for name := range unknown {
		c.noteSynced(name, false)
	}
	return synced, unknown
}

var errSecretRefNotAllowed = errors.New("secretRef not allowed")

// credentials reads a Cluster's token and CA from its secretRef, only in the namespaces allowed.
func (c *Controller) credentials(ctx context.Context, cl *clusterv1alpha1.Cluster) (token, ca []byte, err error) {
	ref := cl.Spec.SecretRef
	if !slices.Contains(c.opts.SecretNamespaces, ref.Namespace) {
		return nil, nil, fmt.Errorf("%w: secretRef %s/%s is outside the namespaces cluster credentials are read from (%s): the cluster is not joined",
			errSecretRefNotAllowed, ref.Namespace, ref.Name, strings.Join(c.opts.SecretNamespaces, ", "))
	}
	secret, err := c.kube.CoreV1().Secrets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("credentials of cluster %s (secret %s/%s): %w", cl.Name, ref.Namespace, ref.Name, err)
	}
	return secret.Data["token"], secret.Data["caBundle"], nil
}

// noteSynced records whether a member's caches are synced, in the metric and, on a change, in
// the log.
func (c *Controller) noteSynced(name string, synced bool) {
	v := 0.0
	if synced {
		v = 1
	}
	syncedGauge.WithLabelValues(name).Set(v)
	c.syncMu.Lock()
	was, known := c.syncedNow[name]
	c.syncedNow[name] = synced
	c.syncMu.Unlock()
	switch {
	case synced && known && !was:
		klog.Background().Info("member caches synced; its exports and imports are followed again", "cluster", name)
	case !synced && (!known || was):
		klog.Background().Info("member caches not synced (not joined yet, no working credentials, or unreachable): "+
			"what it exports and imports is held as it was", "cluster", name)
	}
}

func restConfigFor(endpoint string, token, ca []byte, insecure bool, qps float32, burst int) *rest.Config {
	cfg := &rest.Config{Host: endpoint, BearerToken: string(token), QPS: qps, Burst: burst, UserAgent: "coredns-mcs-controller"}
	if insecure {
		cfg.Insecure = true
	} else {
		cfg.CAData = ca
	}
	return cfg
}

func fingerprint(endpoint string, token, ca []byte, insecure bool) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%v", endpoint, token, ca, insecure)
	return hex.EncodeToString(h.Sum(nil))
}
