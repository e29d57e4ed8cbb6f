#!/usr/bin/env bash
# The local clusterset: real etcd, three real kube-apiservers (karmada, member1, member2), real Karmada
# v1.16 and, per member, kube-controller-manager + kube-scheduler + kwok (simulated kubelet), all as
# processes on 127.0.0.1. One implementation, used by `make up/down/status`, the Go test helper
# (test/clusterset), the demo and the benchmarks.
#
# Usage: hack/clusterset.sh up|down|status|env|stop NAME...|dns MEMBER [BINARY]|netns MEMBER NS/POD
#
# Environment:
#   CMCS_PORT_BASE      first port of the block of ~40 ports used on 127.0.0.1 (default 31000)
#   CMCS_KARMADA_MCS    on|off: run Karmada's built-in MCS controllers (default off: ours replaces them)
#   CMCS_KARMADA_API_QPS N: client limits of karmada-controller-manager and karmada-scheduler
#                       (QPS N, burst 2N, towards the control plane and the members); default:
#                       Karmada's own (40/60)
#   CMCS_MCS_CRDS       karmada|mcs-api: the MCS CRDs on the Karmada control plane (see bootstrap_karmada)
#   CMCS_DATAPATH       auto|on|off: pods that really run, kube-proxy and cluster DNS in network
#                       namespaces (see "data path" below; auto = on when root with ip/iptables/socat)
#   CMCS_CLUSTERSET_DIR state directory (default _output/clusterset in the repository)
#   CMCS_CACHE          where hack/build-deps.sh keeps the binaries (default ~/.cache/coredns-mcs)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
source "$here/versions.sh"

DIR=${CMCS_CLUSTERSET_DIR:-$repo/_output/clusterset}
P=${CMCS_PORT_BASE:-31000}
KARMADA_MCS=${CMCS_KARMADA_MCS:-off}
KARMADA_QPS=${CMCS_KARMADA_API_QPS:-}
MCS_CRDS=${CMCS_MCS_CRDS:-karmada}
DATAPATH=${CMCS_DATAPATH:-auto}
MEMBERS=(member1 member2)

ETCD_BIN=$CMCS_CACHE/etcd-$ETCD_VERSION/etcd
KUBE_DIR=$CMCS_CACHE/kube-$KUBE_VERSION
KARMADA_DIR=$CMCS_CACHE/karmada-$KARMADA_VERSION
KWOK_DIR=$CMCS_CACHE/kwok-$KWOK_VERSION
KUBECTL=$KUBE_DIR/kubectl

# Ports, all on 127.0.0.1.
ETCD_PORT=$((P + 1)) ETCD_PEER_PORT=$((P + 2))
declare -A APISERVER_PORT=([karmada]=$((P + 10)) [member1]=$((P + 11)) [member2]=$((P + 12)))
AGG_PORT=$((P + 20)) WEBHOOK_PORT=$((P + 21)) WEBHOOK_HEALTH_PORT=$((P + 22)) WEBHOOK_METRICS_PORT=$((P + 23))
KCM_KARMADA_PORT=$((P + 24)) KARMADA_CM_METRICS_PORT=$((P + 25)) KARMADA_CM_HEALTH_PORT=$((P + 26))
KARMADA_SCHED_METRICS_PORT=$((P + 27)) KARMADA_SCHED_HEALTH_PORT=$((P + 28))
declare -A KCM_PORT=([member1]=$((P + 31)) [member2]=$((P + 32)))
declare -A SCHED_PORT=([member1]=$((P + 33)) [member2]=$((P + 34)))
declare -A KWOK_PORT=([member1]=$((P + 35)) [member2]=$((P + 36)))
# The node's kubelet API as the apiserver sees it (Node daemonEndpoints): the node agent serves
# exec, attach and port-forward there and passes every other path to kwok. Without the data path
# (no node agent), the Node points at kwok itself.
declare -A NODEAGENT_PORT=([member1]=$((P + 37)) [member2]=$((P + 38)))

# Networks, as Karmada's local-up: pod and service CIDRs never overlap between members.
declare -A POD_CIDR=([member1]=10.10.0.0/16 [member2]=10.12.0.0/16)
declare -A SVC_CIDR=([karmada]=10.96.0.0/16 [member1]=10.11.0.0/16 [member2]=10.13.0.0/16)
# member1's apiserver also has an IPv6 Service CIDR (its ServiceCIDRs are dual-stack: the MCS IP
# family tests import a dual-stack and an IPv6-only export into IPv4-only member2). Nothing routes
# IPv6: kube-proxy and the pods stay IPv4.
declare -A APISERVER_SVC_CIDR=([member1]=10.11.0.0/16,fd00:11::/108)
declare -A NODE_IP=([member1]=172.30.1.1 [member2]=172.30.2.1)
declare -A DNS_IP=([member1]=10.11.0.10 [member2]=10.13.0.10)
# Network namespaces: the node of member M is $NETNS-M, its pods $NETNS-M-<uid>.
NETNS=cmcs$P
BIN=$repo/_output/bin

PKI=$DIR/pki LOGS=$DIR/logs PIDS=$DIR/pids KCFG=$DIR/kubeconfig

# mcs_crds_dir: the directory of the MCS CRDs installed on the Karmada control plane.
mcs_crds_dir() {
  case $MCS_CRDS in
    karmada) echo "$KARMADA_DIR/crds/bases/multicluster" ;;
    mcs-api) echo "$repo/manifests/crds" ;;
    *) die "CMCS_MCS_CRDS must be karmada or mcs-api, not $MCS_CRDS" ;;
  esac
}

