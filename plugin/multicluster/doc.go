// Package multicluster is a CoreDNS plugin that serves the clusterset.local zone of KEP-1645
// (Kubernetes multi-cluster services) from ServiceImports, multi-cluster EndpointSlices and the
// derived Services that carry a ClusterSetIP, as Karmada writes them.
package multicluster
