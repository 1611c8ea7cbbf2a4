"""``reach world measure``: the JSON it prints, the traces it writes, and clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.loop.world.conftest import ALL_ON_CLOUD_1, SPREAD

runner = CliRunner()


def _placement(tmp_path: Path, assignment: dict[str, list[str]]) -> Path:
    path = tmp_path / "placement.json"
    path.write_text(json.dumps(assignment))
    return path


def _measure(*args: str) -> dict[str, float]:
    result = runner.invoke(app, ["world", "measure", "-s", "7-21", *args, "--json"])
    assert result.exit_code == 0, result.output
    out: dict[str, float] = json.loads(result.stdout)
    return out


def test_measure_prints_the_worlds_statistics_and_the_twins_number(tmp_path: Path) -> None:
    placement = str(_placement(tmp_path, ALL_ON_CLOUD_1))
    out = _measure("-w", "aggregator_sequential", "-p", placement, "--seconds", "120", "--seed", "1", "--ideal")
    assert set(out) == {"requests", "failed", "unfinished", "mean_ms", "p50_ms", "p95_ms", "p99_ms", "twin_ms"}
    assert out["unfinished"] == 0  # 5 rps drain well within the run
    assert out["twin_ms"] == pytest.approx(121.6)
    assert out["p50_ms"] == pytest.approx(121.6, abs=1e-3)
    assert 500 < out["requests"] < 700  # 5 rps × 120 s
    assert out["p50_ms"] <= out["p95_ms"] <= out["p99_ms"]


def test_rps_and_seed_change_the_run_and_the_same_seed_repeats_it(tmp_path: Path) -> None:
    placement = str(_placement(tmp_path, SPREAD))
    base = ["-w", "chain", "-p", placement, "--seconds", "60"]
    assert _measure(*base, "--seed", "3") == _measure(*base, "--seed", "3")
    assert _measure(*base, "--seed", "3") != _measure(*base, "--seed", "4")
    assert _measure(*base, "--seed", "3", "--rps", "3")["requests"] > 2.5 * _measure(*base, "--seed", "3")["requests"]


def test_traces_are_written_as_jaeger_query_api_json(tmp_path: Path) -> None:
    placement = str(_placement(tmp_path, SPREAD))
    traces = tmp_path / "out" / "traces.json"
    _measure("-w", "chain", "-p", placement, "--seconds", "30", "--traces", str(traces), "--max-traces", "20")
    doc = json.loads(traces.read_text())
    assert len(doc["data"]) == 20
    assert {p["serviceName"] for t in doc["data"] for p in t["processes"].values()} == {
        "client", "aggregator", "machine-learning", "detection", "db",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rps", "0"], "rps multiplier must be > 0"),
        (["--seconds", "0"], "seconds > warmup"),
    ],
)
def test_bad_options_exit_2_with_the_reason(tmp_path: Path, args: list[str], message: str) -> None:
    placement = str(_placement(tmp_path, SPREAD))
    result = runner.invoke(app, ["world", "measure", "-s", "7-21", "-w", "chain", "-p", placement, *args])
    assert result.exit_code == 2
    assert message in result.stderr


def test_an_infeasible_placement_is_refused_as_reach_sim_latency_refuses_it(tmp_path: Path) -> None:
    bad = {**ALL_ON_CLOUD_1, "db": ["tb-client-vm-2-1"]}
    result = runner.invoke(app, ["world", "measure", "-s", "7-21", "-w", "chain", "-p", str(_placement(tmp_path, bad))])
    assert result.exit_code == 2
    assert "layer rule violated" in result.stderr
