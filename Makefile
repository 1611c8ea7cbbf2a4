# The two commands of the README: `make run` (the main job) and `make test` (the whole suite).
# Both set up everything they need first (scripts/setup.sh and deploy/local/install.sh are idempotent).
SHELL := /bin/bash
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export BENTOML_DO_NOT_TRACK := true
export GX_ANALYTICS_ENABLED := false
VENV := .venv/bin
# Heavy jobs (the Kubernetes build) take this lock so that two never run at once on 2 cores.
LOCK := flock /tmp/reach-heavy.lock

.PHONY: setup cluster run test lint bench down

setup:
	@scripts/setup.sh

# The local Kubernetes 1.20 control plane (cached static binaries; about 5 minutes when cold).
cluster: setup
	@$(LOCK) deploy/local/install.sh

# The main job: local Prefect server + deployments, one pipeline run on 7-21 with a small budget,
# a blue/green deploy of the gated bento; everything keeps running until `make down`.
# Exit code 3 from the pipeline means the gate refused the policy: the serving one stays.
run: setup
	$(VENV)/reach up
	@$(VENV)/reach pipeline run --params data/pipeline/quickstart.json; status=$$?; \
	if [ $$status -ne 0 ] && [ $$status -ne 3 ]; then exit $$status; fi
	$(VENV)/reach deploy
	$(VENV)/reach status

down: setup
	$(VENV)/reach down

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy ceenv flows bento migrator
	$(VENV)/lint-imports

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
test: lint cluster
	@REACH_REQUIRE_CLUSTER=1 $(VENV)/pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$status

bench: setup
	$(VENV)/python benchmarks/bench_env.py
	$(LOCK) $(VENV)/python benchmarks/bench_service.py --json out/bench_service.json
	$(LOCK) $(VENV)/python benchmarks/bench_migration.py --migrations 20
	$(LOCK) $(VENV)/python benchmarks/bench_training.py --out benchmarks/results/training-13-29
