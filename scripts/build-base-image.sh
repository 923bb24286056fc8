#!/usr/bin/env bash
# Build the local Python runtime base image offline: a Debian rootfs made by mmdebstrap and
# imported (no registry needed) plus awslambdaric and boto3 from wheels downloaded on the
# host. The tag carries a hash of the recipe, so an existing image is reused, not rebuilt.
# Prints the image tag on stdout; also tags it as $ALIAS for settings and tests.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
recipe="$here/docker/runtime-python"
ALIAS="${EDGELAMBDA_BASE_IMAGE_ALIAS:-edgelambda/runtime-python:local}"

log() { echo "build-base-image: $*" >&2; }
# shellcheck source=scripts/lib.sh
source "$here/scripts/lib.sh"
SUITE=$ROOTFS_SUITE
PYVER=$ROOTFS_PYVER

recipe_hash() {
  (cd "$recipe" && sha256sum Dockerfile bootstrap bootstrap.py lambda-entrypoint.sh \
     requirements.txt
   echo "$SUITE $PYVER"; cat "$here/scripts/build-base-image.sh" "$here/scripts/lib.sh" | sha256sum) \
    | sha256sum | cut -c1-12
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
    rootfs=$ROOTFS_IMAGE
    image_exists "$rootfs" || import_rootfs "$SUITE" python3,ca-certificates "$rootfs" "$work"
    mkdir -p "$work/ctx"
    stage_runtime
    cp "$recipe"/{Dockerfile,bootstrap,bootstrap.py,lambda-entrypoint.sh} "$work/ctx/"
    log "building $tag"
    legacy_build "$tag" "$work/ctx" --build-arg "ROOTFS_IMAGE=$rootfs" \
      --label "edgelambda.recipe=$hash"
    log "built $tag in $((SECONDS - started))s"
  fi
  docker tag "$tag" "$ALIAS"
  remove_older_tags "$tag" "$ALIAS"
  echo "$tag"
}

main "$@"
