#!/usr/bin/env bash
# Build the Docker-in-Docker parent image, edgelambda/dind:local (docker/dind.Dockerfile): a
# Debian rootfs with Debian's docker.io, docker-compose 1.29 and tini (made by mmdebstrap and
# imported, so no registry is needed), the stack's compose files, and image tarballs that the
# inner engine loads at its first start.
#
#   bash scripts/build-dind-image.sh            # connected box: bakes the gateway image only;
#                                               # the inner engine pulls RustFS, ScyllaDB,
#                                               # VictoriaLogs and AWS's runtime images
#   bash scripts/build-dind-image.sh --offline  # air-gapped box: also bakes every image the
#                                               # inner stack names, which must be present here
#
# With EDGELAMBDA_STANDINS=1 the inner stack uses the locally built stand-ins (moto, log
# recorder) and the local runtime base, and --offline bakes those. Offline runtime images are
# the values of EDGELAMBDA_RUNTIME_IMAGES (runtime=image,...). The stack images themselves
# come from scripts/build-stack-images.sh (run it first, or use `make dind`).
#
# The tag carries a hash of the recipe and of the baked images' ids, so an unchanged image is
# reused; older edgelambda/dind tags are removed (each holds a copy of the baked images).
# Prints the alias tag on stdout; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
log() { echo "build-dind-image: $*" >&2; }
# shellcheck source=scripts/lib.sh
source "$here/scripts/lib.sh"

SUITE=bookworm
PACKAGES=docker.io,docker-compose,tini,iptables,ca-certificates,procps
ROOTFS="edgelambda/dind-rootfs:$SUITE-$(sha256sum <<<"$PACKAGES" | cut -c1-8)"
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

compose_files() {
  echo "-f $here/compose/docker-compose.yml"
  [ -z "${EDGELAMBDA_STANDINS:-}" ] || echo "-f $here/compose/docker-compose.standins.yml"
}

# The service images of the inner stack, as its compose files (and overrides) resolve them.
service_images() {
  local compose files
  compose=$(bash "$here/scripts/ensure-compose.sh")
  read -r -a files <<<"$(compose_files | tr '\n' ' ')"
  # shellcheck disable=SC2086
  $compose "${files[@]}" config | awk '$1 == "image:" { print $2 }' | grep -vxF "$GATEWAY_IMAGE"
}

runtime_images() {
  local spec=${EDGELAMBDA_RUNTIME_IMAGES:-}
  if [ -z "$spec" ] && [ -n "${EDGELAMBDA_STANDINS:-}" ]; then
    spec=python3.12=edgelambda/runtime-python:local
  fi
  if [ -z "$spec" ]; then
    log "--offline needs EDGELAMBDA_RUNTIME_IMAGES (runtime=image,...) naming the runtime"
    log "images to bake, e.g. python3.12=public.ecr.aws/lambda/python:3.12 once pulled here"
    exit 2
  fi
  tr ',' '\n' <<<"$spec" | cut -d= -f2- | sed '/^$/d'
}

baked_images() {  # one per line, sorted, without duplicates
  {
    echo "$GATEWAY_IMAGE"
    if [ "$offline" = 1 ]; then
      service_images
      runtime_images
    fi
  } | LC_ALL=C sort -u
}

check_present() {  # every baked image must exist on this engine
  local image missing=0
  for image in "$@"; do
    image_exists "$image" && continue
    log "missing image $image: build it (make stack-images) or, on a connected box, pull it"
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

remove_older_tags() {  # $1: the tag to keep
  local old
  for old in $(docker image ls --format '{{.Repository}}:{{.Tag}}' "$NAME"); do
    case $old in "$1" | "$ALIAS") ;; *) docker image rm "$old" >/dev/null 2>&1 || true ;; esac
  done
}

main() {
  local started=$SECONDS images tag
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  image_exists "$ROOTFS" || import_rootfs "$SUITE" "$PACKAGES" "$ROOTFS" "$work"
  mapfile -t images < <(baked_images)
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
  remove_older_tags "$tag"
  echo "$ALIAS"
}

main "$@"
