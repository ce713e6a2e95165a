#!/usr/bin/env bash
# scripts/nats-server.sh - start, stop or restart a local nats-server with
# JetStream for the NATS adapter's tests and benchmark.
#
#   nats-server.sh start   DIR PORT|auto HTTP_PORT|auto [--no-js] [--fresh]
#   nats-server.sh stop    DIR
#   nats-server.sh restart DIR          (same ports and options, same store)
#   nats-server.sh kill    DIR          (SIGKILL, for fault tests)
#
# Listens on 127.0.0.1 only. Everything lives under DIR: the JetStream
# store (DIR/js), the log (DIR/nats.log), the pid file (DIR/nats.pid) and
# the options of the last start (DIR/args) for restart; --fresh empties
# the JetStream store before starting. "auto" ports come from
# scripts/free-port.sh (probed again if the server cannot bind them), so
# two build trees testing at once never share a server; start writes the
# ports it used to DIR/port, DIR/http_port and the client URL to DIR/url
# for the specs to read, and restart keeps them. A server left
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

wait_ready() { # dir http_port; fails (status 1) if the server exited
  local i
  for i in $(seq 1 200); do
    if curl -sf "http://127.0.0.1:$2/healthz" >/dev/null 2>&1; then return 0; fi
    if ! is_ours "$(cat "$1/nats.pid")"; then
      tail -n 20 "$1/nats.log" >&2 || true
      echo "nats-server.sh: nats-server exited during startup (log: $1/nats.log)" >&2
      return 1
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
  echo "$port" >"$dir/port"
  echo "$http" >"$dir/http_port"
  echo "nats://127.0.0.1:$port" >"$dir/url"
  nohup nats-server "${args[@]}" </dev/null >/dev/null 2>&1 &
  echo $! >"$dir/nats.pid"
  wait_ready "$dir" "$http"
}

# launch with "auto" ports: probe, and probe again (3 tries) when another
# process took a probed port before nats-server bound it.
launch_auto() { # dir port|auto http|auto js
  local dir=$1 try ports p h
  for try in 1 2 3; do
    mapfile -t ports < <("$(dirname "$0")/free-port.sh" 2)
    p=$2; h=$3
    [ "$p" = auto ] && p=${ports[0]}
    [ "$h" = auto ] && h=${ports[1]}
    launch "$dir" "$p" "$h" "$4" && return 0
    [ "$2" = auto ] || [ "$3" = auto ] || break
    rm -f "$dir/nats.pid"
  done
  die "nats-server did not start (log: $dir/nats.log)"
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop|restart|kill DIR [PORT|auto HTTP_PORT|auto [--no-js] [--fresh]]"
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
    launch_auto "$dir" "$port" "$http" "$js"
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
    launch "$dir" "$port" "$http" "$js" || die "nats-server did not restart (log: $dir/nats.log)"
    ;;
  *) die "unknown command '$cmd'" ;;
esac
