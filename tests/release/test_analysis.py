"""The redeploy's analysis rule, table-driven: before/after samples, tolerance and minimum samples → verdict."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from flows.release.analysis import AnalysisParams, decide, summarise

URL = "http://127.0.0.1:9090"
FLAT_100 = [100.0] * 10


def params(**overrides: object) -> AnalysisParams:
    return AnalysisParams.model_validate({"prometheus_url": URL, "tolerance_pct": 5.0, "min_samples": 5, **overrides})


@pytest.mark.parametrize(
    ("name", "before", "after", "overrides", "outcome", "roll_back"),
    [
        ("same latency passes", FLAT_100, FLAT_100, {}, "passed", False),
        ("better latency passes", FLAT_100, [80.0] * 10, {}, "passed", False),
        ("worse within the tolerance passes", FLAT_100, [104.9] * 10, {}, "passed", False),
        ("worse beyond the tolerance fails", FLAT_100, [105.1] * 10, {}, "failed", True),
        ("zero tolerance fails on any increase", FLAT_100, [100.5] * 10, {"tolerance_pct": 0.0}, "failed", True),
        ("a wide tolerance keeps a worse policy", FLAT_100, [140.0] * 10, {"tolerance_pct": 50.0}, "passed", False),
        ("the median ignores one spike", FLAT_100, [100.0] * 9 + [900.0], {}, "passed", False),
        ("the mean does not ignore it", FLAT_100, [100.0] * 9 + [900.0], {"statistic": "mean"}, "failed", True),
        ("p95 sees the tail", FLAT_100, [100.0] * 8 + [300.0] * 2, {"statistic": "p95"}, "failed", True),
        ("too few new samples roll back", FLAT_100, [90.0] * 4, {}, "inconclusive", True),
        (
            "too few new samples kept on request",
            FLAT_100,
            [90.0] * 4,
            {"on_inconclusive": "keep"},
            "inconclusive",
            False,
        ),
        ("no new samples roll back", FLAT_100, [], {}, "inconclusive", True),
        ("an unmeasured incumbent keeps the new policy", [], [500.0] * 10, {}, "inconclusive", False),
        ("non-finite samples do not count", FLAT_100, [math.nan] * 6 + [90.0] * 4, {}, "inconclusive", True),
        ("exactly min_samples is enough", [100.0] * 5, [120.0] * 5, {}, "failed", True),
    ],
)
def test_verdict(
    name: str, before: list[float], after: list[float], overrides: dict[str, object], outcome: str, roll_back: bool
) -> None:
    verdict = decide(before, after, params(**overrides))
    assert (verdict.outcome, verdict.roll_back) == (outcome, roll_back), verdict.reasons
    assert verdict.reasons and verdict.summary().startswith(f"analysis {outcome}: ")


def test_a_failed_verdict_names_both_figures_the_limit_and_the_change() -> None:
    verdict = decide(FLAT_100, [150.0] * 10, params())
    text = verdict.summary()
    assert "150.00 ms under the new policy vs 100.00 ms under the incumbent" in text
    assert "limit 105.00 ms" in text and "rolling back" in text
    assert verdict.change_pct == pytest.approx(50.0)
    assert (verdict.before_samples, verdict.after_samples) == (10, 10)


def test_an_inconclusive_verdict_says_which_side_is_short() -> None:
    verdict = decide(FLAT_100, [90.0, 91.0], params())
    assert any("new policy: 2 samples, fewer than min_samples=5" in r for r in verdict.reasons)
    assert verdict.after_ms == pytest.approx(90.5)


@pytest.mark.parametrize(("statistic", "expected"), [("mean", 5.5), ("median", 5.5), ("p95", 10.0)])
def test_statistics(statistic: str, expected: float) -> None:
    assert summarise([float(x) for x in range(1, 11)], statistic) == pytest.approx(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", [{"tolerance_pct": -1}, {"min_samples": 0}, {"period_s": 0}, {"statistic": "max"}, {"unknown": 1}]
)
def test_bad_parameters_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        params(**bad)
