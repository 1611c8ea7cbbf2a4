"""The gate: a pure function of candidate report, incumbent report and rules; table-driven cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.evaluation.gate import GateRules, gate, load_gate_rules
from flows.evaluation.report import Estimate, EvaluationReport, GroupReport, MethodStats
from flows.training.config import ConfigError

DATA = Path(__file__).resolve().parents[2] / "data"


def _stats(
    method: str, end_ms: float, fraction: float = 0.5, invalid: int = 0, start_ms: float = 500.0, episodes: int = 10
) -> MethodStats:
    e = lambda v: Estimate(mean=v, ci_low=v, ci_high=v)  # noqa: E731
    return MethodStats(
        method=method,
        episodes=episodes,
        seeds=5,
        mean_end_latency_ms=e(end_ms),
        p95_end_latency_ms=end_ms,
        mean_start_latency_ms=start_ms,
        reduction_pct=e(100 * (1 - end_ms / 500)),
        fraction_of_best_known=e(fraction),
        moves_per_episode=e(3.0),
        decision_ms_per_move=0.1,
        invalid_actions=invalid,
    )


def _report(
    policy_ms: float = 200.0,
    fraction: float = 0.95,
    invalid: int = 0,
    workloads: tuple[str, ...] = ("chain",),
    start_ms: float = 500.0,
    episodes: int = 10,
    **baselines_ms: float,
) -> EvaluationReport:
    ends = {"noop": 500.0, "random": 450.0, "greedy": 190.0, "best_known": 180.0, **baselines_ms}
    groups = []
    for w in workloads:
        methods = {"policy": _stats("policy", policy_ms, fraction, invalid, start_ms, episodes)}
        methods.update({m: _stats(m, v) for m, v in ends.items()})
        groups.append(GroupReport(scenario="13-29", workload=w, family="steady", methods=methods))
    return EvaluationReport(groups=groups)


def _failed(verdict: Any) -> set[str]:
    return {c.rule for c in verdict.checks if not c.passed}


CASES = [
    ("passes_all_default_rules", _report(), None, GateRules(), set()),
    (
        "fails_when_not_beating_noop",
        _report(policy_ms=500.0, fraction=0.95, random=600.0),
        None,
        GateRules(),
        {"beat_noop"},
    ),
    ("fails_when_not_beating_random", _report(random=150.0), None, GateRules(), {"beat_random"}),
    ("fails_below_the_best_known_fraction", _report(fraction=0.8), None, GateRules(), {"min_fraction_of_best_known"}),
    ("fails_on_any_invalid_action", _report(invalid=1), None, GateRules(), {"max_invalid_actions"}),
    (
        "fails_when_worse_than_incumbent_beyond_tolerance",
        _report(policy_ms=210.0),
        _report(policy_ms=200.0),
        GateRules(),
        {"not_worse_than_incumbent"},
    ),
    (
        "passes_when_worse_than_incumbent_within_tolerance",
        _report(policy_ms=201.0),
        _report(policy_ms=200.0),
        GateRules(),
        set(),
    ),
    ("passes_without_incumbent_on_first_deploy", _report(), None, GateRules(require_incumbent=False), set()),
    (
        "fails_without_incumbent_when_required",
        _report(),
        None,
        GateRules(require_incumbent=True),
        {"not_worse_than_incumbent"},
    ),
    (
        "fails_when_incumbent_shares_no_group",
        _report(),
        _report(workloads=("aggregator_parallel",)),
        GateRules(),
        {"not_worse_than_incumbent"},
    ),
    (
        "fails_when_the_incumbent_was_evaluated_on_other_start_states",
        _report(policy_ms=150.0),
        _report(policy_ms=200.0, start_ms=480.0),  # better candidate, but not like for like
        GateRules(),
        {"not_worse_than_incumbent"},
    ),
    (
        "fails_when_the_incumbent_ran_other_episode_counts",
        _report(policy_ms=150.0),
        _report(policy_ms=200.0, episodes=20),
        GateRules(),
        {"not_worse_than_incumbent"},
    ),
    ("ignores_greedy_by_default", _report(greedy=150.0), None, GateRules(), set()),
    (
        "fails_against_greedy_when_the_rule_is_on",
        _report(greedy=150.0),
        None,
        GateRules(beat_greedy=True),
        {"beat_greedy"},
    ),
    (
        "fails_if_any_workload_loses_to_noop",
        _report(workloads=("chain", "aggregator_parallel"), noop=199.0),
        None,
        GateRules(),
        {"beat_noop"},
    ),
    (
        "passes_a_tie_with_noop_where_nothing_can_be_gained",
        _report(policy_ms=500.0, fraction=1.0, random=500.0, greedy=500.0, best_known=500.0),
        None,
        GateRules(),
        set(),
    ),
    (
        "fails_a_tie_with_noop_where_the_best_known_gains",
        _report(policy_ms=500.0, fraction=1.0, random=500.0, greedy=500.0, best_known=499.0),
        None,
        GateRules(),
        {"beat_noop", "beat_random"},
    ),
]


@pytest.mark.parametrize(
    ("name", "report", "incumbent", "rules", "expected_failures"), CASES, ids=[c[0] for c in CASES]
)
def test_gate_table(
    name: str,
    report: EvaluationReport,
    incumbent: EvaluationReport | None,
    rules: GateRules,
    expected_failures: set[str],
) -> None:
    verdict = gate(report, incumbent, rules)
    assert _failed(verdict) == expected_failures
    assert verdict.passed == (not expected_failures)
    assert len(verdict.reasons) == len(verdict.checks)
    assert all(line.startswith(("PASS", "FAIL")) for line in verdict.reasons)


def test_gate_refuses_a_report_without_policy_results() -> None:
    report = _report()
    del report.groups[0].methods["policy"]
    assert _failed(gate(report, None, GateRules())) == {"policy_evaluated"}


def test_gate_is_pure_and_deterministic() -> None:
    report, incumbent = _report(), _report(policy_ms=205.0)
    dumped = report.model_dump_json()
    assert gate(report, incumbent, GateRules()) == gate(report, incumbent, GateRules())
    assert report.model_dump_json() == dumped


def test_default_rules_file_is_valid_and_matches_the_documented_defaults() -> None:
    """The model's defaults, except that the default file asks for 5 evaluation seeds (a gate that passes a policy
    played on one seed says little; the pipeline and ``reach evaluate`` play 5 by default)."""
    assert load_gate_rules(DATA / "gate" / "default.json") == GateRules(min_seeds=5)


def test_bad_rules_file_names_the_file_field_and_value(tmp_path: Path) -> None:
    file = tmp_path / "rules.json"
    file.write_text(json.dumps({"min_fraction_of_best_known": -1, "beat_everyone": True}))
    with pytest.raises(ConfigError) as err:
        load_gate_rules(file)
    message = str(err.value)
    assert (
        str(file) in message
        and "min_fraction_of_best_known" in message
        and "-1" in message
        and "beat_everyone" in message
    )
