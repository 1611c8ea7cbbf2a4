# The two commands of the README: `make run` (the main job) and `make test` (the whole suite).
# Both set up everything they need first (scripts/setup.sh is idempotent).
SHELL := /bin/bash
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export BENTOML_DO_NOT_TRACK := true
export GX_ANALYTICS_ENABLED := false
VENV := .venv/bin

.PHONY: setup run test lint bench

setup:
	@scripts/setup.sh

run: setup
	$(VENV)/reach sim demo --scenario 7-21 --workload aggregator_sequential

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy ceenv flows bento migrator
	$(VENV)/lint-imports

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
test: lint
	@$(VENV)/pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$status

bench: setup
	$(VENV)/python benchmarks/bench_env.py
