#!/usr/bin/env bash
# scripts/install-deps.sh - install the Debian packages swit needs to build,
# test and benchmark. Installs only what is missing; safe to re-run.
# Used by `make run`, `make test` and .ci/run. Needs root (or sudo).
#   install-deps.sh            everything: build, run, test, benchmark
#   install-deps.sh --build    what building swit needs (packaging/Dockerfile)
#   install-deps.sh --runtime  what the built swit needs to run, no compiler
#                              (packaging/Dockerfile's final image)
# The lists are here only; packaging.docker checks that --runtime covers
# every library the swit binary links.
set -euo pipefail

RUNTIME=(
  libluajit-5.1-2 libyaml-0-2 libevent-2.1-7 libevent-pthreads-2.1-7
  libevent-openssl-2.1-7
  librdkafka1 librabbitmq4 libnats3.4 libssl3 libsqlite3-0 lua-cjson
  ca-certificates
)
BUILD=(
  build-essential cmake pkg-config git curl
  luajit libluajit-5.1-dev libyaml-dev libevent-dev libssl-dev
  librdkafka-dev librabbitmq-dev libnats-dev libsqlite3-dev lua-cjson
)
# systemd is here for systemd-analyze (the test packaging.systemd), openssl
# for the certificates the TLS specs make, clang for `make fuzz`.
TEST=(
  clang libclang-rt-dev
  lua-busted lua-check prometheus
  nats-server rabbitmq-server kcat amqp-tools
  systemd openssl
)

case "${1:-}" in
  --runtime) PKGS=("${RUNTIME[@]}") ;;
  --build) PKGS=("${BUILD[@]}") ;;
  --list-runtime) printf '%s\n' "${RUNTIME[@]}"; exit 0 ;;
  "") PKGS=("${BUILD[@]}" "${TEST[@]}") ;;
  *) echo "usage: install-deps.sh [--build | --runtime | --list-runtime]" >&2; exit 2 ;;
esac

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
