#!/usr/bin/env bash
# Every test: static checks and unit tests, the controller against real kube-apiservers
# (test/controlplane), then the tests on the local clusterset (build tag e2e:
# real etcd, kube-apiservers, Karmada, kwok, coredns-mcs processes and dig), on a local clusterset
# started from nothing and stopped at the end. (`go test -tags e2e ./test/...` alone reuses a
# running clusterset.)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH

# Each step says when it starts and how long the whole run has taken so far.
step() { printf '\n=== [%s, +%ds] %s\n' "$(date -u +%H:%M:%S)" "$SECONDS" "$*"; }

step "gofmt"
bad=$(gofmt -l $(git ls-files '*.go') 2>/dev/null || true)
[ -z "$bad" ] || { echo "gofmt would change: $bad"; exit 1; }

step "go vet"
go vet ./...
go vet -tags e2e ./...
go vet -tags envtest ./...

step "unit tests (-race)"
CGO_ENABLED=1 go test -race -count=1 ./...

step "the controller against real kube-apiservers (test/controlplane: envtest, Karmada's CRDs, no Karmada process)"
hack/test-controlplane.sh

# A fresh clusterset, so no earlier run (a demo's controller, say) is in the way; it is brought
# down at the end.
trap 'hack/clusterset.sh down >/dev/null 2>&1 || true' EXIT
# Two Push members and one Pull member (member3: karmada-agent and mcs-agent), in every up below.
export CMCS_PULL_MEMBERS=${CMCS_PULL_MEMBERS:-1}
step "local clusterset (from nothing)"
hack/clusterset.sh down >/dev/null
# The host's own network, as the clusterset must leave it (compared after the last down).
host_net() {
  ip -o addr show
  ip route show table all
  ip -6 route show table all
  if command -v iptables-save >/dev/null; then iptables-save | { grep -v '^#' || true; } | sed 's/\[[0-9]*:[0-9]*\]//'; fi
}
mkdir -p _output
host_net >_output/host-net.before
hack/clusterset.sh up

step "tests on the local clusterset (-tags e2e)"
# One package at a time: they share the clusterset. The full log is kept in _output/test-e2e.log.
mkdir -p _output
go test -tags e2e -p 1 -count=1 -timeout "${TEST_TIMEOUT:-40m}" -run "${TEST_RUN:-.}" -v ./test/... ./plugin/... 2>&1 |
  tee _output/test-e2e.log | { grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test\.go)' || true; }

step "make demo (the README's main command): member1 answers through derived-serve's ClusterIP and through the clusterset name"
demo_failed() {
  tail -n 40 _output/demo.log
  # The seed's step 3 goes through member2's node agent (the pod's sandbox, attach): its view.
  local agent=_output/clusterset/logs/nodeagent-member2.log
  [ ! -f "$agent" ] || { echo "--- the last lines of $agent"; tail -n 40 "$agent"; }
  echo "make demo failed (log: _output/demo.log)"
  exit 1
}
hack/demo.sh >_output/demo.log 2>&1 || demo_failed
# At least 2 answers from member1's serve pod from each attached request pod (run -i --rm), and
# the A record of dig run by kubectl exec in a member2 pod.
awk '/requests the ClusterIP of derived-serve/ {s = 1} /And by DNS: the same pod program/ {s = 2} /kubectl exec into a member2 pod/ {s = 3}
  s && /'"'"'hello from cluster member1 \(Node: member1-control-plane Pod: serve-/ {n[s]++}
  s == 3 && /^serve\.default\.svc\.clusterset\.local\.[ \t]+[0-9]+[ \t]+IN[ \t]+A[ \t]+10\.13\./ {d = 1}
  END {exit !(n[1] >= 2 && n[2] >= 2 && d)}' _output/demo.log ||
  { cat _output/demo.log; echo "make demo did not show member1's answers through both paths and the dig answer"; exit 1; }
echo "ok: make demo shows member1's answers through the ClusterIP and the clusterset name (log: _output/demo.log)"

