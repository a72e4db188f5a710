#!/usr/bin/env bash
# node.sh — the real one-node Kubernetes cluster of `make cluster` and tests/cluster.
#
#   hack/node.sh build    install the node's Debian packages if missing: containerd, runc,
#                         containernetworking-plugins, iptables, conntrack, socat (root only)
#   hack/node.sh up       bring the cluster up (or reuse the running one), build and import the
#                         nfd and pause images (hack/image.sh); the last line is the kubeconfig
#   hack/node.sh down     stop and remove everything `up` started
#   hack/node.sh status   exit 0 if the cluster is running
#
# The Go binaries (etcd, kube-*, kubelet, coredns) come from hack/control-plane.sh build; the
# cluster itself is tests/kube/cluster.py (also used by the tests' session fixture).
# See docs/control-plane.md.
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PACKAGES=(containerd runc containernetworking-plugins iptables conntrack socat)

log() { printf '[node] %s\n' "$*" >&2; }

missing_packages() {
  local tool
  for tool in containerd runc iptables conntrack socat; do
    command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null || return 0
  done
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local ]] || return 0
  return 1
}

cmd_build() {
  if ! missing_packages; then log "containerd, runc, CNI plugins, iptables, socat: installed"; return; fi
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    log "the real node needs: ${PACKAGES[*]} (Debian packages; root installs them here)"
    log "not installing them (not root, or no apt-get): make cluster and tests/cluster will fail"
    return
  fi
  log "installing ${PACKAGES[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    --no-install-recommends "${PACKAGES[@]}" >&2
}

main() {
  case ${1:-} in
    build) cmd_build ;;
    up) exec "$PY" -m tests.kube.cluster up ;;
    down) exec "$PY" -m tests.kube.cluster down ;;
    status) exec "$PY" -m tests.kube.cluster status ;;
    *) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; return 2 ;;
  esac
}

main "$@"