log() { printf '[clusterset %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
  printf '[clusterset] error: %s\n' "$*" >&2
  local f n
  for f in "$PIDS"/*.pid; do
    [ -e "$f" ] || continue
    n=$(basename "$f" .pid)
    if ! running "$n"; then
      printf '[clusterset] %s is not running; last lines of %s:\n' "$n" "$LOGS/$n.log" >&2
      tail -n 5 "$LOGS/$n.log" | sed 's/^/    /' >&2
    fi
  done
  exit 1
}
kc() { local c=$1; shift; "$KUBECTL" --kubeconfig "$KCFG/$c.config" "$@"; }

# ---------------------------------------------------------------------------------------------------
# processes

pid_of() { [ -f "$PIDS/$1.pid" ] && cat "$PIDS/$1.pid" || true; }
running() { local p; p=$(pid_of "$1"); [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }

port_busy() { ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }

# start NAME PORT... -- CMD ARGS: runs CMD in its own session, logs to logs/NAME.log, pid in pids/NAME.pid.
start() {
  local name=$1; shift
  local ports=()
  while [ "$1" != "--" ]; do ports+=("$1"); shift; done
  shift
  if running "$name"; then return 0; fi
  local port
  for port in "${ports[@]}"; do
    port_busy "$port" && die "port 127.0.0.1:$port (for $name) is taken by a process this clusterset did not start; stop it or set CMCS_PORT_BASE"
  done
  setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null 9>&- &
  echo $! >"$PIDS/$name.pid"
}

stop() {
  local name=$1 p i
  p=$(pid_of "$name")
  [ -n "$p" ] || return 0
  if kill -0 "$p" 2>/dev/null; then
    kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null || true
  fi
  rm -f "$PIDS/$name.pid"
}

# wait_for WHAT SECONDS CMD...: retries CMD until it succeeds.
wait_for() {
  local what=$1 secs=$2; shift 2
  local deadline=$(($(date +%s) + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "timed out after ${secs}s waiting for $what (logs: $LOGS)"
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------------------
# PKI: one CA for serving and client certificates, a front-proxy CA, a service-account key pair.

cert() { # cert NAME CN O SAN(,-separated or "") KIND(server|client)
  local name=$1 cn=$2 o=$3 san=$4 kind=$5 subj
  [ -f "$PKI/$name.crt" ] && return 0
  local ca=ca
  [ "$name" = front-proxy-client ] && ca=front-proxy-ca
  subj="/CN=$cn"
  [ -n "$o" ] && subj="/O=$o$subj"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/$name.key" \
    -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ "$kind" = server ]; then echo "extendedKeyUsage=serverAuth"; else echo "extendedKeyUsage=clientAuth"; fi
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$PKI/$name.ext"
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -CAcreateserial \
    -days 3650 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

make_pki() {
  mkdir -p "$PKI"
  local ca
  for ca in ca front-proxy-ca; do
    [ -f "$PKI/$ca.crt" ] && continue
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
      -subj "/CN=coredns-mcs-local-$ca" -keyout "$PKI/$ca.key" -out "$PKI/$ca.crt" 2>/dev/null
  done
  [ -f "$PKI/sa.key" ] || {
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
    openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
  }
  local c
  for c in karmada member1 member2; do
    local svcip
    svcip=$(echo "${SVC_CIDR[$c]}" | awk -F'[./]' '{print $1"."$2"."$3"."$4+1}')
    cert "apiserver-$c" "kube-apiserver-$c" "" \
      "IP:127.0.0.1,IP:$svcip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc" server
  done
  cert admin admin system:masters "" client
  cert front-proxy-client front-proxy-client "" "" client
  cert karmada-aggregated-apiserver karmada-aggregated-apiserver "" \
    "DNS:karmada-aggregated-apiserver.karmada-system.svc,DNS:localhost,IP:127.0.0.1" server
  cert karmada-webhook karmada-webhook "" "DNS:localhost,IP:127.0.0.1" server
  cert kwok kwok "" "DNS:localhost,IP:127.0.0.1" server
  cert apiserver-kubelet-client kube-apiserver-kubelet-client "" "" client
  mkdir -p "$PKI/webhook"
  cp "$PKI/karmada-webhook.crt" "$PKI/webhook/tls.crt"
  cp "$PKI/karmada-webhook.key" "$PKI/webhook/tls.key"
}

b64() { base64 -w0 <"$1"; }

# kubeconfig FILE CONTEXT=CLUSTER...: an admin kubeconfig with one context per cluster.
kubeconfig() {
  local file=$1; shift
  local ca crt key
  ca=$(b64 "$PKI/ca.crt") crt=$(b64 "$PKI/admin.crt") key=$(b64 "$PKI/admin.key")
  {
    echo "apiVersion: v1"
    echo "kind: Config"
    echo "clusters:"
    local pair ctx cl
    for pair in "$@"; do
      cl=${pair#*=}
      printf '  - name: %s\n    cluster:\n      server: https://127.0.0.1:%s\n      certificate-authority-data: %s\n' \
        "$cl" "${APISERVER_PORT[$cl]}" "$ca"
    done
    echo "users:"
    printf '  - name: admin\n    user:\n      client-certificate-data: %s\n      client-key-data: %s\n' "$crt" "$key"
    echo "contexts:"
    for pair in "$@"; do
      ctx=${pair%%=*} cl=${pair#*=}
      printf '  - name: %s\n    context:\n      cluster: %s\n      user: admin\n' "$ctx" "$cl"
    done
    echo "current-context: ${1%%=*}"
  } >"$file.tmp"
  mv "$file.tmp" "$file"
}

# ---------------------------------------------------------------------------------------------------
# components

start_etcd() {
  mkdir -p "$DIR/etcd"
  start etcd "$ETCD_PORT" "$ETCD_PEER_PORT" -- "$ETCD_BIN" --name clusterset --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "clusterset=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync \
    --quota-backend-bytes 4294967296 --log-level warn
}

start_apiserver() {
  local c=$1 extra=()
  if [ "$c" = karmada ]; then
    extra=(--authorization-mode RBAC --disable-admission-plugins StorageObjectInUseProtection,ServiceAccount)
  else
    extra=(--authorization-mode RBAC --kubelet-preferred-address-types InternalDNS,InternalIP,Hostname
      --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" --kubelet-client-key "$PKI/apiserver-kubelet-client.key")
  fi
  start "apiserver-$c" "${APISERVER_PORT[$c]}" -- "$KUBE_DIR/kube-apiserver" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "${APISERVER_PORT[$c]}" \
    --cert-dir "$DIR/apiserver-$c" --tls-cert-file "$PKI/apiserver-$c.crt" --tls-private-key-file "$PKI/apiserver-$c.key" \
    --client-ca-file "$PKI/ca.crt" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" --etcd-prefix "/registry-$c" \
    --service-cluster-ip-range "${APISERVER_SVC_CIDR[$c]:-${SVC_CIDR[$c]}}" --endpoint-reconciler-type none --allow-privileged \
    --service-account-issuer "https://kubernetes.default.svc.$c" --service-account-key-file "$PKI/sa.pub" \
    --service-account-signing-key-file "$PKI/sa.key" \
    --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-extra-headers-prefix X-Remote-Extra- --requestheader-group-headers X-Remote-Group \
    --requestheader-username-headers X-Remote-User \
    --proxy-client-cert-file "$PKI/front-proxy-client.crt" --proxy-client-key-file "$PKI/front-proxy-client.key" \
    --profiling=false "${extra[@]}"
}

start_kcm() { # start_kcm CLUSTER PORT CONTROLLERS
  local c=$1
  local extra=()
  if [ "$c" != karmada ]; then
    extra=(--cluster-cidr "${POD_CIDR[$c]}" --allocate-node-cidrs=false --node-monitor-grace-period 40s)
  fi
  start "kube-controller-manager-$c" "$2" -- "$KUBE_DIR/kube-controller-manager" \
    --kubeconfig "$KCFG/$c.config" --authentication-kubeconfig "$KCFG/$c.config" --authorization-kubeconfig "$KCFG/$c.config" \
    --bind-address 127.0.0.1 --secure-port "$2" --cert-dir "$DIR/kcm-$c" --leader-elect=false \
    --controllers "$3" --service-cluster-ip-range "${SVC_CIDR[$c]}" \
    --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
    --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
    --use-service-account-credentials=false "${extra[@]}"
}

karmada_controllers() {
  if [ "$KARMADA_MCS" = on ]; then
    echo '*'
  else
    # Karmada's built-in MCS controllers, switched off: our controller replaces them.
    echo '*,-serviceExport,-endpointSlice,-serviceImport,-multiclusterservice,-endpointsliceCollect,-endpointsliceDispatch'
  fi
}

start_karmada() {
  mkdir -p "$DIR/karmada-aggregated-apiserver"
  start karmada-aggregated-apiserver "$AGG_PORT" -- "$KARMADA_DIR/karmada-aggregated-apiserver" \
    --kubeconfig "$KCFG/karmada.config" --authentication-kubeconfig "$KCFG/karmada.config" \
    --authorization-kubeconfig "$KCFG/karmada.config" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" --etcd-prefix /registry-karmada \
    --bind-address 127.0.0.1 --secure-port "$AGG_PORT" --cert-dir "$DIR/karmada-aggregated-apiserver" \
    --tls-cert-file "$PKI/karmada-aggregated-apiserver.crt" --tls-private-key-file "$PKI/karmada-aggregated-apiserver.key" \
    --audit-log-path - --audit-log-maxage 0 --audit-log-maxbackup 0 --profiling=false
  start karmada-webhook "$WEBHOOK_PORT" "$WEBHOOK_HEALTH_PORT" "$WEBHOOK_METRICS_PORT" -- "$KARMADA_DIR/karmada-webhook" \
    --kubeconfig "$KCFG/karmada.config" --bind-address 127.0.0.1 --secure-port "$WEBHOOK_PORT" \
    --cert-dir "$PKI/webhook" --health-probe-bind-address "127.0.0.1:$WEBHOOK_HEALTH_PORT" \
    --metrics-bind-address "127.0.0.1:$WEBHOOK_METRICS_PORT" --allow-no-execute-taint-policy=true
}

start_karmada_controllers() {
  local want limits=() sched_limits=()
  want=$(karmada_controllers)
  if [ -n "$KARMADA_QPS" ]; then
    limits=(--kube-api-qps "$KARMADA_QPS" --kube-api-burst $((KARMADA_QPS * 2)) --cluster-api-qps "$KARMADA_QPS" --cluster-api-burst $((KARMADA_QPS * 2)))
    sched_limits=(--kube-api-qps "$KARMADA_QPS" --kube-api-burst $((KARMADA_QPS * 2)))
  fi
  if running karmada-controller-manager && [ "$(cat "$DIR/karmada-controllers" 2>/dev/null)" != "$want ${limits[*]}" ]; then
    log "karmada-controller-manager: switching to --controllers '$want' ${limits[*]} (CMCS_KARMADA_MCS=$KARMADA_MCS)"
    stop karmada-controller-manager
  fi
  if running karmada-scheduler && [ "$(cat "$DIR/karmada-scheduler-limits" 2>/dev/null)" != "${sched_limits[*]}" ]; then
    stop karmada-scheduler
  fi
  echo "$want ${limits[*]}" >"$DIR/karmada-controllers"
  echo "${sched_limits[*]}" >"$DIR/karmada-scheduler-limits"
  start karmada-controller-manager "$KARMADA_CM_METRICS_PORT" "$KARMADA_CM_HEALTH_PORT" -- \
    "$KARMADA_DIR/karmada-controller-manager" --kubeconfig "$KCFG/karmada.config" \
    --cluster-status-update-frequency 10s --controllers "$want" --leader-elect=false "${limits[@]}" \
    --metrics-bind-address "127.0.0.1:$KARMADA_CM_METRICS_PORT" \
    --health-probe-bind-address "127.0.0.1:$KARMADA_CM_HEALTH_PORT"
  start karmada-scheduler "$KARMADA_SCHED_METRICS_PORT" "$KARMADA_SCHED_HEALTH_PORT" -- \
    "$KARMADA_DIR/karmada-scheduler" --kubeconfig "$KCFG/karmada.config" --leader-elect=false \
    --enable-scheduler-estimator=false "${sched_limits[@]}" \
    --metrics-bind-address "127.0.0.1:$KARMADA_SCHED_METRICS_PORT" \
    --health-probe-bind-address "127.0.0.1:$KARMADA_SCHED_HEALTH_PORT"
}

kwok_config() { # kwok_config MEMBER: a KwokConfiguration followed by the stages kwok needs.
  local c=$1 s=$KWOK_DIR/stage node_port=${KWOK_PORT[$1]}
  if datapath_enabled; then node_port=${NODEAGENT_PORT[$1]}; fi
  cat <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokConfiguration
options:
  cidr: ${POD_CIDR[$c]}
  nodeIP: ${NODE_IP[$c]}
  manageAllNodes: false
  manageNodesWithAnnotationSelector: kwok.x-k8s.io/node=fake
  serverAddress: 127.0.0.1:${KWOK_PORT[$c]}
  nodePort: $node_port
  tlsCertFile: $PKI/kwok.crt
  tlsPrivateKeyFile: $PKI/kwok.key
  enableCRDs: [Logs]
  enableDebuggingHandlers: true
  enableContentionProfiling: false
  enableProfilingHandler: false
  podPlayStageParallelism: 8
  nodePlayStageParallelism: 4
  nodeLeaseDurationSeconds: 40
  nodeLeaseParallelism: 4
  podsOnNodeSyncParallelism: 2
  enablePodsOnNodeSyncListPager: true
  enablePodsOnNodeSyncStreamWatch: false
EOF
  local f
  # The node's kubelet (kwok's server, which serves `kubectl logs` from the Logs objects the node
  # agent writes) is reached by the member's apiserver at the node's InternalDNS name, localhost:
  # the InternalIP lives in the node's network namespace, which the host cannot reach. The stage
  # always writes the whole address list: kwok's own template writes an empty one ("addresses:"
  # with nothing under it) when it re-initializes a node that lost Ready (its member's apiserver
  # was down, say) and has no Hostname address, and `kubectl logs` then fails with "no preferred
  # addresses found".
  echo "---"
  grep -v '^---' "$s/node/fast/node-initialize.yaml" |
    awk -v ip="${NODE_IP[$c]}" -v host="$c-control-plane" '
      /\{\{ \$hasInternalIP := false \}\}/ {
        skip = 1
        print "      addresses:"
        print "      - address: \"" ip "\""
        print "        type: InternalIP"
        print "      - address: localhost"
        print "        type: InternalDNS"
        print "      - address: \"" host "\""
        print "        type: Hostname"
        next
      }
      skip && /\{\{ with NodePort \}\}/ { skip = 0 }
      !skip'
  for f in "$s/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
    "$s/pod/fast/pod-ready.yaml" "$s/pod/fast/pod-complete.yaml" "$s/pod/fast/pod-delete.yaml"; do
    echo "---"
    grep -v '^---' "$f"
  done
}

start_member() {
  local c=$1
  start_kcm "$c" "${KCM_PORT[$c]}" '*'
  start "kube-scheduler-$c" "${SCHED_PORT[$c]}" -- "$KUBE_DIR/kube-scheduler" \
    --kubeconfig "$KCFG/$c.config" --authentication-kubeconfig "$KCFG/$c.config" --authorization-kubeconfig "$KCFG/$c.config" \
    --bind-address 127.0.0.1 --secure-port "${SCHED_PORT[$c]}" --leader-elect=false
  kwok_config "$c" >"$DIR/kwok-$c.yaml"
  apply "$c" -f "$KWOK_DIR/crds"
  wait_for "kwok's Logs CRD in $c" 30 kc "$c" get logs.kwok.x-k8s.io -A
  start "kwok-$c" "${KWOK_PORT[$c]}" -- "$KWOK_DIR/kwok" --kubeconfig "$KCFG/$c.config" --config "$DIR/kwok-$c.yaml"
}

# ---------------------------------------------------------------------------------------------------
# bootstrap objects (all idempotent)

apply() { local c=$1; shift; kc "$c" apply --server-side --force-conflicts --field-manager clusterset "$@" >/dev/null; }

bootstrap_karmada() {
  kc karmada create namespace karmada-system --dry-run=client -o yaml | apply karmada -f -
  kc karmada create namespace karmada-cluster --dry-run=client -o yaml | apply karmada -f -
  # Karmada's own CRDs. The MCS CRDs on the Karmada control plane are chosen by CMCS_MCS_CRDS:
  # "karmada" (default) is the v1alpha1-only copy Karmada v1.16 ships, which the seed's policies
  # (apiVersion multicluster.x-k8s.io/v1alpha1) need: Karmada matches resource selectors against
  # the version it watches, the preferred one, and with the mcs-api v0.5 CRDs that is v1beta1, so
  # the seed's ServiceExport and ServiceImport would never be propagated. "mcs-api" installs the
  # mcs-api v0.5.2 CRDs (v1alpha1 + v1beta1) from manifests/crds instead.
  local d
  for d in "$KARMADA_DIR"/crds/bases/*/; do
    [ "$(basename "$d")" = multicluster ] || apply karmada -f "$d"
  done
  if [ -f "$(mcs_crds_dir)/kustomization.yaml" ]; then apply karmada -k "$(mcs_crds_dir)"; else apply karmada -f "$(mcs_crds_dir)"; fi
  local ca
  ca=$(b64 "$PKI/ca.crt")
  # The conversion webhook of the binding CRDs, pointed at karmada-webhook on loopback.
  local crd
  for crd in resourcebindings.work.karmada.io clusterresourcebindings.work.karmada.io; do
    kc karmada patch crd "$crd" --type merge -p "{\"spec\":{\"conversion\":{\"strategy\":\"Webhook\",\"webhook\":{\"conversionReviewVersions\":[\"v1\"],\"clientConfig\":{\"url\":\"https://localhost:$WEBHOOK_PORT/convert\",\"caBundle\":\"$ca\"}}}}}" >/dev/null
  done
  # cluster.karmada.io is served by karmada-aggregated-apiserver, reached through an ExternalName Service.
  cat <<EOF | apply karmada -f -
apiVersion: v1
kind: Service
metadata:
  name: karmada-aggregated-apiserver
  namespace: karmada-system
spec:
  type: ExternalName
  externalName: localhost
  ports:
    - port: $AGG_PORT
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1alpha1.cluster.karmada.io
spec:
  caBundle: $ca
  group: cluster.karmada.io
  groupPriorityMinimum: 2000
  service:
    name: karmada-aggregated-apiserver
    namespace: karmada-system
    port: $AGG_PORT
  version: v1alpha1
  versionPriority: 10
EOF
  sed -e "s#https://karmada-webhook.karmada-system.svc:443#https://localhost:$WEBHOOK_PORT#" \
    -e "s#{{caBundle}}#$ca#" "$KARMADA_DIR/webhook-configuration.yaml" | apply karmada -f -
}

