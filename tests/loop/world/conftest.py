"""Shared inputs of the world's tests: the 7-21 scenario, REACH's three workloads, and placements."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceenv.scenario import Scenario, load_scenario
from ceenv.workload import Workload, load_workload

ROOT = Path(__file__).resolve().parents[3]
SCENARIO_DIR = ROOT / "data" / "scenarios" / "7-21"
WORKLOADS = ROOT / "data" / "workloads"

# one pod per service, the MODEL.md §2 hand-checkable example: twin = 121.6 ms (sequential, chain)
ALL_ON_CLOUD_1 = {
    "client": ["tb-client-vm-2-1"],
    "aggregator": ["tb-cloud-vm-8-1"],
    "machine-learning": ["tb-cloud-vm-8-1"],
    "detection": ["tb-cloud-vm-8-1"],
    "db": ["tb-cloud-vm-8-1"],
}
# replicas across layers and CPU types: every call's replica choice matters
SPREAD = {
    "client": ["tb-client-vm-2-1"],
    "aggregator": ["tb-edge-vm-4-1", "tb-cloud-vm-8-2"],
    "machine-learning": ["tb-cloud-vm-8-1", "tb-edge-vm-4-1", "tb-edge-vm-2-1"],
    "detection": ["tb-edge-vm-2-2", "tb-cloud-vm-8-2"],
    "db": ["tb-cloud-vm-8-1", "tb-edge-vm-4-2"],
}


@pytest.fixture(scope="session")
def scenario() -> Scenario:
    return load_scenario(SCENARIO_DIR)


@pytest.fixture(scope="session")
def workloads(scenario: Scenario) -> dict[str, Workload]:
    names = ("chain", "aggregator_sequential", "aggregator_parallel")
    return {n: load_workload(WORKLOADS / f"{n}_call_patterns.json", scenario) for n in names}


# the parallel branches each have a near and a far replica: which one a request meets decides its slowest branch
NEAR_AND_FAR = {
    "client": ["tb-client-vm-2-1"],
    "aggregator": ["tb-cloud-vm-8-1"],
    "machine-learning": ["tb-cloud-vm-8-1", "tb-cloud-vm-8-2"],
    "detection": ["tb-cloud-vm-8-1", "tb-edge-vm-4-1"],
    "db": ["tb-cloud-vm-8-1", "tb-edge-vm-4-2"],
}
