#!/usr/bin/env bash
# The main job: from nothing, build what is missing, bring the local clusterset up, run the MCS
# controller and coredns-mcs (member2), apply the seed's YAML unchanged on Karmada, and show what
# the seed shows, plus DNS.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
hack/install-packages.sh
hack/build-deps.sh
[ -x _output/bin/coredns-mcs ] && [ -x _output/bin/mcs-controller ] || make build >/dev/null
hack/clusterset.sh up >/dev/null
eval "$(hack/clusterset.sh env | sed 's/^/export /')"
DIR=$CMCS_CLUSTERSET_DIR
PIDS=$DIR/pids LOGS=$DIR/logs
ka() { "$CMCS_KUBECTL" --kubeconfig "$CMCS_KARMADA_KUBECONFIG" --context karmada-apiserver "$@"; }
km() { local c=$1; shift; "$CMCS_KUBECTL" --kubeconfig "$CMCS_MEMBERS_KUBECONFIG" --context "$c" "$@"; }
say() { printf '\n\033[1m# %s\033[0m\n' "$*"; }
run() {
  local shown="$*"
  shown=${shown/#ka /kubectl --context karmada-apiserver }
  shown=${shown/#km member1 /kubectl --context member1 }
  shown=${shown/#km member2 /kubectl --context member2 }
  printf '$ %s\n' "$shown"
  "$@"
}

# Processes started here register a pid file beside the clusterset's, so `make down` stops them.
running() { [ -f "$PIDS/$1.pid" ] && kill -0 "$(cat "$PIDS/$1.pid")" 2>/dev/null; }
DNS_PORT=$((${CMCS_PORT_BASE:-31000} + 53))
if ! running mcs-controller; then
  setsid _output/bin/mcs-controller --kubeconfig "$CMCS_KARMADA_KUBECONFIG" --leader-elect=false \
    --metrics-bind-address "127.0.0.1:$((${CMCS_PORT_BASE:-31000} + 40))" \
    --health-probe-bind-address "127.0.0.1:$((${CMCS_PORT_BASE:-31000} + 41))" >>"$LOGS/mcs-controller.log" 2>&1 </dev/null &
  echo $! >"$PIDS/mcs-controller.pid"
fi
# member2's cluster DNS: coredns-mcs with corefile.example behind the kube-dns Service, in member2's
# node network namespace (data path on); without a data path, on a loopback port of this machine.
if [ "$CMCS_DATAPATH" = on ]; then
  hack/clusterset.sh dns member2 >/dev/null
elif ! running coredns-mcs-member2; then
  B=${CMCS_PORT_BASE:-31000}
  hack/member-corefile.sh "$CMCS_MEMBERS_KUBECONFIG" member2 "$DNS_PORT" $((B + 42)) $((B + 43)) $((B + 44)) $((B + 45)) \
    >"$DIR/Corefile.member2"
  setsid _output/bin/coredns-mcs -conf "$DIR/Corefile.member2" >>"$LOGS/coredns-mcs-member2.log" 2>&1 </dev/null &
  echo $! >"$PIDS/coredns-mcs-member2.pid"
  for i in $(seq 1 60); do curl -sf "http://127.0.0.1:$((B + 43))/ready" >/dev/null && break; sleep 0.5; done
fi
for i in $(seq 1 60); do
  curl -sf "http://127.0.0.1:$((${CMCS_PORT_BASE:-31000} + 41))/readyz" >/dev/null && break
  sleep 0.5
done

say "Karmada control plane and its members"
run ka get clusters

say "Prerequisite: the MCS CRDs propagated to member1 and member2 (seed: 00-crd-propagation.yaml)"
run ka apply -f test/testdata/seed/00-crd-propagation.yaml
for m in member1 member2; do
  until [ "$(km $m get crd serviceimports.multicluster.x-k8s.io -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ] &&
    ka get cluster $m -o jsonpath='{.status.apiEnablements}' | grep -q multicluster.x-k8s.io/v1alpha1; do sleep 0.5; done
done

say "Step 1: Deployment and Service serve, propagated to member1 (seed: 01-workload.yaml)"
run ka apply -f test/testdata/seed/01-workload.yaml
say "Step 2: export from member1, import into member2 (seed: 02-export.yaml, 03-import.yaml)"
run ka apply -f test/testdata/seed/02-export.yaml -f test/testdata/seed/03-import.yaml

for i in $(seq 1 120); do
  ip=$(km member2 get endpointslices -l kubernetes.io/service-name=derived-serve -o jsonpath='{.items[*].endpoints[*].addresses[*]}' 2>/dev/null || true)
  [ -n "$ip" ] && km member2 get svc derived-serve >/dev/null 2>&1 && break
  sleep 0.5
done

say "Step 3: member2 has derived-serve, with member1's pod behind it"
run km member2 get svc
run km member2 get endpointslices -l kubernetes.io/service-name=derived-serve
run km member1 get pods -l app=serve -o wide

say "The ServiceExport's status, on the Karmada control plane"
run ka get serviceexports.v1alpha1.multicluster.x-k8s.io serve -o jsonpath='{range .status.conditions[*]}{.type}={.status} ({.reason}): {.message}{"\n"}{end}'

# request POD ADDRESS: the seed's step 3 as the seed writes it: an attached request pod in member2
# for 3 s, removed afterwards (`run -i --rm`; the node agent serves the kubelet's attach).
request() {
  km member2 delete pod "$1" --ignore-not-found --wait >/dev/null
  run km member2 run -i --rm --restart=Never --image=jeremyot/request:0a40de8 "$1" -- --duration=3s "--address=$2"
}

if [ "$CMCS_DATAPATH" = on ]; then
  cip=$(km member2 get svc derived-serve -o jsonpath='{.spec.clusterIP}')
  # kube-proxy in member2's node programs the ClusterIP within about a second of the slice.
  for i in $(seq 1 60); do
    ip netns exec "$CMCS_NETNS-member2" iptables-save -t nat | grep -q -- "-d $cip/32 .*-j KUBE-SVC-" && break
    sleep 0.25
  done
  say "A pod in member2 requests the ClusterIP of derived-serve; member1's pod answers (the seed's step 3)"
  request request "$cip"
  say "And by DNS: the same pod program, given the clusterset name (resolved by coredns-mcs behind kube-dns)"
  request request-dns serve.default.svc.clusterset.local
  say "kubectl exec into a member2 pod (nicolaka/netshoot; the host's dig runs in the pod's network namespace)"
  km member2 delete pod netshoot --ignore-not-found --wait >/dev/null
  km member2 run netshoot --image=nicolaka/netshoot:v0.13 -- sleep infinity >/dev/null
  km member2 wait --for=condition=Ready pod/netshoot --timeout=60s >/dev/null
  run km member2 exec netshoot -- dig +noall +answer serve.default.svc.clusterset.local
  run km member2 exec netshoot -- dig +noall +answer SRV serve.default.svc.clusterset.local
  run km member2 exec netshoot -- curl -s http://serve.default.svc.clusterset.local/
  DIG="kubectl --context member2 exec netshoot -- dig"
else
  say "And by DNS: coredns-mcs for member2 (corefile.example) answers the clusterset name"
  echo "(no data path: CMCS_DATAPATH=off or not root, so no pods run and no traffic is shown)"
  run dig @127.0.0.1 -p "$DNS_PORT" +noall +answer serve.default.svc.clusterset.local
  run dig @127.0.0.1 -p "$DNS_PORT" +noall +answer SRV serve.default.svc.clusterset.local
  DIG="dig @127.0.0.1 -p $DNS_PORT"
fi

cat <<EOM

Poke at it:
  export KUBECONFIG=$CMCS_KARMADA_KUBECONFIG:$CMCS_MEMBERS_KUBECONFIG
  alias kubectl=$CMCS_KUBECTL
  kubectl --context karmada-apiserver -n default scale deployment serve --replicas=3
  kubectl --context member2 get endpointslices -l kubernetes.io/service-name=derived-serve
  kubectl --context member2 run -i --rm --restart=Never --image=jeremyot/request:0a40de8 req -- --duration=10s --address=serve.default.svc.clusterset.local
  kubectl --context member2 exec -it netshoot -- bash     # dig, curl, nc, … (the host's tools, in the pod's network)
  $DIG serve.default.svc.clusterset.local
Logs of every process: $LOGS/ (mcs-controller.log, cluster-dns-member2.log, kube-proxy-member2.log, nodeagent-*.log, …)
Stop everything:       make down
EOM
