#!/usr/bin/env bash
# The main job: from nothing, build what is missing, bring the local clusterset up and show it.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/install-packages.sh
hack/build-deps.sh
hack/clusterset.sh up >/dev/null
eval "$(hack/clusterset.sh env | sed 's/^/export /')"
k() { "$CMCS_KUBECTL" "$@"; }

echo
echo "# Karmada control plane: the member clusters"
echo "\$ kubectl --kubeconfig $CMCS_KARMADA_KUBECONFIG --context karmada-apiserver get clusters"
k --kubeconfig "$CMCS_KARMADA_KUBECONFIG" --context karmada-apiserver get clusters
for m in member1 member2; do
  echo
  echo "\$ kubectl --kubeconfig $CMCS_MEMBERS_KUBECONFIG --context $m get nodes -o wide"
  k --kubeconfig "$CMCS_MEMBERS_KUBECONFIG" --context "$m" get nodes -o wide
done
cat <<EOM

Poke at it:
  export KUBECONFIG=$CMCS_KARMADA_KUBECONFIG:$CMCS_MEMBERS_KUBECONFIG
  alias kubectl=$CMCS_KUBECTL
  kubectl --context karmada-apiserver get clusters
  kubectl --context member1 get pods -A
Logs of every process: _output/clusterset/logs/
Stop everything:       make down
EOM
