#!/usr/bin/env bash
# Print the Docker Compose command to use on stdout: `docker compose` (v2) when it works,
# else `docker-compose` (1.29.x). When neither exists, install Debian's `docker-compose`
# package with apt-get (as root). Idempotent; logs go to stderr. Usage:
#   compose=$(bash scripts/ensure-compose.sh); $compose -f compose/docker-compose.yml up -d
set -euo pipefail

log() { echo "ensure-compose: $*" >&2; }

if docker compose version >/dev/null 2>&1; then
  log "using Compose v2 ($(docker compose version --short 2>/dev/null || echo '?'))"
  echo "docker compose"
  exit 0
fi

version=$(docker-compose version --short 2>/dev/null || true)
if [ -z "$version" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "neither 'docker compose' nor 'docker-compose' works and this is not root:"
    log "install Compose v2 or Debian's docker-compose package yourself"
    exit 1
  fi
  log "installing Debian's docker-compose package"
  export DEBIAN_FRONTEND=noninteractive
  started=$SECONDS
  apt-get update -qq >&2
  apt-get install -y -qq docker-compose </dev/null >/dev/null
  log "installed in $((SECONDS - started))s"
  version=$(docker-compose version --short 2>/dev/null || true)
  [ -n "$version" ] || { log "docker-compose does not run after install"; exit 1; }
fi

log "using docker-compose $version"
echo "docker-compose"
