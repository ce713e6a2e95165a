#!/usr/bin/env bash
# scripts/kafka-mock.sh - start or stop swit-kafka-mock (librdkafka's mock
# Kafka cluster) for the Kafka adapter's tests, benchmark and for users.
#
#   kafka-mock.sh start DIR [MOCK_BIN] [-- MOCK_ARGS...]
#   kafka-mock.sh stop  DIR
#   kafka-mock.sh down  DIR        (SIGUSR1: broker 1 goes down)
#   kafka-mock.sh up    DIR        (SIGUSR2: broker 1 comes back)
#
# MOCK_BIN defaults to $SWIT_KAFKA_MOCK or swit-kafka-mock on PATH;
# MOCK_ARGS default to "--brokers 3". Everything lives under DIR: the
# bootstrap string (DIR/bootstrap, one line; the mock binds random ports
# on 127.0.0.1), the pid file (DIR/mock.pid) and the log (DIR/mock.log).
# A mock left running by an aborted earlier run (pid file still there) is
# stopped first. start returns once kcat can read the cluster's metadata.
set -euo pipefail

die() { echo "kafka-mock.sh: $*" >&2; exit 1; }

is_ours() { # pid: a live swit-kafka-mock (not a recycled pid)
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q swit-kafka-mock
}

stop_dir() {
  local dir=$1 pid i
  [ -f "$dir/mock.pid" ] || return 0
  pid=$(cat "$dir/mock.pid")
  if [ -n "$pid" ] && is_ours "$pid"; then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do
      is_ours "$pid" || break
      sleep 0.05
    done
    is_ours "$pid" && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/mock.pid" "$dir/bootstrap"
}

wait_ready() { # dir
  local dir=$1 i
  for i in $(seq 1 200); do
    if [ -s "$dir/bootstrap" ] &&
       kcat -b "$(cat "$dir/bootstrap")" -L -m 2 >/dev/null 2>&1; then
      return 0
    fi
    if ! is_ours "$(cat "$dir/mock.pid")"; then
      tail -n 20 "$dir/mock.log" >&2 || true
      die "swit-kafka-mock exited during startup (log: $dir/mock.log)"
    fi
    sleep 0.05
  done
  die "mock cluster not ready after 10 s (log: $dir/mock.log)"
}

signal() { # dir signal
  [ -f "$1/mock.pid" ] && is_ours "$(cat "$1/mock.pid")" || die "no mock running in $1"
  kill "-$2" "$(cat "$1/mock.pid")"
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop|down|up DIR [MOCK_BIN] [-- MOCK_ARGS...]"
case "$cmd" in
  start)
    shift 2
    bin=${SWIT_KAFKA_MOCK:-swit-kafka-mock}
    if [ $# -gt 0 ] && [ "$1" != "--" ]; then bin=$1; shift; fi
    [ "${1:-}" = "--" ] && shift
    args=("$@")
    [ ${#args[@]} -gt 0 ] || args=(--brokers 3)
    command -v "$bin" >/dev/null || die "$bin not found (build swit-kafka-mock)"
    command -v kcat >/dev/null || die "kcat not installed (scripts/install-deps.sh)"
    mkdir -p "$dir"
    stop_dir "$dir"
    nohup "$bin" --bootstrap-file "$dir/bootstrap" "${args[@]}" \
      </dev/null >"$dir/mock.log" 2>&1 &
    echo $! >"$dir/mock.pid"
    wait_ready "$dir"
    ;;
  stop) stop_dir "$dir" ;;
  down) signal "$dir" USR1 ;;
  up) signal "$dir" USR2 ;;
  *) die "unknown command '$cmd'" ;;
esac
