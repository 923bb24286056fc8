#!/usr/bin/env bash
# Build the images of the compose stack offline (no registry needed), skipping what exists:
#   edgelambda/gateway:local       the gateway (docker/gateway.Dockerfile)
#   edgelambda/moto:local          S3 + DynamoDB stand-in for rustfs and scylladb
#   edgelambda/log-recorder:local  VictoriaLogs stand-in (docker/standins/log_recorder.py)
#   edgelambda/registry:local      the Swarm backend's image registry (only when named below)
# and, first, the local runtime base edgelambda/runtime-python:local (scripts/
# build-base-image.sh, which also imports the Debian rootfs every image here starts FROM).
#
# Python packages come from wheels downloaded (or, for edgelambda itself, built) on the host
# and installed with `pip install --no-deps --no-index --target` into a site-packages tree,
# packed as site.tar in a small build context that the Dockerfile ADDs (unpacks): a
# `docker build` here has no network, so nothing is installed inside the build. Each image is tagged
# <name>:<hash of its recipe> and aliased <name>:local; an existing hash tag is reused.
# Prints the alias tags on stdout; progress and timings go to stderr.
#
# Environment:
#   EDGELAMBDA_GATEWAY_BASE_IMAGE  base of the gateway image (default: the Debian rootfs; a
#                                  connected machine may use python:3.12-slim)
#   EDGELAMBDA_STACK_IMAGES        which images to build (default: "gateway moto log-recorder")
#   EDGELAMBDA_SKIP_BASE_IMAGE=1   do not run build-base-image.sh (the rootfs must exist)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
IMAGES="${EDGELAMBDA_STACK_IMAGES:-gateway moto log-recorder}"
PIP=(python3 -m pip --disable-pip-version-check --quiet)
export PIP_ROOT_USER_ACTION=ignore  # pip installs into a staging dir, never the system

log() { echo "build-stack-images: $*" >&2; }
# shellcheck source=scripts/lib.sh
source "$here/scripts/lib.sh"
ROOTFS=$ROOTFS_IMAGE
GATEWAY_BASE="${EDGELAMBDA_GATEWAY_BASE_IMAGE:-$ROOTFS}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

platform_args() {  # $1: python version, e.g. 3.11
  echo --only-binary=:all: --python-version "$1" --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
}

