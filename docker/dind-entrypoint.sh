#!/usr/bin/env bash
# Entry point of the Docker-in-Docker parent (container onpre-app-root), run under tini:
#   1. start the inner dockerd (log: /var/log/dockerd.log) and wait for it, at most
#      EDGELAMBDA_ENGINE_WAIT_S seconds (default 60);
#   2. load the images baked into /opt/edgelambda/images that the inner engine lacks;
#   3. bring up the compose stack as `make up` does (EDGELAMBDA_STANDINS=1: the stand-ins);
#   4. from before step 3 on, follow the gateway's log on stdout, so `docker logs -f
#      onpre-app-root` shows it whenever it runs;
#   5. on SIGTERM or SIGINT: `docker-compose down` (the gateway drains its in-flight
#      invocations and removes its function containers; data volumes stay), unpause what the
#      inner engine still holds paused, stop the inner dockerd, exit 0.
# On cgroup v1 the inner gateway does not freeze idle containers unless
# EDGELAMBDA_FREEZE_AFTER_S says so (see standby_default).
# A signal that arrives during step 1-2 takes effect when the running step ends; during
# step 3 at once.
set -euo pipefail

COMPOSE_DIR=/opt/edgelambda/compose
IMAGES_DIR=/opt/edgelambda/images
PROJECT=edgelambda
ENGINE_PIDFILE=/var/run/docker.pid
ENGINE_STOP_S=30
FOLLOW_STOP=/run/edgelambda-follow.stop
export EDGELAMBDA_ROUTING=/srv/edgelambda/routing.yaml
export EDGELAMBDA_FUNCTIONS=/srv/edgelambda/functions
# Inside the parent every port is published on all of its addresses: the parent's own port
# bindings (compose/docker-compose.dind.yml) decide what the host exposes, and they forward
# to the parent's network address, never to its loopback.
export EDGELAMBDA_BIND_ADDRESS=0.0.0.0 EDGELAMBDA_DATA_BIND_ADDRESS=0.0.0.0

log() { echo "edgelambda-dind: $*"; }

compose() {
  local files=(-f "$COMPOSE_DIR/docker-compose.yml")
  [ -z "${EDGELAMBDA_STANDINS:-}" ] || files+=(-f "$COMPOSE_DIR/docker-compose.standins.yml")
  docker-compose --ansi never -p "$PROJECT" "${files[@]}" "$@"
}

