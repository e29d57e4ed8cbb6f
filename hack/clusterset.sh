#!/usr/bin/env bash
# The local clusterset: real etcd, a kube-apiserver per cluster (Karmada's control plane and every
# member), real Karmada v1.16 and, per member, kube-controller-manager + kube-scheduler + kwok
# (simulated kubelet), all as processes on 127.0.0.1; Push members joined as karmadactl join does,
# Pull members (CMCS_PULL_MEMBERS) with karmada-agent and mcs-agent. The implementation is Go
# (test/clusterset/lab, built here as _output/bin/clusterset); see its FromEnv for the
# environment (CMCS_MEMBERS, CMCS_PULL_MEMBERS, CMCS_PORT_BASE, CMCS_DATAPATH, ...).
#
# Usage: hack/clusterset.sh up|down|status|env|stop NAME...|start NAME...|dns MEMBER [BINARY]|netns MEMBER NS/POD
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
export PATH=/usr/local/go/bin:$PATH
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -o _output/bin/clusterset ./test/cmd/clusterset)
CMCS_ROOT=$repo exec "$repo/_output/bin/clusterset" "$@"
