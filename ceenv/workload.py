"""The workload: REACH's ``*_call_patterns.json`` as a tree of calls.

A :class:`Workload` holds endpoints; each endpoint is a root call by its client service with a
call path. A call path is a tuple of *groups* that run in parallel; the calls inside a group run
one after another (muBench's convention, MODEL.md §1). Used by the latency model, the muBench
importer and the profile ingestion, which rewrites execution times and saves with
:func:`workload_to_json`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceenv.scenario import Scenario
from ceenv.units import format_ms, parse_data_bytes, parse_time_ms
from ceenv.validation import Reader, ScenarioError, child, read_json

WORKLOAD_SUFFIX = "_call_patterns.json"
MAX_CALL_DEPTH = 64


@dataclass(frozen=True)
class Call:
    """A call to ``service``: the payload it receives, its execution time per CPU type, its callees."""

    service: str
    data_bytes: float
    execution_ms: Mapping[int, float]
    groups: tuple[tuple[Call, ...], ...]
    path: str = "$"


@dataclass(frozen=True)
class Endpoint:
    """A request type: its client service, rate, optional QoS target and the call path."""

    name: str
    client: str
    rps: float
    qos_ms: float | None
    groups: tuple[tuple[Call, ...], ...]

    def calls(self) -> Iterator[Call]:
        """Every call of the endpoint, depth first."""
        stack = [c for group in reversed(self.groups) for c in reversed(group)]
        while stack:
            call = stack.pop()
            yield call
            stack.extend(c for group in reversed(call.groups) for c in reversed(group))


@dataclass(frozen=True)
class Workload:
    """All endpoints of one call-pattern file."""

    name: str
    endpoints: tuple[Endpoint, ...]

    def services(self) -> set[str]:
        """Every service the workload touches, clients included."""
        names = {e.client for e in self.endpoints}
        names.update(c.service for e in self.endpoints for c in e.calls())
        return names


def _parse_groups(r: Reader, value: object, path: str, depth: int) -> tuple[tuple[Call, ...], ...]:
    if depth > MAX_CALL_DEPTH:
        raise r.fail(path, f"call path nested deeper than {MAX_CALL_DEPTH} levels", expected="a finite call tree")
    groups = []
    for g, group in enumerate(r.sequence(value, path, "a list of groups (objects of calls)")):
        group_path = child(path, g)
        calls = []
        for service, spec in r.mapping(group, group_path, "an object mapping service names to calls").items():
            calls.append(_parse_call(r, service, spec, child(group_path, service), depth + 1))
        if calls:
            groups.append(tuple(calls))
    return tuple(groups)


def _parse_call(r: Reader, service: str, spec: object, path: str, depth: int) -> Call:
    spec = r.mapping(spec, path)
    data = r.unit(parse_data_bytes, spec.get("data-size", "0"), child(path, "data-size"))
    times_raw = r.mapping(
        r.field(spec, "execution-time", path, "an object of times keyed by CPU type"), child(path, "execution-time")
    )
    times: dict[int, float] = {}
    for key, value in times_raw.items():
        key_path = child(child(path, "execution-time"), key)
        try:
            cpu_type = int(key)
        except ValueError:
            raise r.fail(key_path, "CPU type key is not an integer", key, "keys such as '0', '1', '2'") from None
        times[cpu_type] = r.unit(parse_time_ms, value, key_path)
    groups = _parse_groups(r, spec.get("call-path", []), child(path, "call-path"), depth)
    return Call(service, data, times, groups, path)


def parse_workload(raw: object, file: str, name: str) -> Workload:
    """Validate a call-pattern document on its own (cross-checks: :func:`check_workload`)."""
    r = Reader(file)
    doc = r.mapping(raw, "$")
    if not doc:
        raise r.fail("$", "no endpoints", {}, "at least one endpoint")
    endpoints = []
    for endpoint, spec in doc.items():
        path = child("$", endpoint)
        spec = r.mapping(spec, path)
        client = r.field(spec, "client", path, "the client service's name")
        if not isinstance(client, str):
            raise r.fail(child(path, "client"), "wrong type", client, "a service name")
        rps = r.number(
            r.field(spec, "rps", path, "a request rate > 0"), child(path, "rps"), "a request rate > 0", positive=True
        )
        qos = r.unit(parse_time_ms, spec["qos"], child(path, "qos")) if "qos" in spec else None
        groups = _parse_groups(r, r.field(spec, "call-path", path, "a list of groups"), child(path, "call-path"), 0)
        endpoints.append(Endpoint(endpoint, client, rps, qos, groups))
    return Workload(name, tuple(endpoints))


def check_workload(workload: Workload, scenario: Scenario, file: str) -> None:
    """Cross-check a workload against a scenario: services known, every CPU type covered."""
    known = set(scenario.service_names)
    cpu_types = scenario.cpu_types
    for endpoint in workload.endpoints:
        if endpoint.client not in known:
            raise ScenarioError(
                file,
                child(child("$", endpoint.name), "client"),
                "unknown client service",
                endpoint.client,
                f"a service of services.json: {sorted(known)}",
            )
        for call in endpoint.calls():
            if call.service not in known:
                raise ScenarioError(
                    file,
                    call.path,
                    "unknown service in call path",
                    call.service,
                    f"a service of services.json: {sorted(known)}",
                )
            missing = [t for t in cpu_types if t not in call.execution_ms]
            if missing:
                raise ScenarioError(
                    file,
                    child(call.path, "execution-time"),
                    f"missing CPU type(s) {missing}",
                    {str(k): v for k, v in call.execution_ms.items()},
                    f"an execution time for every CPU type in the cluster {list(cpu_types)}",
                )


def workload_name(path: Path) -> str:
    """``aggregator_sequential_call_patterns.json`` → ``aggregator_sequential``."""
    name = path.name
    return name[: -len(WORKLOAD_SUFFIX)] if name.endswith(WORKLOAD_SUFFIX) else path.stem


def load_workload(path: str | Path, scenario: Scenario | None = None) -> Workload:
    """Load a call-pattern file; with ``scenario``, also cross-check it."""
    file = Path(path)
    workload = parse_workload(read_json(file), str(file), workload_name(file))
    if scenario is not None:
        check_workload(workload, scenario, str(file))
    return workload


def _group_to_json(group: tuple[Call, ...], workload: str) -> dict[str, Any]:
    """One group as an object keyed by service name; a service twice in a group cannot be written."""
    out: dict[str, Any] = {}
    for call in group:
        if call.service in out:
            raise ScenarioError(
                workload,
                call.path,
                "service called twice in one group; a call-pattern group is an object keyed by service name",
                call.service,
                "each service at most once per group",
            )
        out[call.service] = _call_to_json(call, workload)
    return out


def _call_to_json(call: Call, workload: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "data-size": f"{call.data_bytes:.10g}",
        "execution-time": {str(k): format_ms(v) for k, v in sorted(call.execution_ms.items())},
    }
    if call.groups:
        out["call-path"] = [_group_to_json(group, workload) for group in call.groups]
    return out


def workload_to_json(workload: Workload) -> dict[str, Any]:
    """The REACH call-pattern document for ``workload`` (inverse of :func:`parse_workload`).

    A group that calls one service twice raises :class:`ScenarioError`: it has no faithful form."""
    doc: dict[str, Any] = {}
    for e in workload.endpoints:
        entry: dict[str, Any] = {"client": e.client, "rps": e.rps}
        if e.qos_ms is not None:
            entry["qos"] = format_ms(e.qos_ms)
        entry["call-path"] = [_group_to_json(group, workload.name) for group in e.groups]
        doc[e.name] = entry
    return doc
