#!/usr/bin/env bash
# Installs the Debian packages the scripts and tests use, when missing (needs root or sudo).
set -euo pipefail
need=()
for pair in dig:bind9-dnsutils openssl:openssl curl:curl jq:jq ss:iproute2 ip:iproute2 iptables:iptables \
  socat:socat dnsperf:dnsperf nc:netcat-openbsd wget:wget ping:iputils-ping podman:podman setcap:libcap2-bin; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ ${#need[@]} -eq 0 ] && exit 0
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "[install-packages] installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
  $sudo apt-get update >/dev/null
  $sudo apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
}
