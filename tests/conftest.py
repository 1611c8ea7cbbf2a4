"""Shared fixtures: the reference scenarios and workloads shipped in data/, telemetry off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


def scenario_dir(name: str) -> Path:
    return DATA / "scenarios" / name


def workload_file(name: str) -> Path:
    return DATA / "workloads" / f"{name}_call_patterns.json"
