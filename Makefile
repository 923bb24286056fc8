# edgelambda: every entry point a developer or CI needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BASE_IMAGE := edgelambda/runtime-python:local

# Settings reach compose from the environment and from $(ENV_FILE) (`.env`; `.env.example`
# names every variable), the environment first; Make reads the ones it decides on the same way.
ENV_FILE := $(or $(EDGELAMBDA_ENV_FILE),.env)
env_value = $(shell bash scripts/env-value.sh $(1) '$(ENV_FILE)')
LOCAL_RUNTIME_IMAGES := python3.12=$(BASE_IMAGE),python3.11=$(BASE_IMAGE)
export EDGELAMBDA_RUNTIME_IMAGES := $(or $(call env_value,EDGELAMBDA_RUNTIME_IMAGES),$(LOCAL_RUNTIME_IMAGES))
export EDGELAMBDA_STANDINS := $(call env_value,EDGELAMBDA_STANDINS)

.PHONY: help install engine base-images stack-images dind-image run check-settings up down \
	dind dind-down registry-image swarm swarm-down browser screenshots \
	test check lint types unit bench soak clean

help:
	@echo "make run          run the gateway on :8000 with the local runtime base"
	@echo "make up / down    the compose stack (EDGELAMBDA_STANDINS=1: local stand-ins);"
	@echo "                  settings from the environment and .env (see .env.example)"
	@echo "make dind / dind-down  the same stack inside one parent container, onpre-app-root"
	@echo "                  (EDGELAMBDA_OFFLINE=1: bake every image it needs into the parent)"
	@echo "make swarm / swarm-down  the box as a stack on this engine's Docker Swarm (a"
	@echo "                  single-node one is made when there is none); same settings"
	@echo "make test         ensure the engine, base image and browser, run every test"
	@echo "make screenshots  the console's pages, as docs/console-*.png"
	@echo "make check        ruff, mypy --strict, pytest"
	@echo "make bench        the gateway beside the thinnest path (../shared/perf, or"
	@echo "                  EDGELAMBDA_PERF_DIR) and the engine's own costs; one JSON report"
	@echo "make soak         mixed and hostile traffic for SOAK_MINUTES (10), one JSON report;"
	@echo "                  restarts the engine midway (SOAK_ARGS=--no-engine-restart: not)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(STAMP)

engine:
	@start=$$SECONDS; bash scripts/ensure-engine.sh; \
	  echo "make: engine ready in $$((SECONDS - start))s"

browser:
	@start=$$SECONDS; browser=$$(bash scripts/ensure-browser.sh); \
	  echo "make: browser $$browser ready in $$((SECONDS - start))s"

# The console's screenshots under docs/, taken by its browser test.
screenshots: install base-images browser
	EDGELAMBDA_SCREENSHOTS=$(CURDIR)/docs $(BIN)/pytest -q tests/test_console_browser_docker.py

base-images: engine
	@start=$$SECONDS; image=$$(bash scripts/build-base-image.sh); \
	  echo "make: base image $$image ready in $$((SECONDS - start))s"

run: install base-images
	$(BIN)/edgelambda serve

IS_PRODUCTION := $(filter 1 true yes on,$(shell echo '$(call env_value,EDGELAMBDA_PRODUCTION)' | tr A-Z a-z))
BIND_ADDRESS := $(call env_value,EDGELAMBDA_BIND_ADDRESS)
# Production mode publishes the data services (RustFS, Alternator, VictoriaLogs) on
# 127.0.0.1 unless the operator names an address; development mode where the gateway is.
# (The compose files' own default is 127.0.0.1: without make, nothing is opened by mistake.)
export EDGELAMBDA_DATA_BIND_ADDRESS := $(or $(call env_value,EDGELAMBDA_DATA_BIND_ADDRESS),$(if $(IS_PRODUCTION),127.0.0.1,$(BIND_ADDRESS)),0.0.0.0)
# The console links to VictoriaLogs' web UI on the host it is served from, at the published
# port: given to the stacks these targets start (not exported to everything, so a test's own
# `make up` beneath `make test` decides it from its own port).
check-settings up dind: export EDGELAMBDA_VICTORIALOGS_UI_URL := $(or $(call env_value,EDGELAMBDA_VICTORIALOGS_UI_URL),:$(or $(call env_value,EDGELAMBDA_VICTORIALOGS_PORT),9428))
ENV_FILE_ARG := $(if $(wildcard $(ENV_FILE)),--env-file $(abspath $(ENV_FILE)))
# Where `make up` and `make dind` look for the gateway's /health (an IPv6 address bracketed).
GATEWAY_HOST := $(or $(filter-out 0.0.0.0 ::,$(BIND_ADDRESS)),127.0.0.1)
HEALTH_URL := http://$(if $(findstring :,$(GATEWAY_HOST)),[$(GATEWAY_HOST)],$(GATEWAY_HOST)):$(or $(call env_value,EDGELAMBDA_HTTP_PORT),8000)/health
PROJECT = $${COMPOSE_PROJECT_NAME:-$(1)}

