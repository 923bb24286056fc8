#!/usr/bin/env bash
# Build the local Python runtime base image offline: a Debian rootfs made by mmdebstrap and
# imported (no registry needed) plus awslambdaric and boto3 from wheels downloaded on the
# host. The tag carries a hash of the recipe, so an existing image is reused, not rebuilt.
# Prints the image tag on stdout; also tags it as $ALIAS for settings and tests.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
recipe="$here/docker/runtime-python"
ALIAS="${EDGELAMBDA_BASE_IMAGE_ALIAS:-edgelambda/runtime-python:local}"
SUITE=bookworm
PYVER=3.11

log() { echo "build-base-image: $*" >&2; }

recipe_hash() {
  (cd "$recipe" && sha256sum Dockerfile bootstrap lambda-entrypoint.sh requirements.txt
   echo "$SUITE $PYVER"; sha256sum "$here/scripts/build-base-image.sh" | cut -d' ' -f1) \
    | sha256sum | cut -c1-12
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

ensure_mmdebstrap() {
  command -v mmdebstrap >/dev/null 2>&1 && return
  log "installing mmdebstrap"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
}

build_rootfs() {  # $1: rootfs image tag
  ensure_mmdebstrap
  log "building the $SUITE rootfs with mmdebstrap"
  mmdebstrap --quiet --variant=minbase --include=python3,ca-certificates \
    --format=tar "$SUITE" "$work/rootfs.tar" </dev/null
  docker import "$work/rootfs.tar" "$1" >/dev/null
}

stage_runtime() {  # installs the pinned wheels into $work/ctx/runtime
  log "downloading wheels for cp${PYVER/./} manylinux x86_64"
  local plat=(--only-binary=:all: --python-version "$PYVER" --implementation cp
              --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64)
  python3 -m pip download --quiet --disable-pip-version-check "${plat[@]}" \
    -d "$work/wheels" -r "$recipe/requirements.txt"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --no-index \
    "${plat[@]}" --target "$work/ctx/runtime" "$work"/wheels/*.whl
}

main() {
  local hash tag rootfs
  hash=$(recipe_hash)
  tag="edgelambda/runtime-python:${PYVER}-${hash}"
  if image_exists "$tag"; then
    log "reusing $tag"
  else
    local started=$SECONDS
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    rootfs="edgelambda/debian-rootfs:${SUITE}-python${PYVER}"
    image_exists "$rootfs" || build_rootfs "$rootfs"
    mkdir -p "$work/ctx"
    stage_runtime
    cp "$recipe"/{Dockerfile,bootstrap,lambda-entrypoint.sh} "$work/ctx/"
    log "building $tag"
    DOCKER_BUILDKIT=0 docker build --quiet --build-arg "ROOTFS_IMAGE=$rootfs" \
      --label "edgelambda.recipe=$hash" -t "$tag" "$work/ctx" >/dev/null
    log "built $tag in $((SECONDS - started))s"
  fi
  docker tag "$tag" "$ALIAS"
  echo "$tag"
}

main "$@"
