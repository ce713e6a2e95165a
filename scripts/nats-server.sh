#!/usr/bin/env bash
# scripts/nats-server.sh - start, stop or restart a local nats-server with
# JetStream for the NATS adapter's tests and benchmark.
#
#   nats-server.sh start   DIR PORT HTTP_PORT [--no-js] [--fresh]
#   nats-server.sh stop    DIR
#   nats-server.sh restart DIR          (same ports and options, same store)
#   nats-server.sh kill    DIR          (SIGKILL, for fault tests)
#
# Listens on 127.0.0.1 only. Everything lives under DIR: the JetStream
# store (DIR/js), the log (DIR/nats.log), the pid file (DIR/nats.pid) and
# the options of the last start (DIR/args) for restart; --fresh empties
# the JetStream store before starting. A server left
# running by an aborted earlier run (pid file still there) is stopped
# before a new one starts. Returns once /healthz on HTTP_PORT answers ok.
set -euo pipefail

die() { echo "nats-server.sh: $*" >&2; exit 1; }

stop_pid() { # pid: TERM, then KILL after ~5 s
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.05
  done
  kill -9 "$pid" 2>/dev/null || true
}

is_ours() { # pid: a live nats-server (not a recycled pid)
  [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -q nats-server
}

stop_dir() {
  local dir=$1 pid
  [ -f "$dir/nats.pid" ] || return 0
  pid=$(cat "$dir/nats.pid")
  if [ -n "$pid" ] && is_ours "$pid"; then stop_pid "$pid"; fi
  rm -f "$dir/nats.pid"
}

wait_ready() { # dir http_port
  local i
  for i in $(seq 1 200); do
    if curl -sf "http://127.0.0.1:$2/healthz" >/dev/null 2>&1; then return 0; fi
    if ! is_ours "$(cat "$1/nats.pid")"; then
      tail -n 20 "$1/nats.log" >&2 || true
      die "nats-server exited during startup (log: $1/nats.log)"
    fi
    sleep 0.025
  done
  die "nats-server on port $2 not ready after 5 s (log: $1/nats.log)"
}

launch() { # dir port http_port js(0|1)
  local dir=$1 port=$2 http=$3 js=$4
  local args=(-a 127.0.0.1 -p "$port" -m "$http" -l "$dir/nats.log")
  [ "$js" = 1 ] && args+=(-js -sd "$dir/js")
  printf '%s %s %s\n' "$port" "$http" "$js" >"$dir/args"
  nohup nats-server "${args[@]}" </dev/null >/dev/null 2>&1 &
  echo $! >"$dir/nats.pid"
  wait_ready "$dir" "$http"
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop|restart|kill DIR [PORT HTTP_PORT [--no-js]]"
command -v nats-server >/dev/null || die "nats-server not installed (scripts/install-deps.sh)"
case "$cmd" in
  start)
    port=${3:?port}; http=${4:?http port}; js=1; fresh=0
    for opt in "${@:5}"; do
      case "$opt" in
        --no-js) js=0 ;;
        --fresh) fresh=1 ;;
        *) die "unknown option '$opt'" ;;
      esac
    done
    mkdir -p "$dir"
    stop_dir "$dir"
    [ "$fresh" = 1 ] && rm -rf "$dir/js"
    launch "$dir" "$port" "$http" "$js"
    ;;
  stop)
    stop_dir "$dir"
    ;;
  kill)
    if [ -f "$dir/nats.pid" ] && is_ours "$(cat "$dir/nats.pid")"; then
      pid=$(cat "$dir/nats.pid")
      kill -9 "$pid" || true
      for i in $(seq 1 100); do   # gone, port released
        is_ours "$pid" || break
        sleep 0.05
      done
    fi
    rm -f "$dir/nats.pid"
    ;;
  restart)
    [ -f "$dir/args" ] || die "no earlier start in $dir"
    read -r port http js <"$dir/args"
    stop_dir "$dir"
    launch "$dir" "$port" "$http" "$js"
    ;;
  *) die "unknown command '$cmd'" ;;
esac
