"""Map where a measurement ran (a node, a node type or a traced host) to the scenario's CPU type.

A :class:`CpuTypeResolver` answers ``cpu_type_of(name)`` from, in order: the user's node → CPU type
table (``--node-types``, JSON ``{"host": 0}`` or CSV ``node,cpu_type``), the scenario's node names
(``tb-cloud-vm-8-1``) and the scenario's node type names (``tb-cloud-vm-8``). Used by the CSV and
Jaeger readers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ceenv.scenario import Scenario
from flows.profiles.csv_rows import csv_records
from flows.profiles.errors import ProfileError

_PLAIN_INTEGER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class CpuTypeResolver:
    """Names of nodes, node types and hosts → CPU type (see the module docstring for the order)."""

    user_table: Mapping[str, int] = field(default_factory=dict)
    node_cpu_type: Mapping[str, int] = field(default_factory=dict)
    node_type_cpu_type: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def for_scenario(cls, scenario: Scenario, user_table: Mapping[str, int] | None = None) -> CpuTypeResolver:
        nodes = {n.name: n.cpu_type for n in scenario.nodes}
        types = {n.node_type: n.cpu_type for n in scenario.nodes}
        return cls(dict(user_table or {}), nodes, types)

    def cpu_type_of(self, name: str) -> int | None:
        for table in (self.user_table, self.node_cpu_type, self.node_type_cpu_type):
            if name in table:
                return table[name]
        return None

    def known_names(self) -> list[str]:
        return sorted({*self.user_table, *self.node_cpu_type, *self.node_type_cpu_type})


def _cpu_type_value(value: object, where: str) -> int:
    # int() also takes "1_0" and non-ASCII digits; a CPU type is written with ASCII digits only
    if isinstance(value, bool) or not _PLAIN_INTEGER.fullmatch(str(value).strip()):
        raise ProfileError(f"{where}: CPU type must be an integer >= 0, got {value!r}; fix the value")
    number = int(str(value).strip())
    if number < 0:
        raise ProfileError(f"{where}: CPU type must be an integer >= 0, got {value!r}; fix the value")
    return number


def _read_json_table(path: Path, text: str) -> dict[str, int]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise ProfileError(
            f'{path}: not valid JSON ({err.msg} at line {err.lineno}); expected an object such as {{"edge-host-1": 1}}'
        ) from None
    if not isinstance(doc, dict) or not doc:
        raise ProfileError(
            f'{path}: $: expected a non-empty object mapping node/host names to CPU types, e.g. {{"edge-host-1": 1}}'
        )
    return {str(k): _cpu_type_value(v, f"{path}: $.{k}") for k, v in doc.items()}


def _read_csv_table(path: Path, text: str) -> dict[str, int]:
    records = csv_records(path, text)
    first = next(records, None)
    header = [h.strip() for h in first[1]] if first else []
    if "node" not in header or "cpu_type" not in header:
        raise ProfileError(
            f"{path}: header {header} lacks the columns 'node' and 'cpu_type'; write a header line 'node,cpu_type'"
        )
    table: dict[str, int] = {}
    for line, fields in records:
        if len(fields) > len(header):
            raise ProfileError(
                f"{path}:{line}: {len(fields)} fields but the header names {len(header)} columns {header}; "
                "delete the extra value (or the trailing comma), or name the column in the header"
            )
        row = dict(zip(header, [f.strip() for f in fields], strict=False))
        node = row.get("node", "")
        if not node:
            raise ProfileError(f"{path}:{line}: empty node name; fill it in or delete the row")
        table[node] = _cpu_type_value(row.get("cpu_type", ""), f"{path}:{line}: cpu_type")
    if not table:
        raise ProfileError(f"{path}: no rows; add lines 'node,cpu_type' below the header")
    return table


def load_node_types(path: Path) -> dict[str, int]:
    """Read a node/host → CPU type table: JSON ``{"host": 0}`` or CSV with columns ``node,cpu_type``.

    UTF-8, with or without a byte-order mark (as spreadsheet programs write it)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ProfileError(f"{path}: file not found; pass an existing node → CPU type table") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ProfileError(f"{path}: cannot read file ({err})") from None
    if not text.strip():
        raise ProfileError(f'{path}: file is empty; expected JSON {{"host": cpu_type}} or CSV "node,cpu_type"')
    if path.suffix.lower() == ".csv":
        return _read_csv_table(path, text)
    return _read_json_table(path, text)
