#!/usr/bin/env bash
# The box as a stack on the current Docker Swarm (compose/docker-compose.swarm.yml):
#   bash scripts/swarm.sh up     # `make swarm`: deploy, then wait for the gateway's /health
#   bash scripts/swarm.sh down   # `make swarm-down`: remove the stack and its sandboxes
# With no swarm, `up` initialises a single-node one advertised on 127.0.0.1 (saying so), and
# `down` leaves it again; a swarm made otherwise is left as it is.
#
# Settings, as `make up` reads them: the environment first, then $EDGELAMBDA_ENV_FILE (.env).
# COMPOSE_PROJECT_NAME names the stack (edgelambda); EDGELAMBDA_STANDINS=1 deploys the
# locally built stand-ins; HEALTH_URL is where `up` waits for the gateway.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
stack=${COMPOSE_PROJECT_NAME:-edgelambda}
env_file=${EDGELAMBDA_ENV_FILE:-.env}
made_here=edgelambda.swarm-made-by=make-swarm  # the label `up` gives a swarm it initialised

setting() { bash scripts/env-value.sh "$1" "$env_file"; }
# The sandboxes' stack label: the gateway's EDGELAMBDA_STACK, the stack's name by default.
export EDGELAMBDA_STACK=${EDGELAMBDA_STACK:-$(setting EDGELAMBDA_STACK)}
export EDGELAMBDA_STACK=${EDGELAMBDA_STACK:-$stack}

up() {
  if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
    echo "make swarm: this engine is in no swarm: initialising a single-node one advertised" \
      "on 127.0.0.1 (no other node can join it; for a cluster, run docker swarm init" \
      "--advertise-addr <an address the nodes reach> first). make swarm-down leaves it." >&2
    docker swarm init --advertise-addr 127.0.0.1 >/dev/null
    docker node update --label-add "$made_here" "$(docker info --format "{{.Swarm.NodeID}}")" \
      >/dev/null
  fi
  if [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" != true ]; then
    echo "make swarm: this engine is a swarm worker; run it on a manager" >&2
    exit 1
  fi
  # Every setting named in .env.example, for the stack file's own ${...}: stack deploy reads
  # the environment only. Relative paths are relative to compose/, as compose reads them.
  local name value
  for name in $(sed -n -E 's/^#?([A-Z][A-Z0-9_]*)=.*/\1/p' .env.example); do
    value=$(setting "$name")
    if [ -n "$value" ]; then export "$name=$value"; fi
  done
  export EDGELAMBDA_ROUTING EDGELAMBDA_FUNCTIONS
  EDGELAMBDA_ROUTING=$(cd compose && realpath -m "${EDGELAMBDA_ROUTING:-../routing.yaml}")
  EDGELAMBDA_FUNCTIONS=$(cd compose && realpath -m "${EDGELAMBDA_FUNCTIONS:-../functions}")
  # The gateway's settings: every variable compose/docker-compose.yml passes through as given
  # (`NAME: ${NAME:-}`), when set.
  local settings rc=0
  settings=$(mktemp)
  for name in $(sed -n -E 's/^ +([A-Z][A-Z0-9_]*): \$\{\1:-\}$/\1/p' compose/docker-compose.yml); do
    if [ -n "${!name:-}" ]; then printf '%s=%s\n' "$name" "${!name}" >>"$settings"; fi
  done
  local files=(-c compose/docker-compose.swarm.yml)
  if [ -n "${EDGELAMBDA_STANDINS:-}" ]; then files+=(-c compose/docker-compose.swarm-standins.yml); fi
  # The box and its registry stay on this node (their volumes and bind mounts are here).
  export EDGELAMBDA_SWARM_NODE
  EDGELAMBDA_SWARM_NODE=$(docker info --format '{{.Swarm.NodeID}}')
  EDGELAMBDA_SWARM_SETTINGS=$settings docker stack deploy "${files[@]}" "$stack" || rc=$?
  rm -f "$settings"  # it holds the secrets; the services have them now
  [ "$rc" = 0 ] || exit "$rc"
  bash scripts/wait-healthy.sh "${HEALTH_URL:-http://127.0.0.1:8000/health}" 300 \
    "docker service logs ${stack}_gateway"
}

# Wait (at most $2 seconds) until command $1 prints nothing.
until_empty() {
  local _
  for _ in $(seq 1 "$2"); do
    [ -z "$(eval "$1")" ] && return 0
    sleep 1
  done
  return 1
}

down() {
  if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
    echo "make swarm-down: this engine is in no swarm: nothing to remove" >&2
    return 0
  fi
  # Its network cannot go while sandbox services still use it: removed below.
  docker stack rm "$stack" 2>&1 | grep -v "is in use by service\|failed to remove some" || true
  # SIGTERM gives the gateway its 40 s to drain and remove its sandbox services: wait for
  # the stack's containers on this node (its services are gone at once) to be gone.
  until_empty "docker ps -q --filter label=com.docker.stack.namespace=$stack" 60 || true
  local left
  left=$(docker service ls -q --filter "label=edgelambda.stack=$EDGELAMBDA_STACK")
  if [ -n "$left" ]; then
    echo "make swarm-down: removing sandboxes the gateway left" >&2
    # shellcheck disable=SC2086  # one id per word
    docker service rm $left >/dev/null
  fi
  local network=${EDGELAMBDA_NETWORK:-$(setting EDGELAMBDA_NETWORK)}
  network=${network:-edgelambda_default}
  # A removed service's tasks let go of the network a moment later.
  until_empty "docker network rm '$network' >/dev/null 2>&1;
    docker network inspect -f '{{.Id}}' '$network' 2>/dev/null" 30 ||
    echo "make swarm-down: network $network is still in use" >&2
  if docker node inspect self --format '{{index .Spec.Labels "edgelambda.swarm-made-by"}}' \
    2>/dev/null | grep -qx make-swarm; then
    echo "make swarm-down: leaving the single-node swarm make swarm initialised" >&2
    docker swarm leave --force >/dev/null
    # The bridge the swarm made for its tasks' way out; the next init makes it anew.
    docker network rm docker_gwbridge >/dev/null 2>&1 || true
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
