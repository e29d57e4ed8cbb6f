#!/usr/bin/env bash
# The benchmarks (`make bench`; `make bench-smoke` = tiny sizes, for CI): on a fresh local
# clusterset, coredns-mcs vs stock CoreDNS (same version, in-tree multicluster) vs a template
# ceiling under dnsperf, memory after sync, our controller vs Karmada's built-in MCS controllers,
# and the plugin's hot path under go test -bench. Writes _output/bench/results.md and prints it.
# Every figure: median of alternating runs with min–max; nothing is asserted.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH
mode=${1:-full}
source hack/versions.sh
step() { printf '\n[bench %s] === %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
t_start=$(date +%s)

hack/install-packages.sh
hack/build-deps.sh
hack/build-deps.sh coredns
make build >/dev/null
go build -trimpath -o _output/bin/ ./test/bench/mcsbench
OUT=_output/bench
rm -rf "$OUT" && mkdir -p "$OUT"

case $mode in
  full)
    DNS_ARGS=(--imports 1000 --headless 100 --endpoints 100 --runs 5 --duration 4s --latency-duration 2s --mem-imports 10000 --mem-runs 5)
    CONTROL_ARGS=(--services 50 --runs 5 --churn 4 --scale 1000 --scale-karmada 100 --scale-runs 1)
    GOBENCH_ARGS=(-count 5 -benchtime 1s)
    CHURN_SECONDS=60 PULL_SERVICES=50 FLEET_SIZES="2 5 10 15" FLEET_SERVICES=50 FLEET_SETTLE=30
    UNEXPORTED_ARGS=(--services 10000 --slices-per-service 3 --updates 1000 --settle 15s) ;;
  smoke)
    DNS_ARGS=(--imports 50 --headless 5 --endpoints 10 --runs 1 --duration 1s --latency-qps 500 --latency-duration 1s --mem-imports 100 --mem-runs 1 --hostile-scale 100)
    CONTROL_ARGS=(--services 3 --runs 1 --churn 1 --scale 20 --scale-karmada 5 --scale-runs 1)
    GOBENCH_ARGS=(-count 1 -benchtime 2000x)
    CHURN_SECONDS=10 PULL_SERVICES=5 FLEET_SIZES="2 3" FLEET_SERVICES=5 FLEET_SETTLE=5
    UNEXPORTED_ARGS=(--services 100 --slices-per-service 3 --updates 100 --settle 3s) ;;
  *) echo "usage: $0 [full|smoke]" >&2; exit 2 ;;
esac
# Overrides for a partial run, e.g. BENCH_ONLY=control BENCH_CONTROL_ARGS="--scale 200" (later flags win).
read -r -a extra_dns <<<"${BENCH_DNS_ARGS:-}"
read -r -a extra_control <<<"${BENCH_CONTROL_ARGS:-}"
DNS_ARGS+=("${extra_dns[@]}") CONTROL_ARGS+=("${extra_control[@]}")
only=${BENCH_ONLY:-dns,churn,control,unexported,pull,gobench,fleet}
touch_md() { [ -f "$1" ] || echo "(${1##*/}: not run; BENCH_ONLY=$only)" >"$1"; }

# Client limits, the same for both controllers compared: karmada-controller-manager's and
# karmada-scheduler's (towards the control plane and the members) and our controller's (towards
# Karmada and the members). Default 400 QPS, burst 800: at Karmada's own defaults (QPS 40, burst
# 60) every export, ours or Karmada's, waits minutes in Karmada's propagation, and the full run
# took 51 min. CMCS_KARMADA_API_QPS= (empty) keeps Karmada's defaults and our controller's.
export CMCS_KARMADA_API_QPS=${CMCS_KARMADA_API_QPS-400}
controller_args=""
if [ -n "$CMCS_KARMADA_API_QPS" ]; then
  q=$CMCS_KARMADA_API_QPS
  controller_args="--kube-api-qps $q --kube-api-burst $((q * 2)) --member-api-qps $q --member-api-burst $((q * 2))"
fi
step "a fresh local clusterset (CMCS_KARMADA_MCS=off; the benchmark switches it per run; Karmada client QPS ${CMCS_KARMADA_API_QPS:-default})"
trap 'hack/clusterset.sh down >/dev/null 2>&1 || true
  CMCS_PORT_BASE=29000 CMCS_CLUSTERSET_DIR="$PWD/_output/clusterset-fleet" hack/clusterset.sh down >/dev/null 2>&1 || true' EXIT
