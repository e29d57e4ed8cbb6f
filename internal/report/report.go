// Package report is the contract between the MCS controller and the agent that runs in each
// Pull-mode member (cmd/mcs-agent). The controller never talks to a Pull member's apiserver: the
// agent publishes what the controller needs of its member, and applies the status the controller
// decided there, both through Works in the member's execution namespace on the Karmada control
// plane (karmada-es-<cluster>), with dispatching suspended so that Karmada never applies them —
// the pattern of Karmada's own agent, which reports EndpointSlices the same way.
//
//   - Report Works (written by the agent, read by the controller): one per member object the
//     controller reads (Services, EndpointSlices, Namespaces, ServiceExports, ServiceImports), and
//     one for the cluster itself (its cluster id, IP families, MCS versions served).
//   - Status Works (written by the controller, read by the agent): one per ServiceExport or
//     ServiceImport whose status the controller decided.
//
// Each carries its payload as JSON in the data of a ConfigMap manifest: Karmada's Work webhook
// prunes the metadata and status of a manifest (creationTimestamp, resourceVersion, status) that
// the controller needs as the member wrote them, and leaves a ConfigMap's data alone.
package report

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	workv1alpha1 "github.com/karmada-io/karmada/pkg/apis/work/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The kinds an agent reports, and the cluster report.
const (
	KindService       = "Service"
	KindEndpointSlice = "EndpointSlice"
	KindNamespace     = "Namespace"
	KindServiceExport = "ServiceExport"
	KindServiceImport = "ServiceImport"
	KindCluster       = "Cluster"
)

// Kinds are the object kinds reported (KindCluster aside).
var Kinds = []string{KindService, KindEndpointSlice, KindNamespace, KindServiceExport, KindServiceImport}

const (
	// LabelManagedBy is app.kubernetes.io/managed-by: ManagedByAgent on report Works,
	// ManagedByController on status Works (not the controller's ManagedBy: its Work cache and
	// applier must never see these).
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	ManagedByAgent      = "mcs-agent.coredns-mcs.io"
	ManagedByController = "mcs-controller-status.coredns-mcs.io"
	// LabelKind is the kind a report Work carries, or whose status a status Work carries.
	LabelKind = "report.coredns-mcs.io/kind"
	// AnnotationObject names the object: <kind>/<namespace>/<name> (<kind>//<name> when
	// cluster-scoped).
	AnnotationObject = "report.coredns-mcs.io/object"
	// AnnotationHash is the hash of the payload, so a writer skips an unchanged one.
	AnnotationHash = "report.coredns-mcs.io/hash"

	// dataKey holds the payload in the carrier ConfigMap.
	dataKey = "payload"
	// ClusterWorkName is the cluster report's Work.
	ClusterWorkName = "coredns-mcs-agent-cluster"
)

// ExecutionNamespace is the namespace of cluster's Works.
func ExecutionNamespace(cluster string) string { return "karmada-es-" + cluster }

// Cluster is what the agent reports of its cluster.
type Cluster struct {
	// ClusterID is the member's KEP-2149 cluster id (its ClusterProperty
	// cluster.clusterset.k8s.io, else its Karmada name).
	ClusterID string `json:"clusterID"`
	// Families are the IP families of its ServiceCIDRs (nil: unknown).
	Families []corev1.IPFamily `json:"families,omitempty"`
	// ExportVersion and ImportVersion are the MCS versions the member serves (group/version;
	// empty: not served).
	ExportVersion string `json:"exportVersion,omitempty"`
	ImportVersion string `json:"importVersion,omitempty"`
	// Synced: every object of the member is reported (the agent's caches were synced and its
	// first pass is done); until then the controller holds what the member exports and imports.
	Synced bool `json:"synced"`
	// AgentVersion is the agent's build.
	AgentVersion string `json:"agentVersion,omitempty"`
	// RenewTime is when the agent last wrote the report; it rewrites it at least every quarter of
	// LeaseSeconds. A report older than LeaseSeconds says the agent is gone: the controller then
	// treats the member as not Ready (its failure policy applies), as Karmada does a Pull member
	// whose karmada-agent stopped renewing its lease.
	RenewTime    metav1.MicroTime `json:"renewTime"`
	LeaseSeconds int32            `json:"leaseSeconds,omitempty"`
}

