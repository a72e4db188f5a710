#!/usr/bin/env bash
# upstream-nfd.sh — build and locate upstream node-feature-discovery (Go) as a test oracle.
#
#   hack/upstream-nfd.sh build          build (or reuse) v0.16.6's nfd-worker, nfd-master,
#                                       kubectl-nfd and a second nfd-worker whose host path
#                                       prefix is PREFIX_ROOT; and v0.19.0's three and
#                                       its prefixed nfd-worker (same PREFIX_ROOT)
#   hack/upstream-nfd.sh path <name>    print the cached binary's path (exit 1 if not built)
#   hack/upstream-nfd.sh version        print the pinned version
#   hack/upstream-nfd.sh env            print NFD_UPSTREAM_* variables for the tests and bench
#   hack/upstream-nfd.sh deployment     cache (or reuse) v0.19.0's module source: deployment/
#                                       (CRDs, overlays, Helm chart), cmd/, pkg/; build does it too
#
# v0.16.x is the last upstream minor with the gRPC Labeler API (nfd-master -enable-nodefeature-api
# =false); v0.16.6 is the newest v0.16 patch the Go module proxy serves. Same conventions as
# hack/control-plane.sh: built in a throw-away wrapper module under $NFD_CACHE/build (never inside
# the repository), cached as $NFD_CACHE/bin/upstream-<name>-<version> with a stable symlink
# $NFD_CACHE/bin/upstream-<name>. A run with the cache present only checks that the files exist.
#
# Upstream reads host paths through pkg/utils/hostpath, whose prefix is a link-time constant
# (-X .../hostpath.pathPrefix). The plain build uses "/" (this machine). The "prefixed" worker
# uses $PREFIX_ROOT, a fixed directory the tests fill with symlinks to a fixture tree's
# sys/proc/etc/... so that upstream can be pointed at fixtures (see docs/compatibility.md).
set -euo pipefail

NFD_UPSTREAM_VERSION=${NFD_UPSTREAM_VERSION:-v0.16.6}
NFD_CACHE=${NFD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nfd}
BIN_DIR=$NFD_CACHE/bin
BUILD_DIR=$NFD_CACHE/build
# Baked into the prefixed worker; must end with "/" (upstream concatenates prefix + "sys").
PREFIX_ROOT=/tmp/nfd-upstream-root/
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
MODULE=sigs.k8s.io/node-feature-discovery

BINARIES=(nfd-worker nfd-master kubectl-nfd nfd-worker-prefixed)
# The newest upstream release (NodeFeature API only): its CRDs and manifests are what
# deploy/ must stay compatible with (tests/deploy/test_crds.py, tests/e2e/test_deploy.py).
NFD_UPSTREAM_CURRENT=${NFD_UPSTREAM_CURRENT:-v0.19.0}
CURRENT_BINARIES=(nfd-worker nfd-master kubectl-nfd nfd-worker-prefixed)

log() { printf '[upstream-nfd] %s\n' "$*" >&2; }

versioned_path() { echo "$BIN_DIR/upstream-$1-$NFD_UPSTREAM_VERSION"; }

# Builds share the machine with tests: lowest CPU priority.
go_env() {
  nice -n 19 env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" "$GO" "$@"
}

all_cached() {
  local name
  for name in "${BINARIES[@]}"; do [[ -x $(versioned_path "$name") ]] || return 1; done
  [[ -f $BIN_DIR/upstream-nfd-api-crds-$NFD_UPSTREAM_VERSION.yaml ]]
}

link_all() {
  local name
  for name in "${BINARIES[@]}"; do
    ln -sfn "upstream-$name-$NFD_UPSTREAM_VERSION" "$BIN_DIR/upstream-$name"
  done
}

install_binary() {
  local name=$1 built=$2 dest
  dest=$(versioned_path "$name")
  install -m 0755 "$built" "$dest.tmp" && mv -f "$dest.tmp" "$dest"
}

