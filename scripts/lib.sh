# shellcheck shell=bash disable=SC2034  # its variables are used by the scripts sourcing it
# Helpers shared by the image build scripts; sourced, never run. The sourcing script defines
# log() (progress on stderr, with its own prefix).

# The Debian rootfs with Python that the runtime base, the gateway and the stand-ins start
# FROM (built by scripts/build-base-image.sh).
ROOTFS_SUITE=bookworm
ROOTFS_PYVER=3.11
ROOTFS_IMAGE="edgelambda/debian-rootfs:${ROOTFS_SUITE}-python${ROOTFS_PYVER}"
# The stand-ins' rootfs adds the tools the real service images have, so that the stack's
# healthchecks run unchanged in the stand-ins: curl (the RustFS and ScyllaDB images) and
# wget (VictoriaLogs' Alpine image).
STANDIN_ROOTFS_PACKAGES=python3,ca-certificates,curl,wget
STANDIN_ROOTFS_IMAGE="edgelambda/standin-rootfs:${ROOTFS_SUITE}-$(sha256sum <<<"$STANDIN_ROOTFS_PACKAGES" | cut -c1-8)"
# The registry the Swarm backend's nodes pull function images from: Debian's packaging of
# the CNCF Distribution registry (docker-registry), built offline like the stand-ins.
REGISTRY_ROOTFS_PACKAGES=docker-registry,ca-certificates,wget
REGISTRY_ROOTFS_IMAGE="edgelambda/registry-rootfs:${ROOTFS_SUITE}-$(sha256sum <<<"$REGISTRY_ROOTFS_PACKAGES" | cut -c1-8)"

# The Docker-in-Docker rootfs: the box's parent image, and a Swarm worker node in the tests.
DIND_ROOTFS_PACKAGES=docker.io,docker-compose,tini,iptables,ca-certificates,procps
DIND_ROOTFS_IMAGE="edgelambda/dind-rootfs:${ROOTFS_SUITE}-$(sha256sum <<<"$DIND_ROOTFS_PACKAGES" | cut -c1-8)"

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }
image_id() { docker image inspect --format '{{.Id}}' "$1"; }

ensure_mmdebstrap() {
  command -v mmdebstrap >/dev/null 2>&1 && return
  log "installing mmdebstrap"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
}

# Build a minimal Debian root filesystem holding PACKAGES with mmdebstrap, from the machine's
# own apt sources (no container registry), and import it as an image.
import_rootfs() {  # $1: suite, $2: comma-separated packages, $3: image tag, $4: scratch dir
  local suite=$1 packages=$2 tag=$3 scratch=$4 started=$SECONDS
  ensure_mmdebstrap
  log "building the $suite rootfs ($packages) with mmdebstrap"
  mmdebstrap --quiet --variant=minbase --include="$packages" --format=tar \
    "$suite" "$scratch/rootfs.tar" </dev/null
  docker import "$scratch/rootfs.tar" "$tag" >/dev/null
  rm -f "$scratch/rootfs.tar"
  log "imported $tag in $((SECONDS - started))s"
}

# `docker build` with the legacy builder (BuildKit is not installed with Debian's docker.io).
legacy_build() {  # $1: tag, $2: context, rest: extra docker build arguments
  local tag=$1 ctx=$2
  shift 2
  DOCKER_BUILDKIT=0 docker build --quiet "$@" -t "$tag" "$ctx" >/dev/null
}

# Untag the other tags of a recipe-hashed image's repository: rebuilt images leave their
# predecessors behind otherwise. An image still used by a container keeps its layers.
remove_older_tags() {  # $1: the tag to keep, $2: its alias
  local old
  for old in $(docker image ls --format '{{.Repository}}:{{.Tag}}' "${1%:*}"); do
    case $old in "$1" | "$2") ;; *) docker image rm "$old" >/dev/null 2>&1 || true ;; esac
  done
}
