"""The latency read against a real Prometheus: the value and the age it is judged by belong to one sample.

A stand-in exporter serves, as the latency, the wall time at which it was scraped, and a real Prometheus
scrapes it every 500 ms. A read that paired a value with the ``timestamp()`` of another sample (two queries
with a scrape between them) would show a value one scrape away from its sample's timestamp. The read is one
query (:func:`migrator.metrics.paired_query`), so in about two thousand reads across 10 scrapes every value is
its own sample's scrape time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from migrator.metrics import PrometheusMetrics
from tests.migrator.e2e_support import prometheus_binary, running_prometheus, serving_metrics

SCRAPE = 0.5  # seconds between scrapes: a straddled pair is this far off, an exporter's answer far less
READ_FOR_S = 5.0  # reads back to back for this long: about 10 scrapes

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def scrape_time_exporter() -> Iterator[str]:
    """``/metrics`` whose latency gauge is the Unix time of the scrape (and a second series, 10 s behind)."""

    def lines() -> list[str]:
        now = time.time()
        return [
            "# TYPE reach_app_latency_ms gauge",
            f'reach_app_latency_ms{{pod="a"}} {now:.6f}',
            f'reach_app_latency_ms{{pod="b"}} {now - 10:.6f}',
        ]

    with serving_metrics(lines) as target:
        yield target


@pytest.fixture(scope="module")
def prometheus(scrape_time_exporter: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder: Path = tmp_path_factory.mktemp("prometheus-pairing")
    interval = f"{int(SCRAPE * 1000)}ms"
    with running_prometheus(prometheus_binary(), folder, "scrape-time", scrape_time_exporter, interval) as url:
        yield url


def test_every_latency_read_is_paired_with_its_own_samples_timestamp(prometheus: str) -> None:
    metrics = PrometheusMetrics(prometheus, 'reach_app_latency_ms{pod="a"}', "unused", max_age_s=30.0)
    deadline = time.monotonic() + 30
    while metrics.read_latency().value_ms is None:  # the first scrape
        assert time.monotonic() < deadline, f"no latency from the real Prometheus: {metrics.last_error}"
        time.sleep(0.1)
    began, offsets = time.monotonic(), []
    while time.monotonic() - began < READ_FOR_S:
        reading = metrics.read_latency()
        assert reading.value_ms is not None and reading.sampled_at_s is not None, reading
        offsets.append(reading.value_ms - reading.sampled_at_s)  # scrape time served minus the sample's timestamp
    spanned_s = time.monotonic() - began
    assert spanned_s > 4 * SCRAPE, "the reads did not span several scrapes: the check could not fail"
    # The exporter answers a few ms after the scrape starts (the sample's timestamp); a value paired with the
    # next or previous sample's timestamp would be a whole scrape interval off.
    worst = max(offsets, key=abs)
    assert abs(worst) < SCRAPE / 2, f"a value {worst:+.3f} s from its sample's timestamp in {len(offsets)} reads"


def test_the_first_fresh_series_is_read_from_a_real_prometheus(prometheus: str) -> None:
    """Two series in one answer: each value is judged by its own series' age (b's value is 10 s behind a's)."""
    metrics = PrometheusMetrics(prometheus, "reach_app_latency_ms", "unused", max_age_s=30.0)
    deadline = time.monotonic() + 30
    reading = metrics.read_latency()
    while reading.value_ms is None:
        assert time.monotonic() < deadline, f"no latency from the real Prometheus: {metrics.last_error}"
        time.sleep(0.1)
        reading = metrics.read_latency()
    assert reading.sampled_at_s is not None
    offsets = (reading.value_ms - reading.sampled_at_s, reading.value_ms + 10 - reading.sampled_at_s)
    assert min(abs(offset) for offset in offsets) < SCRAPE / 2
