#!/usr/bin/env bash
# scripts/install-deps.sh - install the Debian packages swit needs to build,
# test and benchmark. Installs only what is missing; safe to re-run.
# Used by `make run`, `make test` and .ci/run. Needs root (or sudo).
# systemd is here for systemd-analyze (the test packaging.systemd).
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git curl
  luajit libluajit-5.1-dev libyaml-dev libevent-dev libssl-dev
  librdkafka-dev librabbitmq-dev libnats-dev
  lua-busted lua-cjson lua-check prometheus
  nats-server rabbitmq-server kcat amqp-tools
  systemd
)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
