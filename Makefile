# The three commands a newcomer runs: make install, make test, make run.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# pytest-xdist workers for make test (CI has 2 cores; most tests wait on processes).
TEST_JOBS ?= 2
STAMPS := .make-stamps

.PHONY: install venv proto binaries image test lint unit e2e run bench clean

install: venv proto binaries

$(STAMPS)/venv: pyproject.toml
	@mkdir -p $(STAMPS)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	@touch $@

venv: $(STAMPS)/venv

proto: venv
	PY=$(PY) hack/gen-proto.sh
	@# Bytecode up front: with PYTHONDONTWRITEBYTECODE set, every start would compile.
	$(PY) -m compileall -q nfd

# Test infrastructure built from Go modules into ~/.cache/nfd (never the repo).
binaries:
	@for s in hack/control-plane.sh hack/upstream-nfd.sh hack/helm.sh hack/node.sh; do \
	  if [ -x $$s ]; then echo "== $$s build"; $$s build || exit 1; fi; \
	done

# The nfd OCI image, built from Debian packages and our wheels without a registry or a
# container engine (root: mmdebstrap); prints the archive's path last. See docs/deploy.md.
image: venv
	hack/image.sh build

lint: install
	$(VENV)/bin/ruff check nfd tests bench
	$(VENV)/bin/ruff format --check nfd tests bench
	$(VENV)/bin/mypy nfd
	$(VENV)/bin/lint-imports --no-cache

unit: install
	$(PY) -m pytest -q tests -m "not e2e"

e2e: install
	$(PY) -m pytest -q tests -m e2e

test: install lint
	$(PY) -m pytest -q -n $(TEST_JOBS) --dist loadgroup tests

run: install
	$(VENV)/bin/nfd-worker --oneshot --no-publish

# A real one-node cluster (tests/kube/cluster.py); the last line printed is its kubeconfig.
.PHONY: cluster cluster-down
cluster: install
	@PY=$(PY) hack/node.sh up

cluster-down:
	@PY=$(PY) hack/node.sh down

# SCALE=5000 make bench: bench_nodefeature_scale with 5,000 Nodes and NodeFeatures (default 200).
bench: install
	$(PY) -m bench

clean:
	rm -rf $(STAMPS) nfd/_proto
