#!/usr/bin/env bash
# Prints corefile.example (the in-cluster Corefile) made to run on this machine against a member:
# both the kubernetes and the multicluster plugin read KUBECONFIG (context CONTEXT), every port is
# on 127.0.0.1, and the upstream is a loopback port (nothing may leave the machine).
# One implementation for the demo and the tests (test/clusterset).
# Usage: hack/member-corefile.sh KUBECONFIG CONTEXT DNS_PORT HEALTH_PORT READY_PORT METRICS_PORT UPSTREAM_PORT
set -euo pipefail
[ $# -eq 7 ] || { sed -n 6p "$0" >&2; exit 2; }
kc=$1 ctx=$2 dns=$3 health=$4 ready=$5 metrics=$6 upstream=$7
sed -e "s/^\.:53 {/.:$dns {/" \
  -e "s/^clusterset\.local:53 {/clusterset.local:$dns {/" \
  -e "s#^    multicluster {\$#    multicluster {\n        kubeconfig $kc $ctx#" \
  -e "s#^    kubernetes cluster.local in-addr.arpa ip6.arpa {\$#    kubernetes cluster.local in-addr.arpa ip6.arpa {\n        kubeconfig $kc $ctx#" \
  -e "s#^    health {\$#    health 127.0.0.1:$health {#" \
  -e "s#^    ready\$#    ready 127.0.0.1:$ready#" \
  -e "s#prometheus :9153#prometheus 127.0.0.1:$metrics#" \
  -e "s#forward \. /etc/resolv\.conf#forward . 127.0.0.1:$upstream#" \
  "$(cd "$(dirname "$0")/.." && pwd)/corefile.example"