# Download wheels for requirement args "$3..." into $2 and install them into $2/../site.
stage_site() {  # $1: python version, $2: wheel dir, rest: pip requirement arguments
  local pyver=$1 wheels=$2
  shift 2
  local plat
  read -r -a plat <<<"$(platform_args "$pyver")"
  mkdir -p "$wheels"
  "${PIP[@]}" download "${plat[@]}" -d "$wheels" "$@"
  "${PIP[@]}" install --no-deps --no-index "${plat[@]}" --target "$wheels/../site" \
    "$wheels"/*.whl
}

ensure_rootfs() {
  if [ "${EDGELAMBDA_SKIP_BASE_IMAGE:-0}" != 1 ]; then
    local started=$SECONDS base
    base=$(bash "$here/scripts/build-base-image.sh")
    log "runtime base $base ready in $((SECONDS - started))s"
  fi
  image_exists "$ROOTFS" || { log "missing $ROOTFS (run scripts/build-base-image.sh)"; exit 1; }
}

ensure_standin_rootfs() {  # the stand-ins' rootfs: the runtime's plus curl and wget
  image_exists "$STANDIN_ROOTFS_IMAGE" && return
  import_rootfs "$ROOTFS_SUITE" "$STANDIN_ROOTFS_PACKAGES" "$STANDIN_ROOTFS_IMAGE" "$work"
}

# Python version (major.minor) of an image's python3, without pulling when it is local.
python_version_of() {
  docker run --rm --entrypoint python3 "$1" -c \
    'import sys; print("%d.%d" % sys.version_info[:2])'
}

# Tag $2 as $3 when it exists; otherwise run the builder function $1 first. Prints $3.
build_once() {  # $1: builder function, $2: hash tag, $3: alias tag
  local builder=$1 tag=$2 alias=$3 started=$SECONDS
  if image_exists "$tag"; then
    log "reusing $tag"
  else
    log "building $tag"
    "$builder" "$tag"
    log "built $tag in $((SECONDS - started))s"
  fi
  docker tag "$tag" "$alias"
  remove_older_tags "$tag" "$alias"
  echo "$alias"
}

# ---- gateway ----------------------------------------------------------------------------

project_files() {  # what the gateway image is built from, relative to the repo root
  (cd "$here" && find src -type f ! -path '*/__pycache__/*' ! -name '*.pyc' \
     ! -path '*.egg-info/*' | LC_ALL=C sort)
}

gateway_hash() {  # $1: python version of the base
  (cd "$here" && sha256sum docker/gateway.Dockerfile pyproject.toml scripts/build-stack-images.sh \
     scripts/lib.sh
   project_files | tr '\n' '\0' | xargs -0 sha256sum
   echo "$GATEWAY_BASE $(image_id "$GATEWAY_BASE") $1") | sha256sum | cut -c1-12
}

project_dependencies() {  # [project] dependencies of pyproject.toml, one per line
  python3 -c 'import sys, tomllib
for dep in tomllib.load(open(sys.argv[1], "rb"))["project"].get("dependencies", []):
    print(dep)' "$here/pyproject.toml"
}

build_gateway() {  # $1: tag
  local tag=$1 stage=$work/gateway t0=$SECONDS deps=()
  mkdir -p "$stage/proj" "$stage/wheels" "$stage/ctx/src"  # src/ stays empty: site.tar has it
  # Build the wheel from a copy, so that nothing (build/, *.egg-info) lands in the repo.
  cp "$here/pyproject.toml" "$here/README.md" "$stage/proj/"
  project_files | tar -C "$here" -cf - -T - | tar -C "$stage/proj" -xf -
  "${PIP[@]}" wheel --no-deps -w "$stage/wheels" "$stage/proj"
  log "  gateway: edgelambda wheel built in $((SECONDS - t0))s"
  t0=$SECONDS
  mapfile -t deps < <(project_dependencies)
  stage_site "$GATEWAY_PYVER" "$stage/wheels" "${deps[@]}"
  log "  gateway: $(ls "$stage/wheels" | wc -l) wheels for cp${GATEWAY_PYVER/./} staged in $((SECONDS - t0))s"
  t0=$SECONDS
  tar -C "$stage/site" -cf "$stage/ctx/site.tar" .
  cp "$here/pyproject.toml" "$here/README.md" "$stage/ctx/"
  legacy_build "$tag" "$stage/ctx" -f "$here/docker/gateway.Dockerfile" \
    --build-arg "BASE_IMAGE=$GATEWAY_BASE" --label "edgelambda.recipe=${tag##*:}"
  log "  gateway: docker build in $((SECONDS - t0))s"
}

# ---- stand-ins --------------------------------------------------------------------------

# Bump when the way stand-ins are built below changes (their hash leaves out this script, so
# that gateway-only edits here do not rebuild the slow moto image).
STANDIN_RECIPE=3

standin_hash() {  # $1: stand-in name (moto | log-recorder); hashes its files in docker/standins
  (cd "$here" && sha256sum docker/standins/"$1".Dockerfile docker/standins/"$1"-requirements.txt
   echo "recipe $STANDIN_RECIPE"
   case $1 in
     moto) sha256sum docker/standins/moto_entry.py ;;
     log-recorder) sha256sum docker/standins/log_recorder.py ;;
   esac
   echo "$STANDIN_ROOTFS_IMAGE $(image_id "$STANDIN_ROOTFS_IMAGE") $ROOTFS_PYVER") \
    | sha256sum | cut -c1-12
}

build_standin() {  # $1: tag; the stand-in's name is $STANDIN
  local tag=$1 stage=$work/$STANDIN t0=$SECONDS
  mkdir -p "$stage/ctx"
  stage_site "$ROOTFS_PYVER" "$stage/wheels" -r "$here/docker/standins/$STANDIN-requirements.txt"
  tar -C "$stage/site" -cf "$stage/ctx/site.tar" .
  log "  $STANDIN: $(ls "$stage/wheels" | wc -l) wheels staged in $((SECONDS - t0))s"
  t0=$SECONDS
  case $STANDIN in
    moto) cp "$here/docker/standins/moto_entry.py" "$stage/ctx/" ;;
    log-recorder) cp "$here/docker/standins/log_recorder.py" "$stage/ctx/" ;;
  esac
  legacy_build "$tag" "$stage/ctx" -f "$here/docker/standins/$STANDIN.Dockerfile" \
    --build-arg "ROOTFS_IMAGE=$STANDIN_ROOTFS_IMAGE" --label "edgelambda.recipe=${tag##*:}"
  log "  $STANDIN: docker build in $((SECONDS - t0))s"
}

# ---- the registry (Swarm backend) --------------------------------------------------------

registry_hash() {
  (cd "$here" && sha256sum docker/registry.Dockerfile docker/registry-config.yml
   echo "$REGISTRY_ROOTFS_IMAGE $(image_id "$REGISTRY_ROOTFS_IMAGE")") | sha256sum | cut -c1-12
}

build_registry() {  # $1: tag
  local tag=$1 stage=$work/registry
  mkdir -p "$stage"
  cp "$here/docker/registry-config.yml" "$stage/config.yml"
  legacy_build "$tag" "$stage" -f "$here/docker/registry.Dockerfile" \
    --build-arg "ROOTFS_IMAGE=$REGISTRY_ROOTFS_IMAGE" --label "edgelambda.recipe=${tag##*:}"
}

main() {
  local started=$SECONDS name
  ensure_rootfs
  for name in $IMAGES; do
    case $name in
      gateway)
        if [ "$GATEWAY_BASE" = "$ROOTFS" ]; then
          GATEWAY_PYVER=$ROOTFS_PYVER
        else
          GATEWAY_PYVER=$(python_version_of "$GATEWAY_BASE")
        fi
        build_once build_gateway \
          "edgelambda/gateway:${GATEWAY_PYVER}-$(gateway_hash "$GATEWAY_PYVER")" \
          edgelambda/gateway:local ;;
      moto | log-recorder)
        ensure_standin_rootfs
        STANDIN=$name build_once build_standin \
          "edgelambda/$name:$(standin_hash "$name")" "edgelambda/$name:local" ;;
      registry)
        image_exists "$REGISTRY_ROOTFS_IMAGE" \
          || import_rootfs "$ROOTFS_SUITE" "$REGISTRY_ROOTFS_PACKAGES" "$REGISTRY_ROOTFS_IMAGE" "$work"
        build_once build_registry "edgelambda/registry:$(registry_hash)" \
          edgelambda/registry:local ;;
      *) log "unknown image '$name' (gateway, moto, log-recorder, registry)"; exit 2 ;;
    esac
  done
  log "done in $((SECONDS - started))s"
}

main "$@"