hack/clusterset.sh down >/dev/null
# member3 is a Pull member (karmada-agent, mcs-agent): the Pull vs Push importer figures.
CMCS_KARMADA_MCS=off CMCS_PULL_MEMBERS=1 hack/clusterset.sh up >/dev/null
eval "$(hack/clusterset.sh env | sed 's/^/export /')"
K=$CMCS_KUBECTL
# The MCS CRDs (the v1alpha1 ones Karmada v1.16 watches) in both members, and Karmada seeing them.
for m in member1 member2; do "$K" --kubeconfig "$CMCS_MEMBERS_KUBECONFIG" --context $m apply -f "$CMCS_MCS_CRDS_DIR" >/dev/null; done
for m in member1 member2; do
  for i in $(seq 1 120); do
    "$K" --kubeconfig "$CMCS_KARMADA_KUBECONFIG" get cluster $m -o jsonpath='{.status.apiEnablements}' | grep -q multicluster.x-k8s.io/v1alpha1 && break
    sleep 0.5
  done
done
P=${CMCS_PORT_BASE:-31000}

[[ $only == *dns* ]] && step "DNS: coredns-mcs vs stock CoreDNS $COREDNS_VERSION vs template ceiling (dnsperf), memory after sync"
# BENCH_BASELINE=<git revision>: that revision's coredns-mcs runs beside ours in the throughput
# runs (the same command, the same machine), e.g. the commit before a change to the plugin.
# The same revision's mcs-controller runs beside ours in the unexported-Services section.
baseline_args=() baseline_ctl=()
if [[ ( $only == *dns* || $only == *unexported* ) && -n ${BENCH_BASELINE:-} ]]; then
  step "building coredns-mcs and mcs-controller at $BENCH_BASELINE (the baseline)"
  rm -rf "$OUT/baseline-src" && git worktree add -f --detach "$OUT/baseline-src" "$BENCH_BASELINE" >/dev/null
  (cd "$OUT/baseline-src" && go build -trimpath -o "$PWD/../coredns-mcs-baseline" ./cmd/coredns-mcs &&
    go build -trimpath -o "$PWD/../mcs-controller-baseline" ./cmd/mcs-controller)
  git worktree remove --force "$OUT/baseline-src"
  baseline_args=(--baseline "$OUT/coredns-mcs-baseline")
  baseline_ctl=(--baseline-controller "$OUT/mcs-controller-baseline")
fi
[[ $only == *dns* ]] && _output/bin/mcsbench dns --kubeconfig "$CMCS_MEMBERS_KUBECONFIG" --context member2 \
  --ours _output/bin/coredns-mcs --stock "$CMCS_CACHE/coredns-$COREDNS_VERSION/coredns" \
  --port-base $((P + 200)) --dir "$OUT" --out "$OUT/dns.md" "${baseline_args[@]}" "${DNS_ARGS[@]}"

if [[ $only == *churn* ]]; then
step "DNS under churn: dnsperf at a fixed rate while imports, slices and derived Services change 10/s, every answer checked (${CHURN_SECONDS}s)"
CMCS_CHURN_SECONDS=$CHURN_SECONDS CMCS_CHURN_REPORT="$PWD/$OUT/churn.txt" \
  go test -tags e2e -count=1 -v -run '^TestChurnAnswersFollowState$' -timeout 10m ./test/integration/ >"$OUT/churn.log" 2>&1 &&
  verdict=passed || verdict="FAILED (log: churn.log)"
{
  echo "### DNS under churn"
  echo
  echo "coredns-mcs on member2 (test/integration TestChurnAnswersFollowState, ${CHURN_SECONDS} s): $verdict."
  echo
  cat "$OUT/churn.txt" 2>/dev/null || echo "(no report)"
  echo
} >"$OUT/churn.md"
fi

[[ $only == *control* ]] && step "controllers: ours vs Karmada's built-in MCS (propagation, churn, scale)"
[[ $only == *control* ]] && _output/bin/mcsbench control --karmada-kubeconfig "$CMCS_KARMADA_KUBECONFIG" --members-kubeconfig "$CMCS_MEMBERS_KUBECONFIG" \
  --controller _output/bin/mcs-controller --controller-args "$controller_args" --coredns _output/bin/coredns-mcs --clusterset hack/clusterset.sh \
  --dns-port $((P + 210)) --dir "$OUT" --out "$OUT/control.md" "${CONTROL_ARGS[@]}"

