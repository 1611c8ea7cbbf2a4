"""Review round 14: the gate's pooled fraction, families the candidate skips, a minimum seed count,
the best-known tolerance of the fraction, and the per-seed episode bound."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.evaluation.episodes import EpisodeRecord, fraction_of_best_known
from flows.evaluation.gate import GateRules, gate, load_gate_rules
from flows.evaluation.report import Estimate, EvaluationReport, GroupReport, MethodStats, summarize
from flows.evaluation.units import check_evaluation
from tests.conftest import scenario_dir, workload_file

DATA = Path(__file__).resolve().parents[2] / "data"


def _record(seed: int, method: str, end: float, episode: int = 0) -> EpisodeRecord:
    return EpisodeRecord("7-21", "chain", "steady", seed, episode, method, 500.0, end, 1, 0.0, 0)


def _one_lucky_seed() -> EvaluationReport:
    """Seeds 0-3: best-known 500 -> 400 ms, the policy stays at 500. Seed 4: best-known 500 -> 499.5, policy 475."""
    records = []
    for seed in range(5):
        records += [
            _record(seed, "policy", 500.0 if seed < 4 else 475.0),
            _record(seed, "best_known", 400.0 if seed < 4 else 499.5),
            _record(seed, "noop", 500.0),
            _record(seed, "random", 520.0),
        ]
    return EvaluationReport(groups=summarize(records))


def _failed(verdict: Any) -> dict[str, list[str]]:
    failed: dict[str, list[str]] = {}
    for check in verdict.checks:
        if not check.passed:
            failed.setdefault(check.rule, []).append(check.group)
    return failed


def test_one_seed_where_best_known_gains_almost_nothing_cannot_carry_the_fraction_rule() -> None:
    report = _one_lucky_seed()
    policy = report.groups[0].methods["policy"]
    assert policy.fraction_of_best_known.mean == pytest.approx(10.0)  # the reported mean is unchanged
    assert (policy.total_reduction_ms, policy.total_best_known_reduction_ms) == pytest.approx((25.0, 400.5))
    verdict = gate(report, None, GateRules())
    assert _failed(verdict) == {"min_fraction_of_best_known": ["7-21/chain/steady"]}
    [check] = [c for c in verdict.checks if c.rule == "min_fraction_of_best_known"]
    assert "10.000" in check.detail and "0.062 pooled" in check.detail


def test_a_policy_good_on_every_seed_passes_both_the_mean_and_the_pooled_fraction() -> None:
    records = []
    for seed in range(5):
        records += [
            _record(seed, "policy", 405.0),
            _record(seed, "best_known", 400.0),
            _record(seed, "noop", 500.0),
            _record(seed, "random", 520.0),
        ]
    verdict = gate(EvaluationReport(groups=summarize(records)), None, GateRules())
    assert verdict.passed, verdict.reasons


def test_a_report_written_before_the_totals_loads_and_is_gated_on_the_mean_as_before() -> None:
    dumped = _one_lucky_seed().model_dump(mode="json")
    for group in dumped["groups"]:
        for stats in group["methods"].values():
            del stats["total_reduction_ms"], stats["total_best_known_reduction_ms"]
    old = EvaluationReport.model_validate(dumped)
    assert old.groups[0].methods["policy"].total_reduction_ms is None
    assert gate(old, None, GateRules()).passed


def _stats(method: str, end_ms: float, seeds: int = 5, episodes: int = 10) -> MethodStats:
    e = Estimate(mean=end_ms, ci_low=end_ms, ci_high=end_ms)
    one = Estimate(mean=0.95, ci_low=0.95, ci_high=0.95)
    return MethodStats(
        method=method,
        episodes=episodes,
        seeds=seeds,
        mean_end_latency_ms=e,
        p95_end_latency_ms=end_ms,
        mean_start_latency_ms=500.0,
        reduction_pct=Estimate(mean=100 * (1 - end_ms / 500), ci_low=0, ci_high=0),
        fraction_of_best_known=one,
        moves_per_episode=Estimate(mean=3.0, ci_low=3.0, ci_high=3.0),
        decision_ms_per_move=0.1,
        invalid_actions=0,
    )


def _report(
    families: tuple[str, ...], policy_ms: float = 200.0, seeds: int = 5, episodes: int = 10
) -> EvaluationReport:
    ends = {"noop": 500.0, "random": 450.0, "greedy": 190.0, "best_known": 180.0}
    groups = []
    for family in families:
        methods = {"policy": _stats("policy", policy_ms, seeds, episodes)}
        methods.update({m: _stats(m, v, seeds, episodes) for m, v in ends.items()})
        groups.append(GroupReport(scenario="13-29", workload="chain", family=family, methods=methods))
    return EvaluationReport(groups=groups)


def test_a_candidate_that_skips_a_family_the_incumbent_was_judged_on_is_refused_naming_it() -> None:
    incumbent = _report(("steady", "node_failure", "traffic_surge"), policy_ms=300.0)
    verdict = gate(_report(("steady",)), incumbent, GateRules())
    assert _failed(verdict) == {"not_worse_than_incumbent": ["13-29/chain/node_failure", "13-29/chain/traffic_surge"]}
    assert "the candidate was not" in verdict.reasons[0]
    same = gate(_report(("steady", "node_failure", "traffic_surge")), incumbent, GateRules())
    assert same.passed, same.reasons
    more = gate(_report(("steady", "node_failure")), _report(("steady",), policy_ms=300.0), GateRules())
    assert more.passed, more.reasons  # judging the candidate on more than the incumbent is fine


def test_min_seeds_refuses_a_one_seed_report_and_is_off_in_the_model_default() -> None:
    tiny = _report(("steady",), seeds=1, episodes=1)
    assert gate(tiny, None, GateRules()).passed  # default 1: existing rules files judge as before
    verdict = gate(tiny, None, GateRules(min_seeds=5))
    assert _failed(verdict) == {"min_seeds": ["13-29/chain/steady"]}
    assert "1 evaluation seeds, need >= 5" in verdict.reasons[0]
    assert gate(_report(("steady",)), None, GateRules(min_seeds=5)).passed
    for name in ("default", "quickstart"):
        assert load_gate_rules(DATA / "gate" / f"{name}.json").min_seeds >= 1


@pytest.mark.parametrize(
    ("reduction_ms", "best_ms", "expected"),
    [
        (0.0, 2e-9, 1.0),  # best-known's gain is float noise: left as it was scores full marks
        (-5e-7, 2e-9, 1.0),
        (3e-9, 2e-9, 1.0),
        (-1.0, 2e-9, 0.0),  # made worse: never full marks
        (0.0, 0.0, 1.0),
        (50.0, 100.0, 0.5),  # a real best-known gain: the plain ratio, as before
        (0.0, 2e-6, 0.0),
    ],
)
def test_a_best_known_gain_within_the_no_gain_tolerance_counts_as_nothing_to_gain(
    reduction_ms: float, best_ms: float, expected: float
) -> None:
    assert fraction_of_best_known(reduction_ms, best_ms) == pytest.approx(expected)


def test_more_episodes_per_seed_than_its_reset_seeds_are_refused_before_any_work() -> None:
    args = (scenario_dir("7-21"), [workload_file("chain")], ["steady"], [0])
    with pytest.raises(ValueError, match=r"at most 10000 per seed.*got 10001"):
        check_evaluation(*args, 10001)  # type: ignore[arg-type]
    check_evaluation(*args, 10000)  # type: ignore[arg-type]


@pytest.mark.slow
def test_a_candidate_that_skips_an_incumbent_family_is_refused_whether_or_not_the_incumbent_is_played_again() -> None:
    """As the pipeline and ``reach package`` gate (flows.release.packaging.incumbent_like_for_like): an incumbent
    judged on other seeds is played again on the candidate's seeds, on the candidate's families plus those its
    stored report covers for this cluster; so a candidate that skipped one is refused naming it, as it is when the
    stored report is alike; a candidate on the incumbent's families passes."""
    from flows.evaluation import evaluate
    from flows.release.packaging import Incumbent, incumbent_like_for_like

    general = DATA / "policies" / "general-v4"
    scenario, workload = scenario_dir("7-21"), workload_file("chain")
    rules = GateRules(min_fraction_of_best_known=0.0, beat_noop=False, beat_random=False)
    candidate, _ = evaluate(scenario, [workload], general, [1], 1, ["steady"])
    stored, _ = evaluate(scenario, [workload], general, [0], 1, ["steady", "traffic_surge"])
    found = Incumbent("reach-policy-service:old", str(general), stored)
    again, note = incumbent_like_for_like(found, candidate, scenario, [workload])
    assert again is not None and "evaluated again" in note
    assert {g.family for g in again.groups} == {"steady", "traffic_surge"}
    assert _failed(gate(candidate, again, rules)) == {"not_worse_than_incumbent": ["7-21/chain/traffic_surge"]}
    both, _ = evaluate(scenario, [workload], general, [1], 1, ["steady", "traffic_surge"])
    again, _ = incumbent_like_for_like(found, both, scenario, [workload])
    assert again is not None and gate(both, again, rules).passed
    alike = both
    same_states = Incumbent("reach-policy-service:old", str(general), alike)
    kept, note = incumbent_like_for_like(same_states, candidate, scenario, [workload])
    assert kept is alike and note == ""
    assert _failed(gate(candidate, kept, rules)) == {"not_worse_than_incumbent": ["7-21/chain/traffic_surge"]}
