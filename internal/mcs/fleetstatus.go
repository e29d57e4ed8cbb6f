package mcs

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// The controller's view of the fleet, published by its leader as a ConfigMap on the Karmada
// control plane (as cluster-autoscaler publishes kube-system/cluster-autoscaler-status) and read
// by `kubectl mcs status`: what only the controller knows (whether it follows a member, whether it
// drained one, the cluster ids it accepted) next to what Karmada says.

// StatusConfigMap is the name of the ConfigMap, in the controller's leader-election namespace.
const StatusConfigMap = "coredns-mcs-controller-status"

// StatusKey is the ConfigMap's data key holding the FleetStatus JSON.
const StatusKey = "status.json"

// FleetStatus is what the ConfigMap holds.
type FleetStatus struct {
	// Version of the controller that wrote it.
	Version string `json:"version"`
	// Updated is when it was last written: every statusRefresh at least, so an old one says the
	// controller is not running (or not the leader anywhere).
	Updated metav1.Time    `json:"updated"`
	Members []MemberStatus `json:"members"`
	// KarmadaMCS names objects of Karmada's own MCS controllers found on the control plane; they
	// must not run beside this controller (both would write the same derived Services).
	KarmadaMCS []string `json:"karmadaMCS,omitempty"`
}

// MemberStatus is one Karmada Cluster as the controller sees it.
type MemberStatus struct {
	Name string `json:"name"`
	// Mode is the Cluster's syncMode (Push, Pull).
	Mode string `json:"mode"`
	// Ready is Karmada's Ready condition of the Cluster.
	Ready bool `json:"ready"`
	// Synced: the controller's caches of the member are synced (it follows its exports and imports).
	Synced bool `json:"synced"`
	// Drained: its exported endpoints are withdrawn from importers (not Ready past the grace).
	Drained bool `json:"drained"`
	// ClusterID is the member's cluster id (its ClusterProperty, else its Karmada name).
	ClusterID string `json:"clusterID,omitempty"`
	// Agent is the version of a Pull member's mcs-agent, as it reports it (empty: none reported).
	Agent string `json:"agent,omitempty"`
	// NotServed says why the member's services are not served, when they are not.
	NotServed string `json:"notServed,omitempty"`
}

// Labels on the controller's Works in karmada-es-<cluster>, naming the exported service they
// serve (and, for slices, the exporter).
const (
	LabelWorkNamespace = "mcs.coredns-mcs.io/service-namespace"
	LabelWorkName      = "mcs.coredns-mcs.io/service-name"
	LabelWorkCluster   = "mcs.coredns-mcs.io/source-cluster"
)
