package controller

import (
	"crypto/tls"

	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// MetricsOptions serves the metrics on addr ("0" turns them off). Secure (the default of
// cmd/mcs-controller): HTTPS (the certificate in certDir, else a self-signed one), and each
// request authenticated (TokenReview) and authorized (SubjectAccessReview: get on the
// non-resource URL /metrics) by the Karmada apiserver, as controller-runtime's filter does;
// kubebuilder projects serve theirs the same way. Not secure: plain HTTP, for a local lab only.
func MetricsOptions(addr string, secure bool, certDir string) metricsserver.Options {
	if !secure {
		return metricsserver.Options{BindAddress: addr}
	}
	return metricsserver.Options{
		BindAddress:    addr,
		SecureServing:  true,
		FilterProvider: filters.WithAuthenticationAndAuthorization,
		CertDir:        certDir,
		// HTTP/2 off, as kubebuilder's scaffold does (CVE-2023-44487, CVE-2023-39325).
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }},
	}
}
