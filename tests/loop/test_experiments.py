"""REACH's experiments: a cell's arms over seeds, the goal, the trial files, the table and figures, the policy choice."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.cli.demo import app, parse_seeds
from flows.loop import policy as demo_policy
from flows.loop.arms import DEFAULT_ARM, GREEDY_ARM, LEARNED_ARM, ArmResult, Trial, read_trials, write_trial
from flows.loop.cells import (
    arm_cell,
    calibration_points,
    calibration_summary,
    goal,
    learned_policies,
    markdown,
    versus_greedy,
    write_figures,
)
from flows.loop.settings import DemoSettings


def arm(name: str, mean_ms: float, moves: int = 0, recovery_s: float | None = 5.0, points: int = 0) -> ArmResult:
    calibration: list[dict[str, float | str]] = [
        {"pod": f"p{i}", "target": "n", "at_s": 20.0 + i, "predicted_gain_ms": 10.0 + i, "measured_gain_ms": 2.0 * i}
        for i in range(points)
    ]
    return ArmResult(name, f"{name} policy", mean_ms, mean_ms * 2, moves, recovery_s, 1000.0, 100.0 * moves,
                     [(0.0, 100.0), (20.0, mean_ms)], [(15.0, "node-failed", "", "edge-1", "123")], calibration)  # fmt: skip


def a_trial(seed: int, learned_ms: float, greedy_ms: float = 180.0, workload: str = "chain") -> Trial:
    arms = [
        arm(DEFAULT_ARM, 200.0),
        arm(LEARNED_ARM, learned_ms, moves=2, points=2),
        arm(GREEDY_ARM, greedy_ms, moves=1),
    ]
    return Trial("node-failure", "7-21", workload, seed, 15.0, 60.0, {"db": ["cloud-1"]}, ["edge-1"], arms)


def test_a_cell_gives_the_reduction_against_the_default_scheduler_of_each_seed_with_its_interval() -> None:
    trials = [a_trial(0, 170.0), a_trial(1, 180.0), a_trial(2, 160.0)]  # 15, 10, 20 %
    learned = arm_cell(trials, LEARNED_ARM)
    assert learned.reduction is not None and learned.reduction.mean == pytest.approx(15.0)
    assert learned.reduction.low == pytest.approx(15.0 - 4.303 * 5.0 / 3**0.5, abs=1e-3)
    assert learned.moves == 2 and learned.over_qos_pct == pytest.approx(20.0)
    assert arm_cell(trials, DEFAULT_ARM).reduction is None


def test_the_goal_names_each_shortfall_against_reach_and_greedy() -> None:
    met = [a_trial(0, 170.0, greedy_ms=190.0), a_trial(1, 172.0, greedy_ms=190.0)]  # 15 and 14 % ≥ 8 % (chain)
    assert goal(arm_cell(met, LEARNED_ARM), arm_cell(met, GREEDY_ARM)) == "met"
    short = [a_trial(0, 196.0), a_trial(1, 204.0)]  # 2 and −2 %: below REACH, CI around 0, greedy 10 %
    verdict = goal(arm_cell(short, LEARNED_ARM), arm_cell(short, GREEDY_ARM))
    assert "8.0 pp below REACH" in verdict and "CI not above 0" in verdict and "10.0 pp below greedy" in verdict


def test_a_shortfall_to_greedy_says_whether_the_seed_paired_difference_is_beyond_noise() -> None:
    noisy = [a_trial(0, 170.0, greedy_ms=166.0), a_trial(1, 172.0, greedy_ms=180.0)]  # −2 and +4 pp
    paired = versus_greedy(noisy)
    assert paired is not None and paired.mean == pytest.approx(1.0) and paired.high is not None
    lower = [a_trial(0, 172.0, greedy_ms=170.0), a_trial(1, 176.0, greedy_ms=172.0), a_trial(2, 174.0, 171.0)]
    verdict = goal(arm_cell(lower, LEARNED_ARM), arm_cell(lower, GREEDY_ARM), versus_greedy(lower))
    assert "1.5 pp below greedy (paired -1.5 pp [" in verdict and "within noise" not in verdict
    within = [a_trial(0, 170.0, greedy_ms=160.0), a_trial(1, 170.0, greedy_ms=178.0)]  # −5 and +4 pp
    verdict = goal(arm_cell(within, LEARNED_ARM), arm_cell(within, GREEDY_ARM), versus_greedy(within))
    assert "0.5 pp below greedy (paired -0.5 pp [" in verdict and "within noise" in verdict


def test_trials_round_trip_through_json_and_make_the_table_and_figures(tmp_path: Path) -> None:
    for seed, learned in ((0, 170.0), (1, 190.0)):
        write_trial(a_trial(seed, learned), tmp_path / "trials")
    write_trial(a_trial(0, 199.0, workload="aggregator_parallel"), tmp_path / "trials")
    trials = read_trials(tmp_path / "trials")
    assert [(t.workload, t.seed) for t in trials] == [("aggregator_parallel", 0), ("chain", 0), ("chain", 1)]
    assert trials[1].arm(LEARNED_ARM).series == [(0.0, 100.0), (20.0, 170.0)]
    text = markdown(trials, 100.0)
    assert "| node-failure | chain | learned | 2 | 180.0 |" in text and "10.0 % [" in text and "8.0 %" in text
    assert "7.9 %" in text and "(1 pair, no CI)" in text
    assert "6 moves with a prediction" in calibration_summary(calibration_points(trials))
    assert learned_policies(trials) == "`learned policy` (node-failure × aggregator_parallel, node-failure × chain)"
    paths = write_figures(trials, tmp_path)
    assert sorted(p.name for p in paths) == ["calibration.png", "node-failure-aggregator_parallel.png",
                                             "node-failure-chain.png"]  # fmt: skip
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)


def test_an_evacuation_is_left_out_of_the_calibration() -> None:
    trial = a_trial(0, 170.0)
    learned = trial.arm(LEARNED_ARM)
    moves = [{"pod": "p0", "target": "cloud-1", "started_s": 30.0, "done_s": 31.0, "predicted_gain_ms": 5.0},
             {"pod": "p1", "target": "cloud-1", "started_s": 40.0, "done_s": 41.0, "predicted_gain_ms": 7.0}]  # fmt: skip
    series = [(float(t), 300.0 if t < 32 else 120.0) for t in range(0, 60)]
    events = [
        *learned.events,
        (30.0, "migrated", "p0", "edge-1", "cloud-1"),
        (40.0, "migrated", "p1", "cloud-2", "cloud-1"),
    ]
    evacuating = replace(trial, arms=[replace(learned, moves_made=moves, series=series, events=events)])
    points = calibration_points([evacuating])
    assert [(p["pod"], bool(p.get("evacuation"))) for p in points] == [("p0", True), ("p1", False)]
    summary = calibration_summary(points)
    assert summary.startswith("1 moves with a prediction") and "1 evacuations (moves off a failed node)" in summary


def test_a_file_that_is_not_a_trial_is_named(tmp_path: Path) -> None:
    (tmp_path / "surge-7-21-chain-s0.json").write_text(json.dumps({"experiment": "surge"}))
    with pytest.raises(ValueError, match=r"surge-7-21-chain-s0\.json"):
        read_trials(tmp_path)


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


def test_auto_without_a_gated_bento_and_without_training_uses_the_named_standin_in_reach_demo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
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
    assert asked == [("data/scenarios/7-21", "chain")]  # the scenario's folder as given, not only its name


def test_a_refused_gate_names_the_verdict_and_both_ways_out() -> None:
    message = str(demo_policy.GateRefused("7-21", "chain", "failed 1 of 5 checks", "out/runs/x"))
    assert "failed 1 of 5 checks" in message and "out/runs/x" in message
    assert "--policy greedy-standin" in message and "nothing was deployed" in message


def test_the_successful_requests_mean_is_kept_and_shown_only_when_every_seed_kept_it(tmp_path: Path) -> None:
    def with_ok_mean(trial: Trial, ok_mean_ms: float | None) -> Trial:
        return replace(trial, arms=[replace(a, ok_mean_ms=ok_mean_ms) for a in trial.arms])

    write_trial(with_ok_mean(a_trial(0, 170.0), 150.0), tmp_path / "trials")
    write_trial(with_ok_mean(a_trial(1, 190.0), 160.0), tmp_path / "trials")
    trials = read_trials(tmp_path / "trials")
    assert trials[0].arm(LEARNED_ARM).ok_mean_ms == 150.0
    assert arm_cell(trials, LEARNED_ARM).ok_mean_ms == pytest.approx(155.0)
    assert "| node-failure | chain | learned | 2 | 180.0 | 360.0 | 155.0 |" in markdown(trials, 100.0)
    older = [trials[0], with_ok_mean(trials[1], None)]  # a trial recorded before the field was kept
    assert arm_cell(older, LEARNED_ARM).ok_mean_ms is None
    assert "| node-failure | chain | learned | 2 | 180.0 | 360.0 | - |" in markdown(older, 100.0)


def test_six_seeds_run_every_order_of_the_arms_once_so_each_position_and_predecessor_is_balanced() -> None:
    from collections import Counter
    from itertools import pairwise

    from flows.loop.arms import ARMS
    from flows.loop.experiments import arm_order

    orders = [tuple(arm_order(seed)) for seed in range(6)]
    assert orders[0] == ARMS and len(set(orders)) == 6 and all(sorted(o) == sorted(ARMS) for o in orders)
    for position in range(3):  # each arm runs first, second and last twice
        assert Counter(o[position] for o in orders) == {arm: 2 for arm in ARMS}
    follows = Counter(pair for o in orders for pair in pairwise(o))
    assert len(follows) == 6 and set(follows.values()) == {2}  # each arm after each other arm twice
    assert {o[0] for o in orders[:3]} == set(ARMS)  # three seeds already start with each arm once
    assert [arm_order(seed) for seed in range(6, 12)] == [list(o) for o in orders]
    assert {tuple(arm_order(seed)) for seed in range(2, 8)} == set(orders)  # any six consecutive seeds
    assert arm_order(-1) == list(orders[5])


def test_a_trial_runs_its_arms_in_the_seeds_order_each_from_the_start_and_records_order_and_protocol(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from flows.loop import experiments
    from flows.loop.arms import PROTOCOL
    from flows.loop.demo import Session
    from flows.loop.report import Event, LoopRun

    ran: list[tuple[str, object, list[str]]] = []
    monkeypatch.setattr(experiments, "reset_app", lambda session, start: None)
    monkeypatch.setattr(experiments.placement, "live_assignment", lambda admin, ns: {"db": ["cloud-1"]})
    monkeypatch.setattr(experiments, "nodes_to_fail", lambda session: ["edge-1"])
    monkeypatch.setattr(experiments, "prepare_run", lambda session, workload, start: start)

    def run_loop(session: object, label: str, url: str | None, policy: str) -> LoopRun:
        ran.append((label.split(": ")[1], url, list(session.settings.fail_nodes)))  # type: ignore[attr-defined]
        run = LoopRun(label, policy, 0.0)
        run.events.append(Event(15.0, "node-failed", "", "edge-1", "1"))
        return run

    monkeypatch.setattr(experiments, "run_loop", run_loop)
    monkeypatch.setattr(experiments, "arm_result", lambda arm, policy, run, settings: arm_named(arm))
    monkeypatch.setattr(
        experiments, "local_cluster", lambda s: SimpleNamespace(recorded_failure_detection=lambda: None)
    )
    settings = DemoSettings(experiment="node-failure", qos_threshold_ms=250.0, world_rps=3.0, duration_s=40.0)
    session = Session(settings, Path("kubeconfig"), None, Path("7-21"), None, None, "http://127.0.0.1:9090")
    deciders = {LEARNED_ARM: ("http://l", "bento"), GREEDY_ARM: ("http://g", "standin")}
    trial = experiments.one_trial(session, "chain", 4, deciders)
    assert [r[0] for r in ran] == [GREEDY_ARM, LEARNED_ARM, DEFAULT_ARM] == trial.arm_order
    assert all(nodes == ["edge-1"] for _, _, nodes in ran)  # every arm fails the node the start names
    assert [a.arm for a in trial.arms] == [DEFAULT_ARM, LEARNED_ARM, GREEDY_ARM]
    assert (trial.protocol, trial.qos_threshold_ms, trial.world_rps, trial.failed_nodes) == (
        PROTOCOL, 250.0, 3.0, ["edge-1"])  # fmt: skip


def arm_named(name: str) -> ArmResult:
    return arm(name, 100.0)


def test_an_arms_recovery_and_calibration_count_from_when_the_event_happened_not_when_it_was_planned() -> None:
    from flows.loop.experiments import arm_result
    from flows.loop.report import Event, LoopRun
    from flows.loop.stats import MeshCounters

    buckets = {100.0: 0.0, float("inf"): 0.0}
    counters = MeshCounters(buckets, 0.0, 0.0, buckets, 0.0, 0.0)
    after = MeshCounters({100.0: 90.0, float("inf"): 100.0}, 8000.0, 100.0, {100.0: 90.0, float("inf"): 100.0}, 100.0,
                         8000.0)  # fmt: skip
    run = LoopRun("chain: greedy", "standin", 1000.0)
    run.counters, run.counted_s = {"event": counters, "end": after}, {"event": 1019.5, "end": 1060.0}
    run.events.append(Event(1020.0, "node-failed", "", "edge-1", "1"))  # planned at 15 s, happened at 20 s
    # 100 ms before; from 15 s to 24 s above the band; back at 25 s
    run.fast_samples = [(1000.0 + t, 100.0 if t < 15 or t >= 25 else 300.0) for t in range(60)]
    run.failed_share_samples = [(1000.0 + t, 0.0) for t in range(60)]
    settings = DemoSettings(experiment="node-failure", event_at_s=15.0, duration_s=60.0)
    result = arm_result(GREEDY_ARM, "standin", run, settings)
    assert result.event_s == 20.0 and result.window_s == pytest.approx(40.5)
    assert result.recovery_s == pytest.approx(5.0)  # 25 s - 20 s; from the planned 15 s it would read 10 s
