#!/usr/bin/env bash
# Ensure a Docker engine answers on this machine: use a running one, otherwise install
# Debian's docker.io (if dockerd is missing) and start it. Idempotent; safe to call often.
set -euo pipefail

WAIT_S="${EDGELAMBDA_ENGINE_WAIT_S:-60}"
LOG=/var/log/dockerd.log
PIDFILE=/var/run/docker.pid
NETWORK_DB=/var/lib/docker/network/files/local-kv.db

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

start_dockerd() {
  log "starting dockerd (log: $LOG)"
  setsid dockerd >"$LOG" 2>&1 < /dev/null &
}

wait_for_engine() {  # 0 when it answers; 1 when dockerd died; 2 on time-out
  for _ in $(seq 1 "$((WAIT_S * 2))"); do
    engine_answers && return 0
    pgrep -x dockerd >/dev/null 2>&1 || { sleep 0.5; engine_answers && return 0; return 1; }
    sleep 0.5
  done
  return 2
}

pgrep -x dockerd >/dev/null 2>&1 || start_dockerd
status=0
wait_for_engine || status=$?
# A daemon killed in the middle of a network change can leave libnetwork's store unreadable,
# and every later dockerd panics at start (seen with 20.10). Set the store aside once: only
# user-defined networks are lost, and the tools here recreate theirs.
if [ "$status" -eq 1 ] && grep -q "libnetwork" "$LOG" && [ -f "$NETWORK_DB" ]; then
  log "dockerd panicked reading its network store; moving $NETWORK_DB aside and retrying"
  mv "$NETWORK_DB" "$NETWORK_DB.broken-$(date +%s)"
  rm -f "$PIDFILE"
  start_dockerd
  status=0
  wait_for_engine || status=$?
fi
if [ "$status" -eq 0 ]; then
  log "engine ready"
  exit 0
fi
log "engine did not answer within ${WAIT_S}s; last lines of $LOG:"
tail -n 20 "$LOG" >&2 || true
exit 1
