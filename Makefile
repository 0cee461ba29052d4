# JV Pharma Registry — every command a developer or operator needs.
# `make dev` runs the registry locally; `make test` runs the test suite.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
COMPOSE ?= docker compose

.DEFAULT_GOAL := help
.PHONY: help venv dev cluster cluster-down dlq test test-unit test-integration test-e2e test-chaos chaos bench bench-investments lint fmt docs up down jvreg logs ps lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

venv: $(STAMP) ## create .venv with the pinned dependencies

SCALE ?= 1
dev: $(STAMP) ## run the whole registry locally (SecantusDB + RabbitMQ + every service; SCALE=N: N instances of each)
	$(BIN)/jvreg dev --scale $(SCALE)

cluster: $(STAMP) ## a local three-node RabbitMQ cluster (not the machine's default node); prints its AMQP addresses
	$(BIN)/python tests/rabbit_nodes.py up

cluster-down: $(STAMP) ## stop the cluster `make cluster` started and remove its data
	$(BIN)/python tests/rabbit_nodes.py down

dlq: $(STAMP) ## list the dead-letter queue (jvreg dlq requeue --id ID | --all sends back)
	$(BIN)/jvreg dlq list

test: $(STAMP) ## unit, integration, end-to-end and a reduced chaos run (real RabbitMQ, SecantusDB)
	$(BIN)/pytest --durations=30 tests/unit tests/integration tests/e2e tests/chaos

test-unit: $(STAMP) ## tests that need no broker and no database
	$(BIN)/pytest tests/unit

test-integration: $(STAMP)
	$(BIN)/pytest tests/integration

test-e2e: $(STAMP)
	$(BIN)/pytest tests/e2e

test-chaos: $(STAMP) ## the reduced fault-injection run that `make test` includes (a few minutes)
	$(BIN)/pytest tests/chaos

chaos: $(STAMP) ## fault injection, 1,000+ faults; writes docs/reliability.md
	JVREG_CHAOS=full $(BIN)/pytest tests/chaos -q -s

bench: $(STAMP) ## the registry beside the raw limits of its servers (~18 min; ARGS=--quick: tiny sizes, <1 min); writes bench/results.json, docs/performance.md
	PYTHONPATH=tests $(BIN)/python tests/bench/bench.py $(ARGS)

bench-investments: $(STAMP) ## time the portfolio investment report over 100,000 flows
	$(BIN)/python tests/bench/bench_investments.py

lint: $(STAMP) ## ruff, the layering of docs/architecture.md (import-linter) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/mypy

docs: $(STAMP) ## regenerate docs/events.md, the event catalogue, from the AsyncAPI document
	$(BIN)/python -m services.gateway.asyncapi --catalogue docs/events.md

fmt: $(STAMP) ## format and fix what ruff can
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

up: $(STAMP) ## production-shaped stack in Docker (docs/deploy.md); writes missing secrets to .env first
	$(BIN)/python deploy/compose_env.py .env
	$(COMPOSE) up -d --build --wait
	$(COMPOSE) exec -T gateway jvreg signing-keys init

# Compose checks every required secret for any command: make sure .env has them.
.env: | $(STAMP)
	$(BIN)/python deploy/compose_env.py .env

down: .env ## stop the Docker stack (its volumes stay; `docker compose down -v` removes the data)
	$(COMPOSE) down

jvreg: .env ## the ops command line inside the Docker stack: make jvreg ARGS="reconcile"
	$(COMPOSE) run --rm jvreg $(ARGS)

logs: .env ## follow the Docker stack's logs
	$(COMPOSE) logs -f

ps: .env ## the Docker stack's containers
	$(COMPOSE) ps

lock: ## re-pin every dependency from pyproject.toml into requirements.lock
	rm -rf /tmp/jvreg-lock && $(PYTHON) -m venv /tmp/jvreg-lock
	/tmp/jvreg-lock/bin/pip install --quiet --disable-pip-version-check ".[dev]"
	/tmp/jvreg-lock/bin/pip freeze --all --exclude jvreg --exclude pip > requirements.lock

clean: ## remove the virtualenv and local data
	rm -rf $(VENV) var
