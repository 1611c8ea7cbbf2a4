"""``reach serve`` and ``reach status`` say what a bento serves: the cluster, raw or planning, and the gate's planning.

``reach serve`` prints its start-up line before it hands the process to ``bentoml serve`` (the
``os.execv`` is captured here, so no server starts); ``reach status`` prints what the serving
bento's ``GET /metadata`` answers. A planning that is not the one the gate judged is served (an
explicit choice) but warned about.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bento.arguments import SERVE_ARGUMENTS_ENV
from bento.served import PLANNING_DIFFERS
from flows.cli import app

GENERAL = Path(__file__).resolve().parents[2] / "data" / "policies" / "general-v4"
PLANNING = {"plan_k": 2, "plan_horizon": 2, "plan_width": 4, "plan_margin": 2.0}


@pytest.fixture(scope="module")
def planned_bento(tmp_path_factory: pytest.TempPathFactory, removed_after_the_module: list[str]) -> str:
    """A bento of the shipped general policy built to plan, gated on a report of that planning; deleted with its
    model when the module ends (a gated general bento is the incumbent of every later gate)."""
    from bento.artefact import read_metadata
    from flows.evaluation.gate import Check, Verdict

    scratch = tmp_path_factory.mktemp("served-cli")
    report = dict(read_metadata(GENERAL).evaluation_report or {})
    report["settings"] = {**report["settings"], **PLANNING}  # as `reach evaluate --plan-k 2 …` records it
    report_file = scratch / "report.json"
    report_file.write_text(json.dumps(report))
    rules = scratch / "rules.json"
    rules.write_text("{}")
    passing = Verdict(passed=True, checks=[Check(rule="beat_noop", group="all", passed=True, detail="test")])
    with pytest.MonkeyPatch.context() as patch:
        import flows.evaluation.gate
        import flows.release.packaging

        patch.setattr(flows.release.packaging, "find_incumbent", lambda scenario, workload: None)
        patch.setattr(flows.evaluation.gate, "gate", lambda report, incumbent, rules: passing)
        _, tag = flows.release.packaging.release_artefact(GENERAL, rules, report_file)
    assert tag is not None
    removed_after_the_module.append(tag)
    return tag


def _serve(monkeypatch: pytest.MonkeyPatch, *options: str) -> tuple[Any, list[str], dict[str, Any]]:
    """``reach serve …`` up to its exec: the CLI result, the command it would exec, the serve-time arguments."""
    executed: list[str] = []
    monkeypatch.setenv(SERVE_ARGUMENTS_ENV, "")  # the command sets it for bentoml; restored after the test
    monkeypatch.setattr(os, "execv", lambda path, argv: executed.extend(argv))
    result = CliRunner().invoke(app, ["serve", *options])
    arguments = json.loads(os.environ.get(SERVE_ARGUMENTS_ENV) or "{}")
    return result, executed, arguments


def test_reach_serve_says_the_cluster_and_the_planning_it_was_gated_with(
    planned_bento: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, executed, arguments = _serve(
        monkeypatch, "--bento", planned_bento, "--scenario", "19-37", "--workload", "chain"
    )
    assert result.exit_code == 0, result.output
    assert executed[1:3] == ["serve", planned_bento]
    assert "plan_k" not in arguments  # as built
    line = result.output
    assert "serves 19-37 / chain (19 nodes, 37 pod slots) with planning (plan_k=2, plan_horizon=2" in line
    assert "trained on 13-29 / aggregator_sequential" in line
    assert "gate passed on planning (plan_k=2" in line and PLANNING_DIFFERS not in line


def test_reach_serve_plan_k_other_than_gated_serves_but_warns(
    planned_bento: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--plan-k 0`` on a bento built to plan: the raw policy serves (explicit choice), never silently."""
    result, executed, arguments = _serve(
        monkeypatch, "--bento", planned_bento, "--scenario", "7-21", "--workload", "chain", "--plan-k", "0"
    )
    assert result.exit_code == 0, result.output
    assert arguments["plan_k"] == "0" and "plan_k=0" in executed
    assert "serves 7-21 / chain (7 nodes, 21 pod slots) with the raw policy" in result.output
    assert PLANNING_DIFFERS in result.output and "the gate judged planning (plan_k=2" in result.output


