"""One parser for every quantity in REACH-format files (MODEL.md §1, units table).

Used by the scenario loader, the profile importers and the CLI. Every parser takes the raw
JSON value (a string such as ``"700m"`` or a bare number) and returns a float in the unit named
by the function: cores, bytes, milliseconds, bytes, megabits per second. A value that cannot be
parsed raises :class:`UnitError`, which says what was expected; callers add the file and path.
"""

from __future__ import annotations

import math
import re

_NUMBER = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_QUANTITY = re.compile(rf"^\s*(-?){_NUMBER}\s*([A-Za-zµ]*)\s*$")  # µ: "250µs"

_DECIMAL_SUFFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY_SUFFIX = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60}
_TIME_SUFFIX_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "min": 60e3, "h": 3600e3}
# Kubernetes CPU quantities: "m" is milli, bare numbers are cores.
_CPU_SUFFIX = {"": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9, "k": 1e3}
# NIC bandwidth in REACH's node types: m/M and bare numbers are megabits/s, g/G gigabits/s.
_BANDWIDTH_SUFFIX_MBPS = {"": 1.0, "m": 1.0, "M": 1.0, "g": 1e3, "G": 1e3, "k": 1e-3, "K": 1e-3}


class UnitError(ValueError):
    """A quantity string could not be parsed; the message names the value and the accepted forms."""


def _split(value: object, kind: str, examples: str) -> tuple[float, str]:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UnitError(f"expected a {kind} such as {examples}, got {value!r}")
    if isinstance(value, (int, float)):
        number, suffix = float(value), ""
    else:
        match = _QUANTITY.match(value)
        if match is None:
            raise UnitError(f"expected a {kind} such as {examples}, got {value!r}")
        sign, digits, suffix = match.groups()
        number = float(digits) * (-1.0 if sign else 1.0)
    if not math.isfinite(number):
        raise UnitError(f"expected a finite {kind}, got {value!r}")
    if number < 0:
        raise UnitError(f"expected a non-negative {kind}, got {value!r}")
    return number, suffix


def _scale(value: object, suffixes: dict[str, float], kind: str, examples: str) -> float:
    number, suffix = _split(value, kind, examples)
    factor = suffixes.get(suffix)
    if factor is None:
        accepted = ", ".join(repr(s) for s in suffixes if s) or "none"
        raise UnitError(f"unknown {kind} suffix {suffix!r} in {value!r}; accepted suffixes: {accepted}")
    return number * factor


def parse_cpu_cores(value: object) -> float:
    """Kubernetes CPU quantity (``700m``, ``2``, ``1.5``) → cores."""
    return _scale(value, _CPU_SUFFIX, "CPU quantity", "'700m', '2' or 1.5")


def cpu_millicores(cores: float) -> int:
    """Cores → whole millicores, the unit of free CPU in the simulator and on the wire."""
    return round(cores * 1000)


def parse_bytes(value: object) -> float:
    """Memory or data size (``700M``, ``27.68G``, ``512Mi``, ``100K``) → bytes (M = 10^6, Mi = 2^20)."""
    return _scale(value, {**_DECIMAL_SUFFIX, **_BINARY_SUFFIX}, "byte quantity", "'700M', '2G', '512Mi' or '0.1M'")


def parse_memory_bytes(value: object) -> float:
    """Memory quantity → bytes; an alias of :func:`parse_bytes` that names the intent."""
    return parse_bytes(value)


def parse_data_bytes(value: object) -> float:
    """Payload size of a call (``0.1M``, ``100K``, ``1Mi``) → bytes."""
    return parse_bytes(value)


def parse_time_ms(value: object) -> float:
    """Duration (``7ms``, ``0.1ms``, ``1.5s``, ``250us``; a bare number means ms) → milliseconds."""
    return _scale(value, {"": 1.0, **_TIME_SUFFIX_MS}, "duration", "'7ms', '1.5s' or '250us'")


def parse_bandwidth_mbps(value: object) -> float:
    """NIC bandwidth of a node type (``500m``, ``200M``, ``1G``, ``1g``, ``100``) → megabits/s."""
    return _scale(value, _BANDWIDTH_SUFFIX_MBPS, "bandwidth", "'500m', '200M', '1G' or 100")


def parse_fraction(value: object) -> float:
    """A utilisation fraction in [0, 1] (``"0.2"`` or 0.2)."""
    number, suffix = _split(value, "fraction", "'0' or 0.25")
    if suffix or number > 1.0:
        raise UnitError(f"expected a fraction between 0 and 1, got {value!r}")
    return number


def format_ms(value_ms: float) -> str:
    """Render milliseconds the way REACH files write them (``"7ms"``, ``"10.5ms"``)."""
    return f"{value_ms:.6g}ms"
