"""The experiments' statistics on synthetic series: the t-interval, the time to recover, the mesh's window numbers."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest

from flows.loop.stats import (
    MeshCounters,
    histogram_quantile,
    recovery_time_s,
    reduction_pct,
    t_interval,
    window_numbers,
)


def test_the_interval_is_the_student_t_interval_over_the_seeds() -> None:
    # mean 10, sample sd 2, n = 4: half width t(0.975, 3) · 2 / 2 = 3.182
    interval = t_interval([8.0, 10.0, 12.0, 10.0 + 0.0])
    sd = math.sqrt(((8 - 10) ** 2 + (12 - 10) ** 2) / 3)
    half = 3.182 * sd / 2
    assert interval.mean == pytest.approx(10.0)
    assert (interval.low, interval.high) == (pytest.approx(10.0 - half), pytest.approx(10.0 + half))
    assert interval.above_zero and interval.count == 4


def test_the_t_quantiles_match_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    from flows.loop.stats import t_quantile_975

    for df in (1, 2, 4, 9, 30):
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-3)


@pytest.mark.parametrize(
    ("df", "quantile"),
    [(31, 2.039513), (40, 2.021075), (60, 2.000298), (120, 1.979930), (1000, 1.962339)],
)
def test_the_t_quantiles_above_the_table_are_students_not_the_normals(df: int, quantile: float) -> None:
    from flows.loop.stats import t_quantile_975

    assert t_quantile_975(df) == pytest.approx(quantile, abs=1e-3)


def test_the_t_quantiles_fall_steadily_from_the_table_into_the_series() -> None:
    from flows.loop.stats import t_quantile_975

    values = [t_quantile_975(df) for df in range(1, 2001)]
    assert all(later < earlier for earlier, later in itertools.pairwise(values))
    assert 0 < t_quantile_975(30) - t_quantile_975(31) < 0.005  # no jump at the table's end
    # Many pairs: the interval's half width uses t(0.975, n − 1), not the normal's 1.96.
    interval = t_interval([float(k % 2) for k in range(41)])  # mean 20/41, n = 41, df = 40
    sd = statistics.stdev([float(k % 2) for k in range(41)])
    assert interval.high == pytest.approx(interval.mean + 2.021075 * sd / math.sqrt(41), abs=1e-4)


def test_an_interval_that_straddles_zero_is_not_above_zero_and_one_pair_has_none() -> None:
    assert not t_interval([-5.0, 6.0, 1.0]).above_zero
    single = t_interval([4.0])
    assert (single.low, single.high) == (None, None) and not single.above_zero and "no CI" in single.text()
    with pytest.raises(ValueError, match="seeded pair"):
        t_interval([])


def test_reduction_is_in_percent_of_the_default_scheduler() -> None:
    assert reduction_pct(200.0, 180.0) == pytest.approx(10.0)
    assert reduction_pct(200.0, 220.0) == pytest.approx(-10.0)
    with pytest.raises(ValueError, match="default scheduler"):
        reduction_pct(0.0, 1.0)


def series(values: list[float], start_s: float = 0.0) -> list[tuple[float, float]]:
    return [(start_s + i, v) for i, v in enumerate(values)]


def test_recovery_is_the_start_of_the_last_stretch_within_the_band() -> None:
    # level 100 before the event at 10 s; a spike, one dip into the band that does not last, then back for good
    values = [100.0] * 10 + [300, 250, 105, 180, 150, 108, 100, 95, 101, 99]
    assert recovery_time_s(series(values), event_s=10.0, tolerance=0.10) == pytest.approx(5.0)


def test_a_run_that_never_leaves_the_band_recovers_at_once_and_one_that_ends_above_never() -> None:
    assert recovery_time_s(series([100.0] * 10 + [104.0] * 10), event_s=10.0) == 0.0
    assert recovery_time_s(series([100.0] * 10 + [200.0, 105.0, 150.0]), event_s=10.0) is None


def test_recovery_needs_samples_before_and_after_the_event() -> None:
    with pytest.raises(ValueError, match="before the event"):
        recovery_time_s(series([100.0] * 5, start_s=20.0), event_s=10.0)
    with pytest.raises(ValueError, match="after the event"):
        recovery_time_s(series([100.0] * 5), event_s=10.0)


INF = float("inf")


def counters(
    buckets: dict[float, float], sum_ms: float, ok: dict[float, float] | None = None, ok_sum_ms: float | None = None
) -> MeshCounters:
    ok = buckets if ok is None else ok
    return MeshCounters(buckets, sum_ms, buckets[INF], ok, ok[INF], sum_ms if ok_sum_ms is None else ok_sum_ms)


def test_window_numbers_come_from_the_difference_of_two_histogram_reads() -> None:
    # before the event: 100 requests; by the end 300 more: 100 ≤ 50 ms, 100 in (50, 100], 100 in (100, 250]
    start = counters({50.0: 90, 100.0: 100, 250.0: 100, INF: 100}, 4000.0)
    end = counters({50.0: 190, 100.0: 300, 250.0: 400, INF: 400}, 4000.0 + 300 * 90.0)
    numbers = window_numbers(start, end, qos_threshold_ms=100.0)
    assert numbers.requests == 300
    assert numbers.mean_ms == pytest.approx(90.0)
    assert numbers.over_qos == 100 and numbers.over_qos_pct == pytest.approx(100 / 3)
    assert numbers.failed == 0
    # p95 rank 285 of 300: inside (100, 250], 85 of its 100 → 100 + 150 · 0.85
    assert numbers.p95_ms == pytest.approx(227.5)


def test_a_request_that_fails_fast_misses_qos_though_it_lowers_the_mean() -> None:
    # after the event 200 requests ≤ 50 ms, of which 50 failed (a service without endpoints: 500 at once)
    start = counters({50.0: 0, 100.0: 0, INF: 0}, 0.0)
    end = counters({50.0: 200, 100.0: 200, INF: 200}, 200 * 10.0, ok={50.0: 150, 100.0: 150, INF: 150})
    numbers = window_numbers(start, end, qos_threshold_ms=100.0)
    assert numbers.mean_ms == pytest.approx(10.0)
    assert (numbers.failed, numbers.over_qos) == (50, 50)
    assert numbers.failed_pct == pytest.approx(25.0)


def test_the_successful_requests_mean_leaves_out_the_failures_that_lower_istios_mean() -> None:
    # 150 requests succeeded at 12 ms each, 50 failed at once (2 ms): Istio's mean 9.5 ms, the successful 12 ms
    start = counters({50.0: 10, 100.0: 10, INF: 10}, 100.0, ok_sum_ms=100.0)
    end = counters(
        {50.0: 210, 100.0: 210, INF: 210}, 100.0 + 150 * 12.0 + 50 * 2.0,
        ok={50.0: 160, 100.0: 160, INF: 160}, ok_sum_ms=100.0 + 150 * 12.0,
    )  # fmt: skip
    numbers = window_numbers(start, end, qos_threshold_ms=100.0)
    assert numbers.mean_ms == pytest.approx(9.5)
    assert numbers.ok_mean_ms == pytest.approx(12.0)
    none_succeeded = counters({50.0: 20, 100.0: 20, INF: 20}, 140.0, ok={50.0: 10, 100.0: 10, INF: 10}, ok_sum_ms=100.0)
    assert window_numbers(start, none_succeeded, qos_threshold_ms=100.0).ok_mean_ms is None


def test_the_qos_threshold_must_be_a_bucket_bound() -> None:
    same = counters({50.0: 1, 100.0: 2, INF: 2}, 10.0)
    with pytest.raises(ValueError, match="bucket bound"):
        window_numbers(same, same, qos_threshold_ms=80.0)


def test_histogram_quantile_follows_promql() -> None:
    assert histogram_quantile(0.5, {10.0: 0, 20.0: 10, INF: 10}) == pytest.approx(15.0)
    assert histogram_quantile(0.99, {10.0: 5, INF: 10}) == 10.0  # in +Inf: the highest finite bound
    assert histogram_quantile(0.5, {10.0: 0, INF: 0}) is None
    same = counters({100.0: 3, INF: 3}, 9.0)
    no_requests = window_numbers(same, same, 100.0)
    assert no_requests.mean_ms is None and no_requests.requests == 0 and no_requests.over_qos_pct is None


def test_failing_fast_is_not_a_recovery() -> None:
    from flows.loop.stats import served_series

    # level 100 before the event at 10 s; then every request fails (no mean) and later all fail fast while the
    # few successes are quick; from 16 s on nothing fails and the mean is back
    means = (
        [(float(t), 100.0) for t in range(10)]
        + [(13.0, 20.0), (14.0, 20.0)]
        + [(float(t), 102.0) for t in range(16, 20)]
    )
    shares = [(float(t), 0.0) for t in range(10)] + [(float(t), 1.0 if t < 13 else 0.5) for t in range(10, 16)]
    shares += [(float(t), 0.0) for t in range(16, 20)]
    series = served_series(means, shares)
    assert series[11] == (11.0, math.inf) and series[13] == (13.0, math.inf)
    assert recovery_time_s(series, event_s=10.0) == pytest.approx(6.0)
    assert recovery_time_s(means, event_s=10.0) == 0.0  # without it, failing fast looks like no harm at all