# mod_info prints one field (GoMod, Dir) of `go mod download -json` for a module@version.
mod_info() {
  (cd / && env GOFLAGS= GOTOOLCHAIN=local "$GO" mod download -json "$1" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2")
}
mod_file() { mod_info "$1" GoMod; }

src_dir() { echo "$NFD_CACHE/upstream-nfd-src-$NFD_UPSTREAM_CURRENT"; }

# Copies the module's source (a zip the Go module proxy serves, checksummed by
# sum.golang.org; 5 MB) to $NFD_CACHE; with the copy present, nothing is fetched.
cmd_deployment() {
  local dest src
  dest=$(src_dir)
  if [[ -f $dest/deployment/base/nfd-crds/nfd-api-crds.yaml && -f $dest/cmd/nfd-master/main.go ]]; then
    log "node-feature-discovery $NFD_UPSTREAM_CURRENT source: cached"
    return
  fi
  mkdir -p "$NFD_CACHE"
  src=$(mod_info "$MODULE@$NFD_UPSTREAM_CURRENT" Dir)
  [[ -f $src/deployment/base/nfd-crds/nfd-api-crds.yaml ]] || { log "no CRDs in $src"; return 1; }
  rm -rf "$dest.tmp" && cp -R "$src" "$dest.tmp" && chmod -R u+w "$dest.tmp"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  log "node-feature-discovery $NFD_UPSTREAM_CURRENT source: cached in $dest"
}

# prepare_module VERSION: a wrapper module in the current directory that builds
# node-feature-discovery VERSION with the replaces NFD's own go.mod carries.
prepare_module() {
  local version=$1 nfd_gomod k8s_version staging module rep
  [[ -f go.mod ]] || go_env mod init local/nfd-upstream-bin >/dev/null 2>&1
  # api/nfd is a separate module that NFD resolves with a local replace (./api/nfd); it is
  # tagged together with the main module, so require both at the same version.
  go_env mod edit -go="$("$GO" env GOVERSION | sed 's/^go//')" \
    -require="$MODULE@$version" -require="$MODULE/api/nfd@$version"

  # NFD's own versioned replaces (k8s staging modules, gogo/protobuf) only apply inside its
  # module; copy them. Local ones (=> ./...) are dropped: api/nfd is required above.
  nfd_gomod=$(mod_file "$MODULE@$version")
  sed -n 's#^[[:space:]]*\([^[:space:]]\+\)[[:space:]]*=>[[:space:]]*\([^.[:space:]][^[:space:]]*\)[[:space:]]\+\(v[^[:space:]]\+\).*#\1=\2@\3#p' "$nfd_gomod" |
    while read -r rep; do go_env mod edit -replace="$rep"; done
  # k8s.io/kubernetes requires its staging modules at v0.0.0; resolve every one of them with
  # the published staging version (v1.X.Y -> v0.X.Y), read from that k8s go.mod.
  # The first match only; sed quits itself (a `| head -1` would SIGPIPE it under pipefail).
  k8s_version=$(sed -n 's#^[[:space:]]*k8s\.io/kubernetes[[:space:]]\+\(v[^[:space:]]\+\).*#\1#;T;p;q' "$nfd_gomod")
  staging=v0.${k8s_version#v1.}
  for module in $(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/.*#\1#p' "$(mod_file "k8s.io/kubernetes@$k8s_version")"); do
    go_env mod edit -replace="$module=$module@$staging"
  done
}

# v0.16.6: the gRPC-era oracle (worker, master, kubectl-nfd, prefixed worker, CRDs).
build_legacy() {
  local start=$SECONDS dir ldflags pkg
  if all_cached; then
    link_all
    log "node-feature-discovery $NFD_UPSTREAM_VERSION: cached"
    return
  fi
  dir=$BUILD_DIR/node-feature-discovery-$NFD_UPSTREAM_VERSION
  log "node-feature-discovery $NFD_UPSTREAM_VERSION: building in $dir"
  mkdir -p "$dir" && cd "$dir"
  prepare_module "$NFD_UPSTREAM_VERSION"
  ldflags="-s -w -X $MODULE/pkg/version.version=$NFD_UPSTREAM_VERSION"
  mkdir -p out
  go_env build -trimpath -ldflags "$ldflags" -o out/ \
    "$MODULE/cmd/nfd-worker" "$MODULE/cmd/nfd-master" "$MODULE/cmd/kubectl-nfd"
  # Same worker with a different link-time host prefix: only hostpath and its importers relink.
  go_env build -trimpath -ldflags "$ldflags -X $MODULE/pkg/utils/hostpath.pathPrefix=$PREFIX_ROOT" \
    -o out/nfd-worker-prefixed "$MODULE/cmd/nfd-worker"
  for pkg in "${BINARIES[@]}"; do install_binary "$pkg" "out/$pkg"; done
  # The CRDs ship in the module zip; keep a copy next to the binaries for the tests.
  install -m 0644 "$(mod_info "$MODULE@$NFD_UPSTREAM_VERSION" Dir)/deployment/base/nfd-crds/nfd-api-crds.yaml" \
    "$BIN_DIR/upstream-nfd-api-crds-$NFD_UPSTREAM_VERSION.yaml"
  link_all
  "$(versioned_path nfd-worker)" -version >&2 || true
  log "node-feature-discovery $NFD_UPSTREAM_VERSION: built in $((SECONDS - start))s"
}

# v0.19.0: the NodeFeature-API oracle, cached as upstream-<name>-v0.19.0 beside v0.16.6's
# (no stable symlink: upstream-<name> stays v0.16.6's).
current_path() { echo "$BIN_DIR/upstream-$1-$NFD_UPSTREAM_CURRENT"; }

build_current() {
  local start=$SECONDS dir ldflags pkg missing=0
  for pkg in "${CURRENT_BINARIES[@]}"; do [[ -x $(current_path "$pkg") ]] || missing=1; done
  if ((missing == 0)); then
    log "node-feature-discovery $NFD_UPSTREAM_CURRENT: cached"
    return
  fi
  dir=$BUILD_DIR/node-feature-discovery-$NFD_UPSTREAM_CURRENT
  log "node-feature-discovery $NFD_UPSTREAM_CURRENT: building in $dir"
  mkdir -p "$dir" && cd "$dir"
  prepare_module "$NFD_UPSTREAM_CURRENT"
  ldflags="-s -w -X $MODULE/pkg/version.version=$NFD_UPSTREAM_CURRENT"
  mkdir -p out
  go_env build -trimpath -ldflags "$ldflags" -o out/ \
    "$MODULE/cmd/nfd-worker" "$MODULE/cmd/nfd-master" "$MODULE/cmd/kubectl-nfd"
  # v0.19 still takes its host prefix at link time (pkg/utils/hostpath.pathPrefix): the
  # label-parity tests point this one at fixture trees through PREFIX_ROOT, as for v0.16.
  go_env build -trimpath -ldflags "$ldflags -X $MODULE/pkg/utils/hostpath.pathPrefix=$PREFIX_ROOT" \
    -o out/nfd-worker-prefixed "$MODULE/cmd/nfd-worker"
  for pkg in "${CURRENT_BINARIES[@]}"; do
    install -m 0755 "out/$pkg" "$(current_path "$pkg").tmp" &&
      mv -f "$(current_path "$pkg").tmp" "$(current_path "$pkg")"
  done
  "$(current_path nfd-worker)" -version >&2 || true
  log "node-feature-discovery $NFD_UPSTREAM_CURRENT: built in $((SECONDS - start))s"
}

cmd_build() {
  cmd_deployment
  mkdir -p "$BIN_DIR" "$BUILD_DIR"
  exec 7>"$NFD_CACHE/upstream-nfd-build.lock"
  if ! flock -n 7; then
    log "another build holds $NFD_CACHE/upstream-nfd-build.lock; waiting for it"
    flock 7
  fi
  (build_legacy)
  (build_current)
}

cmd_path() {
  local name=${1:?usage: upstream-nfd.sh path <name>} path
  path=$(versioned_path "$name")
  if [[ ! -x $path ]]; then
    log "upstream $name $NFD_UPSTREAM_VERSION is not built: run \`make install\` (hack/upstream-nfd.sh build)"
    return 1
  fi
  echo "$path"
}

cmd_env() {
  local name var
  echo "NFD_UPSTREAM_VERSION=$NFD_UPSTREAM_VERSION"
  echo "NFD_UPSTREAM_PREFIX_ROOT=$PREFIX_ROOT"
  echo "NFD_UPSTREAM_CRDS=$BIN_DIR/upstream-nfd-api-crds-$NFD_UPSTREAM_VERSION.yaml"
  echo "NFD_UPSTREAM_CURRENT=$NFD_UPSTREAM_CURRENT"
  echo "NFD_UPSTREAM_CURRENT_SRC=$(src_dir)"
  echo "NFD_UPSTREAM_CURRENT_DEPLOYMENT=$(src_dir)/deployment"
  for name in "${CURRENT_BINARIES[@]}"; do
    var=$(tr 'a-z-' 'A-Z_' <<<"$name")
    echo "NFD_UPSTREAM_CURRENT_$var=$(current_path "$name")"
  done
  for name in "${BINARIES[@]}"; do
    var=$(tr 'a-z-' 'A-Z_' <<<"$name")
    echo "NFD_UPSTREAM_$var=$(versioned_path "$name")"
  done
}

main() {
  case ${1:-} in
    build) cmd_build ;;
    path) shift; cmd_path "$@" ;;
    version) echo "node-feature-discovery $NFD_UPSTREAM_VERSION" ;;
    env) cmd_env ;;
    deployment) cmd_deployment ;;
    *) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; return 2 ;;
  esac
}

main "$@"