bootstrap_member() {
  local c=$1
  cat <<EOF | apply "$c" -f -
apiVersion: v1
kind: Node
metadata:
  name: $c-control-plane
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    kubernetes.io/hostname: $c-control-plane
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    node-role.kubernetes.io/control-plane: ""
    type: kwok
spec:
  podCIDR: ${POD_CIDR[$c]}
  podCIDRs: [${POD_CIDR[$c]}]
---
apiVersion: v1
kind: Namespace
metadata:
  name: karmada-cluster
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: karmada-$c
  namespace: karmada-cluster
---
apiVersion: v1
kind: Secret
type: kubernetes.io/service-account-token
metadata:
  name: karmada-$c-token
  namespace: karmada-cluster
  annotations:
    kubernetes.io/service-account.name: karmada-$c
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: karmada-$c
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: cluster-admin
subjects:
  - kind: ServiceAccount
    name: karmada-$c
    namespace: karmada-cluster
EOF
}

token_of() { kc "$1" -n karmada-cluster get secret "karmada-$1-token" -o jsonpath='{.data.token}' 2>/dev/null; }

# register_member MEMBER: what `karmadactl join` does in Push mode.
register_member() {
  local c=$1 token id ca
  wait_for "the service-account token of $c" 60 test -n "$(token_of "$c")"
  token=$(token_of "$c")
  id=$(kc "$c" get namespace kube-system -o jsonpath='{.metadata.uid}')
  ca=$(b64 "$PKI/ca.crt")
  cat <<EOF | apply karmada -f -
apiVersion: v1
kind: Secret
metadata:
  name: $c
  namespace: karmada-cluster
data:
  token: $token
  caBundle: $ca
---
apiVersion: v1
kind: Secret
metadata:
  name: $c-impersonator
  namespace: karmada-cluster
data:
  token: $token
---
apiVersion: cluster.karmada.io/v1alpha1
kind: Cluster
metadata:
  name: $c
spec:
  id: $id
  syncMode: Push
  apiEndpoint: https://127.0.0.1:${APISERVER_PORT[$c]}
  secretRef:
    namespace: karmada-cluster
    name: $c
  impersonatorSecretRef:
    namespace: karmada-cluster
    name: $c-impersonator
EOF
}

