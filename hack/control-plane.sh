#!/usr/bin/env bash
# control-plane.sh — build and locate the Kubernetes control-plane binaries the e2e tests run.
#
#   hack/control-plane.sh build          build (or reuse) etcd, kube-apiserver,
#                                        kube-controller-manager, kubectl and the node's
#                                        kubelet, kube-scheduler, kube-proxy, coredns
#   hack/control-plane.sh path <name>    print the cached binary's path (exit 1 if not built)
#   hack/control-plane.sh versions       print the pinned versions
#   hack/control-plane.sh env            print NFD_CP_* variables for the pytest harness
#
# Everything is built from Go modules through the Go module proxy, in throw-away wrapper
# modules under $NFD_CACHE/build (never inside the repository). Binaries are cached as
# $NFD_CACHE/bin/<name>-<version>, with a stable symlink $NFD_CACHE/bin/<name>; a run with the
# cache present only checks that the files exist. See docs/control-plane.md.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.7}
NFD_CACHE=${NFD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nfd}
BIN_DIR=$NFD_CACHE/bin
BUILD_DIR=$NFD_CACHE/build

# The go binary may not be on PATH in CI images that install Go under /usr/local/go.
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

# One `go build` in one wrapper module builds every missing one of these (they share most
# packages); the last three are the real node's (make cluster, tests/cluster).
K8S_BINARIES=(kube-apiserver kube-controller-manager kubectl kubelet kube-scheduler kube-proxy)

log() { printf '[control-plane] %s\n' "$*" >&2; }

version_of() {
  case $1 in
    etcd) echo "$ETCD_VERSION" ;;
    kube-apiserver | kube-controller-manager | kubectl) echo "$K8S_VERSION" ;;
    kubelet | kube-scheduler | kube-proxy) echo "$K8S_VERSION" ;;
    coredns) echo "$COREDNS_VERSION" ;;
    *) log "unknown binary: $1"; return 1 ;;
  esac
}

versioned_path() { echo "$BIN_DIR/$1-$(version_of "$1")"; }

# go_env runs the go command with settings that keep the wrapper builds hermetic: never
# fetch another toolchain, build static binaries, and let go fill in the wrapper's go.mod/go.sum
# (-mod=mod is only for these throw-away modules, never for project code).
go_env() {
  env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" "$GO" "$@"
}

# install_binary copies a freshly built binary into the cache and points the stable symlink at it.
install_binary() {
  local name=$1 built=$2 dest
  dest=$(versioned_path "$name")
  # A rename within the cache: atomic, and no second copy of ~300 MB left in build/.
  chmod 0755 "$built" && mv -f "$built" "$dest"
  ln -sfn "$(basename "$dest")" "$BIN_DIR/$name"
}

all_cached() {
  local name
  for name in "$@"; do [[ -x $(versioned_path "$name") ]] || return 1; done
}

build_etcd() {
  if all_cached etcd; then log "etcd $ETCD_VERSION: cached"; ln -sfn "etcd-$ETCD_VERSION" "$BIN_DIR/etcd"; return; fi
  local dir=$BUILD_DIR/etcd-$ETCD_VERSION start=$SECONDS
  log "etcd $ETCD_VERSION: building in $dir"
  mkdir -p "$dir" && cd "$dir"
  [[ -f go.mod ]] || go_env mod init local/etcd-bin >/dev/null 2>&1
  # server/v3's root package is the etcd main; its go.mod has local replaces, so `go install`
  # is refused and we build it from a wrapper that requires it by version.
  go_env mod edit -go="$(go_version)" -require="go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go_env build -trimpath -ldflags "-s -w" -o "$dir/out/etcd" go.etcd.io/etcd/server/v3
  install_binary etcd "$dir/out/etcd"
  log "etcd $ETCD_VERSION: built in $((SECONDS - start))s"
}

go_version() { "$GO" env GOVERSION | sed 's/^go//'; }

