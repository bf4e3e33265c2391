# parcelrisk — `make help` lists the targets.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export GX_ANALYTICS_ENABLED := False
export MPLBACKEND := Agg

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  \033[1m%-16s\033[0m %s\n",$$1,$$2}'

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with pinned dependencies

demo: $(STAMP) ## Run the main job end to end on embedded defaults
	PATH=$(abspath $(BIN)):$$PATH bash scripts/demo.sh

test: $(STAMP) ## Run the test suite (installs Debian's chromium, postgresql and nginx for their tests when root)
	@bash scripts/install_browser.sh || echo "make test: no chromium: tests/browser will be skipped"
	@bash scripts/install_services.sh || echo "make test: no postgresql/nginx: the tests of a team's services will be skipped"
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

lint: $(STAMP) ## Lint and check formatting (notebooks too: stored without outputs)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/check_notebooks.py

strip-notebooks: $(STAMP) ## Clear the outputs of notebooks/*.ipynb before committing them
	$(BIN)/python scripts/check_notebooks.py --strip

format: $(STAMP) ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

reliability: $(STAMP) ## Check every promise of docs/RELIABILITY.md on the real server (one JSON, ~15 min)
	@$(BIN)/python -m scripts.reliability $(ARGS)

services: $(STAMP) ## Start a team's services: PostgreSQL, MLflow, replicas behind nginx (scripts/team.sh up)
	bash scripts/team.sh up

services-status: ## What of a team's services runs where (scripts/team.sh status)
	@bash scripts/team.sh status

services-down: ## Stop a team's services; their data stays in .team/ (scripts/team.sh down)
	bash scripts/team.sh down

bench: $(STAMP) ## Run the benchmarks (print JSON)
	for b in benchmarks/*.py; do $(BIN)/python $$b; done

clean: ## Remove generated data, MLflow store, run metrics and caches (keeps .venv and audit.db: decisions are audit records)
	rm -rf data/raw/* data/processed/* data/reports data/next plan.png today.html monitor-report mlflow.db mlartifacts artifacts metrics notebooks/.sandbox .pytest_cache .ruff_cache

.PHONY: help install demo test lint strip-notebooks format reliability services services-status services-down bench clean
