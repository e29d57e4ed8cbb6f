# shellcheck shell=bash
# Pinned versions of every real component the local clusterset builds and runs.
# One place: hack/build-deps.sh, hack/clusterset.sh, the tests and the benchmarks read these.
ETCD_VERSION=v3.6.5
KUBE_VERSION=v1.34.1
KUBE_STAGING_VERSION=v0.34.1
KARMADA_VERSION=v1.16.0
KWOK_VERSION=v0.8.0
MCS_API_VERSION=v0.5.2
COREDNS_VERSION=v1.15.0
HELM_VERSION=v3.22.0

# Binaries are cached outside the clone, keyed by component and version.
CMCS_CACHE=${CMCS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/coredns-mcs}
