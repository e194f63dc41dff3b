# ModelServe — developer entry points. `make help` lists them.
#
# Two ways to run the platform:
#   make dev   on this machine, without Docker: the test bed's Kubernetes control plane,
#              PostgreSQL, MinIO and an LLM as plain processes (cached under
#              ~/.cache/modelserve, so a warm machine builds nothing); `make test` uses
#              the same components.
#   make all   on a local k3d cluster (Docker): builds the image, creates the cluster and
#              installs the helm chart, in the steps below.
#
# Every command is a variable, so that a run can point it elsewhere, e.g.
#   make status KUBECTL=/opt/kubectl KUBE_CONTEXT=my-context NAMESPACE=ms-test

PYTHON ?= python3
VENV ?= .venv
NODE ?= node
FRONTEND_PORT ?= 5173
NPM ?= npm
# npm's downloads are cached with the test bed's builds (CI clones fresh).
NPM_CACHE ?= $(or $(MODELSERVE_CACHE),$(HOME)/.cache/modelserve)/npm
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# `make test` runs the tests on this many workers (pytest-xdist), each with a test bed of
# its own; a test module runs whole on one worker, so its components start once.
# 0: every test in one process, in file order.
PYTEST_WORKERS ?= 2

DOCKER ?= docker
K3D ?= k3d
KUBECTL ?= kubectl
HELM ?= helm

# The package version (pyproject.toml) is the image tag and the chart's appVersion.
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml | head -n 1)
IMAGE_REPOSITORY ?= modelserve/modelserve
IMAGE_TAG ?= $(VERSION)
IMAGE := $(IMAGE_REPOSITORY):$(IMAGE_TAG)

CLUSTER ?= inference-cluster
K3D_CONFIG ?= k3d/cluster.yaml
# Every kubectl and helm call names the k3d cluster's context, so that `make infra` never
# installs into whatever cluster the current context happens to be. Empty: the current one.
KUBE_CONTEXT ?= k3d-$(CLUSTER)
NAMESPACE ?= modelserve
RELEASE ?= modelserve
CHART ?= charts/modelserve
# --wait: a step is done when its pods are ready, so the next one finds them.
HELM_FLAGS ?= --wait --timeout 10m
# The client certificate the k3d API server presents to admission webhooks, and its CA,
# which the chart's webhook trusts (k3d/webhook-client.sh makes them once; see k3d/README.md).
# Without it (a cluster `make cluster` did not make) the chart makes a CA of its own.
WEBHOOK_CLIENT_DIR ?= $(CURDIR)/.dev/k3d-webhook-client

GATEWAY_SERVICE ?= $(RELEASE)-gateway
GATEWAY_PORT ?= 8200
DB_STATEFULSET ?= $(RELEASE)-postgresql
DB_SECRET ?= $(RELEASE)-postgresql
LOG_TAIL ?= 200
# `make logs COMPONENT=gateway` narrows the logs to one component.
COMPONENT ?=

comma := ,
KUBECTL_CMD = $(KUBECTL)$(if $(KUBE_CONTEXT), --context $(KUBE_CONTEXT))
HELM_CMD = $(HELM)$(if $(KUBE_CONTEXT), --kube-context $(KUBE_CONTEXT))
LOG_SELECTOR ?= app.kubernetes.io/instance=$(RELEASE)$(if $(COMPONENT),$(comma)app.kubernetes.io/component=$(COMPONENT))

# One release, installed in stages: each stage sets every component switch, so a stage
# run again (or after a later one) leaves exactly its components installed.
HELM_INSTALL = $(HELM_CMD) upgrade --install $(RELEASE) $(CHART) \
	--namespace $(NAMESPACE) --create-namespace \
	--set image.repository=$(IMAGE_REPOSITORY) --set image.tag=$(IMAGE_TAG) \
	--set postgresql.enabled=true --set minio.enabled=true $(HELM_FLAGS) \
	$(if $(wildcard $(WEBHOOK_CLIENT_DIR)/ca.crt),--set-file contract.webhook.clientCA.pem=$(WEBHOOK_CLIENT_DIR)/ca.crt)