step "automatic imports written as v1beta1: a clusterset whose Karmada control plane serves the mcs-api v0.5 CRDs"
# Karmada maps a Work's manifests with its control plane's API, so the v1beta1 fields of an
# automatic ServiceImport (ipFamilies, internalTrafficPolicy, trafficDistribution) need the mcs-api
# CRDs there; the clusterset above has Karmada's v1alpha1 copy, which the seed's policies need.
hack/clusterset.sh down >/dev/null
CMCS_MCS_CRDS=mcs-api hack/clusterset.sh up >/dev/null
if ! CMCS_MCS_CRDS=mcs-api go test -tags e2e -count=1 -run '^TestAutomaticImports$' -v ./test/e2e/ 2>&1 |
  tee -a _output/test-e2e.log | { grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test\.go)' || true; }; then
  echo "TestAutomaticImports failed with the mcs-api CRDs on Karmada (log: _output/test-e2e.log)"
  exit 1
fi

step "clusterset lifecycle: down, up, status, Karmada MCS switched on, down, up refused on a taken port; nothing left behind"
source hack/versions.sh
left() {
  local p
  for p in $(pgrep -f "$CMCS_CACHE/|_output/bin/(coredns-mcs|mcs-controller|mcs-agent|nodeagent|serve|request)|_output/clusterset/net/|sleep 86399"); do
    [ "$p" = $$ ] || ps -o pid=,args= -p "$p" 2>/dev/null || true
  done
  ip netns list 2>/dev/null | grep "^cmcs${CMCS_PORT_BASE:-31000}-" || true
  ls -d /etc/netns/cmcs"${CMCS_PORT_BASE:-31000}"-* 2>/dev/null || true
}
hack/clusterset.sh down
[ -z "$(left)" ] || { echo "processes or namespaces left after down: $(left)"; exit 1; }
hack/clusterset.sh up >/dev/null
hack/clusterset.sh status >/dev/null
# A pod whose command the node agent runs with the host's tools: down must not leave it behind.
kubectl="$(hack/clusterset.sh env | sed -n 's/^CMCS_KUBECTL=//p') --kubeconfig _output/clusterset/members.config --context member1"
$kubectl run leftover --image=busybox:1.36 -- sleep 86399 >/dev/null
$kubectl wait --for=condition=Ready pod/leftover --timeout=60s >/dev/null
pgrep -f "sleep 86399" >/dev/null || { echo "the busybox pod's sleep is not running"; exit 1; }
# Karmada's built-in MCS controllers switched on: only karmada-controller-manager restarts.
pids=_output/clusterset/pids
cm_before=$(cat $pids/karmada-controller-manager.pid) etcd_before=$(cat $pids/etcd.pid)
CMCS_KARMADA_MCS=on hack/clusterset.sh up >/dev/null
cm_after=$(cat $pids/karmada-controller-manager.pid)
[ "$cm_after" != "$cm_before" ] && [ "$(cat $pids/etcd.pid)" = "$etcd_before" ] &&
  tr '\0' ' ' </proc/"$cm_after"/cmdline | grep -q -- '--controllers \* ' ||
  { echo "CMCS_KARMADA_MCS=on did not restart only karmada-controller-manager with --controllers *"; exit 1; }
hack/clusterset.sh status >/dev/null
hack/clusterset.sh down
[ -z "$(left)" ] || { echo "processes left after the second down: $(left)"; exit 1; }
# A port taken by someone else: up refuses and says which.
port=$((${CMCS_PORT_BASE:-31000} + 1))
socat TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr /dev/null & squatter=$!
sleep 0.5
if out=$(hack/clusterset.sh up 2>&1); then kill $squatter; echo "up succeeded with port $port taken"; exit 1; fi
kill $squatter
echo "$out" | grep -q "port 127.0.0.1:$port (for etcd) is taken" || { echo "up failed without naming the taken port: $out"; exit 1; }
hack/clusterset.sh down >/dev/null
[ -z "$(left)" ] || { echo "processes left after the refused up: $(left)"; exit 1; }
host_net >_output/host-net.after
diff -u _output/host-net.before _output/host-net.after || { echo "the host's network changed (addresses, routes or iptables)"; exit 1; }
echo "ok: no process, network namespace or host network change left"
echo "ok: make test took ${SECONDS}s"
