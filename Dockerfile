# syntax=docker/dockerfile:1
# One image for every nfd component: nfd-worker, nfd-master, nfd and kubectl-nfd.
#
#   docker build -t registry.example.com/nfd:0.1.0 .
#
# Without Docker or a registry, `make image` (hack/image.sh) builds the same image from
# Debian's python3 and the same pinned wheels; tests/image checks that the two agree.
#
# Stage 1 generates the gRPC code and builds wheels (the package and all its dependencies);
# stage 2 installs only those wheels, without network access or build tools, and runs as
# an unprivileged user with no shell tools beyond what the slim base has (hook scripts in
# source.d may use /bin/sh).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m pip install "grpcio-tools>=1.60" "setuptools>=68" wheel
COPY pyproject.toml README.md ./
COPY protos/ protos/
COPY hack/gen-proto.sh hack/gen-proto.sh
# The pinned dependency set; hack/image.sh (the engine-less build) installs the same one.
COPY hack/image-requirements.txt /wheels/image-requirements.txt
COPY hack/image-prune.py /wheels/image-prune.py
COPY nfd/ nfd/
# nfd/_proto is generated, never committed; it must be in the wheel.
RUN PY=python hack/gen-proto.sh \
 && python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m pip wheel --wheel-dir /wheels -c /wheels/image-requirements.txt \
      "$(ls /wheels/nfd-*.whl)[master]"

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="nfd" \
      org.opencontainers.image.description="Node Feature Discovery (Python): worker, master, CLI" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NFD_HOST_PREFIX=/host-
# Install from the wheels of stage 1 only (--no-index: nothing fetched at this point),
# remove what nfd never imports (hack/image-prune.py, as hack/image.sh does), then
# drop pip and setuptools: the image never installs anything at run time, and setuptools'
# .pth hook would run at every process start (docs/startup.md).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-index --find-links=/wheels -c /wheels/image-requirements.txt \
      "nfd[master]" \
 && python /wheels/image-prune.py \
 && python -m pip uninstall -y pip setuptools wheel \
 && nfd-worker --version && nfd-master --help >/dev/null && nfd --version \
 && command -v kubectl-nfd && nfd-gc --version
# 65534 is "nobody" in Debian; the manifests run the pods with the same ids
# (OpenShift assigns its own non-root UID, which also works: nothing here is user-owned).
USER 65534:65534
WORKDIR /tmp
ENTRYPOINT []
CMD ["nfd-worker", "--help"]