.DEFAULT_GOAL := help
# The steps of `make all` depend on each other in the order they are listed.
.NOTPARALLEL:
.PHONY: help dev test lint testbed venv deps clean-venv all check-deps cluster docker-build ui ui-lint frontend \
	docker-load infra operator-deploy services-deploy status logs port-forward db-shell stop \
	clean

## help: list the targets
help:
	@awk '/^## [a-z-]+:/ { sub(/^## /, ""); i = index($$0, ":"); \
		printf "  %-16s %s\n", substr($$0, 1, i - 1), substr($$0, i + 2); next } \
		/^## / { sub(/^## /, ""); printf "  %-16s %s\n", "", $$0 }' $(MAKEFILE_LIST)

# --- Local development, no Docker ------------------------------------------------------

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## venv: the virtual environment in .venv with the package and its checkers
venv: $(BIN)/.installed

## deps: the Python dependencies (same as venv)
deps: venv

## testbed: build the whole test bed ahead of time (Kubernetes, etcd, KWOK, MinIO, helm,
## PostgreSQL, llama-cpp-python with SmolLM2)
testbed: venv
	$(BIN)/modelserve-testbed build

## lint: ruff, mypy, hadolint (the Dockerfile) and shellcheck (k3d/*.sh)
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy common operator services testbed tests bench client
	$(BIN)/hadolint Dockerfile
	$(BIN)/shellcheck k3d/check-deps.sh k3d/webhook-client.sh

## test: lint, type-check and run every test against the real components
test: testbed lint ui-lint ui
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## dev: run the platform locally until Ctrl-C (the web UI on $$GATEWAY_URL/ui)
dev: testbed ui
	$(BIN)/modelserve-testbed up

# --- The web UI (web/, docs/ui.md) ------------------------------------------------------

web/node_modules/.installed: web/package-lock.json
	cd web && $(NPM) ci --no-audit --no-fund --cache $(NPM_CACHE)
	touch $@

## ui: build the web UI into web/dist (the gateway serves it under /ui)
ui: web/node_modules/.installed
	cd web && $(NPM) run build

## ui-lint: lint (eslint) and type-check (tsc) the web UI
ui-lint: web/node_modules/.installed
	cd web && $(NPM) run lint
	cd web && $(NPM) run typecheck

## frontend: the web UI's dev server on http://localhost:5173 (FRONTEND_PORT), against
## `make dev`'s gateway (MODELSERVE_GATEWAY_URL, by default http://127.0.0.1:8200)
frontend: web/node_modules/.installed
	cd web && $(NPM) run dev -- --port $(FRONTEND_PORT)

clean-venv:
	rm -rf $(VENV)

# --- The platform on k3d ---------------------------------------------------------------

## all: from nothing to a working platform on k3d: check-deps, deps, cluster,
## docker-build, docker-load, infra, operator-deploy, services-deploy
all: check-deps deps cluster docker-build docker-load infra operator-deploy services-deploy
	@echo
	@echo "ModelServe $(VERSION) runs in namespace $(NAMESPACE) of the k3d cluster $(CLUSTER)."
	@echo "  make status         what runs"
	@echo "  make port-forward   the gateway on http://localhost:$(GATEWAY_PORT)"
	@echo "  Traefik             http://localhost:8080 (the gateway's and every model's routes)"
	@echo "How to get a token and make a first call: $(HELM_CMD) get notes $(RELEASE) -n $(NAMESPACE)"

## check-deps: are docker (and its engine), k3d, kubectl, helm, python, node and npm
## installed and new enough? Says what is missing and how to install it; fails if
## anything is.
check-deps:
	@DOCKER='$(DOCKER)' K3D='$(K3D)' KUBECTL='$(KUBECTL)' HELM='$(HELM)' PYTHON='$(PYTHON)' \
		NODE='$(NODE)' NPM='$(NPM)' sh k3d/check-deps.sh