cluster_ready() {
  [ "$(kc karmada get cluster "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
node_ready() {
  [ "$(kc "$1" get node "$1-control-plane" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}
healthy() { curl -skf --max-time 2 "$1" >/dev/null; }
apiserver_ready() { kc "$1" get --raw /readyz >/dev/null 2>&1; }

# ---------------------------------------------------------------------------------------------------
# data path: traffic between the members' pods, as in the seed ("connected container networks").
#
#   host netns: apiservers, kwok, nodeagent-M (one per member)      — nothing of the below lives here
#   $NETNS-M   (member M's node): kube-proxy-M (iptables), cluster DNS, veth "peer" to the other node
#              (NODE_IP/16), routes to the other member's pod CIDR; the host's 127.0.0.1:<apiserver>
#              is forwarded in through a unix socket (socat), so in-namespace processes use the same
#              kubeconfigs
#   $NETNS-M-<uid> (a pod): eth0 with the pod IP kwok assigned, default route via the node;
#              resolv.conf -> the member's kube-dns ClusterIP; serve/request run here (nodeagent)
# Service CIDRs are not routed between members: a ClusterIP works only where kube-proxy programs it.

datapath_enabled() {
  case $DATAPATH in
    off) return 1 ;;
    on) return 0 ;;
    auto) [ "$(id -u)" = 0 ] && command -v ip >/dev/null && command -v iptables >/dev/null && command -v socat >/dev/null ;;
    *) die "CMCS_DATAPATH must be auto, on or off, not $DATAPATH" ;;
  esac
}

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
has_netns() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

