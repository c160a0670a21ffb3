# Two front doors for a newcomer: `make sandbox` (the demo) and `make test` (the suite).
# Both set everything up themselves: a virtualenv in .venv with the package and its test
# dependencies, and redis-server from Debian's packages when the machine has none.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install redis-server test lint sandbox bench image clean

# The image every Deployment in deploy/ runs (watcher, workers, Flower); the tag is the
# project's version, the one deploy/ names. Push it where your cluster pulls from, e.g.
# `make image IMAGE=registry.example.com/polycrate-operator:0.1.0 && docker push ...`.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= polycrate-operator:$(VERSION)
DOCKER ?= docker

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (Debian package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

test: install redis-server lint
	$(BIN)/pytest

sandbox: install redis-server
	$(BIN)/polycrate operator sandbox

bench: install redis-server
	$(BIN)/python benchmarks/run.py

image:
	$(DOCKER) build --tag $(IMAGE) .

clean:
	rm -rf $(VENV) .sandbox .pytest_cache .ruff_cache