// Expired reports whether the agent's lease ran out at now, and since when.
func (c *Cluster) Expired(now time.Time) (bool, time.Time) {
	if c.LeaseSeconds <= 0 || c.RenewTime.IsZero() {
		return false, time.Time{}
	}
	end := c.RenewTime.Add(time.Duration(c.LeaseSeconds) * time.Second)
	return !now.Before(end), end
}

// ExportStatus is what the controller decided for a member's ServiceExport.
type ExportStatus struct {
	Conditions []metav1.Condition `json:"conditions"`
	// Warn are the condition types whose change the agent records as a Warning event on the
	// ServiceExport (the user must act).
	Warn []string `json:"warn,omitempty"`
}

// ImportStatus is what the controller decided for a member's ServiceImport.
type ImportStatus struct {
	Clusters             []string          `json:"clusters"`
	EndpointSliceObjects string            `json:"endpointSliceObjects,omitempty"`
	Ready                *metav1.Condition `json:"ready,omitempty"`
}

// ObjectRef names a reported object.
func ObjectRef(kind, namespace, name string) string { return kind + "/" + namespace + "/" + name }

// WorkName is the name of the report Work of kind namespace/name (status: of its status Work):
// readable, and unique by a hash of the three (names of different namespaces never collide).
func WorkName(status bool, kind, namespace, name string) string {
	prefix := "mcsr-"
	if status {
		prefix = "mcss-"
	}
	h := sha256.Sum256([]byte(ObjectRef(kind, namespace, name)))
	readable := strings.ToLower(kind)
	if namespace != "" {
		readable += "-" + namespace
	}
	readable += "-" + name
	if len(readable) > 200 {
		readable = readable[:200]
	}
	return strings.Trim(strings.ReplaceAll(prefix+readable, ".", "-"), "-") + "-" + hex.EncodeToString(h[:5])
}

// Hash is the hash of a payload.
func Hash(payload []byte) string {
	h := sha256.Sum256(payload)
	return hex.EncodeToString(h[:10])
}

// NewWork returns a suspended Work in cluster's execution namespace carrying payload (JSON).
func NewWork(cluster, name, managedBy, kind, ref string, payload []byte) (*workv1alpha1.Work, error) {
	carrier := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ExecutionNamespace(cluster)},
		Data:       map[string]string{dataKey: string(payload)},
	}
	raw, err := json.Marshal(carrier)
	if err != nil {
		return nil, err
	}
	suspend := true
	return &workv1alpha1.Work{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ExecutionNamespace(cluster),
			Labels:      map[string]string{LabelManagedBy: managedBy, LabelKind: kind},
			Annotations: map[string]string{AnnotationObject: ref, AnnotationHash: Hash(payload)}},
		Spec: workv1alpha1.WorkSpec{
			SuspendDispatching: &suspend,
			Workload:           workv1alpha1.WorkloadTemplate{Manifests: []workv1alpha1.Manifest{{RawExtension: runtime.RawExtension{Raw: raw}}}},
		},
	}, nil
}

// MaxPayload bounds what one Work may carry (a member's object is at most etcd's 1.5 MiB; a
// payload above this is refused rather than written or read).
const MaxPayload = 1 << 20

// Payload returns the payload a Work carries.
func Payload(w *workv1alpha1.Work) ([]byte, error) {
	if len(w.Spec.Workload.Manifests) != 1 {
		return nil, fmt.Errorf("work %s/%s carries %d manifests, not 1", w.Namespace, w.Name, len(w.Spec.Workload.Manifests))
	}
	raw := w.Spec.Workload.Manifests[0].Raw
	if len(raw) > 2*MaxPayload {
		return nil, fmt.Errorf("work %s/%s: payload too large (%d bytes)", w.Namespace, w.Name, len(raw))
	}
	var carrier corev1.ConfigMap
	if err := json.Unmarshal(raw, &carrier); err != nil {
		return nil, fmt.Errorf("work %s/%s: %w", w.Namespace, w.Name, err)
	}
	p, ok := carrier.Data[dataKey]
	if !ok {
		return nil, fmt.Errorf("work %s/%s carries no payload", w.Namespace, w.Name)
	}
	if len(p) > MaxPayload {
		return nil, fmt.Errorf("work %s/%s: payload too large (%d bytes)", w.Namespace, w.Name, len(p))
	}
	return []byte(p), nil
}