# With cgroup v2 and a private cgroup namespace (privileged on a v2 host), move this
# container's processes into a leaf so that the inner engine may enable controllers for its
# children (the "no internal processes" rule). Nothing to do on cgroup v1, nor when the
# mounted hierarchy's root is not this container's own cgroup (this shell not listed in it).
nest_cgroup_v2() {
  [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qx "$$" /sys/fs/cgroup/cgroup.procs ||
    return 0
  mkdir -p /sys/fs/cgroup/init
  xargs -rn1 </sys/fs/cgroup/cgroup.procs >/sys/fs/cgroup/init/cgroup.procs 2>/dev/null || true
  sed -e 's/ / +/g' -e 's/^/+/' </sys/fs/cgroup/cgroup.controllers \
    >/sys/fs/cgroup/cgroup.subtree_control
}

# A task frozen by the cgroup v1 freezer does not die of SIGKILL until it is thawed (the
# cgroup v2 freezer, by design, lets fatal signals through: Linux commit 76f969e8948d,
# "cgroup: cgroup v2 freezer"). A parent killed outright, or whose inner engine is gone,
# while the gateway holds a function container frozen therefore cannot finish dying: its
# pid namespace waits on the frozen task for good. So on v1 the inner gateway's frozen
# standby is off by default; an operator who sets EDGELAMBDA_FREEZE_AFTER_S accepts that.
standby_default() {
  [ ! -f /sys/fs/cgroup/cgroup.controllers ] && [ -z "${EDGELAMBDA_FREEZE_AFTER_S:-}" ] ||
    return 0
  export EDGELAMBDA_FREEZE_AFTER_S=0
  log "cgroup v1: frozen standby off (EDGELAMBDA_FREEZE_AFTER_S=0); set it to turn it on"
}

# After `compose down` nothing should be paused (the gateway thaws or removes its frozen
# containers when it stops), unless the gateway died first: unpause, so that the inner
# engine's own stop can kill them.
unpause_all() {
  local paused
  paused=$(docker ps -q --filter status=paused 2>/dev/null || true)
  [ -n "$paused" ] || return 0
  log "unpausing $(wc -w <<<"$paused") container(s) the stack left paused"
  # shellcheck disable=SC2086  # one id per word
  docker unpause $paused >/dev/null || true
}

start_engine() {
  local started=$SECONDS
  nest_cgroup_v2
  # Nothing runs yet in this container, but a parent that was killed keeps the runtime state
  # of its last engine in /var/run; its pid files may name processes of this start (pids
  # restart at 1), and dockerd would then wait forever for a containerd that is not there.
  rm -rf /var/run/docker.pid /var/run/docker
  bash /opt/edgelambda/ensure-engine.sh
  log "inner engine ready in $((SECONDS - started))s"
}

load_images() {  # images.txt: "name id" per baked image; loads when one is missing or stale
  local name id stale=0 started=$SECONDS
  [ -f "$IMAGES_DIR/images.txt" ] || return 0
  while read -r name id; do
    [ "$(docker image inspect --format '{{.Id}}' "$name" 2>/dev/null)" = "$id" ] || stale=1
  done <"$IMAGES_DIR/images.txt"
  if [ "$stale" = 0 ]; then
    log "baked images already loaded"
    return
  fi
  docker load -q -i "$IMAGES_DIR/images.tar"
  log "loaded the baked images in $((SECONDS - started))s"
}

check_mounts() {
  if [ ! -f "$EDGELAMBDA_ROUTING" ]; then
    log "no routing file at $EDGELAMBDA_ROUTING: mount your routing.yaml there"
    log "(compose/docker-compose.dind.yml mounts the project's routing.yaml and functions/)"
    exit 1
  fi
}

# Follow the gateway's log from the moment this entrypoint started, whatever compose is doing
# (`compose up` may still wait on health conditions while the gateway, restarted by the
# inner engine, already serves), and again from where it left off when the gateway is
# restarted or recreated. Ends once stop() has raised $FOLLOW_STOP and the gateway is gone.
follow_gateway_log() {  # $1: unix time (fractional) to follow from
  local since=$1 id
  while [ ! -e "$FOLLOW_STOP" ]; do
    id=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
           --filter label=com.docker.compose.service=gateway 2>/dev/null | head -n1 || true)
    if [ -n "$id" ]; then
      docker logs -f --since "$since" "$id" 2>&1 || true
      since=$(date +%s.%N)
    fi
    sleep 0.5
  done
}

stop_engine() {
  local pid
  pid=$(cat "$ENGINE_PIDFILE" 2>/dev/null || true)
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 $((ENGINE_STOP_S * 2))); do
    kill -0 "$pid" 2>/dev/null || { log "inner engine stopped"; return 0; }
    sleep 0.5
  done
  log "inner engine still running after ${ENGINE_STOP_S}s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

follower=
up=
stop() {  # $1: exit status (default: that of `docker-compose down`)
  trap '' TERM INT
  local started=$SECONDS status=${1:-0}
  log "stopping the stack"
  stop_up
  compose down || status=$?
  touch "$FOLLOW_STOP"  # after the gateway's last lines: the follower saw them go by
  stop_follower
  unpause_all
  stop_engine
  log "stopped in $((SECONDS - started))s"
  exit "$status"
}

stop_up() {  # a `compose up` still waiting on health; $up is the subshell running it
  [ -n "$up" ] || return 0
  pkill -TERM -P "$up" 2>/dev/null || true
  kill "$up" 2>/dev/null || true
  wait "$up" 2>/dev/null || true
}

stop_follower() {  # its `docker logs -f` ends with the gateway; the last lines come first
  [ -n "$follower" ] || return 0
  for _ in $(seq 1 20); do
    kill -0 "$follower" 2>/dev/null || return 0
    sleep 0.25
  done
  pkill -P "$follower" 2>/dev/null || true
  kill "$follower" 2>/dev/null || true
}

main() {
  local began
  began=$(date +%s.%N)
  check_mounts
  rm -f "$FOLLOW_STOP"
  trap stop TERM INT
  standby_default
  start_engine
  load_images
  follow_gateway_log "$began" &
  follower=$!
  log "starting the stack${EDGELAMBDA_STANDINS:+ (stand-ins)}; following the gateway's log"
  # In the background, so that a signal stops it at once instead of when it returns.
  compose up -d --no-build &
  up=$!
  if ! wait "$up"; then
    up=
    log "the stack did not come up; its state and recent logs:"
    compose ps || true
    compose logs --tail 30 || true
    stop 1
  fi
  up=
  log "stack up: gateway on port 8000"
  while :; do wait "$follower" || true; sleep 1; done  # the follower ends only in stop()
}

main "$@"
