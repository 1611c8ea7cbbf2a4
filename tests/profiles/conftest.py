"""Shared paths of the profile tests: the reference scenario, workloads, examples and fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceenv.scenario import Scenario, load_scenario
from flows.profiles.hosts import CpuTypeResolver

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "profiles"
EXAMPLES = ROOT / "data" / "profiles" / "reference"
SCENARIO = ROOT / "data" / "scenarios" / "7-21"
WORKLOADS = ROOT / "data" / "workloads"
EXAMPLE_CSVS = (
    EXAMPLES / "cloud_cpu_type.csv",
    EXAMPLES / "edge4_by_node.csv",
    EXAMPLES / "edge2_aggregates_by_node_type.csv",
)


def workload(name: str) -> Path:
    return WORKLOADS / f"{name}_call_patterns.json"


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return load_scenario(SCENARIO)


@pytest.fixture(scope="session")
def resolver(scenario: Scenario) -> CpuTypeResolver:
    return CpuTypeResolver.for_scenario(scenario, {"cloud-1": 0, "client-host": 1})
