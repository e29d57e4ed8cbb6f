#!/usr/bin/env bash
# Builds, once, the pinned real components of the local clusterset from Go modules into
# $CMCS_CACHE/<component>-<version>/. A component whose directory carries a .done stamp is skipped.
# Usage: hack/build-deps.sh [etcd|kube|karmada|kwok|helm|coredns ...]   (default: all)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/versions.sh"
export PATH=/usr/local/go/bin:$PATH
export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

log() { printf '[build-deps %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# wrapper DIR MODULE VERSION: a tiny module in DIR that requires MODULE@VERSION exactly.
wrapper() {
  local dir=$1 mod=$2 ver=$3; shift 3
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<GOMOD
module cmcs.local/wrapper

go 1.26

require $mod $ver
GOMOD
  { echo '//go:build tools'; echo; echo 'package tools'; echo; echo 'import ('
    for p in "$@"; do echo "	_ \"$p\""; done; echo ')'; } >"$dir/tools.go"
}

# stage_replaces MOD VER STAGING_VER: replace lines re-pointing local-path replaces of MOD's
# go.mod to the published STAGING_VER tags (k8s.io/kubernetes keeps its staging repos in-tree).
stage_replaces() {
  local gomod
  gomod=$(go mod download -json "$1@$2" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  awk -v v="$3" '/=> \.\/staging/ { print "replace " $1 " => " $1 " " v }' "$gomod"
}

build_etcd() {
  local out=$CMCS_CACHE/etcd-$ETCD_VERSION src=$CMCS_CACHE/src/etcd-$ETCD_VERSION
  wrapper "$src" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
  (cd "$src" && go mod tidy && go build -trimpath -ldflags '-s -w' -o "$out/etcd" go.etcd.io/etcd/server/v3)
}

build_kube() {
  local out=$CMCS_CACHE/kube-$KUBE_VERSION src=$CMCS_CACHE/src/kube-$KUBE_VERSION
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)
  wrapper "$src" k8s.io/kubernetes "$KUBE_VERSION" "${cmds[@]/#/k8s.io/kubernetes/cmd/}"
  (cd "$src" && { echo; echo 'godebug default=go1.24'; echo; stage_replaces k8s.io/kubernetes "$KUBE_VERSION" "$KUBE_STAGING_VERSION"; } >>go.mod && go mod tidy)
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  local ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  mkdir -p "$out"
  (cd "$src" && go build -trimpath -ldflags "$ld" -o "$out/" "${cmds[@]/#/k8s.io/kubernetes/cmd/}")
}

# The Karmada binaries; agent is karmada-agent, which runs in Pull-mode members.
KARMADA_CMDS=(controller-manager scheduler webhook aggregated-apiserver agent)

build_karmada() {
  local out=$CMCS_CACHE/karmada-$KARMADA_VERSION src=$CMCS_CACHE/src/karmada-$KARMADA_VERSION
  local cmds=("${KARMADA_CMDS[@]}")
  wrapper "$src" github.com/karmada-io/karmada "$KARMADA_VERSION" "${cmds[@]/#/github.com/karmada-io/karmada/cmd/}"
  (cd "$src" && go mod tidy)
  mkdir -p "$out/tmp"
  local ld="-s -w -X github.com/karmada-io/karmada/pkg/version.gitVersion=$KARMADA_VERSION"
  (cd "$src" && go build -trimpath -ldflags "$ld" -o "$out/tmp/" "${cmds[@]/#/github.com/karmada-io/karmada/cmd/}")
  local c
  for c in "${cmds[@]}"; do mv "$out/tmp/$c" "$out/karmada-$c"; done
  rmdir "$out/tmp"
  # The CRDs and webhook configuration are data the clusterset applies; keep a copy with the binaries.
  local moddir
  moddir=$(cd "$src" && go list -m -f '{{.Dir}}' github.com/karmada-io/karmada)
  rm -rf "$out/crds" && cp -r "$moddir/charts/karmada/_crds" "$out/crds" && chmod -R u+w "$out/crds"
  cp "$moddir/artifacts/deploy/webhook-configuration.yaml" "$out/" && chmod u+w "$out/webhook-configuration.yaml"
}

build_helm() {
  local out=$CMCS_CACHE/helm-$HELM_VERSION src=$CMCS_CACHE/src/helm-$HELM_VERSION
  wrapper "$src" helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
  mkdir -p "$out"
  (cd "$src" && go mod tidy && go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    -o "$out/helm" helm.sh/helm/v3/cmd/helm)
}

build_kwok() {
  local out=$CMCS_CACHE/kwok-$KWOK_VERSION src=$CMCS_CACHE/src/kwok-$KWOK_VERSION
  wrapper "$src" sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
  (cd "$src" && go mod tidy && go build -trimpath -ldflags '-s -w' -o "$out/kwok" sigs.k8s.io/kwok/cmd/kwok)
  assets_kwok
}

# assets_kwok: the stages kwok plays and the CRDs of what it simulates (Logs: `kubectl logs`).
assets_kwok() {
  local out=$CMCS_CACHE/kwok-$KWOK_VERSION src=$CMCS_CACHE/src/kwok-$KWOK_VERSION moddir
  moddir=$(cd "$src" && go mod download sigs.k8s.io/kwok && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  rm -rf "$out/stage" && cp -r "$moddir/kustomize/stage" "$out/stage" && chmod -R u+w "$out/stage"
  mkdir -p "$out/crds" && cp "$moddir/kustomize/crd/bases/kwok.x-k8s.io_logs.yaml" "$out/crds/" && chmod -R u+w "$out/crds"
}

build_coredns() {
  local out=$CMCS_CACHE/coredns-$COREDNS_VERSION src=$CMCS_CACHE/src/coredns-$COREDNS_VERSION
  wrapper "$src" github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns
  (cd "$src" && go mod tidy && go build -trimpath -ldflags '-s -w' -o "$out/coredns" github.com/coredns/coredns)
}

version_of() {
  case $1 in
    etcd) echo "$ETCD_VERSION" ;; kube) echo "$KUBE_VERSION" ;; karmada) echo "$KARMADA_VERSION" ;;
    kwok) echo "$KWOK_VERSION" ;; coredns) echo "$COREDNS_VERSION" ;; helm) echo "$HELM_VERSION" ;; *) echo "unknown component $1" >&2; exit 2 ;;
  esac
}

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(etcd kube karmada kwok helm coredns)
for c in "${components[@]}"; do
  v=$(version_of "$c")
  dir=$CMCS_CACHE/$c-$v
  if [ -f "$dir/.done" ]; then
    # Files added to a component after it was built are copied without rebuilding it.
    [ "$c" = kwok ] && [ ! -d "$dir/crds" ] && assets_kwok
    # karmada-agent joined the Karmada binaries after v1.16.0 was first cached here.
    [ "$c" = karmada ] && [ ! -x "$dir/karmada-agent" ] && { log "karmada $v: adding karmada-agent"; build_karmada; date -u +%FT%TZ >"$dir/.done"; }
    log "$c $v: cached in $dir"
    continue
  fi
  log "$c $v: building (first build of everything takes ~35 min on 2 cores with empty Go caches)"
  start=$(date +%s)
  rm -rf "$dir"
  "build_$c"
  date -u +%FT%TZ >"$dir/.done"
  log "$c $v: done in $(( $(date +%s) - start ))s -> $dir"
done
