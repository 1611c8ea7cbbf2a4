"""Builders for small hand-checkable scenarios used across the ceenv tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from tests.conftest import scenario_dir, workload_file


def reference_docs(name: str = "7-21") -> tuple[dict[str, Any], dict[str, Any]]:
    nodes = json.loads((scenario_dir(name) / "nodes.json").read_text())
    services = json.loads((scenario_dir(name) / "services.json").read_text())
    return nodes, services


def write_scenario(tmp: Path, nodes: dict[str, Any], services: dict[str, Any]) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "nodes.json").write_text(json.dumps(nodes))
    (tmp / "services.json").write_text(json.dumps(services))
    return tmp


def workload_doc(name: str = "aggregator_sequential") -> dict[str, Any]:
    return copy.deepcopy(json.loads(workload_file(name).read_text()))
