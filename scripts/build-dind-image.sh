#!/usr/bin/env bash
# Build the Docker-in-Docker parent image, edgelambda/dind:local (docker/dind.Dockerfile): a
# Debian rootfs with Debian's docker.io, docker-compose 1.29 and tini (made by mmdebstrap and
# imported, so no registry is needed), the stack's compose files, and image tarballs that the
# inner engine loads at its first start.
#
#   bash scripts/build-dind-image.sh            # connected box: the inner engine pulls
#                                               # RustFS, ScyllaDB and VictoriaLogs
#   bash scripts/build-dind-image.sh --offline  # air-gapped box: their images are baked too
#
# Always baked: the gateway image, and the runtime images that EDGELAMBDA_RUNTIME_IMAGES
# (runtime=image,...) names; `make` sets it to the local runtime base. When it is unset, the
# inner gateway uses AWS's public images, which a connected box pulls; --offline then refuses.
# With EDGELAMBDA_STANDINS=1 the inner stack uses the locally built stand-ins (moto, log
# recorder) and the local runtime base, and --offline bakes those. Every baked image must be
# present here; the stack's own come from scripts/build-stack-images.sh (or `make dind`).
#
# The tag carries a hash of the recipe and of the baked images' ids, so an unchanged image is
# reused; older edgelambda/dind tags are removed (each holds a copy of the baked images).
# Prints the alias tag on stdout; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "build-dind-image: $*" >&2; }
# shellcheck source=scripts/lib.sh
source "$here/scripts/lib.sh"

SUITE=$ROOTFS_SUITE
PACKAGES=$DIND_ROOTFS_PACKAGES
ROOTFS=$DIND_ROOTFS_IMAGE
NAME=edgelambda/dind
ALIAS=$NAME:local
GATEWAY_IMAGE=edgelambda/gateway:local

usage() { echo "usage: $0 [--offline]" >&2; exit 2; }

offline=0
case "${1:-}" in
  --offline) offline=1 ;;
  "") ;;
  *) usage ;;
esac

# The service images of the inner stack, as its compose files (and overrides) resolve them.
service_images() {
  local compose files=(-f "$here/compose/docker-compose.yml")
  [ -z "${EDGELAMBDA_STANDINS:-}" ] || files+=(-f "$here/compose/docker-compose.standins.yml")
  compose=$(bash "$here/scripts/ensure-compose.sh")
  # $compose is `docker compose` or `docker-compose`: split on purpose.
  # shellcheck disable=SC2086
  $compose "${files[@]}" config | awk '$1 == "image:" { print $2 }' | grep -vxF "$GATEWAY_IMAGE"
}

runtime_images() {
  local spec=${EDGELAMBDA_RUNTIME_IMAGES:-}
  if [ -z "$spec" ] && [ -n "${EDGELAMBDA_STANDINS:-}" ]; then
    spec=python3.12=edgelambda/runtime-python:local
  fi
  if [ -z "$spec" ] && [ "$offline" = 1 ]; then
    log "--offline needs EDGELAMBDA_RUNTIME_IMAGES (runtime=image,...) naming the runtime"
    log "images to bake, e.g. python3.12=public.ecr.aws/lambda/python:3.12 once pulled here"
    exit 2
  fi
  tr ',' '\n' <<<"$spec" | cut -d= -f2- | sed '/^$/d'
}

baked_images() {  # one per line, sorted, without duplicates
  {
    echo "$GATEWAY_IMAGE"
    runtime_images
    [ "$offline" = 0 ] || service_images
  } | LC_ALL=C sort -u
}

check_present() {  # every baked image must exist on this engine
  local image missing=0
  for image in "$@"; do
    image_exists "$image" && continue
    case $image in
      edgelambda/*) log "missing image $image: build it (make stack-images, make base-images)" ;;
      *) log "missing image $image: pull it here first (or, with no registry at all, use" \
           "EDGELAMBDA_STANDINS=1 for the local stand-ins)" ;;
    esac
    missing=1
  done
  [ "$missing" = 0 ] || exit 1
}

recipe_hash() {  # $@: the baked images
  (cd "$here" && sha256sum docker/dind.Dockerfile docker/dind-entrypoint.sh \
     scripts/ensure-engine.sh scripts/build-dind-image.sh scripts/lib.sh \
     compose/docker-compose.yml compose/docker-compose.standins.yml
   echo "$ROOTFS $(image_id "$ROOTFS") offline=$offline"
   local image
   for image in "$@"; do echo "$image $(image_id "$image")"; done) | sha256sum | cut -c1-12
}

build() {  # $1: tag, rest: the baked images
  local tag=$1 ctx=$work/ctx t0=$SECONDS
  shift
  mkdir -p "$ctx/compose" "$ctx/images"
  cp "$here/docker/dind-entrypoint.sh" "$here/scripts/ensure-engine.sh" "$ctx/"
  cp "$here/compose/docker-compose.yml" "$here/compose/docker-compose.standins.yml" \
    "$ctx/compose/"
  docker save -o "$ctx/images/images.tar" "$@"
  local image
  for image in "$@"; do echo "$image $(image_id "$image")"; done >"$ctx/images/images.txt"
  log "  saved $# images ($(du -m "$ctx/images/images.tar" | cut -f1) MB) in $((SECONDS - t0))s"
  t0=$SECONDS
  legacy_build "$tag" "$ctx" -f "$here/docker/dind.Dockerfile" \
    --build-arg "ROOTFS_IMAGE=$ROOTFS" --label "edgelambda.recipe=${tag##*:}"
  log "  docker build in $((SECONDS - t0))s"
}

main() {
  local started=$SECONDS images tag
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  image_exists "$ROOTFS" || import_rootfs "$SUITE" "$PACKAGES" "$ROOTFS" "$work"
  local listed
  listed=$(baked_images)  # a failure here stops the build (a process substitution would not)
  mapfile -t images <<<"$listed"
  check_present "${images[@]}"
  tag="$NAME:$(recipe_hash "${images[@]}")"
  if image_exists "$tag"; then
    log "reusing $tag"
  else
    log "building $tag with ${images[*]}"
    build "$tag" "${images[@]}"
    log "built $tag in $((SECONDS - started))s"
  fi
  docker tag "$tag" "$ALIAS"
  remove_older_tags "$tag" "$ALIAS"
  echo "$ALIAS"
}

main "$@"
