#!/usr/bin/env bash
# Installs what building and testing Aion needs on a fresh Debian machine:
#   build: clang + libclang-dev (RocksDB's bindgen), a C++ compiler
#   test:  the real peers the integration tests run against (Prometheus, promtool,
#          vmagent/VictoriaMetrics, Alertmanager, node_exporter)
# Usage: scripts/install-deps.sh build|test
set -euo pipefail
want=(libclang-dev clang g++ make)
if [ "${1:-build}" = "test" ]; then
  want+=(prometheus prometheus-alertmanager victoria-metrics prometheus-node-exporter)
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The Debian packages start their services; the tests start their own on free ports.
for svc in prometheus prometheus-alertmanager victoria-metrics prometheus-node-exporter; do
  $SUDO systemctl stop "$svc" 2>/dev/null || $SUDO service "$svc" stop 2>/dev/null || true
done
