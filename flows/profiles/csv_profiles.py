"""Read header-driven CSV profiles into the profile table.

A CSV profile has a header line naming its columns, in any order: ``service``, where it ran
(``cpu_type``, or ``node_type`` / ``node`` mapped to a CPU type through the scenario and the
optional node table), ``execution_time_ms`` and optionally ``count`` (the row is the mean of that
many measurements; default 1). Other columns are ignored. Structural problems (empty file, missing
columns, a row with more fields than the header, unparsable, non-finite or not plain numbers such
as ``nan``, ``inf``, ``1e400`` or ``1_000``, unknown nodes) raise :class:`ProfileError` at once,
naming the line of the file (blank lines counted); value problems (empty cells, negative or absurd
times) are left to the validation step, which reports every offending row. Used by
:mod:`flows.profiles.ingest`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.profiles.csv_rows import csv_records
from flows.profiles.errors import ProfileError
from flows.profiles.hosts import CpuTypeResolver
from flows.profiles.table import concat, make_table

if TYPE_CHECKING:
    import pandas as pd

LOCATION_COLUMNS = ("cpu_type", "node_type", "node")
USED_COLUMNS = ("service", "execution_time_ms", "count", *LOCATION_COLUMNS)
# What a "plain number" is: digits, an optional decimal point, an optional exponent. float() also
# takes "1_000", "infinity" and non-ASCII digits, which a profile should not silently accept.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


Record = tuple[int, dict[str, str]]


def _read_records(path: Path) -> tuple[list[str], list[Record]]:
    """The header (stripped, lower case) and each row as ``(line, {column: text})``."""
    if not path.is_file():
        raise ProfileError(f"{path}: file not found; pass an existing CSV profile")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ProfileError(
            f"{path}: not a readable CSV file ({err}); expected UTF-8 comma-separated values with a header"
        ) from None
    records = csv_records(path, text)
    first = next(records, None)
    if first is None:
        raise ProfileError(
            f"{path}: file is empty; expected a header line such as "
            "'service,cpu_type,execution_time_ms' and one row per measurement"
        )
    header = [name.strip().lower() for name in first[1]]
    rows: list[Record] = []
    for line, fields in records:
        if len(fields) > len(header):  # often a trailing comma; it would shift the columns
            raise ProfileError(
                f"{path}:{line}: {len(fields)} fields but the header names {len(header)} columns; "
                "delete the extra value (or the trailing comma), or name the column in the header"
            )
        rows.append((line, dict(zip(header, [*fields, *[""] * (len(header) - len(fields))], strict=True))))
    return header, rows


def _check_header(path: Path, columns: Sequence[str]) -> str:
    twice = sorted({c for c in columns if c in USED_COLUMNS and columns.count(c) > 1})
    if twice:
        raise ProfileError(
            f"{path}: the header names the column(s) {twice} more than once; delete or rename the copies"
        )
    missing = [c for c in ("service", "execution_time_ms") if c not in columns]
    location = next((c for c in LOCATION_COLUMNS if c in columns), None)
    if missing or location is None:
        need = [*missing, *([] if location else ["cpu_type (or node_type, or node)"])]
        raise ProfileError(
            f"{path}: header {list(columns)} lacks the column(s) {need}; write a header line such as "
            "'service,cpu_type,execution_time_ms[,count]'"
        )
    return location


def _number(text: str, where: str, column: str) -> float:
    if text.strip() == "":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise ProfileError(
            f"{where}: column {column!r}: not a number: {text!r}; write a plain number such as 12.5"
        ) from None
    if not math.isfinite(value):
        raise ProfileError(
            f"{where}: column {column!r}: not a finite number: {text!r}; write a plain number such as 12.5"
        )
    if not _PLAIN_NUMBER.fullmatch(text.strip()):
        raise ProfileError(
            f"{where}: column {column!r}: not a plain number: {text!r}; write ASCII digits with an optional "
            "decimal point and no separators, such as 1000 or 12.5"
        )
    return value


def _cpu_type(text: str, location: str, where: str, resolver: CpuTypeResolver) -> int | None:
    if text.strip() == "":
        return None
    if location == "cpu_type":
        value = _number(text, where, "cpu_type")
        if value != int(value) or value < 0:
            raise ProfileError(
                f"{where}: column 'cpu_type': {text!r} is not an integer >= 0; use the cpu_type of nodes.json"
            )
        return int(value)
    cpu_type = resolver.cpu_type_of(text.strip())
    if cpu_type is None:
        raise ProfileError(
            f"{where}: column {location!r}: unknown {location} {text!r}; use one of "
            f"{resolver.known_names()} or add it to the --node-types table"
        )
    return cpu_type


def read_csv_profile(path: Path, resolver: CpuTypeResolver) -> pd.DataFrame:
    """One CSV file → profile table (rows keep ``file:line`` as their source)."""
    header, records = _read_records(path)
    location = _check_header(path, header)
    if not records:
        raise ProfileError(f"{path}: no measurements below the header; add one row per measurement")
    rows: list[dict[str, Any]] = []
    for line, record in records:
        where = f"{path}:{line}"
        service = str(record["service"]).strip()
        rows.append(
            {
                "service": service or None,
                "cpu_type": _cpu_type(str(record[location]), location, where, resolver),
                "execution_time_ms": _number(str(record["execution_time_ms"]), where, "execution_time_ms"),
                "count": _number(str(record.get("count", "1")), where, "count") if "count" in record else 1.0,
                "source": where,
            }
        )
    return make_table(rows)


def read_csv_profiles(paths: Sequence[Path], resolver: CpuTypeResolver) -> pd.DataFrame:
    """Several CSV files → one profile table."""
    return concat(read_csv_profile(path, resolver) for path in paths)
