"""Precise, actionable errors for REACH-format input files.

Every loader in :mod:`ceenv` reports a malformed input as a :class:`ScenarioError` that names the
file, the JSON path inside it, the offending value and what was expected, so that a user can fix
the file without reading our code. The helpers here walk raw JSON while keeping the path.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ceenv.units import UnitError

T = TypeVar("T")

_MISSING = object()


class ScenarioError(ValueError):
    """A scenario, workload or placement file is malformed.

    Attributes name the file, the JSON path (``$.cluster_setup.cloud.tb-cloud-vm-8.count``), the
    value found and what was expected; ``str(err)`` is a one-line message a user can act on.
    """

    def __init__(self, file: str, path: str, problem: str, value: object = _MISSING, expected: str = "") -> None:
        self.file = file
        self.path = path
        self.problem = problem
        self.value = None if value is _MISSING else value
        self.expected = expected
        message = f"{file}: {path}: {problem}"
        if value is not _MISSING:
            shown = repr(value)
            message += f" (got {shown[:120] + '…' if len(shown) > 120 else shown})"
        if expected:
            message += f"; expected {expected}"
        super().__init__(message)


def child(path: str, key: str | int) -> str:
    """The JSON path of ``key`` under ``path`` (``$.a.b``, ``$.a[0]``, ``$.a["x.y"]``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if key and all(ch.isalnum() or ch in "-_" for ch in key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


class Reader:
    """Walks one JSON document and raises :class:`ScenarioError` with the file name attached."""

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, path: str, problem: str, value: object = _MISSING, expected: str = "") -> ScenarioError:
        return ScenarioError(self.file, path, problem, value, expected)

    def mapping(self, value: object, path: str, what: str = "an object") -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, "wrong type", value, what)
        return value

    def sequence(self, value: object, path: str, what: str = "a list") -> Sequence[Any]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise self.fail(path, "wrong type", value, what)
        return value

    def field(self, obj: Mapping[str, Any], key: str, path: str, what: str) -> Any:
        if key not in obj:
            raise self.fail(child(path, key), "missing field", expected=what)
        return obj[key]

    def unit(self, parse: Callable[[object], T], value: object, path: str) -> T:
        try:
            return parse(value)
        except UnitError as err:
            raise self.fail(path, f"unparsable quantity: {err}") from None

    def integer(self, value: object, path: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(path, "wrong value", value, f"an integer >= {minimum}")
        return value

    def number(self, value: object, path: str, what: str, positive: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, "wrong type", value, what)
        if value < 0 or (positive and value == 0):
            raise self.fail(path, "wrong value", value, what)
        return float(value)


def read_json(path: Path) -> Any:
    """Parse a JSON file, turning I/O and syntax errors into a :class:`ScenarioError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(str(path), "$", "file not found", expected="an existing file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ScenarioError(str(path), "$", f"cannot read file: {err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ScenarioError(
            str(path), "$", f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
