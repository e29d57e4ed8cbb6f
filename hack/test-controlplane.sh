#!/usr/bin/env bash
# The middle test tier: the controller against three real kube-apiservers (one playing Karmada's
# control plane, two members) started by envtest from the cached etcd and kube-apiserver; no
# Karmada process, the test plays Karmada's execution controller. Seconds per test, ~1-2 min in all.
# Usage: hack/test-controlplane.sh [go test flags, e.g. -run TestDrain]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
source hack/versions.sh
export CMCS_ETCD=$CMCS_CACHE/etcd-$ETCD_VERSION/etcd
export CMCS_KUBE_APISERVER=$CMCS_CACHE/kube-$KUBE_VERSION/kube-apiserver
export CMCS_KARMADA_CRDS=$CMCS_CACHE/karmada-$KARMADA_VERSION/crds
for f in "$CMCS_ETCD" "$CMCS_KUBE_APISERVER" "$CMCS_KARMADA_CRDS"; do
  [ -e "$f" ] || { echo "missing $f: run make deps first" >&2; exit 1; }
done
mkdir -p _output
go test -tags envtest -count=1 -timeout 15m -v "$@" ./test/controlplane/ 2>&1 | tee _output/test-controlplane.log |
  { grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|controlplane tier|\s+\S+_test\.go)' || true; }
exit "${PIPESTATUS[0]}"
