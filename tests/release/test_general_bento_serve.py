"""A built general bento serves the cluster named at serve time, and plans when it was built to (real ``bentoml serve``).

BentoML serves a *built* bento with its build-time arguments only and drops ``--arg`` given to
``bentoml serve`` (``bentoml._internal.service.loader._load_bento``), so
:func:`flows.release.serving.start_bento` also passes them in ``$REACH_SERVE_ARGUMENTS``
(:mod:`bento.arguments`). The shipped general policy (trained on 13-29) is packaged in the
session's private BentoML store twice: raw, and built to plan (its stored evaluation played that
planner, as packaging demands); each is started on loopback for 7-21 ``chain``. Both are gated
bentos that can serve any cluster, so they are deleted again afterwards (``removed_afterwards``,
tests/release/conftest.py).
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NON_DEFAULT_PLANNING, scenario_dir, workload_file

pytestmark = pytest.mark.e2e

GENERAL = Path(__file__).resolve().parents[2] / "data" / "policies" / "general-v4"
PLANNING = NON_DEFAULT_PLANNING


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _served(tag: str, slot: str) -> dict[str, Any]:
    """Start ``tag`` for 7-21 chain, read its /metadata, stop it.

    What the server says it serves must be what ``reach serve`` announced before starting it
    (:func:`flows.release.serving.served_summary`, read from the stores without the model).
    """
    from flows.local import processes
    from flows.release.selection import cluster_of
    from flows.release.serving import served_summary, start_bento

    arguments = {"scenario": str(scenario_dir("7-21")), "workload": str(workload_file("chain"))}
    announced = served_summary(tag, cluster_of(arguments["scenario"], arguments["workload"]), arguments)
    record = start_bento(tag, slot, 180.0, arguments)
    try:
        metadata: dict[str, Any] = _get(f"{record.url}/metadata")
    finally:
        processes.stop(record.name)
    assert metadata["served"] == announced["served"] and metadata["trained"] == announced["trained"]
    assert (metadata["served"]["scenario"]["name"], metadata["served"]["workload"]["name"]) == ("7-21", "chain")
    assert (metadata["served"]["node_count"], metadata["served"]["slot_count"]) == (7, 21)
    assert metadata["trained"]["scenario"]["name"] == "13-29"
    return metadata


def test_a_built_general_bento_serves_the_cluster_named_at_serve_time_with_the_planning_it_was_built_with(
    reach_home: Path, tmp_path: Path, removed_afterwards: list[str]
) -> None:
    from bento.artefact import write_evaluation
    from flows.evaluation import evaluate
    from flows.release.packaging import package

    raw = package(GENERAL, True, "serve-time arguments test: raw")
    removed_afterwards.append(raw)
    served = _served(raw, "args-raw")
    assert len(served["nodes"]) == 7, "the bento served its packaged cluster, not the one named at serve time"
    assert served["planning"] == {} and served["served"]["planning"] == "raw"
    assert served["served"]["warnings"] == []

    planned_artefact = shutil.copytree(GENERAL, tmp_path / "policy")
    report, _ = evaluate(
        scenario_dir("7-21"), [workload_file("chain")], planned_artefact, [0], 1, ["steady"],
        baselines=("greedy", "best_known"), **PLANNING,
    )  # fmt: skip
    write_evaluation(planned_artefact, report.model_dump(mode="json"))
    planned = package(planned_artefact, True, "serve-time arguments test: planning", PLANNING)
    removed_afterwards.append(planned)
    served = _served(planned, "args-planning")
    assert len(served["nodes"]) == 7
    assert served["planning"] == PLANNING == served["served"]["planning"] == served["served"]["gated_planning"]
    assert served["served"]["warnings"] == []
