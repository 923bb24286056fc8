#!/usr/bin/env bash
# Ensure a Docker engine answers on this machine: use a running one, otherwise install
# Debian's docker.io (if dockerd is missing) and start it. Idempotent; safe to call often.
set -euo pipefail

WAIT_S="${EDGELAMBDA_ENGINE_WAIT_S:-60}"
LOG=/var/log/dockerd.log
PIDFILE=/var/run/docker.pid

log() { echo "ensure-engine: $*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

if engine_answers; then
  log "engine already running"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  log "no engine answers and this is not root: start dockerd yourself (or run as root)"
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  log "installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi
command -v docker >/dev/null 2>&1 || { log "no docker client after install"; exit 1; }

# A daemon killed without cleanup leaves its pid file, and a new dockerd refuses to start.
if [ -f "$PIDFILE" ]; then
  pid=$(cat "$PIDFILE" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    log "dockerd (pid $pid) is running but not answering yet"
  else
    log "removing stale pid file $PIDFILE"
    rm -f "$PIDFILE"
  fi
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  log "starting dockerd (log: $LOG)"
  setsid dockerd >"$LOG" 2>&1 < /dev/null &
fi

for _ in $(seq 1 "$((WAIT_S * 2))"); do
  if engine_answers; then
    log "engine ready"
    exit 0
  fi
  sleep 0.5
done
log "engine did not answer within ${WAIT_S}s; last lines of $LOG:"
tail -n 20 "$LOG" >&2 || true
exit 1
