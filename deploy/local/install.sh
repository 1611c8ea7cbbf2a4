#!/usr/bin/env bash
# Install the local Kubernetes 1.20 control plane used by the migrator's e2e tests and the demo.
#
# Idempotent: when the four static binaries are already cached under $REACH_K8S_CACHE
# (default ~/.cache/reach/k8s-v1.20.2/), were built with today's patch set (the stamp file
# .patches.sha256 there holds the SHA-256 of this script's patch steps and of patches/*.patch) and
# etcd and strace are installed, it does nothing; a changed patch set rebuilds the binaries.
# Otherwise it installs Debian's packages (golang-go rsync etcd-server etcd-client prometheus, which
# ships promtool, strace), enables deb-src, downloads the source package of Debian 12's `kubernetes` (1.20.2),
# applies the loopback patches BEFORE building (no cloud credential providers, hollow kubelets on
# 127.0.0.1) and every patches/*.patch in name order: hollow-node-capacity.patch (hollow nodes read
# their CPU cores and memory from REACH_HOLLOW_CPU_CORES / REACH_HOLLOW_MEMORY_BYTES, so a cluster
# mirrors a scenario) and hollow-node-timing.patch (node status, lease, pod sync and the kubelet's
# status batch periods from REACH_HOLLOW_NODE_STATUS_UPDATE_S, REACH_HOLLOW_NODE_LEASE_DURATION_S,
# REACH_HOLLOW_SYNC_FREQUENCY_S, REACH_KUBELET_STATUS_SYNC_PERIOD_S; upstream when unset),
# hollow-node-pleg.patch (the kubelet's PLEG relist period, a fixed 1 s upstream, from
# REACH_HOLLOW_PLEG_RELIST_S: a deleted pod needs three relists before its removal is confirmed) and
# hollow-node-fakeos-race.patch (a mutex in the hollow kubelet's fake OS, which crashed with
# "concurrent map writes" when several pods started containers on one node at once), and builds kube-apiserver, kube-controller-manager, kube-scheduler and kubemark
# with `make WHAT=...`. The build takes about 5 minutes on 2 cores; run this script under
# `flock /tmp/reach-heavy.lock` on shared machines. See docs/migrator.md and LOCAL-CLUSTER.md.
set -euo pipefail

K8S_VERSION="v1.20.2"
CACHE_DIR="${REACH_K8S_CACHE:-$HOME/.cache/reach/k8s-$K8S_VERSION}"
BUILD_DIR="${REACH_K8S_BUILD_DIR:-$HOME/.cache/reach/build}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubemark)
APT_PACKAGES=(golang-go rsync etcd-server etcd-client prometheus strace patch)

log() { printf '[reach install] %s\n' "$*" >&2; }

binaries_cached() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x "$CACHE_DIR/$b" ]] || return 1; done
  [[ "$(cat "$CACHE_DIR/.patches.sha256" 2>/dev/null)" == "$(patch_set_hash)" ]]
}

# The identity of the patch set: the patch steps of this script and every patches/*.patch.
patch_set_hash() {
  { declare -f apply_source_patches; cat "$SCRIPT_DIR"/patches/*.patch; } | sha256sum | cut -d' ' -f1
}

packages_installed() {
  command -v etcd >/dev/null && command -v strace >/dev/null && command -v prometheus >/dev/null \
    && command -v promtool >/dev/null
}

# Debian's prometheus package ships promtool, which the observability tests need (they fail, not
# skip, under REACH_REQUIRE_CLUSTER): check it is on PATH after the install.
check_promtool() {
  if ! command -v promtool >/dev/null; then
    log "promtool is not on PATH after installing prometheus; install it with: apt-get install prometheus"
    exit 1
  fi
}

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

install_packages() {
  log "installing Debian packages: ${APT_PACKAGES[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}"
}

enable_deb_src() {
  local src=/etc/apt/sources.list.d/debian.sources dst=/etc/apt/sources.list.d/debian-src.sources
  if [[ -f "$dst" ]]; then return 0; fi
  if [[ ! -f "$src" ]]; then
    log "cannot enable deb-src: $src is missing; add deb-src lines for bookworm by hand and rerun"
    exit 1
  fi
  log "enabling deb-src in $dst"
  sed 's/^Types: deb$/Types: deb-src/' "$src" | as_root tee "$dst" >/dev/null
  as_root apt-get update -qq
}

fetch_source() {
  mkdir -p "$BUILD_DIR"
  cd "$BUILD_DIR"
  if ! ls kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
    log "downloading the kubernetes source package into $BUILD_DIR"
    apt-get source --download-only kubernetes
  fi
  if [[ ! -d src/cmd/kubemark ]]; then
    rm -rf src && mkdir src
    tar -xzf kubernetes_*.orig.tar.gz -C src --strip-components=1
  fi
}

apply_source_patches() {
  cd "$BUILD_DIR/src"
  log "applying the loopback patches (no cloud credential providers, hollow kubelet on 127.0.0.1)"
  sed -i '/pkg\/credentialprovider\/\(aws\|azure\|gcp\)"/d' cmd/kubelet/app/plugins.go
  sed -i 's/c.Address = "0.0.0.0"/c.Address = "127.0.0.1"/' pkg/kubemark/hollow_kubelet.go
  if grep -q 'credentialprovider/\(aws\|azure\|gcp\)"' cmd/kubelet/app/plugins.go; then
    log "patch failed: cmd/kubelet/app/plugins.go still imports a cloud credential provider"; exit 1
  fi
  if ! grep -q 'c.Address = "127.0.0.1"' pkg/kubemark/hollow_kubelet.go; then
    log "patch failed: pkg/kubemark/hollow_kubelet.go does not bind the kubelet to 127.0.0.1"; exit 1
  fi
  local p
  for p in "$SCRIPT_DIR"/patches/*.patch; do
    if patch -p1 --dry-run --reverse --force --silent < "$p" >/dev/null 2>&1; then
      log "$(basename "$p") is already applied"
    else
      log "applying $(basename "$p")"
      patch -p1 --forward < "$p"
    fi
  done
}

build_binaries() {
  cd "$BUILD_DIR/src"
  export GOPATH="$PWD/.go" CGO_ENABLED=0 GOPROXY=off
  export KUBE_GIT_VERSION="$K8S_VERSION" KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 KUBE_GIT_TREE_STATE=clean
  mkdir -p .go/src/k8s.io
  [[ -e .go/src/k8s.io/kubernetes ]] || ln -s ../../.. .go/src/k8s.io/kubernetes
  log "building ${BINARIES[*]} (about 5 minutes on 2 cores)"
  make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubemark" GOLDFLAGS="-s -w"
  mkdir -p "$CACHE_DIR"
  local b
  for b in "${BINARIES[@]}"; do
    install -m 0755 "_output/local/bin/linux/amd64/$b" "$CACHE_DIR/$b"
  done
  patch_set_hash > "$CACHE_DIR/.patches.sha256"
  log "cached binaries in $CACHE_DIR"
}

main() {
  if binaries_cached && packages_installed; then
    log "nothing to do: binaries cached in $CACHE_DIR (patch set $(patch_set_hash | cut -c1-12)) and packages installed"
    return 0
  fi
  packages_installed || install_packages
  check_promtool
  if ! binaries_cached; then
    enable_deb_src
    fetch_source
    apply_source_patches
    build_binaries
  fi
  if [[ "${REACH_KEEP_BUILD:-0}" != "1" ]]; then
    log "removing the build tree $BUILD_DIR/src (set REACH_KEEP_BUILD=1 to keep it)"
    rm -rf "$BUILD_DIR/src"
  fi
}

main "$@"
