"""Read header-driven CSV profiles into the profile table.

A CSV profile has a header line naming its columns, in any order: ``service``, where it ran
(``cpu_type``, or ``node_type`` / ``node`` mapped to a CPU type through the scenario and the
optional node table), ``execution_time_ms`` and optionally ``count`` (the row is the mean of that
many measurements; default 1). Other columns are ignored. Structural problems (empty file, missing
columns, a row with more fields than the header, unparsable or non-finite numbers such as ``nan``,
``inf`` or ``1e400``, unknown nodes) raise :class:`ProfileError` at once; value problems (empty
cells, negative or absurd times) are left to the validation step, which reports every offending
row. Used by :mod:`flows.profiles.ingest`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.profiles.errors import ProfileError
from flows.profiles.hosts import CpuTypeResolver
from flows.profiles.table import concat, make_table

if TYPE_CHECKING:
    import pandas as pd

LOCATION_COLUMNS = ("cpu_type", "node_type", "node")


def _check_field_counts(path: Path, text: str) -> None:
    """A row with more fields than the header (often a trailing comma) would shift pandas' columns."""
    reader = csv.reader(io.StringIO(text), skipinitialspace=True)
    header: list[str] | None = None
    for row in reader:
        if not row:  # blank line, skipped as pandas does
            continue
        if header is None:
            header = row
        elif len(row) > len(header):
            raise ProfileError(
                f"{path}:{reader.line_num}: {len(row)} fields but the header names {len(header)} columns; "
                "delete the extra value (or the trailing comma), or name the column in the header"
            )


def _read_frame(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise ProfileError(f"{path}: file not found; pass an existing CSV profile")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ProfileError(
            f"{path}: not a readable CSV file ({err}); expected UTF-8 comma-separated values with a header"
        ) from None
    try:
        _check_field_counts(path, text)
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, skipinitialspace=True, index_col=False)
    except pd.errors.EmptyDataError:
        raise ProfileError(
            f"{path}: file is empty; expected a header line such as "
            "'service,cpu_type,execution_time_ms' and one row per measurement"
        ) from None
    except (pd.errors.ParserError, csv.Error) as err:
        raise ProfileError(
            f"{path}: not a readable CSV file ({err}); expected comma-separated values with a header"
        ) from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return frame


def _check_header(path: Path, columns: Sequence[str]) -> str:
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
    frame = _read_frame(path)
    location = _check_header(path, list(frame.columns))
    if frame.empty:
        raise ProfileError(f"{path}: no measurements below the header; add one row per measurement")
    rows: list[dict[str, Any]] = []
    for index, record in enumerate(frame.to_dict("records")):
        where = f"{path}:{index + 2}"
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
