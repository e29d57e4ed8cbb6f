package mcs

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

const (
	// Group is the API group of ServiceExport and ServiceImport.
	Group = mcsv1beta1.GroupName

	// LabelServiceName names the imported service on an EndpointSlice.
	LabelServiceName = mcsv1beta1.LabelServiceName
	// LabelSourceCluster names the cluster id an EndpointSlice's endpoints come from.
	LabelSourceCluster = mcsv1beta1.LabelSourceCluster
	// AnnotationDerivedService on a ServiceImport names the Service that carries its ClusterSetIP.
	AnnotationDerivedService = "multicluster.kubernetes.io/derived-service"

	// DefaultDerivedPrefix is the prefix Karmada (and this project) put before the imported
	// service's name to form the derived Service's name.
	DefaultDerivedPrefix = "derived-"

	// maxNameLength is the longest Service name Kubernetes accepts (an RFC 1035 label).
	maxNameLength = 63
)

// ReservedKey reports whether a label or annotation key is under a prefix that belongs to
// Kubernetes, Karmada or the MCS API (kubernetes.io/, k8s.io/, karmada.io/ and its subdomains,
// multicluster.kubernetes.io/, multicluster.x-k8s.io/). A member's exportedLabels and
// exportedAnnotations with such keys are not propagated: they could steer Karmada
// (work.karmada.io/conflict-resolution) or the DNS plugin (multicluster.kubernetes.io/derived-service)
// in every importer.
func ReservedKey(key string) bool {
	prefix, _, ok := strings.Cut(key, "/")
	if !ok {
		return false
	}
	prefix = strings.ToLower(prefix)
	switch prefix {
	case "kubernetes.io", "k8s.io", "karmada.io", "multicluster.kubernetes.io", Group:
		return true
	}
	return strings.HasSuffix(prefix, ".karmada.io")
}

// WithoutReserved returns m without its ReservedKey keys (m itself when it has none) and the
// keys dropped.
func WithoutReserved(m map[string]string) (map[string]string, []string) {
	var dropped []string
	for k := range m {
		if ReservedKey(k) {
			dropped = append(dropped, k)
		}
	}
	if len(dropped) == 0 {
		return m, nil
	}
	out := make(map[string]string, len(m)-len(dropped))
	for k, v := range m {
		if !ReservedKey(k) {
			out[k] = v
		}
	}
	sort.Strings(dropped)
	return out, dropped
}

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

// DerivedServiceOf returns the name of the Service that carries the ClusterSetIP of a
// ServiceImport ns/name with the given annotations: the one its AnnotationDerivedService names
// (the user's choice, even the service's own name), else DerivedServiceName. A named Service that
// is not a valid Service name (an RFC 1035 label) is not used: the default is, with an error
// saying why. The DNS plugin and the controller follow this one rule.
func DerivedServiceOf(prefix, namespace, name string, annotations map[string]string) (string, error) {
	def := DerivedServiceName(prefix, namespace, name)
	want, ok := annotations[AnnotationDerivedService]
	if !ok || want == "" || want == def {
		return def, nil
	}
	if errs := validation.IsDNS1035Label(want); len(errs) > 0 {
		return def, fmt.Errorf("annotation %s=%q is not a valid Service name (%s); %s is used", AnnotationDerivedService, want, strings.Join(errs, "; "), def)
	}
	return want, nil
}