## cluster: create the k3d cluster inference-cluster from k3d/cluster.yaml (or start it
## when it exists)
cluster:
	@sh k3d/webhook-client.sh $(WEBHOOK_CLIENT_DIR)
	@if $(K3D) cluster get $(CLUSTER) >/dev/null 2>&1; then \
		echo "The k3d cluster $(CLUSTER) exists: starting it."; \
		$(K3D) cluster start $(CLUSTER); \
	else \
		MODELSERVE_WEBHOOK_CLIENT_DIR=$(WEBHOOK_CLIENT_DIR) \
		$(K3D) cluster create $(CLUSTER) --config $(K3D_CONFIG); \
	fi

## docker-build: build the image every component runs, modelserve/modelserve:<version>
## (the web UI first: the image serves its build)
docker-build: ui
	DOCKER_BUILDKIT=1 $(DOCKER) build --build-arg VERSION=$(VERSION) --tag $(IMAGE) .

## docker-load: copy the image into the k3d cluster's nodes (no registry needed)
docker-load:
	$(K3D) image import $(IMAGE) --cluster $(CLUSTER)

## infra: install the chart with only PostgreSQL and MinIO (and the CRDs, Secrets)
infra:
	$(HELM_INSTALL) --set operator.enabled=false --set gateway.enabled=false \
		--set contract.enabled=false --set download.enabled=false --set jobs.enabled=false

## operator-deploy: add the operator to the release
operator-deploy:
	$(HELM_INSTALL) --set operator.enabled=true --set gateway.enabled=false \
		--set contract.enabled=false --set download.enabled=false --set jobs.enabled=false

## services-deploy: add the gateway, contract, download and jobs services: everything runs
services-deploy:
	$(HELM_INSTALL) --set operator.enabled=true --set gateway.enabled=true \
		--set contract.enabled=true --set download.enabled=true --set jobs.enabled=true

# --- Operating it ----------------------------------------------------------------------

## status: nodes, the release, its pods and services, every ModelServe
status:
	$(KUBECTL_CMD) get nodes
	$(HELM_CMD) list --namespace $(NAMESPACE)
	$(KUBECTL_CMD) get statefulsets,deployments,pods,services --namespace $(NAMESPACE)
	@# The CRD arrives with the chart: before `make infra` there is nothing to list.
	@$(KUBECTL_CMD) get modelserves --all-namespaces 2>/dev/null \
		|| echo "No ModelServe resource type yet: run make infra."

## logs: the last lines (LOG_TAIL=200) of every container of the release (COMPONENT=gateway:
## one component)
logs:
	$(KUBECTL_CMD) logs --namespace $(NAMESPACE) --selector $(LOG_SELECTOR) \
		--all-containers --prefix --tail $(LOG_TAIL) --max-log-requests 20

## port-forward: the gateway on http://localhost:8200 until Ctrl-C
port-forward:
	@echo "The gateway on http://localhost:$(GATEWAY_PORT); Ctrl-C stops forwarding."
	$(KUBECTL_CMD) port-forward --namespace $(NAMESPACE) service/$(GATEWAY_SERVICE) $(GATEWAY_PORT):8200

## db-shell: psql in the chart's PostgreSQL, as the user and database of its Secret
db-shell:
	@user=$$($(KUBECTL_CMD) get secret $(DB_SECRET) --namespace $(NAMESPACE) \
		--output go-template='{{.data.username | base64decode}}') \
	&& database=$$($(KUBECTL_CMD) get secret $(DB_SECRET) --namespace $(NAMESPACE) \
		--output go-template='{{.data.database | base64decode}}') \
	&& echo "psql: $$user on $$database in statefulset/$(DB_STATEFULSET)" \
	&& $(KUBECTL_CMD) exec --namespace $(NAMESPACE) --stdin --tty \
		statefulset/$(DB_STATEFULSET) -- psql --username "$$user" --dbname "$$database"

## stop: stop the k3d cluster, keeping its state (make cluster starts it again)
stop:
	$(K3D) cluster stop $(CLUSTER)

## clean: delete the k3d cluster and everything in it (the image stays in Docker)
clean:
	$(K3D) cluster delete $(CLUSTER)