datapath_up() {
  if ! datapath_enabled; then
    log "data path off (CMCS_DATAPATH=$DATAPATH; needs root, ip, iptables, socat): objects only, no traffic"
    return 0
  fi
  local c b
  for b in ip iptables socat; do command -v $b >/dev/null || die "CMCS_DATAPATH=on needs $b (hack/install-packages.sh)"; done
  [ -x "$KUBE_DIR/kube-proxy" ] || die "missing $KUBE_DIR/kube-proxy (hack/build-deps.sh kube)"
  log "data path: building the node agent and the seed's serve/request stand-ins"
  (cd "$repo" && go build -trimpath -o "$BIN/" ./test/cmd/nodeagent ./test/cmd/serve ./test/cmd/request) ||
    die "go build ./test/cmd/... failed"
  mkdir -p "$DIR/net"
  for c in "${MEMBERS[@]}"; do
    local ns=$NETNS-$c
    if ! has_netns "$ns"; then
      ip netns add "$ns"
      ip -n "$ns" link set lo up
      in_ns "$ns" sysctl -qw net.ipv4.ip_forward=1
    fi
  done
  local n1=$NETNS-member1 n2=$NETNS-member2
  if ! ip -n "$n1" link show peer >/dev/null 2>&1; then
    ip -n "$n1" link add peer type veth peer name peer netns "$n2"
    ip -n "$n1" addr add "${NODE_IP[member1]}/16" dev peer
    ip -n "$n2" addr add "${NODE_IP[member2]}/16" dev peer
    ip -n "$n1" link set peer up
    ip -n "$n2" link set peer up
    ip -n "$n1" route replace "${POD_CIDR[member2]}" via "${NODE_IP[member2]}"
    ip -n "$n2" route replace "${POD_CIDR[member1]}" via "${NODE_IP[member1]}"
  fi
  for c in "${MEMBERS[@]}"; do
    local ns=$NETNS-$c port=${APISERVER_PORT[$c]} sock=$DIR/net/$c-apiserver.sock
    start "apiserver-forward-$c" -- socat "UNIX-LISTEN:$sock,fork,unlink-early" "TCP:127.0.0.1:$port"
    start "apiserver-forward-in-$c" -- ip netns exec "$ns" socat "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" "UNIX-CONNECT:$sock"
    start "kube-proxy-$c" -- ip netns exec "$ns" "$KUBE_DIR/kube-proxy" --kubeconfig "$KCFG/$c.config" \
      --hostname-override "$c-control-plane" --proxy-mode iptables --conntrack-max-per-core 0 \
      --cluster-cidr "${POD_CIDR[$c]}" --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256
    start "nodeagent-$c" "${NODEAGENT_PORT[$c]}" -- "$BIN/nodeagent" --kubeconfig "$KCFG/$c.config" --node "$c-control-plane" --member "$c" \
      --prefix "$NETNS" --node-netns "$ns" --state-dir "$DIR/pods/$c" --bin-dir "$BIN" --cluster-dns "${DNS_IP[$c]}" \
      --kubelet-address "127.0.0.1:${NODEAGENT_PORT[$c]}" --tls-cert-file "$PKI/kwok.crt" --tls-private-key-file "$PKI/kwok.key" \
      --client-ca-file "$PKI/ca.crt" --kwok-url "https://127.0.0.1:${KWOK_PORT[$c]}"
    # kube-dns: the member's cluster DNS Service. Its endpoint is the node (host network, like a
    # hostNetwork DNS pod); `hack/clusterset.sh dns MEMBER` runs coredns-mcs there.
    cat <<YAML | apply "$c" -f -
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns, kubernetes.io/name: CoreDNS}
spec:
  clusterIP: ${DNS_IP[$c]}
  ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: clusterset.coredns-mcs.io}
