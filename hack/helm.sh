#!/usr/bin/env bash
# helm.sh — build and locate the helm v3 binary the deployment tests use (helm lint / template).
#
#   hack/helm.sh build          build (or reuse) helm from its Go module
#   hack/helm.sh path           print the cached binary's path (exit 1 if not built)
#   hack/helm.sh version        print the pinned version
#
# Same conventions as hack/control-plane.sh: built through the Go module proxy in a throw-away
# wrapper module under $NFD_CACHE/build (never inside the repository), cached as
# $NFD_CACHE/bin/helm-<version> with a stable symlink $NFD_CACHE/bin/helm. A run with the
# cache present only checks that the file exists.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v3.22.0}
NFD_CACHE=${NFD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nfd}
BIN_DIR=$NFD_CACHE/bin
BUILD_DIR=$NFD_CACHE/build
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}

log() { printf '[helm] %s\n' "$*" >&2; }

versioned_path() { echo "$BIN_DIR/helm-$HELM_VERSION"; }

go_env() {
  env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false" "$GO" "$@"
}

cmd_build() {
  local dest dir start=$SECONDS
  dest=$(versioned_path)
  mkdir -p "$BIN_DIR" "$BUILD_DIR"
  # A separate lock from control-plane.sh's: the two builds are independent.
  exec 8>"$NFD_CACHE/helm-build.lock"
  if ! flock -n 8; then
    log "another build holds $NFD_CACHE/helm-build.lock; waiting for it"
    flock 8
  fi
  if [[ -x $dest ]]; then
    ln -sfn "$(basename "$dest")" "$BIN_DIR/helm"
    log "helm $HELM_VERSION: cached ($dest)"
    return
  fi
  dir=$BUILD_DIR/helm-$HELM_VERSION
  log "helm $HELM_VERSION: building in $dir"
  mkdir -p "$dir" && cd "$dir"
  [[ -f go.mod ]] || go_env mod init local/helm-bin >/dev/null 2>&1
  go_env mod edit -go="$("$GO" env GOVERSION | sed 's/^go//')" -require="helm.sh/helm/v3@$HELM_VERSION"
  # helm's go.mod may carry replace directives that only apply inside its own module; none are
  # needed for v3 today, but copy them over if they appear so the wrapper resolves the same way.
  local gomod
  gomod=$(cd / && env GOFLAGS= GOTOOLCHAIN=local "$GO" mod download -json "helm.sh/helm/v3@$HELM_VERSION" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["GoMod"])')
  sed -n 's#^replace[[:space:]]\+\([^[:space:]]\+\)[[:space:]]*=>[[:space:]]*\([^[:space:]]\+\)[[:space:]]\+\(v[^[:space:]]\+\).*#\1=\2@\3#p' "$gomod" |
    while read -r rep; do go_env mod edit -replace="$rep"; done
  # Stamp the version so `helm version` reports it (helm reads it from internal/version), and
  # the Kubernetes version `helm template`/`helm lint` assume (as helm's Makefile does: the
  # minor of the k8s.io/client-go it is built with), else charts that set kubeVersion fail.
  local client_go k8s_minor
  client_go=$(go_env list -m -f '{{.Version}}' k8s.io/client-go)
  k8s_minor=$(cut -d. -f2 <<<"$client_go")
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local pkg
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  mkdir -p out
  go_env build -trimpath -ldflags "$ldflags" -o out/helm helm.sh/helm/v3/cmd/helm
  install -m 0755 out/helm "$dest.tmp" && mv -f "$dest.tmp" "$dest"
  ln -sfn "$(basename "$dest")" "$BIN_DIR/helm"
  log "helm $HELM_VERSION: built in $((SECONDS - start))s"
}

cmd_path() {
  local path
  path=$(versioned_path)
  if [[ ! -x $path ]]; then
    log "helm $HELM_VERSION is not built: run \`make install\` (hack/helm.sh build)"
    return 1
  fi
  echo "$path"
}

main() {
  case ${1:-} in
    build) cmd_build ;;
    path) cmd_path ;;
    version) echo "helm $HELM_VERSION" ;;
    *) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//' >&2; return 2 ;;
  esac
}

main "$@"
