#!/usr/bin/env bash
# Install the image tooling of `reach images build`: Debian's buildah (builds and runs OCI images
# without a daemon) and mmdebstrap (makes the Debian bookworm root filesystem of the local base
# image). Idempotent: when both commands are on the PATH it does nothing. Called by the Makefile's
# test target and by `reach images build`'s error message; see deploy/README.md (step 4).
set -euo pipefail

APT_PACKAGES=(buildah mmdebstrap)

log() { printf '[reach images install] %s\n' "$*" >&2; }

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

if command -v buildah >/dev/null && command -v mmdebstrap >/dev/null; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  log "apt-get not found: install buildah and mmdebstrap with your distribution's package manager and rerun"
  exit 1
fi
log "installing Debian packages: ${APT_PACKAGES[*]}"
as_root apt-get update -qq
DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${APT_PACKAGES[@]}"