if [[ $only == *unexported* ]]; then
step "unexported Services: the controller's memory, reconciles and CPU with a member full of Services nobody exports"
{
  echo "### Unexported Services"
  echo
  echo "member1 holds Services and EndpointSlices nobody exports (${UNEXPORTED_ARGS[*]}); each controller runs alone, once with member1 empty and once with the data, after its member caches synced and a settle; then the slices are updated. RSS and the Go heap in use (go_memstats_heap_inuse_bytes) are read once; reconciles are coredns_mcs_controller_reconciles_total.${BENCH_BASELINE:+ The baseline is mcs-controller built at $BENCH_BASELINE.}"
  echo
  echo "| controller | Services / slices | RSS MiB empty → with (ratio) | heap MiB empty → with (ratio) | reconciles at start | CPU µs per update | reconciles during the updates |"
  echo "|---|---|---|---|---|---|---|"
} >"$OUT/unexported.md"
_output/bin/mcsbench unexported --karmada-kubeconfig "$CMCS_KARMADA_KUBECONFIG" --members-kubeconfig "$CMCS_MEMBERS_KUBECONFIG" \
  --controller _output/bin/mcs-controller --controller-args "$controller_args" --port-base $((P + 240)) --dir "$OUT" --out "$OUT/unexported.md" \
  "${baseline_ctl[@]}" "${UNEXPORTED_ARGS[@]}" || echo "(failed: see the log above)" >>"$OUT/unexported.md"
echo >>"$OUT/unexported.md"
fi

if [[ $only == *pull* ]]; then
step "Pull vs Push importer: export in member1 → dig answers in member2 (Push) and member3 (Pull), same run"
# The MCS CRDs in member3 too (only now: the runs above import into member2 only).
"$K" --kubeconfig "$CMCS_MEMBERS_KUBECONFIG" --context member3 apply -f "$CMCS_MCS_CRDS_DIR" >/dev/null
for i in $(seq 1 120); do
  grep -q importVersion <("$K" --kubeconfig "$CMCS_KARMADA_KUBECONFIG" -n karmada-es-member3 get work coredns-mcs-agent-cluster -o jsonpath='{.spec.workload.manifests[0].data.payload}' 2>/dev/null) && break
  sleep 0.5
done
_output/bin/mcsbench pull --karmada-kubeconfig "$CMCS_KARMADA_KUBECONFIG" --members-kubeconfig "$CMCS_MEMBERS_KUBECONFIG" \
  --controller _output/bin/mcs-controller --controller-args "$controller_args" --coredns _output/bin/coredns-mcs \
  --services "$PULL_SERVICES" --port-base $((P + 220)) --dir "$OUT" --out "$OUT/pull.md"
fi

if [[ $only == *gobench* ]]; then
step "plugin hot path (go test -bench)"
go test -run '^$' -bench . -benchmem "${GOBENCH_ARGS[@]}" ./plugin/multicluster/ >"$OUT/gobench.txt"
{
  echo "### Plugin hot path (go test -bench, in-process, both cores)"
  echo
  echo "| benchmark | ns/op median (min–max) | B/op | allocs/op |"
  echo "|---|---|---|---|"
  awk '/^Benchmark/ { n=$1; sub(/-[0-9]+$/, "", n); v[n]=v[n] " " $3; b[n]=$5; a[n]=$7; if (!(n in seen)) { seen[n]=1; order[++k]=n } }
    END { for (i=1; i<=k; i++) { n=order[i]; m=split(substr(v[n],2), x, " ");
      for (p=2; p<=m; p++) { t=x[p]+0; q=p-1; while (q>=1 && x[q]+0>t) { x[q+1]=x[q]; q-- } x[q+1]=t }
      med = (m%2) ? x[(m+1)/2] : (x[m/2]+x[m/2+1])/2;
      printf "| %s | %.0f (%.0f–%.0f) | %s | %s |\n", n, med, x[1], x[m], b[n], a[n] } }' "$OUT/gobench.txt"
  echo
} >"$OUT/gobench.md"
fi

