# syntax=docker/dockerfile:1
# The controller image, ghcr.io/gitops-reconciler/reconciler (deploy/deployment.yaml):
#
#   docker build -t ghcr.io/gitops-reconciler/reconciler:0.1.0 .
#
# NOTE: the development machines and CI have no Docker engine, so this file is not built there.
# `make image` builds the same image from Debian bookworm packages instead (scripts/build-image:
# mmdebstrap + our wheel + the pinned kustomize, assembled with umoci; python3 is 3.11 there too)
# and runs it as 65532 against a local control plane (scripts/image-check; docs/image.md).
# Keep both in step by hand with pyproject.toml (dependencies), scripts/build-tool kustomize
# and reconciler/render/kustomize.py (KUSTOMIZE_VERSION; tests/unit/test_deploy_manifests.py
# checks that the pins agree and that the image runs as 65532).
#
# What render needs at run time: git and ssh (git sources, deploy keys with known_hosts),
# CA certificates (https and S3), and the pinned kustomize, helm (spec.helm charts) and sops
# (spec.decryption) binaries. No shell tools, no compiler.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG GO_IMAGE=golang:1.26-bookworm

# --- 1. kustomize, built from the Go module proxy (as scripts/build-tool kustomize does) --------
FROM ${GO_IMAGE} AS kustomize
# v5.8.3 needs Go >= 1.27; v5.8.2 is what reconciler/render/kustomize.py pins.
ARG KUSTOMIZE_VERSION=v5.8.2
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local
RUN go install -ldflags="-s -w" sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION} \
 && /go/bin/kustomize version

# --- 1b. helm and sops, built the same way (scripts/build-tool helm|sops; the pins are
# reconciler/render/tools.py HELM and reconciler/render/sops_tool.py SOPS_VERSION)
FROM ${GO_IMAGE} AS helm
ARG HELM_VERSION=v4.3.2
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local
RUN go install -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}" \
      helm.sh/helm/v4/cmd/helm@${HELM_VERSION} \
 && /go/bin/helm version --short

FROM ${GO_IMAGE} AS sops
ARG SOPS_VERSION=v3.13.3
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local
RUN go install -ldflags="-s -w" github.com/getsops/sops/v3/cmd/sops@${SOPS_VERSION} \
 && /go/bin/sops --version --disable-version-check

# --- 2. the Python package and its dependencies, in a virtualenv ---------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
WORKDIR /src
# Only what the wheel needs: no .venv, .git, tests or caches end up in the image.
COPY pyproject.toml README.md ./
COPY reconciler/ reconciler/
RUN /opt/venv/bin/pip install . \
 && /opt/venv/bin/reconciler --version

# --- 3. runtime ----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
# git + openssh-client: git sources over https and ssh; tini: PID 1 that forwards SIGTERM
# and reaps the git/ssh/kustomize child processes.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      git openssh-client ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 reconciler \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin reconciler \
 && install -d -o 65532 -g 65532 -m 0750 /cache
COPY --from=kustomize /go/bin/kustomize /usr/local/bin/kustomize
COPY --from=helm /go/bin/helm /usr/local/bin/helm
COPY --from=sops /go/bin/sops /usr/local/bin/sops
COPY --from=build /opt/venv /opt/venv
# The default policy set (policies/) at a fixed path; mount a ConfigMap over it to replace it.
COPY policies/ /etc/gitops-reconciler/policies/
# The root filesystem is read-only in the Deployment: everything written goes to /tmp and
# /cache (emptyDirs there), git mirrors under $XDG_CACHE_HOME.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/cache \
    RECONCILER_KUSTOMIZE=/usr/local/bin/kustomize \
    RECONCILER_HELM=/usr/local/bin/helm \
    RECONCILER_SOPS=/usr/local/bin/sops
USER 65532:65532
EXPOSE 8080 8081 9292
ENTRYPOINT ["/usr/bin/tini", "--", "reconciler"]
CMD ["run", "--leader-elect", "--metrics-addr=:8080", "--webhook-addr=:9292", "--health-addr=:8081"]
