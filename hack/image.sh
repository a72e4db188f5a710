#!/usr/bin/env bash
# The nfd and pause OCI images, built here without a registry or a container engine.
#
#   hack/image.sh build       build (or reuse) the nfd image; prints the archive's path last
#   hack/image.sh name        the reference it imports as (what deploy/ asks the kubelet for)
#   hack/image.sh pause       build (or reuse) the pause image; prints the archive's path last
#   hack/image.sh pause-name  the pause image's reference
#   hack/image.sh rootfs      print the path of the nfd image's unpacked rootfs (for tests)
#   hack/image.sh lock        re-resolve hack/image-requirements.txt from pyproject.toml
#   hack/image.sh key         the nfd image's cache key (the hash of all its inputs)
#
# nfd image: a Debian rootfs (mmdebstrap --variant=minbase, python3 from Debian) plus our
# wheel and the pinned wheels of hack/image-requirements.txt (the Dockerfile pins the same
# file); runtime settings (ENV, USER 65534, WORKDIR, CMD, labels) are read from the
# Dockerfile's final stage. Load it with `ctr -n k8s.io images import ARCHIVE`.
#
# Everything is cached under $NFD_IMAGE_CACHE (~/.cache/nfd/images), each piece keyed by the
# hash of its inputs: the Debian rootfs by suite, mirrors and package list; the wheels by the
# lock file; the image by those, the source files that go into the wheel, the Dockerfile and
# this script. Unchanged inputs: the archive is reused in well under a second.
# Needs root (mmdebstrap, chroot), mmdebstrap, gcc and libc6-dev (pause), and the project's
# .venv (`make venv`: grpcio-tools to generate the gRPC code, pip to fetch wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PY:-$REPO/.venv/bin/python}
# A relative PY (make passes .venv/bin/python) must survive the cd into the wheel's build
# context: gen-proto.sh runs there.
case $PY in /*) ;; */*) PY=$REPO/$PY ;; esac
# hack/oci.py needs only the standard library: any python3 does when there is no venv yet.
OCI_PY=$PY
[ -x "$OCI_PY" ] || OCI_PY=$(command -v python3)
CACHE=${NFD_IMAGE_CACHE:-$HOME/.cache/nfd/images}
LOCK=hack/image-requirements.txt

