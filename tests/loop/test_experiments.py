"""REACH's experiments with repetitions: seeds, the spread over runs, the per-run files, the policy choice."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.cli.demo import app, parse_seeds
from flows.loop import policy as demo_policy
from flows.loop.experiments import Comparison, aggregate, comparison_table, write_workload
from flows.loop.settings import DemoSettings


def a_pair(seed: int, reduction_pct: float, workload: str = "chain", moves: int = 2) -> Comparison:
    without = 200.0
    with_ms = without * (1 - reduction_pct / 100)
    return Comparison(workload, "surge", "greedy-standin (not the learned policy)", seed, 180.0, 181.0, without,
                      with_ms, reduction_pct, moves, f"s{seed}.csv", f"s{seed}.png")  # fmt: skip


def test_the_spread_is_the_mean_and_sample_standard_deviation_over_the_seeded_runs() -> None:
    result = aggregate([a_pair(0, 10.0, moves=1), a_pair(1, 20.0, moves=2), a_pair(2, 30.0, moves=6)])
    assert result.runs_count == 3
    assert result.mean_reduction_pct == pytest.approx(20.0)
    assert result.sd_reduction_pct == pytest.approx(10.0)
    assert (result.min_reduction_pct, result.max_reduction_pct) == (10.0, 30.0)
    assert result.mean_moves == pytest.approx(3.0)
    assert result.reach_published_pct == 8.0  # chain, as published by REACH


def test_one_run_has_no_spread_and_no_run_is_an_error() -> None:
    assert aggregate([a_pair(4, 12.5)]).sd_reduction_pct == 0.0
    with pytest.raises(ValueError, match="seed"):
        aggregate([])


def test_every_run_is_written_with_its_own_numbers(tmp_path: Path) -> None:
    result = aggregate([a_pair(0, 5.0), a_pair(1, -3.0)])
    path = write_workload(result, tmp_path, "7-21")
    assert path.name == "surge-7-21-chain.json"
    saved = json.loads(path.read_text())
    assert [r["seed"] for r in saved["runs"]] == [0, 1] and saved["mean_reduction_pct"] == pytest.approx(1.0)
    rows = list(csv.DictReader((tmp_path / "surge-7-21-chain-runs.csv").open()))
    assert [(r["seed"], float(r["reduction_pct"])) for r in rows] == [("0", 5.0), ("1", -3.0)]


def test_the_table_gives_mean_and_spread_next_to_reach_and_says_it_is_simulated() -> None:
    text = comparison_table([aggregate([a_pair(0, 10.0), a_pair(1, 20.0)])])
    assert "15.0 ± 7.1 %" in text and "10.0 … 20.0" in text and "8.0%" in text
    assert "seed 1" in text and "simulated-latency loop" in text


def test_seeds_come_from_runs_or_an_explicit_list() -> None:
    assert parse_seeds(3, "", 5) == [5, 6, 7]
    assert parse_seeds(3, "0, 4,9", 5) == [0, 4, 9]
    for runs, seeds in ((0, ""), (3, "a,b"), (3, ",")):
        with pytest.raises(typer.BadParameter):
            parse_seeds(runs, seeds, 0)


def test_bad_repetition_options_are_refused_before_anything_starts() -> None:
    result = CliRunner().invoke(app, ["experiment", "surge", "--runs", "0"])
    assert result.exit_code != 0 and "--runs" in result.output
    result = CliRunner().invoke(app, ["experiment", "surge", "--seeds", "one"])
    assert result.exit_code != 0 and "--seeds" in result.output


def test_auto_without_a_gated_bento_uses_the_named_standin_in_experiments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_policy, "resolve_auto", lambda scenario, workload: None)
    monkeypatch.setattr(demo_policy, "start_standin", lambda s, w: ("http://127.0.0.1:1", f"standin for {w}"))
    monkeypatch.setattr(demo_policy, "serve_bento", lambda s, w, wanted: pytest.fail("must not train or serve"))
    url, policy = demo_policy.policy_url(DemoSettings(train_missing=False), "chain")
    assert (url, policy) == ("http://127.0.0.1:1", "standin for chain")


def test_auto_serves_the_gated_bento_of_the_workload_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(
        demo_policy, "resolve_auto", lambda scenario, workload: asked.append((scenario, workload)) or "b:1"
    )
    monkeypatch.setattr(demo_policy, "serve_bento", lambda s, w, wanted: (f"http://127.0.0.1:2/{w}", str(wanted)))
    settings = DemoSettings(scenario="data/scenarios/7-21", workload="aggregator_sequential", train_missing=False)
    assert demo_policy.policy_url(settings, "chain") == ("http://127.0.0.1:2/chain", "b:1")
    assert asked == [("7-21", "chain")]


def test_a_refused_gate_names_the_verdict_and_both_ways_out() -> None:
    message = str(demo_policy.GateRefused("7-21", "chain", "failed 1 of 5 checks", "out/runs/x"))
    assert "failed 1 of 5 checks" in message and "out/runs/x" in message
    assert "--policy greedy-standin" in message and "nothing was deployed" in message
