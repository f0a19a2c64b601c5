# Every target installs what it needs itself, so a fresh machine needs only `make demo`
# and `make test`.  Heavy, slow-changing things (the Go-built control plane) are cached
# outside the repository under ${XDG_CACHE_HOME:-~/.cache}/gitops-reconciler.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLUSTER_DIR := .cluster
KWOK ?= 1
PYTEST_ARGS ?=

.PHONY: help deps venv controlplane tools cluster cluster-down demo lint test unit clean image

help:
	@echo "make demo          build+start the local control plane, apply examples/hello, show what is live"
	@echo "make test          lint + the whole test suite (starts its own control plane)"
	@echo "make cluster       start the local control plane in .cluster/ (kubeconfig: .cluster/kubeconfig)"
	@echo "make cluster-down  stop it"
	@echo "make lint          ruff, mypy --strict, import-linter"
	@echo "make tools         build the pinned kustomize, helm, sops and OCI registry (cached outside the repo)"
	@echo "make image         build the controller image from Debian packages (no Docker), run it as uid 65532 and check it reconciles"

deps:
	scripts/install-deps

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

controlplane: deps
	scripts/controlplane build
	scripts/controlplane build-kwok

tools:
	scripts/build-tool kustomize
	scripts/build-tool helm
	scripts/build-tool registry
	scripts/build-tool sops

cluster: venv controlplane tools
	$(PY) scripts/controlplane.py up $(CLUSTER_DIR) $(if $(filter 1,$(KWOK)),--kwok,)

cluster-down:
	@if [ -x $(PY) ]; then $(PY) scripts/controlplane.py down $(CLUSTER_DIR); \
	 else $(PYTHON) scripts/controlplane.py down $(CLUSTER_DIR); fi

demo: cluster
	$(PY) scripts/demo.py --kubeconfig $(CLUSTER_DIR)/kubeconfig

# The image of ./Dockerfile, built without Docker (scripts/build-image: mmdebstrap + umoci, cached
# outside the repo), then run as its non-root user against a fresh control plane (scripts/image-check).
image: deps venv
	scripts/build-image
	$(PY) scripts/image-check

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy --strict reconciler
	$(VENV)/bin/lint-imports

unit: venv tools
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

test: venv controlplane tools lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

clean: cluster-down
	rm -rf $(VENV) $(CLUSTER_DIR) .mypy_cache .ruff_cache .pytest_cache *.egg-info
