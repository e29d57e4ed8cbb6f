// Package mcs holds the names the DNS plugin and the controller agree on: the KEP-1645 label and
// annotation keys and the rule that names a derived Service. Neither side imports the other; this
// leaf package is their contract.
package mcs

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"
)

const (
	// Group is the API group of ServiceExport and ServiceImport.
	Group = "multicluster.x-k8s.io"

	// LabelServiceName names the imported service on an EndpointSlice.
	LabelServiceName = "multicluster.kubernetes.io/service-name"
	// LabelSourceCluster names the cluster id an EndpointSlice's endpoints come from.
	LabelSourceCluster = "multicluster.kubernetes.io/source-cluster"
	// AnnotationDerivedService on a ServiceImport names the Service that carries its ClusterSetIP.
	AnnotationDerivedService = "multicluster.kubernetes.io/derived-service"

	// DefaultDerivedPrefix is the prefix Karmada (and this project) put before the imported
	// service's name to form the derived Service's name.
	DefaultDerivedPrefix = "derived-"

	// maxNameLength is the longest Service name Kubernetes accepts (an RFC 1035 label).
	maxNameLength = 63
)

// DerivedServiceName returns the name of the Service that carries the ClusterSetIP of the import
// ns/name: prefix+name when that is a valid Service name, otherwise prefix followed by a hash of
// "ns/name" (the mcs-api reference form), which always fits.
func DerivedServiceName(prefix, namespace, name string) string {
	if len(prefix)+len(name) <= maxNameLength {
		return prefix + name
	}
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	hash := strings.ToLower(base32.HexEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:]))[:10]
	if len(prefix)+len(hash) > maxNameLength {
		prefix = DefaultDerivedPrefix
	}
	return prefix + hash
}
