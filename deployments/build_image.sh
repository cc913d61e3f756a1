#!/usr/bin/env bash
# Build the runtime image, also on a machine with no container registry.
#
# Why this shape: no image can be pulled here, so when BASE_IMAGE is absent we
# make a Debian base with debootstrap, and Python packages come from a wheelhouse
# downloaded on the host. Both are cached under OPEVA_CACHE (default
# /var/cache/opeva) so later builds take seconds.
#   IMAGE        tag to build (default $OPEVA_IMAGE, else opeva-runtime:<project version>)
#   BASE_IMAGE   base to build on (default python:3.11-slim, if present locally or pullable)
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${OPEVA_CACHE:-/var/cache/opeva}
version=$(python3 -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')
image=${IMAGE:-${OPEVA_IMAGE:-opeva-runtime:$version}}
base=${BASE_IMAGE:-python:3.11-slim}
local_base=opeva-base:bookworm

mkdir -p "$cache" 2>/dev/null || { cache=$HOME/.cache/opeva; mkdir -p "$cache"; }

if ! docker image inspect "$base" >/dev/null 2>&1 && ! timeout 20 docker pull -q "$base" >/dev/null 2>&1; then
  echo "build_image: base $base not available; using local Debian base $local_base" >&2
  base=$local_base
  if ! docker image inspect "$base" >/dev/null 2>&1; then
    rootfs_tar=$cache/rootfs-bookworm.tar
    if [ ! -s "$rootfs_tar" ]; then
      command -v debootstrap >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; } >/dev/null
      tmp=$(mktemp -d)
      echo "build_image: debootstrap bookworm (about a minute)" >&2
      debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$tmp/rootfs" >"$cache/debootstrap.log" 2>&1 \
        || { echo "build_image: debootstrap failed, see $cache/debootstrap.log" >&2; exit 1; }
      tar -C "$tmp/rootfs" -cf "$rootfs_tar.part" . && mv "$rootfs_tar.part" "$rootfs_tar"
      rm -rf "$tmp"
    fi
    docker import "$rootfs_tar" "$base" >/dev/null
  fi
fi

# Wheelhouse, keyed by the requirements so a change refreshes it.
key=$(sha256sum deployments/runtime-requirements.txt | cut -c1-12)
wheels=$cache/wheels-$key
if [ ! -f "$wheels/.complete" ]; then
  echo "build_image: downloading wheelhouse to $wheels" >&2
  mkdir -p "$wheels"
  python3 -m pip download -q -d "$wheels" -r deployments/runtime-requirements.txt \
    --python-version 3.11 --only-binary=:all: --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform linux_x86_64 --platform any \
    || python3 -m pip download -q -d "$wheels" -r deployments/runtime-requirements.txt
  touch "$wheels/.complete"
fi
rm -rf .build/wheels && mkdir -p .build/wheels
cp -l "$wheels"/*.whl .build/wheels/ 2>/dev/null || cp "$wheels"/*.whl .build/wheels/
if [ "$base" = python:3.11-slim ] && [ -z "${OPEVA_OFFLINE_WHEELS:-}" ]; then :; fi

echo "build_image: building $image on $base" >&2
docker build -q --build-arg BASE_IMAGE="$base" -t "$image" . >/dev/null
echo "$image"
