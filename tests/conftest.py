"""Shared fixtures: the reference scenarios and workloads shipped in data/, telemetry off, isolated state.

REACH_HOME, BENTOML_HOME, PREFECT_HOME, SB3's logger folder and the output folder live in one temporary
directory for the whole session, so no test touches a developer's state; one Prefect test server serves every flow test.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

_STATE = Path(tempfile.mkdtemp(prefix="reach-tests-"))
os.environ["REACH_HOME"] = str(_STATE / "reach")
os.environ["BENTOML_HOME"] = str(_STATE / "bentoml")
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["REACH_OUT_DIR"] = str(_STATE / "out")
os.environ["SB3_LOGDIR"] = str(_STATE / "sb3")  # SB3's default logger folder, else /tmp/SB3-<date> per learn()

DATA = Path(__file__).resolve().parents[1] / "data"


@contextlib.contextmanager
def private_bentoml_store(home: Path) -> Iterator[Path]:
    """BentoML's home, model store and bento store patched to ``home`` for this process (all three together,
    so no store object of the session's home stays in use), and ``BENTOML_HOME`` set for what BentoML runs in
    a subprocess (a build, a serve); all restored on exit. Used by package- and module-scoped fixtures."""
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models import ModelStore

    for sub in ("models", "bentos", "envs", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    with (
        BentoMLContainer.bentoml_home.patch(str(home)),
        BentoMLContainer.model_store.patch(ModelStore(str(home / "models"))),
        BentoMLContainer.bento_store.patch(BentoStore(str(home / "bentos"))),
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("BENTOML_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


# Planning settings none of which is its default (small, so planning runs fast): a test that passes them
# through a path (evaluation units, a built bento) sees whether each one reached the planner.
NON_DEFAULT_PLANNING = {
    "plan_k": 2,
    "plan_horizon": 2,
    "plan_width": 4,
    "plan_margin": 2.0,
    "plan_noise": 0.2,
    "plan_confidence": 1.5,
    "plan_slack": 1,  # below plan_horizon: caps the plans
}


def scenario_dir(name: str) -> Path:
    return DATA / "scenarios" / name


def workload_file(name: str) -> Path:
    return DATA / "workloads" / f"{name}_call_patterns.json"


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session (Prefect's recommended test set-up)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def reach_home() -> Path:
    return Path(os.environ["REACH_HOME"])


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> object:
    """A tiny policy trained once per session on 7-21 (a few seconds): ``tests.training.conftest.TINY``."""
    from flows.training import train
    from tests.training.conftest import TINY

    out: Path = tmp_path_factory.mktemp("tiny-run")
    return train(
        TINY, scenario_dir("7-21"), workload_file("aggregator_sequential"), out, progress=False, tensorboard=True
    )