addressType: IPv4
endpoints:
  - addresses: ["${NODE_IP[$c]}"]
    conditions: {ready: true}
    nodeName: $c-control-plane
ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
YAML
  done
  for c in "${MEMBERS[@]}"; do
    wait_for "kube-proxy in $NETNS-$c" 60 in_ns "$NETNS-$c" curl -sf http://127.0.0.1:10256/healthz
  done
  log "data path: nodes $NETNS-member1 (${NODE_IP[member1]}) <-> $NETNS-member2 (${NODE_IP[member2]}), kube-proxy + node agent per member"
}

# datapath_down: every namespace of this clusterset, and what runs in it (processes started by
# `start` are stopped by pid before this).
datapath_down() {
  command -v ip >/dev/null || return 0
  local ns p i killed=()
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$NETNS-member[0-9]+(-|\$)" | sort -r); do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null && killed+=("$p") || true; done
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  # SIGKILL is delivered asynchronously: wait until they are gone, so `down` returns clean.
  for p in "${killed[@]}"; do
    for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  done
}

# cluster_dns MEMBER [BINARY]: coredns-mcs (or BINARY) with corefile.example as MEMBER's cluster DNS,
# on port 53 of the member's node namespace (the kube-dns Service's endpoint).
cluster_dns() {
  local c=${1:?member} bin=${2:-$BIN/coredns-mcs}
  datapath_enabled || die "the data path is off (CMCS_DATAPATH=$DATAPATH)"
  has_netns "$NETNS-$c" || die "no node namespace $NETNS-$c: run 'hack/clusterset.sh up' first"
  [ -x "$bin" ] || die "missing $bin (make build)"
  "$here/member-corefile.sh" "$KCFG/$c.config" "$c" 53 8080 8181 9153 5300 >"$DIR/net/Corefile.$c"
  start "cluster-dns-$c" -- ip netns exec "$NETNS-$c" "$bin" -conf "$DIR/net/Corefile.$c"
  wait_for "cluster DNS of $c ready" 60 in_ns "$NETNS-$c" curl -sf http://127.0.0.1:8181/ready
  log "cluster DNS of $c: $bin on ${NODE_IP[$c]}:53 behind kube-dns ${DNS_IP[$c]} (Corefile $DIR/net/Corefile.$c)"
}

