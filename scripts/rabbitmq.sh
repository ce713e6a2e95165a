#!/usr/bin/env bash
# scripts/rabbitmq.sh - start and stop a private RabbitMQ server on
# 127.0.0.1 for the tests and benchmarks (Debian's rabbitmq-server, no
# systemd needed, runs as root or as any user).
#
#   rabbitmq.sh start   RUN_DIR [AMQP_PORT [DIST_PORT [EPMD_PORT [HTTP_PORT]]]]
#                       (each port a number or "auto")
#   rabbitmq.sh stop    RUN_DIR
#   rabbitmq.sh restart RUN_DIR      stop, then start with the same ports
#                                    and the same mnesia dir (durable
#                                    queues and their messages survive)
#   rabbitmq.sh ctl     RUN_DIR ARGS...   rabbitmqctl against that node
#
# Every file lives under RUN_DIR: home (the Erlang cookie), config, mnesia,
# logs, pid files. Ports default to 15673 (AMQP), 25673 (Erlang
# distribution) and 14369 (a private epmd), so neither a user's own
# RabbitMQ nor its epmd clash with it; any port given as "auto" is a free
# one probed by scripts/free-port.sh (the test fixtures use only "auto",
# so two build trees testing at once never share a node). `start`
# records the ports in RUN_DIR/instance.env for the other commands and
# writes the client URL to RUN_DIR/url (and the management URL to
# RUN_DIR/http when there is one) for the specs to read. With HTTP_PORT the
# management plugin listens there (127.0.0.1; the interop specs read
# message headers through its HTTP API). The real scripts in
# /usr/lib/rabbitmq/bin are called directly (the /usr/sbin wrappers switch
# to the rabbitmq user). `start` first stops a stale server left by an
# aborted run (pid files), and returns once `rabbitmqctl wait` saw the
# node running. Stopping is by PID only: SIGTERM to the node, then epmd.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop|restart RUN_DIR [AMQP_PORT [DIST_PORT [EPMD_PORT [HTTP_PORT]]]] (each a number or auto)" >&2
  echo "       $0 ctl RUN_DIR RABBITMQCTL-ARGS..." >&2
  exit 2
}

