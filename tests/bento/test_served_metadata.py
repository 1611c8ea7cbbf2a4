"""``GET /metadata`` says what a server serves: the cluster given at serve time, how it decides, and what the gate judged.

The shipped general policy (``data/policies/general-v4``, trained on 13-29 ``aggregator_sequential``,
gated on the raw policy) is served on 19-37 ``chain`` through the service's own arguments path
(``$REACH_SERVE_ARGUMENTS``, as ``reach serve`` passes them to a built bento), raw and with
planning, the service class called in process. The trained cluster stays under ``scenario``/``workload`` and
``trained``; ``served`` names 19-37/chain with its node and slot counts and the planning in force,
and warns when that planning is not the one the gate judged.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bento.arguments import SERVE_ARGUMENTS_ENV
from bento.planning_settings import PlanningSettings
from bento.served import PLANNING_DIFFERS, describe
from tests.conftest import scenario_dir, workload_file

SHIPPED = Path(__file__).resolve().parents[2] / "data" / "policies" / "general-v4"
SERVED_SCENARIO, SERVED_WORKLOAD = scenario_dir("19-37"), workload_file("chain")
PLANNING = PlanningSettings.chosen().to_dict()  # plan_k=4 with the other settings' defaults


def _sha256(*files: Path) -> str:
    return "+".join(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)


@pytest.fixture(scope="module")
def shipped_model(bentoml_home: Path) -> str:
    """The shipped general policy in the test store, under a name of its own (the gate verdict of its report)."""
    from bento.policy import GateVerdict
    from bento.store import save_policy

    gate = GateVerdict(passed=True, reason="test: the shipped policy")
    return str(save_policy(SHIPPED, gate=gate, name="reach-policy-shipped").tag)


def _service_class(monkeypatch: pytest.MonkeyPatch, arguments: dict[str, Any]) -> Any:
    """``bento.service.PolicyService`` as a process started with these serve-time arguments builds it."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    monkeypatch.setenv(SERVE_ARGUMENTS_ENV, json.dumps(arguments))
    # A bento built earlier in this process (another test's fixture) leaves its build arguments in
    # BentoML's global container: a process started with `bentoml serve` has none of them.
    built = BentoMLContainer.bento_arguments.get()
    BentoMLContainer.bento_arguments.set({})
    saved = sys.modules.pop("bento.service", None)
    try:
        return importlib.import_module("bento.service").PolicyService
    finally:  # the other tests keep the module their fixtures imported, and the arguments they set
        BentoMLContainer.bento_arguments.set(built)
        if saved is not None:
            sys.modules["bento.service"] = saved


def _arguments(model: str, **extra: Any) -> dict[str, Any]:
    return {"model_tag": model, "scenario": str(SERVED_SCENARIO), "workload": str(SERVED_WORKLOAD), **extra}


@pytest.fixture(scope="module")
def raw_metadata(shipped_model: str) -> Iterator[dict[str, Any]]:
    """``GET /metadata`` of the shipped policy serving 19-37/chain raw, in process, as JSON.

    In process, not over ASGI: BentoML registers its request metrics once per process, and the
    package's ASGI app (tests/bento/conftest.py) is the one; ``/metadata`` returns this dict as it is.
    """
    with pytest.MonkeyPatch.context() as patch:
        service = _service_class(patch, _arguments(shipped_model))()
    yield json.loads(json.dumps(service.metadata()))


def test_metadata_names_the_served_cluster_and_keeps_the_trained_one(raw_metadata: dict[str, Any]) -> None:
    served, trained = raw_metadata["served"], raw_metadata["trained"]
    assert served["scenario"] == {
        "name": "19-37",
        "sha256": _sha256(SERVED_SCENARIO / "nodes.json", SERVED_SCENARIO / "services.json"),
    }
    assert served["workload"] == {"name": "chain", "sha256": _sha256(SERVED_WORKLOAD)}
    assert (served["node_count"], served["slot_count"]) == (19, 37)
    assert len(raw_metadata["nodes"]) == 19
    assert trained["scenario"]["name"] == "13-29" and trained["workload"]["name"] == "aggregator_sequential"
    # The existing keys keep their meaning: the files the policy was trained on.
    assert (raw_metadata["scenario"], raw_metadata["workload"]) == (trained["scenario"], trained["workload"])


def test_a_raw_server_says_raw_and_matches_its_gate(raw_metadata: dict[str, Any]) -> None:
    served = raw_metadata["served"]
    assert served["planning"] == "raw" and raw_metadata["planning"] == {}
    assert served["gated_planning"] == "raw"
    assert served["warnings"] == []
    line = describe(raw_metadata)
    assert "serves 19-37 / chain (19 nodes, 37 pod slots) with the raw policy" in line
    assert "trained on 13-29 / aggregator_sequential" in line and "WARNING" not in line


def test_a_server_planning_what_the_gate_did_not_judge_says_so(
    shipped_model: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The shipped report gated the raw policy; serving it with plan_k=4 is allowed but never silent."""
    service_class = _service_class(monkeypatch, _arguments(shipped_model, plan_k=4))
    with caplog.at_level("WARNING", logger="bentoml.service.reach"):
        service = service_class()
    metadata = service.metadata()
    served = metadata["served"]
    assert served["planning"] == PLANNING and metadata["planning"] == PLANNING
    assert served["gated_planning"] == "raw"
    assert len(served["warnings"]) == 1 and served["warnings"][0].startswith(PLANNING_DIFFERS)
    assert "the gate judged the raw policy" in served["warnings"][0]
    assert PlanningSettings.chosen().describe() in served["warnings"][0]
    assert "planning (plan_k=4, plan_horizon=8, plan_width=12, plan_margin=" in served["warnings"][0]
    assert (served["scenario"]["name"], served["node_count"], served["slot_count"]) == ("19-37", 19, 37)
    assert PLANNING_DIFFERS in describe(metadata)
    assert any(PLANNING_DIFFERS in record.getMessage() for record in caplog.records)


def test_a_bento_built_to_plan_and_served_raw_says_so(
    shipped_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reverse: a policy gated on planning, served raw (``reach serve --plan-k 0``)."""
    import shutil

    from bento.artefact import read_metadata, write_evaluation
    from bento.policy import GateVerdict
    from bento.store import save_policy

    planned = tmp_path / "policy"
    shutil.copytree(SHIPPED, planned)
    report = dict(read_metadata(planned).evaluation_report or {})
    report["settings"] = {**report["settings"], **PLANNING}
    write_evaluation(planned, report)
    tag = str(save_policy(planned, gate=GateVerdict(passed=True, reason="test"), name="reach-policy-planned").tag)
    service = _service_class(monkeypatch, _arguments(tag, plan_k=0))()
    served = service.metadata()["served"]
    assert served["planning"] == "raw" and served["gated_planning"] == PLANNING
    assert served["warnings"] and "the gate judged planning (plan_k=4" in served["warnings"][0]
    assert "this server decides with the raw policy" in served["warnings"][0]
    matching = _service_class(monkeypatch, _arguments(tag, **PLANNING))()
    assert matching.metadata()["served"]["warnings"] == []