build_kubernetes() {
  if all_cached "${K8S_BINARIES[@]}"; then
    log "kubernetes $K8S_VERSION: cached"
    local name
    for name in "${K8S_BINARIES[@]}"; do ln -sfn "$name-$K8S_VERSION" "$BIN_DIR/$name"; done
    return
  fi
  local dir=$BUILD_DIR/kubernetes-$K8S_VERSION start=$SECONDS
  local minor staging gomod module ldflags pkg
  minor=$(cut -d. -f2 <<<"$K8S_VERSION")
  staging=v0.${K8S_VERSION#v1.}   # k8s v1.X.Y publishes its staging modules as v0.X.Y
  log "kubernetes $K8S_VERSION: building in $dir (staging modules at $staging)"
  mkdir -p "$dir" && cd "$dir"
  [[ -f go.mod ]] || go_env mod init local/k8s-bin >/dev/null 2>&1
  go_env mod edit -go="$(go_version)" -require="k8s.io/kubernetes@$K8S_VERSION"

  # k8s.io/kubernetes requires its staging modules at v0.0.0 and resolves them with local
  # replaces that only apply inside that repo; mirror each one with the published version.
  gomod=$(cd / && env GOFLAGS= GOTOOLCHAIN=local "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
  for module in $(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$gomod"); do
    go_env mod edit -replace="$module=$module@$staging"
  done

  # Stamp the version so /version and `kubectl version` report it instead of v0.0.0-master.
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
  done
  # Only the missing binaries: adding the node's three to a cache that already holds the
  # control plane's must not relink the others.
  local targets=() missing=()
  for name in "${K8S_BINARIES[@]}"; do
    all_cached "$name" && ln -sfn "$name-$K8S_VERSION" "$BIN_DIR/$name" && continue
    missing+=("$name") && targets+=("k8s.io/kubernetes/cmd/$name")
  done
  log "kubernetes $K8S_VERSION: building ${missing[*]}"
  mkdir -p out
  go_env build -trimpath -ldflags "$ldflags" -o out/ "${targets[@]}"
  for name in "${missing[@]}"; do install_binary "$name" "out/$name"; done
  log "kubernetes $K8S_VERSION: built in $((SECONDS - start))s"
}

# CoreDNS answers the cluster's Service names (the worker finds the master as nfd-master:8080).
# Its root package is the coredns main and its go.mod has no local replaces, so a wrapper that
# requires it by version builds it with the default plugin set.
build_coredns() {
  if all_cached coredns; then log "coredns $COREDNS_VERSION: cached"; ln -sfn "coredns-$COREDNS_VERSION" "$BIN_DIR/coredns"; return; fi
  local dir=$BUILD_DIR/coredns-$COREDNS_VERSION start=$SECONDS
  log "coredns $COREDNS_VERSION: building in $dir"
  mkdir -p "$dir" && cd "$dir"
  [[ -f go.mod ]] || go_env mod init local/coredns-bin >/dev/null 2>&1
  go_env mod edit -go="$(go_version)" -require="github.com/coredns/coredns@$COREDNS_VERSION"
  go_env build -trimpath -ldflags "-s -w" -o "$dir/out/coredns" github.com/coredns/coredns
  install_binary coredns "$dir/out/coredns"
  log "coredns $COREDNS_VERSION: built in $((SECONDS - start))s"
}

cmd_build() {
  local start=$SECONDS
  mkdir -p "$BIN_DIR" "$BUILD_DIR"
  # Serialise concurrent builds (two `make install`s, or a developer and a test run): the
  # second waits, then finds the cache filled. Both would otherwise compile everything twice
  # and race on the wrapper go.mod files.
  exec 9>"$NFD_CACHE/build.lock"
  if ! flock -n 9; then
    log "another build holds $NFD_CACHE/build.lock; waiting for it"
    flock 9
  fi
  build_etcd
  build_kubernetes
  build_coredns
  "$BIN_DIR/kube-apiserver" --version >&2
  # Not `| head -1`: under pipefail, etcd's SIGPIPE after head exits fails the build.
  local etcd_version
  etcd_version=$("$BIN_DIR/etcd" --version)
  echo "${etcd_version%%$'\n'*}" >&2
  log "done in $((SECONDS - start))s; binaries in $BIN_DIR"
}

cmd_path() {
  local name=${1:?usage: control-plane.sh path <name>} path
  path=$(versioned_path "$name")
  if [[ ! -x $path ]]; then
    log "$name $(version_of "$name") is not built: run \`make install\` (hack/control-plane.sh build)"
    return 1
  fi
  echo "$path"
}

cmd_env() {
  local name var
  for name in etcd "${K8S_BINARIES[@]}" coredns; do
    var=$(tr 'a-z-' 'A-Z_' <<<"$name")
    echo "NFD_CP_$var=$(versioned_path "$name")"
  done
}

main() {
  case ${1:-} in
    build) cmd_build ;;
    path) shift; cmd_path "$@" ;;
    versions) echo "kubernetes $K8S_VERSION"; echo "etcd $ETCD_VERSION"; echo "coredns $COREDNS_VERSION" ;;
    env) cmd_env ;;
    *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2; return 2 ;;
  esac
}

main "$@"