[ $# -ge 2 ] || usage
CMD=$1
RUN_DIR=$(mkdir -p "$2" && cd "$2" && pwd)
shift 2
RMQ=$RUN_DIR/rmq
BIN=/usr/lib/rabbitmq/bin

# The environment every rabbitmq script of this instance runs with.
instance_env() {
  export HOME=$RMQ/home
  export RABBITMQ_NODENAME="swit$AMQP_PORT@localhost"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$AMQP_PORT
  export RABBITMQ_DIST_PORT=$DIST_PORT ERL_EPMD_PORT=$EPMD_PORT
  export ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_CTL_DIST_PORT_MIN=$((DIST_PORT + 1))
  export RABBITMQ_CTL_DIST_PORT_MAX=$((DIST_PORT + 20))
  export RABBITMQ_CONF_ENV_FILE=$RMQ/env.conf
  export RABBITMQ_CONFIG_FILE=$RMQ/rabbitmq.conf
  export RABBITMQ_ENABLED_PLUGINS_FILE=$RMQ/enabled_plugins
  export RABBITMQ_MNESIA_BASE=$RMQ/mnesia RABBITMQ_LOG_BASE=$RMQ/log
  export RABBITMQ_PID_FILE=$RMQ/rabbit.pid
  export PATH=$BIN:$PATH
}

load_instance() {
  if [ ! -f "$RMQ/instance.env" ]; then
    return 1
  fi
  # shellcheck source=/dev/null
  . "$RMQ/instance.env"
  instance_env
}

alive() {
  [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null
}

# SIGTERM, wait up to $2 seconds, then SIGKILL.
stop_pid() {
  local pid=$1 secs=$2 i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || return 0
    sleep 0.1
  done
}

read_pid() {
  [ -f "$1" ] && tr -dc '0-9' <"$1" || true
}

do_stop() {
  load_instance || return 0
  local script beam epmd
  script=$(read_pid "$RMQ/server.pid")
  beam=$(read_pid "$RABBITMQ_PID_FILE")
  epmd=$(read_pid "$RMQ/epmd.pid")
  stop_pid "$script" 30
  stop_pid "$beam" 10
  stop_pid "$epmd" 5
  rm -f "$RMQ/server.pid" "$RABBITMQ_PID_FILE" "$RMQ/epmd.pid"
}

write_config() {
  mkdir -p "$HOME" "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE"
  : >"$RABBITMQ_CONF_ENV_FILE"
  if [ -n "$HTTP_PORT" ]; then
    echo "[rabbitmq_management]." >"$RABBITMQ_ENABLED_PLUGINS_FILE"
  else
    echo "[]." >"$RABBITMQ_ENABLED_PLUGINS_FILE"
  fi
  cat >"$RABBITMQ_CONFIG_FILE" <<EOF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
distribution.listener.interface = 127.0.0.1
distribution.listener.port_range.min = $DIST_PORT
distribution.listener.port_range.max = $DIST_PORT
loopback_users = none
log.file.level = warning
log.console = false
EOF
  if [ -n "$HTTP_PORT" ]; then
    printf 'management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = %s\n' \
      "$HTTP_PORT" >>"$RABBITMQ_CONFIG_FILE"
  fi
}

do_start() {
  local epmd node
  epmd -address 127.0.0.1 -port "$EPMD_PORT" >"$RABBITMQ_LOG_BASE/epmd.out" 2>&1 &
  epmd=$!
  echo "$epmd" >"$RMQ/epmd.pid"
  rabbitmq-server >"$RABBITMQ_LOG_BASE/server.out" 2>&1 </dev/null &
  node=$!
  echo "$node" >"$RMQ/server.pid"
  if ! rabbitmqctl -q -n "$RABBITMQ_NODENAME" wait "$RABBITMQ_PID_FILE" \
      --timeout 120 >"$RABBITMQ_LOG_BASE/wait.out" 2>&1; then
    echo "rabbitmq.sh: node $RABBITMQ_NODENAME did not start; see $RABBITMQ_LOG_BASE" >&2
    tail -n 20 "$RABBITMQ_LOG_BASE/server.out" >&2 || true
    do_stop
    exit 1
  fi
  echo "rabbitmq.sh: $RABBITMQ_NODENAME ready on 127.0.0.1:$AMQP_PORT (pid $node)"
}

case "$CMD" in
  start)
    if load_instance; then do_stop; fi
    AMQP_PORT=${1:-15673}
    DIST_PORT=${2:-25673}
    EPMD_PORT=${3:-14369}
    HTTP_PORT=${4:-}
    mapfile -t FREE < <("$(dirname "$0")/free-port.sh" 4)
    [ "$AMQP_PORT" = auto ] && AMQP_PORT=${FREE[0]}
    [ "$DIST_PORT" = auto ] && DIST_PORT=${FREE[1]}
    [ "$EPMD_PORT" = auto ] && EPMD_PORT=${FREE[2]}
    [ "$HTTP_PORT" = auto ] && HTTP_PORT=${FREE[3]}
    mkdir -p "$RMQ"
    echo "amqp://guest:guest@127.0.0.1:$AMQP_PORT" >"$RUN_DIR/url"
    if [ -n "$HTTP_PORT" ]; then echo "http://127.0.0.1:$HTTP_PORT" >"$RUN_DIR/http"
    else rm -f "$RUN_DIR/http"; fi
    printf 'AMQP_PORT=%s\nDIST_PORT=%s\nEPMD_PORT=%s\nHTTP_PORT=%s\n' \
      "$AMQP_PORT" "$DIST_PORT" "$EPMD_PORT" "$HTTP_PORT" >"$RMQ/instance.env"
    instance_env
    write_config
    do_start
    ;;
  stop)
    do_stop
    ;;
  restart)
    load_instance || { echo "rabbitmq.sh: no instance in $RUN_DIR" >&2; exit 1; }
    do_stop
    instance_env
    do_start
    ;;
  ctl)
    load_instance || { echo "rabbitmq.sh: no instance in $RUN_DIR" >&2; exit 1; }
    exec rabbitmqctl -q -n "$RABBITMQ_NODENAME" "$@"
    ;;
  *)
    usage
    ;;
esac