# The compose stack. EDGELAMBDA_STANDINS=1 swaps RustFS, ScyllaDB and VictoriaLogs for
# locally built stand-ins (machines that cannot pull images).
COMPOSE_FILES := -f compose/docker-compose.yml $(if $(EDGELAMBDA_STANDINS),-f compose/docker-compose.standins.yml)
compose = $$(bash scripts/ensure-compose.sh) $(ENV_FILE_ARG) -p $(call PROJECT,edgelambda) $(COMPOSE_FILES)
# The gateway checks its settings (production mode: no default secret) and the routing file
# as the stack would start it, in a throwaway project, before anything starts.
check_compose = EDGELAMBDA_NETWORK=$(call PROJECT,edgelambda)-check \
  $$(bash scripts/ensure-compose.sh) $(ENV_FILE_ARG) -p $(call PROJECT,edgelambda)-check $(COMPOSE_FILES)

# The Docker-in-Docker box. Privileged containers cannot start where the capability bounding
# set lacks CAP_SYS_RESOURCE (bit 24); there the caps override replaces `privileged`.
# EDGELAMBDA_DIND_PRIVILEGED=1 or 0 decides instead of that check.
DIND_PRIVILEGED ?= $(or $(EDGELAMBDA_DIND_PRIVILEGED),$(shell bash -c 'echo $$(( 0x$$(grep -m1 CapBnd /proc/self/status | cut -f2) >> 24 & 1 ))'))
DIND_FILES := -f compose/docker-compose.dind.yml $(if $(filter 1,$(DIND_PRIVILEGED)),,-f compose/docker-compose.dind-caps.yml)
dind_compose = $$(bash scripts/ensure-compose.sh) $(ENV_FILE_ARG) -p $(call PROJECT,edgelambda-box) $(DIND_FILES)

stack-images: base-images
	@start=$$SECONDS; EDGELAMBDA_SKIP_BASE_IMAGE=1 bash scripts/build-stack-images.sh >/dev/null; \
	  echo "make: stack images ready in $$((SECONDS - start))s"

check-settings: stack-images
	@$(check_compose) run --rm --no-deps -T gateway check; rc=$$?; \
	  $(check_compose) down -v >/dev/null 2>&1; exit $$rc

up: check-settings
	$(compose) up -d
	@bash scripts/wait-healthy.sh "$(HEALTH_URL)" 180

down:
	$(compose) down

dind-image: stack-images
	@start=$$SECONDS; bash scripts/build-dind-image.sh $(if $(EDGELAMBDA_OFFLINE),--offline) >/dev/null; \
	  echo "make: parent image ready in $$((SECONDS - start))s"

dind: check-settings dind-image
	$(dind_compose) up -d
	@bash scripts/wait-healthy.sh "$(HEALTH_URL)" 300 \
	  "docker logs onpre-app-root; inside it: /var/log/dockerd.log"

dind-down:
	$(dind_compose) down

registry-image: base-images
	@EDGELAMBDA_STACK_IMAGES=registry EDGELAMBDA_SKIP_BASE_IMAGE=1 \
	  bash scripts/build-stack-images.sh >/dev/null

# The box as a Swarm stack (compose/docker-compose.swarm.yml); the settings are checked as
# for `make up`, in a throwaway compose project.
swarm: check-settings registry-image
	@COMPOSE_PROJECT_NAME=$(call PROJECT,edgelambda) HEALTH_URL=$(HEALTH_URL) \
	  bash scripts/swarm.sh up

swarm-down:
	@COMPOSE_PROJECT_NAME=$(call PROJECT,edgelambda) bash scripts/swarm.sh down

lint: install
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench

types: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -m "not docker"

# The engine belongs to this run, so the engine-restart test may restart it.
test: install base-images stack-images browser
	@start=$$SECONDS; EDGELAMBDA_TEST_ENGINE_RESTART=1 $(BIN)/pytest; rc=$$?; \
	  echo "make test: pytest took $$((SECONDS - start))s"; exit $$rc

check: lint types test

bench: install base-images browser
	$(BIN)/python bench/side_by_side.py

SOAK_MINUTES ?= 10
soak: install base-images
	$(BIN)/python bench/soak.py --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