# ---------------------------------------------------------------------------------------------------
# commands

check_binaries() {
  local b missing=()
  for b in "$ETCD_BIN" "$KUBE_DIR/kube-apiserver" "$KUBE_DIR/kube-controller-manager" "$KUBE_DIR/kube-scheduler" \
    "$KUBECTL" "$KARMADA_DIR/karmada-controller-manager" "$KARMADA_DIR/karmada-scheduler" \
    "$KARMADA_DIR/karmada-webhook" "$KARMADA_DIR/karmada-aggregated-apiserver" "$KWOK_DIR/kwok"; do
    [ -x "$b" ] || missing+=("$b")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing binaries (run 'make deps' or hack/build-deps.sh): ${missing[*]}"
  command -v openssl >/dev/null || die "openssl is required"
  command -v curl >/dev/null || die "curl is required"
}

cmd_up() {
  check_binaries
  local t0
  t0=$(date +%s)
  mkdir -p "$LOGS" "$PIDS" "$KCFG"
  make_pki
  kubeconfig "$KCFG/karmada.config" karmada=karmada
  kubeconfig "$KCFG/member1.config" member1=member1
  kubeconfig "$KCFG/member2.config" member2=member2

  log "etcd $ETCD_VERSION on 127.0.0.1:$ETCD_PORT"
  start_etcd
  wait_for etcd 30 healthy "http://127.0.0.1:$ETCD_PORT/health"

  local c
  for c in karmada member1 member2; do
    log "kube-apiserver $KUBE_VERSION '$c' on https://127.0.0.1:${APISERVER_PORT[$c]}"
    start_apiserver "$c"
  done
  for c in karmada member1 member2; do wait_for "kube-apiserver $c" 90 apiserver_ready "$c"; done

  log "kube-controller-manager for the Karmada control plane"
  start_kcm karmada "$KCM_KARMADA_PORT" \
    namespace,garbagecollector,serviceaccount-token,ttl-after-finished,bootstrapsigner,tokencleaner,csrcleaner,csrsigning,clusterrole-aggregation
  for c in "${MEMBERS[@]}"; do
    log "$c: kube-controller-manager, kube-scheduler, kwok (pods ${POD_CIDR[$c]}, services ${SVC_CIDR[$c]})"
    start_member "$c"
    bootstrap_member "$c"
  done

  log "Karmada $KARMADA_VERSION: CRDs, aggregated apiserver, webhook"
  bootstrap_karmada
  start_karmada
  wait_for karmada-webhook 60 healthy "https://127.0.0.1:$WEBHOOK_PORT/readyz/"
  wait_for "cluster.karmada.io (karmada-aggregated-apiserver)" 60 kc karmada get clusters
  log "Karmada controller-manager (built-in MCS controllers: $KARMADA_MCS) and scheduler"
  start_karmada_controllers

  for c in "${MEMBERS[@]}"; do register_member "$c"; done
  for c in "${MEMBERS[@]}"; do
    wait_for "node $c-control-plane Ready (kwok)" 60 node_ready "$c"
    wait_for "Cluster $c Ready in Karmada" 90 cluster_ready "$c"
  done
  datapath_up
  write_public_kubeconfigs
  log "up in $(($(date +%s) - t0))s"
  cmd_status
}

write_public_kubeconfigs() {
  kubeconfig "$DIR/karmada.config" karmada-apiserver=karmada
  kubeconfig "$DIR/members.config" member1=member1 member2=member2
}

