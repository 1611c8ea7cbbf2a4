"""Layering of the migrator: one module talks to Kubernetes, one to Prometheus, every module documented."""

from __future__ import annotations

import ast
from pathlib import Path

MIGRATOR = Path(__file__).resolve().parents[2] / "migrator"


def importers_of(package: str) -> list[str]:
    found = []
    for path in sorted(MIGRATOR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n == package or n.startswith(package + ".") for n in names):
                found.append(path.name)
                break
    return found


def test_only_kube_imports_kubernetes() -> None:
    assert importers_of("kubernetes") == ["kube.py"]


def test_only_metrics_imports_prometheus_api_client() -> None:
    assert importers_of("prometheus_api_client") == ["metrics.py"]


def test_every_module_starts_with_a_docstring() -> None:
    undocumented = [p.name for p in MIGRATOR.glob("*.py") if not ast.get_docstring(ast.parse(p.read_text()))]
    assert undocumented == []