def test_reach_serve_plan_slack_caps_the_built_planning_and_warns(
    planned_bento: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--plan-slack 1`` on a bento built to plan without a cap: it plans with the cap, and says the gate did not
    judge that; a slack at or past the built horizon (2) caps nothing and decides as gated."""
    result, executed, arguments = _serve(
        monkeypatch, "--bento", planned_bento, "--scenario", "7-21", "--workload", "chain", "--plan-slack", "1"
    )
    assert result.exit_code == 0, result.output
    assert arguments["plan_slack"] == "1" and "plan_slack=1" in executed and "plan_k" not in arguments
    assert "with planning (plan_k=2, plan_horizon=2, plan_width=4, plan_margin=2" in result.output
    assert "plan_slack=1)" in result.output and PLANNING_DIFFERS in result.output
    result, _, arguments = _serve(
        monkeypatch, "--bento", planned_bento, "--scenario", "7-21", "--workload", "chain", "--plan-slack", "2"
    )
    assert result.exit_code == 0, result.output
    assert arguments["plan_slack"] == "2" and PLANNING_DIFFERS not in result.output
    refused = CliRunner().invoke(app, ["serve", "--bento", planned_bento, "--plan-slack", "17"])
    assert refused.exit_code == 2 and "less than or equal to 16" in refused.output


class _Metadata(BaseHTTPRequestHandler):
    body: dict[str, Any] = {}  # noqa: RUF012

    def do_GET(self) -> None:
        payload = json.dumps(self.body).encode()
        self.send_response(200 if self.path == "/metadata" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def metadata_server(reach_home: Path) -> Iterator[str]:
    """A loopback server answering ``GET /metadata`` as a general bento serving 19-37/chain with planning
    its gate did not judge; the endpoint file is removed afterwards."""
    from bento.planning_settings import PlanningSettings
    from bento.served import served_block
    from flows.release import serving

    trained = {
        "scenario": {"name": "13-29", "sha256": "a"},
        "workload": {"name": "aggregator_sequential", "sha256": "b"},
    }
    served = served_block(
        {"name": "19-37", "sha256": "c"},
        {"name": "chain", "sha256": "d"},
        19,
        37,
        PlanningSettings(4),
        PlanningSettings(),
    )
    _Metadata.body = {"model_tag": "reach-policy:x", "gate": {"passed": True}, "trained": trained, "served": served}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        serving.endpoint_file().unlink(missing_ok=True)  # this process is no serving policy for later tests


def _assert_says_what_serves(output: str) -> None:
    assert "reach-policy:x serves 19-37 / chain (19 nodes, 37 pod slots) with planning (plan_k=4" in output
    assert "gate passed on the raw policy" in output and PLANNING_DIFFERS in output


def test_reach_status_prints_what_the_serving_bento_says_it_serves(metadata_server: str) -> None:
    from flows.release import serving

    serving.switch(serving.Endpoint(metadata_server, "reach-policy-service:x", "blue", os.getpid(), 0.0))
    result = CliRunner().invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    _assert_says_what_serves(result.output)


def test_reach_deploy_prints_what_now_serves(metadata_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the switch, ``reach deploy`` reads the new server's /metadata (the redeploy flow has its own tests)."""
    import flows.release.redeploy
    from flows.release import serving

    def switched(bento: Any, scenario: Any, workload: Any, **_: Any) -> dict[str, Any]:
        serving.switch(serving.Endpoint(metadata_server, "reach-policy-service:x", "green", os.getpid(), 0.0))
        return {"deployed": "reach-policy-service:x"}

    monkeypatch.setattr(flows.release.redeploy, "reach_redeploy", switched)
    result = CliRunner().invoke(app, ["deploy", "--no-analysis", "--scenario", "19-37", "--workload", "chain"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"deployed": "reach-policy-service:x"}  # stdout stays one JSON document
    _assert_says_what_serves(result.stderr)


def test_a_bento_built_before_metadata_named_what_it_serves_is_reported_as_such() -> None:
    from bento.served import describe

    old = {"model_tag": "reach-policy:old", "scenario": "13-29", "workload": "chain",
           "planning": {"plan_k": 4, "plan_horizon": 6, "plan_width": 8, "plan_margin": 8.0}, "gate": {"passed": True}}  # fmt: skip
    line = describe(old)
    assert "built before /metadata named what it serves" in line and "plan_k" in line
    assert "raw policy" not in line and "without a stored evaluation" not in line