ALL=(karmada-scheduler karmada-controller-manager karmada-webhook karmada-aggregated-apiserver
  kwok-member1 kwok-member2 kube-scheduler-member1 kube-scheduler-member2
  kube-controller-manager-member1 kube-controller-manager-member2 kube-controller-manager-karmada
  apiserver-karmada apiserver-member1 apiserver-member2 etcd)

cmd_down() {
  local n
  # Anything else the project started beside the clusterset (coredns-mcs, the controller, netns
  # helpers) registers a pid file here too, and is stopped first.
  for n in "$PIDS"/*.pid; do
    [ -e "$n" ] || continue
    n=$(basename "$n" .pid)
    case " ${ALL[*]} " in *" $n "*) ;; *) stop "$n" ;; esac
  done
  datapath_down
  for n in "${ALL[@]}"; do stop "$n"; done
  # State goes with the processes; logs are kept (previous run in logs.prev) for post-mortems.
  if [ -d "$DIR" ]; then
    rm -rf "$DIR/logs.prev"
    [ -d "$LOGS" ] && mv "$LOGS" "$DIR/logs.prev"
    find "$DIR" -mindepth 1 -maxdepth 1 ! -name logs.prev -exec rm -rf {} +
  fi
  log "down (logs of this run: $DIR/logs.prev)"
}

cmd_status() {
  local n rc=0 state
  printf '%-36s %-8s %s\n' PROCESS PID STATE
  for n in "${ALL[@]}"; do
    if running "$n"; then state=running; else state=stopped; rc=1; fi
    printf '%-36s %-8s %s\n' "$n" "$(pid_of "$n")" "$state"
  done
  if [ $rc -eq 0 ]; then
    echo
    kc karmada get clusters 2>&1 || rc=1
    echo
    echo "Karmada control plane: export KUBECONFIG=$DIR/karmada.config   (context karmada-apiserver)"
    echo "Members:               export KUBECONFIG=$DIR/members.config   (contexts member1, member2)"
    echo "kubectl $KUBE_VERSION:  $KUBECTL"
  fi
  return $rc
}

cmd_env() {
  cat <<EOF
CMCS_CLUSTERSET_DIR=$DIR
CMCS_KARMADA_KUBECONFIG=$DIR/karmada.config
CMCS_MEMBERS_KUBECONFIG=$DIR/members.config
CMCS_KUBECTL=$KUBECTL
CMCS_KARMADA_PORT=${APISERVER_PORT[karmada]}
CMCS_MEMBER1_PORT=${APISERVER_PORT[member1]}
CMCS_MEMBER2_PORT=${APISERVER_PORT[member2]}
CMCS_MEMBER1_POD_CIDR=${POD_CIDR[member1]}
CMCS_MEMBER2_POD_CIDR=${POD_CIDR[member2]}
CMCS_MEMBER1_SERVICE_CIDR=${SVC_CIDR[member1]}
CMCS_MEMBER2_SERVICE_CIDR=${SVC_CIDR[member2]}
CMCS_KARMADA_MCS=$KARMADA_MCS
CMCS_MCS_CRDS=$MCS_CRDS
CMCS_MCS_CRDS_DIR=$(mcs_crds_dir)
CMCS_DATAPATH=$(datapath_enabled && echo on || echo off)
CMCS_NETNS=$NETNS
CMCS_MEMBER1_DNS_IP=${DNS_IP[member1]}
CMCS_MEMBER2_DNS_IP=${DNS_IP[member2]}
CMCS_PODS_DIR=$DIR/pods
CMCS_HELM=$CMCS_CACHE/helm-$HELM_VERSION/helm
CMCS_STOCK_COREDNS=$CMCS_CACHE/coredns-$COREDNS_VERSION/coredns
EOF
}

# up, down, stop and dns change the set of processes: one at a time (an `up` started while a
# `down` is still stopping things would otherwise leave processes no pid file names). The lock
# lives beside the state directory, which `down` removes.
case ${1:-} in
  up | down | stop | dns)
    mkdir -p "$(dirname "$DIR")"
    exec 9>"$DIR.lock"
    flock 9 ;;
esac

case ${1:-} in
  up) cmd_up ;;
  stop)
    # stop NAME...: stop single processes (tests use it to take a member's apiserver away);
    # `up` starts whatever is missing again.
    shift
    for n in "$@"; do
      if [ -f "$PIDS/$n.pid" ]; then stop "$n"; else
        case " ${ALL[*]} " in *" $n "*) ;; *) die "unknown process $n (one of: ${ALL[*]} or a name in $PIDS)" ;; esac
      fi
    done ;;
  down) cmd_down ;;
  dns) shift; cluster_dns "$@" ;;
  netns)
    # netns MEMBER NAMESPACE/POD: the network namespace the node agent made for a pod.
    [ $# -eq 3 ] || { echo "usage: $0 netns MEMBER NAMESPACE/POD" >&2; exit 2; }
    uid=$(kc "$2" -n "${3%%/*}" get pod "${3#*/}" -o jsonpath='{.metadata.uid}') || exit 1
    f="$DIR/pods/$2/${3%%/*}_${3#*/}_$uid/netns"
    [ -f "$f" ] || die "pod $3 in $2 has no network namespace (yet): is the data path on and the pod Running?"
    cat "$f" ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 up|down|status|env|stop NAME...|dns MEMBER [BINARY]|netns MEMBER NS/POD" >&2; exit 2 ;;
esac
