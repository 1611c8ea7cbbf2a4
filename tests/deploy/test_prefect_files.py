"""The Prefect deployment files: every entrypoint is a flow of this repository, and the Kubernetes work pool's
scheduled job packages (a Job's loopback `bentoml serve` and endpoint file would die with it)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
FILES = ("prefect.yaml", "kubernetes-work-pool.yaml")


def _deployments(name: str) -> list[dict[str, object]]:
    deployments: list[dict[str, object]] = yaml.safe_load((ROOT / "deploy" / "prefect" / name).read_text())[
        "deployments"
    ]
    return deployments


@pytest.mark.parametrize("name", FILES)
def test_every_entrypoint_is_a_flow_of_this_repository(name: str) -> None:
    from prefect import Flow

    for deployment in _deployments(name):
        path, function = str(deployment["entrypoint"]).split(":")
        assert (ROOT / path).is_file(), f"{name}: {deployment['name']} names {path}, which does not exist"
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert isinstance(getattr(module, function, None), Flow), f"{name}: {deployment['name']}: {function}"


def test_the_kubernetes_jobs_train_and_package_and_never_redeploy_inside_a_job() -> None:
    entrypoints = {str(d["name"]): str(d["entrypoint"]) for d in _deployments("kubernetes-work-pool.yaml")}
    assert all(e == "flows/pipeline.py:reach_pipeline" for e in entrypoints.values()), entrypoints
