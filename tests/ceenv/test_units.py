"""The one unit parser: every form of MODEL.md §1's table, and clear rejections."""

from __future__ import annotations

import pytest

from ceenv.units import (
    UnitError,
    parse_bandwidth_mbps,
    parse_bytes,
    parse_cpu_cores,
    parse_fraction,
    parse_time_ms,
)


@pytest.mark.parametrize(
    ("raw", "cores"), [("700m", 0.7), ("2", 2.0), ("1.5", 1.5), (2, 2.0), (0.5, 0.5), ("1500m", 1.5)]
)
def test_cpu_quantities_parse_to_cores(raw: object, cores: float) -> None:
    assert parse_cpu_cores(raw) == pytest.approx(cores)


@pytest.mark.parametrize(
    ("raw", "size"),
    [
        ("700M", 700e6),
        ("2G", 2e9),
        ("27.68G", 27.68e9),
        ("512Mi", 512 * 2**20),
        ("1Gi", 2**30),
        ("0.1M", 1e5),
        ("100K", 1e5),
        ("1Mi", 2**20),
        ("100", 100.0),
    ],
)
def test_byte_quantities_use_decimal_and_binary_suffixes(raw: str, size: float) -> None:
    assert parse_bytes(raw) == pytest.approx(size)


@pytest.mark.parametrize(
    ("raw", "ms"), [("7ms", 7.0), ("0.1ms", 0.1), ("1.5s", 1500.0), ("250us", 0.25), ("250µs", 0.25), (12, 12.0)]
)
def test_times_parse_to_milliseconds(raw: object, ms: float) -> None:
    assert parse_time_ms(raw) == pytest.approx(ms)


@pytest.mark.parametrize(
    ("raw", "mbps"), [("500m", 500.0), ("200M", 200.0), ("1G", 1000.0), ("1g", 1000.0), ("100", 100.0), (100, 100.0)]
)
def test_nic_bandwidth_parses_to_megabits(raw: object, mbps: float) -> None:
    assert parse_bandwidth_mbps(raw) == pytest.approx(mbps)


@pytest.mark.parametrize(
    ("parse", "raw", "fragment"),
    [
        (parse_cpu_cores, "seven", "expected a CPU quantity"),
        (parse_cpu_cores, "-1", "non-negative"),
        (parse_bytes, "3X", "unknown byte quantity suffix 'X'"),
        (parse_time_ms, "-5ms", "non-negative"),
        (parse_time_ms, "5 parsecs", "unknown duration suffix .parsecs."),
        (parse_time_ms, None, "expected a duration"),
        (parse_time_ms, True, "expected a duration"),
        (parse_bandwidth_mbps, "1T", "unknown bandwidth suffix"),
        (parse_fraction, "1.5", "between 0 and 1"),
        (parse_time_ms, "nan", "expected a duration"),
    ],
)
def test_bad_quantities_are_rejected_with_what_was_expected(parse: object, raw: object, fragment: str) -> None:
    with pytest.raises(UnitError, match=fragment):
        parse(raw)  # type: ignore[operator]