# Debian inputs. No snapshot.debian.org here, so the rootfs is the suite as of its first
# build; set NFD_DEBIAN_MIRROR to a snapshot URL (or bump DEBIAN_EPOCH) to pin or refresh it.
SUITE=bookworm
MIRROR=${NFD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${NFD_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
DEBIAN_EPOCH=1
DEBIAN_PACKAGES=python3
# What the python:3.11-slim base sets that our image also needs (the Dockerfile's own ENV
# comes on top); PATH as Docker's default.
BASE_ENV=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)
# Wheels for the image's interpreter, whatever Python runs this script.
PIP_TARGET=(--only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi abi3
  --abi none --platform manylinux_2_36_x86_64 --platform manylinux_2_34_x86_64
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
  --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any)
PIP_VERSION=26.3

PAUSE_NAME=docker.io/library/nfd-pause:1.0

log() { echo "image.sh: $*" >&2; }
die() { log "$*"; exit 1; }

sha() { sha256sum | cut -c1-16; }

# The files that go into our wheel: exactly what the Dockerfile copies (.dockerignore),
# tracked or not, generated code, bytecode and files deleted from the work tree excluded.
wheel_inputs() {
  local f
  git ls-files -z --cached --others --exclude-standard -- \
    pyproject.toml README.md protos hack/gen-proto.sh nfd |
    grep -zv -e '^nfd/_proto/' -e '__pycache__' -e '\.pyc$' | sort -zu |
    while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done
}

source_hash() { wheel_inputs | xargs -0 sha256sum | sha; }

debian_key() {
  printf '%s\n' "$SUITE" "$MIRROR" "$SECURITY_MIRROR" "$DEBIAN_EPOCH" "$DEBIAN_PACKAGES" \
    "$(declare -f debian_rootfs)" | sha
}

wheels_key() { { cat "$LOCK"; echo "$PIP_VERSION ${PIP_TARGET[*]}"; } | sha; }

image_key() {
  printf '%s\n' "$(debian_key)" "$(wheels_key)" "$(source_hash)" \
    "$(sha256sum <Dockerfile)" "$(sha256sum <hack/image.sh)" "$(sha256sum <hack/oci.py)" \
    "$(sha256sum <hack/image-prune.py)" \
    "$(image_name)" | sha
}

image_name() { "$OCI_PY" hack/oci.py name deploy/base/kustomization.yaml nfd; }

# Debian packages the builds need, installed when missing (root on Debian, as in CI).
ensure_packages() {
  local missing=() pair
  for pair in "$@"; do
    [ -e "${pair%%=*}" ] || missing+=("${pair#*=}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
  log "installing ${missing[*]} (apt-get)"
  apt-get -o DPkg::Lock::Timeout=600 update -q >&2
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    --no-install-recommends "${missing[@]}" >&2
}

need_root() {
  [ "$(id -u)" = 0 ] || die "building the image needs root (mmdebstrap and chroot); CI runs as root"
}

# Serialise builds: the cluster tests and a user's `make image` may start together.
with_lock() {
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock 9
}

# The Debian rootfs as a tarball: minbase + python3, merged /usr, and dpkg told never to
# unpack docs (copyright files excepted: they are the licences), man pages or locales.
debian_rootfs() {
  local out=$1
  log "debian: mmdebstrap $SUITE minbase + $DEBIAN_PACKAGES (a few minutes, once)"
  rm -f "$out.partial"
  mmdebstrap --quiet --variant=minbase --include="$DEBIAN_PACKAGES" --format=tar \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='Acquire::Languages "none"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*.log "$1"/var/log/apt/* "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old' \
    "$SUITE" "$out.partial" \
    "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
    "deb $SECURITY_MIRROR $SUITE-security main" >&2
  mv "$out.partial" "$out"
}

# Every pinned wheel, plus pip itself (run from its wheel inside the chroot, never installed).
fetch_wheels() {
  local dir=$1
  log "wheels: downloading the pinned set of $LOCK"
  rm -rf "$dir.partial"
  "$PY" -m pip download -q --no-deps --disable-pip-version-check -d "$dir.partial" \
    "${PIP_TARGET[@]}" -r "$LOCK" "pip==$PIP_VERSION" >&2
  mv "$dir.partial" "$dir"
}

# Our wheel, built as the Dockerfile's first stage builds it: from a copy of exactly the
# files it copies, with the gRPC code generated in that copy.
build_own_wheel() {
  local out=$1 ctx=$2
  mkdir "$ctx"
  wheel_inputs | tar -c --null -T - | tar -x -C "$ctx"
  PY=$PY bash "$ctx/hack/gen-proto.sh"
  # setuptools' deprecation chatter only when the build fails.
  "$PY" -m pip wheel -q --no-deps --no-build-isolation --disable-pip-version-check \
    --wheel-dir "$out" "$ctx" >"$ctx.log" 2>&1 || { cat "$ctx.log" >&2; die "our wheel did not build"; }
  rm -rf "$ctx" "$ctx.log"
}

build_image() {
  local out=$1 base=$2 wheels=$3 work
  work=$(mktemp -d "$CACHE/.build-XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  mkdir "$work/rootfs" "$work/wheels"
  tar -xpf "$base" -C "$work/rootfs"
  build_own_wheel "$work/wheels" "$work/context"
  cp "$wheels"/*.whl "$work/wheels/"
  mkdir "$work/rootfs/tmp/wheels"
  cp "$work/wheels"/*.whl "$LOCK" hack/image-prune.py "$work/rootfs/tmp/wheels/"
  local pip_whl
  pip_whl=$(cd "$work/rootfs/tmp/wheels" && ls pip-"$PIP_VERSION"-*.whl)
  # Installed by the image's own interpreter, as the Dockerfile's second stage does it
  # (--no-index: nothing is fetched here); --break-system-packages: Debian marks its
  # Python externally managed, and /usr/local is where pip then puts everything.
  log "image: installing nfd[master] into the rootfs"
  chroot "$work/rootfs" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp \
    /usr/bin/python3 "/tmp/wheels/$pip_whl/pip" install -q --no-index --no-cache-dir \
    --disable-pip-version-check --root-user-action=ignore --break-system-packages \
    --find-links /tmp/wheels -c "/tmp/wheels/$(basename "$LOCK")" 'nfd[master]' >&2
  chroot "$work/rootfs" env -i /usr/bin/python3 /tmp/wheels/image-prune.py >&2
  # Build leftovers; info/dir is install-info's index of the (excluded) info pages.
  rm -rf "$work/rootfs/tmp/wheels" "$work/rootfs/tmp/.cache" "$work/rootfs/root/.cache" \
    "$work/rootfs/usr/share/info/dir"
  # The Dockerfile's checks: every entry point starts, as the image's user.
  chroot --userspec=65534:65534 "$work/rootfs" env -i PATH=/usr/local/bin:/usr/bin:/bin \
    PYTHONDONTWRITEBYTECODE=1 sh -c \
    'cd /tmp && nfd-worker --version && nfd-master --help >/dev/null && nfd --version && command -v kubectl-nfd' >&2
  find "$work/rootfs/tmp" -mindepth 1 -delete
  log "image: writing the OCI archive"
  local env_args=()
  for e in "${BASE_ENV[@]}"; do env_args+=(--env "$e"); done
  "$OCI_PY" hack/oci.py archive --root "$work/rootfs" --name "$(image_name)" --out "$out" \
    --dockerfile Dockerfile "${env_args[@]}"
  rm -rf "$work"
  trap - EXIT
}

# Keep the newest few of each kind (worktrees with different sources share the cache).
prune_cache() {
  local kind keep old
  for kind in nfd-*.tar:3 debian-*.tar:2 pause-*.tar:2; do
    keep=${kind##*:}
    # shellcheck disable=SC2012
    for old in $(cd "$CACHE" && ls -t ${kind%:*} 2>/dev/null | tail -n +$((keep + 1))); do
      rm -rf "${CACHE:?}/$old" "$CACHE/${old%.tar}.rootfs"
    done
  done
  find "$CACHE" -maxdepth 1 -name 'wheels-*' -type d -mtime +30 -exec rm -rf {} +
}

cmd_build() {
  need_root
  [ -x "$PY" ] || die "$PY is missing: run 'make venv' first"
  ensure_packages /usr/bin/mmdebstrap=mmdebstrap
  with_lock
  local key out base wheels
  key=$(image_key)
  out=$CACHE/nfd-$key.tar
  if [ -f "$out" ]; then
    log "cached: $out"
  else
    local t0=$SECONDS
    base=$CACHE/debian-$SUITE-$(debian_key).tar
    [ -f "$base" ] || debian_rootfs "$base"
    wheels=$CACHE/wheels-$(wheels_key)
    [ -d "$wheels" ] || fetch_wheels "$wheels"
    build_image "$out" "$base" "$wheels"
    log "built $out in $((SECONDS - t0)) s ($(du -m "$out" | cut -f1) MiB)"
    prune_cache
  fi
  echo "$out"
}

# The nfd image's layer unpacked (for tests that look inside it), next to its archive.
cmd_rootfs() {
  local archive dir tmp
  archive=$(cmd_build | tail -n 1)
  dir=${archive%.tar}.rootfs
  if [ ! -d "$dir" ]; then
    tmp=$(mktemp -d "$dir.XXXXXX")
    "$OCI_PY" - "$archive" "$tmp" <<'EOF'
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as oci:
    index = json.load(oci.extractfile("index.json"))
    manifest = json.load(oci.extractfile("blobs/sha256/" + index["manifests"][0]["digest"][7:]))
    for layer in manifest["layers"]:
        with tarfile.open(fileobj=oci.extractfile("blobs/sha256/" + layer["digest"][7:])) as t:
            t.extractall(sys.argv[2], filter="tar")
EOF
    # Another run may have unpacked it meanwhile: keep theirs.
    mv -T "$tmp" "$dir" 2>/dev/null || rm -rf "$tmp"
  fi
  echo "$dir"
}

cmd_pause() {
  ensure_packages /usr/bin/gcc=gcc /usr/lib/x86_64-linux-gnu/libc.a=libc6-dev
  with_lock
  local key out work
  key=$(printf '%s\n' "$(sha256sum <hack/pause.c)" "$(gcc -dumpfullversion) $(gcc -dumpmachine)" \
    "$(sha256sum <hack/oci.py)" "$PAUSE_NAME" | sha)
  out=$CACHE/pause-$key.tar
  if [ ! -f "$out" ]; then
    work=$(mktemp -d "$CACHE/.pause-XXXXXX")
    mkdir "$work/root"
    gcc -Os -static -Wall -Werror -s -o "$work/root/pause" hack/pause.c
    "$OCI_PY" hack/oci.py archive --root "$work/root" --name "$PAUSE_NAME" --out "$out" \
      --user 65535:65535 --entrypoint '["/pause"]'
    rm -rf "$work"
    log "built $out"
  fi
  echo "$out"
}

# Pin what pip resolves today for the image's platform (the dependencies and the master
# extra of pyproject.toml) as name==version lines; the Dockerfile and this script use them.
cmd_lock() {
  local dir reqs
  dir=$(mktemp -d)
  mapfile -t reqs < <("$PY" -c 'import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["master"]))')
  "$PY" -m pip download -q --disable-pip-version-check -d "$dir" "${PIP_TARGET[@]}" \
    "${reqs[@]}" >&2
  {
    echo "# The image's dependency set, pinned: hack/image.sh lock writes it, and both the"
    echo "# Dockerfile and hack/image.sh install exactly these. Regenerate after editing"
    echo "# pyproject.toml's dependencies."
    "$PY" - "$dir" <<'EOF'
import pathlib, re, sys
pins = set()
for wheel in pathlib.Path(sys.argv[1]).glob("*.whl"):
    name, version = wheel.name.split("-")[:2]
    pins.add(f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}")
print("\n".join(sorted(pins, key=lambda pin: pin.split("==")[0])))
EOF
  } >"$LOCK.partial"
  mv "$LOCK.partial" "$LOCK"
  rm -rf "$dir"
  echo "$LOCK"
}

case ${1:-} in
  build) cmd_build ;;
  name) image_name ;;
  pause) cmd_pause ;;
  pause-name) echo "$PAUSE_NAME" ;;
  rootfs) cmd_rootfs ;;
  lock) cmd_lock ;;
  key) image_key ;;
  *) die "usage: $0 build|name|pause|pause-name|rootfs|lock|key" ;;
esac
