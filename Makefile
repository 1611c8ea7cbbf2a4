# The two commands of the README: `make run` (the main job) and `make test` (the whole suite).
# Both set up everything they need first (scripts/setup.sh and deploy/local/install.sh are idempotent).
SHELL := /bin/bash
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export BENTOML_DO_NOT_TRACK := true
export GX_ANALYTICS_ENABLED := false
VENV := .venv/bin
# Heavy jobs (the Kubernetes build, the demo) take this lock so that two never run at once on 2 cores.
LOCK := flock /tmp/reach-heavy.lock
# The same lock, its descriptor closed before the command runs: what the demo leaves running never holds it.
LOCK_CLOSED := flock -o /tmp/reach-heavy.lock

.PHONY: setup cluster images-tools images run test lint bench down

setup:
	@scripts/setup.sh

# The local Kubernetes 1.20 control plane (cached static binaries; about 5 minutes when cold).
cluster: setup
	@$(LOCK) deploy/local/install.sh

# buildah and mmdebstrap for the OCI images (Debian packages; idempotent). Their layer cache lives in
# /var/lib/containers/storage (root) and survives between runs, so warm image builds reuse it.
images-tools:
	@deploy/images/install.sh

# The images of the policy service (newest gated bento) and the migrator; prints tags and sizes.
images: setup images-tools
	@$(LOCK) $(VENV)/reach images build

# The main job: `reach demo` on embedded defaults — REACH's three stages on the world, on the 13-29 cluster
# (local Kubernetes control plane, Prometheus, the world on the app's poor start, Prefect dashboard):
# 1. profile: the world's traces ingested by the pipeline (GX); 2. train: fine-tune the shipped general policy,
# evaluate, gate with the default rules, package; 3. act: blue/green deploy, the migrator acts, the world
# measures. Everything keeps running until `make down`. Exit code 3 from the demo means the gate refused the
# fine-tuned policy: nothing learned was deployed, and the loop is shown with the greedy stand-in instead,
# clearly named as such. REACH_DEMO_ARGS passes options, e.g. `--record out/demo/record.md`.
REACH_DEMO_ARGS ?=
run: setup
	@$(LOCK) deploy/local/install.sh
	@$(LOCK_CLOSED) $(VENV)/reach demo $(REACH_DEMO_ARGS); status=$$?; \
	if [ $$status -eq 3 ]; then \
	  echo "make run: the gate refused the policy trained for the demo (see above); no learned policy serves." >&2; \
	  echo "make run: running the same loop with the greedy stand-in instead (NOT the learned policy)." >&2; \
	  $(LOCK_CLOSED) $(VENV)/reach demo --policy greedy-standin $(REACH_DEMO_ARGS); status=$$?; \
	fi; exit $$status
	$(VENV)/reach status

down: setup
	$(VENV)/reach down

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy ceenv flows bento migrator
	$(VENV)/lint-imports

# pytest exits 5 when it collected no tests: that is a failure here, not a pass.
test: lint cluster images-tools
	@REACH_REQUIRE_CLUSTER=1 REACH_REQUIRE_IMAGES=1 $(VENV)/pytest -q; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$status

bench: setup
	$(VENV)/python benchmarks/bench_env.py
	$(LOCK) $(VENV)/python benchmarks/bench_service.py --json out/bench_service.json
	$(LOCK) $(VENV)/python benchmarks/bench_migration.py --migrations 20
	$(LOCK) $(VENV)/python benchmarks/bench_failure.py --failures 3
	$(LOCK) $(VENV)/python benchmarks/bench_training.py --out benchmarks/results/training-13-29
