"""Isolated state for the flows tests: REACH_HOME, BENTOML_HOME and PREFECT_HOME in a temp dir."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_STATE = Path(tempfile.mkdtemp(prefix="reach-flows-tests-"))
os.environ["REACH_HOME"] = str(_STATE / "reach")
os.environ["BENTOML_HOME"] = str(_STATE / "bentoml")
os.environ["PREFECT_HOME"] = str(_STATE / "prefect")
os.environ["REACH_OUT_DIR"] = str(_STATE / "out")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for the whole session (Prefect's recommended test set-up)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def reach_home() -> Path:
    return Path(os.environ["REACH_HOME"])