if [[ $only == *fleet* ]]; then
step "members: the controller's and coredns-mcs's cost with N Push members (N = $FLEET_SIZES), each on a clusterset of its own"
hack/clusterset.sh down >/dev/null # the main clusterset: one set of control planes at a time on 2 cores
{
  echo "### Cost with N members"
  echo
  echo "$FLEET_SERVICES services exported from member1, imported automatically by all N Push members (every member serves the MCS API); the controller started once they are in place; converged when every member has every derived slice with its endpoint. Reconciles are those of exported services (controller_runtime_reconcile_total of the mcs-service controller; Cluster reconciles are not counted). coredns-mcs serves member2, measured once it answers every name. One run per N, each on a fresh clusterset (port base 29000)."
  echo
  echo "| members | exports | converge s | reconciles | per export | per export and member | controller peak RSS MiB | controller CPU s | coredns-mcs RSS MiB |"
  echo "|---|---|---|---|---|---|---|---|---|"
} >"$OUT/fleet.md"
machine=$OUT/fleet-machine.md
{
  echo "What the machine holds: the whole clusterset idle, before the exports (memory in use on the machine, 1-minute load average after $FLEET_SETTLE s, on $(nproc) cores)."
  echo
  echo "| members | clusterset up in s | memory in use GiB | load average |"
  echo "|---|---|---|---|"
} >"$machine"
for n in $FLEET_SIZES; do
  fenv=(CMCS_MEMBERS=$n CMCS_PULL_MEMBERS=0 CMCS_PORT_BASE=29000 CMCS_CLUSTERSET_DIR="$PWD/_output/clusterset-fleet")
  env "${fenv[@]}" hack/clusterset.sh down >/dev/null
  t_up=$(date +%s)
  if ! env "${fenv[@]}" hack/clusterset.sh up >"$OUT/clusterset-fleet-$n.log" 2>&1; then
    # Where the machine stops holding: recorded with its reason, and no larger N is tried.
    why=$(grep -hoE 'too many open files|out of memory|cannot allocate memory|timed out[^|]*' "$OUT/clusterset-fleet-$n.log" | head -1)
    echo "| $n | $FLEET_SERVICES | clusterset did not come up: ${why:-see clusterset-fleet-$n.log} | | | | | | |" >>"$OUT/fleet.md"
    echo "| $n | did not come up in $(( $(date +%s) - t_up )) s | $(free -m | awk '/^Mem:/ {printf "%.1f", $3/1024}') | $(cut -d' ' -f1 /proc/loadavg) |" >>"$machine"
    cp -r _output/clusterset-fleet/logs "$OUT/clusterset-fleet-$n-logs" 2>/dev/null || true
    env "${fenv[@]}" hack/clusterset.sh down >/dev/null 2>&1 || true
    break
  fi
  t_up=$(( $(date +%s) - t_up ))
  sleep "$FLEET_SETTLE"
  echo "| $n | $t_up | $(free -m | awk '/^Mem:/ {printf "%.1f", $3/1024}') | $(cut -d' ' -f1 /proc/loadavg) |" >>"$machine"
  fk=$PWD/_output/clusterset-fleet
  for i in $(seq 1 "$n"); do "$K" --kubeconfig "$fk/members.config" --context member$i apply -f "$CMCS_MCS_CRDS_DIR" >/dev/null; done
  _output/bin/mcsbench fleet --karmada-kubeconfig "$fk/karmada.config" --members-kubeconfig "$fk/members.config" --members "$n" \
    --controller _output/bin/mcs-controller --controller-args "$controller_args" --coredns _output/bin/coredns-mcs \
    --services "$FLEET_SERVICES" --port-base 29230 --dir "$OUT" --out "$OUT/fleet.md" ||
    echo "| $n | $FLEET_SERVICES | failed (log: mcs-controller-fleet-$n.log) | | | | | | |" >>"$OUT/fleet.md"
  env "${fenv[@]}" hack/clusterset.sh down >/dev/null
done
{ echo; cat "$machine"; echo; } >>"$OUT/fleet.md"
fi

{
  echo "# coredns-mcs benchmarks ($mode)"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); commit: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (dirty)')"
  echo "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
  echo "- $(go version | cut -d' ' -f3); CoreDNS $COREDNS_VERSION (ours embeds it; stock built from the same module); Kubernetes $KUBE_VERSION; Karmada $KARMADA_VERSION; dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}')"
  echo "- client limits (karmada-controller-manager, karmada-scheduler, mcs-controller): $([ -n "$CMCS_KARMADA_API_QPS" ] && echo "QPS $CMCS_KARMADA_API_QPS, burst $((CMCS_KARMADA_API_QPS * 2)) (CMCS_KARMADA_API_QPS)" || echo "their defaults (Karmada's QPS 40, burst 60; ours 100/200 to Karmada, 50/100 to members)"), the same for both controllers compared"
  echo "- command: \`${BENCH_ONLY:+BENCH_ONLY=$BENCH_ONLY }${BENCH_BASELINE:+BENCH_BASELINE=$BENCH_BASELINE }make bench$([ "$mode" = smoke ] && echo -smoke)\` (hack/bench.sh $mode), $(( ($(date +%s) - t_start) / 60 )) min"
  echo
  for f in dns churn control unexported pull fleet gobench; do touch_md "$OUT/$f.md"; cat "$OUT/$f.md"; done
} >"$OUT/results.md"
cat "$OUT/results.md"
