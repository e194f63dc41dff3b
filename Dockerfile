# syntax=docker/dockerfile:1
#
# modelserve/modelserve:<version> — the one image every component runs from. The helm
# chart picks the component by its command, a console script of pyproject.toml:
#   modelserve-operator, modelserve-gateway, modelserve-contract, modelserve-download,
#   modelserve-nodeagent (the DaemonSet on GPU nodes that reads nvidia-smi),
#   modelserve-jobs (the job engine: leased items of batch work, and /jobs),
#   modelserve-fetch-model (the operator's init step that copies a model into a pod).
# The gateway also serves the web UI's build (web/dist, made by `make ui`) under /ui.
#
#   make ui && docker build --build-arg VERSION=0.2.0 -t modelserve/modelserve:0.2.0 .
#   (or `make docker-build`, which builds the UI first and reads the version from
#   pyproject.toml)
#
# It lives at the repository root because the build context must be the root anyway
# (pyproject.toml and every source folder), and .dockerignore is read from there.

# Pinned by exact tag and by the digest of its multi-platform index, so a rebuild starts
# from the same bytes; move both together, on purpose.
FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# --- builder: the modelserve wheel and a wheel of every dependency, at the versions of
# docker/constraints.txt. Nothing of this stage reaches the image but /wheels.
FROM base AS builder
WORKDIR /src
# .dockerignore lets in only what the wheel is built from.
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels --constraint docker/constraints.txt .

# --- runtime: the slim base, the installed wheels and a user without privileges.
FROM base AS runtime
ARG VERSION=0.2.0
LABEL org.opencontainers.image.title="modelserve" \
      org.opencontainers.image.description="ModelServe: operator, gateway, contract and download services" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# A numeric UID, so that a pod's runAsNonRoot can verify it without /etc/passwd.
RUN groupadd --system --gid 10001 modelserve \
    && useradd --system --uid 10001 --gid 10001 --create-home --home-dir /home/modelserve \
       --shell /usr/sbin/nologin modelserve
# The wheels come in through a bind mount, so they never become a layer of the image;
# --no-index: everything was fetched and checked in the builder. setuptools and wheel
# are build tools that the running services never import.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "modelserve==${VERSION}" \
    && pip uninstall --no-cache-dir --yes setuptools wheel
# The web UI: static files built by `make ui` (Vite), read-only and owned by root. Built
# outside the image, so no Node.js base (which could not be pinned by digest here) and no
# npm step reach it; a context without web/dist fails here rather than ship no UI.
COPY web/dist /usr/share/modelserve/ui
ENV GATEWAY_UI_DIR=/usr/share/modelserve/ui
USER 10001:10001
WORKDIR /home/modelserve
# gateway, contract, download, the contract's admission webhook, the operator's health
EXPOSE 8200 8201 8202 8443 8210
# The chart sets the command of every container; without one the image runs the gateway.
CMD ["modelserve-gateway"]
