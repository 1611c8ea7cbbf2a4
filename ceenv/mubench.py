"""Import a muBench ``workmodel.json`` as a :class:`ceenv.workload.Workload` (the call graph).

muBench describes each service by its ``external_services`` (a list of *groups* that run in
parallel; inside a group the listed ``services`` are called one after another, at most ``seq_len``
of them, each with an optional ``probabilities`` entry; entries for services not in the group are
ignored, as muBench ignores them) and its ``internal_service`` (one function: the older
``{"compute_pi": {"mean_bandwidth": kB, "range_complexity": [a, b]}}`` form, the current
``{"loader": {"cpu_stress": …, "memory_stress": …, "disk_stress": …, "mean_response_size": kB}}``
form, or any other single function). A work model carries no execution times, so they are supplied
separately (service → {cpu_type: ms}, e.g. from profile ingestion). Probabilities: the simulator
needs one deterministic call graph, so a callee is *kept* when its probability exceeds
``min_probability`` (default 0: every callee muBench may call is kept) and its execution time is
never scaled by the probability; callees listed beyond ``seq_len`` are left out (muBench draws
``seq_len`` of them at random per request; we keep the first ``seq_len`` in file order). A service
listed twice among those is refused: muBench would call it twice, and a REACH group keys its calls by
service name. muBench's ``s1__7`` escape belongs to its trace files, not to work models, so such a
name is an unknown service here. The data
size of a call is the callee's mean response size (``mean_bandwidth`` / ``mean_response_size``,
kB = 1000 bytes) when given, else ``default_data_bytes``. Used by the CLI and the profile flows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceenv.validation import Reader, ScenarioError, child, read_json
from ceenv.workload import MAX_CALL_DEPTH, Call, Endpoint, Workload

DEFAULT_DATA_BYTES = 1e5
BYTES_PER_KB = 1000.0
_SIZE_KEYS = ("mean_response_size", "mean_bandwidth")


@dataclass(frozen=True)
class Callee:
    """One edge of the work model: the callee, its probability and where the edge is written."""

    service: str
    probability: float
    path: str


@dataclass(frozen=True)
class ServiceModel:
    """One muBench service: its parallel groups of sequential callees and its response size."""

    name: str
    groups: tuple[tuple[Callee, ...], ...]
    response_bytes: float | None
    path: str


def _probabilities(r: Reader, group: Mapping[str, Any], path: str, services: list[str]) -> dict[str, float]:
    raw = r.mapping(group.get("probabilities", {}), child(path, "probabilities"), "an object service -> probability")
    out: dict[str, float] = {}
    for name, value in raw.items():
        if name not in services:  # muBench looks up only the group's services; published models carry extras
            continue
        value_path = child(child(path, "probabilities"), name)
        p = r.number(value, value_path, "a probability between 0 and 1")
        if p > 1.0:
            raise r.fail(value_path, "wrong value", value, "a probability between 0 and 1")
        out[name] = p
    return out


def _check_no_repeat(r: Reader, kept: list[str], services_path: str) -> None:
    """muBench calls a service listed twice in a group twice, one after the other; REACH's call-pattern
    format keys a group's calls by service name, so it can hold only one of them. Refuse, rather than
    write a file with fewer calls than the work model."""
    for i, name in enumerate(kept):
        if name in kept[:i]:
            raise r.fail(
                child(services_path, i),
                "service listed twice in one group; muBench would call it twice in a row, which a REACH "
                "call-pattern file cannot express (a group's calls are keyed by service name)",
                name,
                "each service at most once among a group's first seq_len services: delete the repeat, "
                "or model the repeated work in that service's execution time",
            )


def _parse_group(r: Reader, group: object, path: str) -> tuple[Callee, ...]:
    group = r.mapping(group, path, 'an object {"services": [...], "seq_len": n}')
    services_path = child(path, "services")
    names = list(r.sequence(r.field(group, "services", path, "a list of service names"), services_path))
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise r.fail(child(services_path, i), "wrong type", name, "a service name")
    seq_len = len(names)
    if "seq_len" in group:
        seq_len = r.integer(group["seq_len"], child(path, "seq_len"), 0)
    probabilities = _probabilities(r, group, path, names)
    _check_no_repeat(r, names[:seq_len], services_path)
    return tuple(
        Callee(name, probabilities.get(name, 1.0), child(services_path, i)) for i, name in enumerate(names[:seq_len])
    )


def _response_bytes(r: Reader, internal: object, path: str) -> float | None:
    functions = r.mapping(internal, path, 'an object with one function, e.g. {"loader": {...}}')
    if len(functions) != 1:
        raise r.fail(
            path,
            "expected exactly one internal function",
            sorted(functions),
            '{"loader": {...}} or {"compute_pi": {...}}',
        )
    ((function, params),) = functions.items()
    params = r.mapping(params, child(path, function), "an object of function parameters")
    for key in _SIZE_KEYS:
        if key in params:
            kb = r.number(params[key], child(child(path, function), key), "a size in kB >= 0")
            return kb * BYTES_PER_KB
    return None


def parse_workmodel(raw: object, file: str) -> dict[str, ServiceModel]:
    """Validate a muBench work model document; return its services in file order."""
    r = Reader(file)
    doc = r.mapping(raw, "$", "an object mapping service names to service descriptions")
    if not doc:
        raise r.fail("$", "no services", {}, "at least one service")
    models: dict[str, ServiceModel] = {}
    for name, spec in doc.items():
        path = child("$", name)
        spec = r.mapping(spec, path)
        groups_path = child(path, "external_services")
        groups_raw = r.sequence(spec.get("external_services", []), groups_path, "a list of groups")
        groups = tuple(
            g for g in (_parse_group(r, grp, child(groups_path, i)) for i, grp in enumerate(groups_raw)) if g
        )
        size = (
            _response_bytes(r, spec["internal_service"], child(path, "internal_service"))
            if "internal_service" in spec
            else None
        )
        models[name] = ServiceModel(name, groups, size, path)
    for model in models.values():
        for callee in (c for g in model.groups for c in g):
            if callee.service not in models:
                # muBench's "s1__7" escape is a trace-driven convention (trace JSON keys), not part of
                # the work-model format; say so instead of guessing that "s1__7" means "s1"
                escaped = callee.service.split("__")[0]
                hint = (
                    f' ("{callee.service}" uses muBench\'s "__" escape of trace files; a work model names '
                    f'the service itself, "{escaped}")'
                    if "__" in callee.service and escaped in models
                    else ""
                )
                raise r.fail(
                    callee.path,
                    "unknown service",
                    callee.service,
                    f"a service defined in the work model: {sorted(models)}{hint}",
                )
    return models


def find_entry(models: Mapping[str, ServiceModel], file: str) -> str:
    """The one service that no other service calls (muBench's front service, usually ``s0``)."""
    called = {c.service for m in models.values() for g in m.groups for c in g}
    roots = [name for name in models if name not in called]
    if len(roots) != 1:
        problem = (
            "no service is uncalled (every service has a caller)" if not roots else "several services are uncalled"
        )
        raise ScenarioError(
            file,
            "$",
            f"cannot choose the entry service: {problem}",
            roots,
            "exactly one service that nobody calls, or an explicit entry service",
        )
    return roots[0]


def _check_acyclic(models: Mapping[str, ServiceModel], entry: str, file: str) -> None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for callee in (c for g in models[name].groups for c in g):
            if state.get(callee.service) == 1:
                cycle = [*trail[trail.index(callee.service) :], callee.service]
                raise ScenarioError(
                    file,
                    callee.path,
                    "call cycle in the work model",
                    " -> ".join(cycle),
                    "an acyclic call graph (muBench would recurse forever)",
                )
            if state.get(callee.service) is None:
                visit(callee.service, [*trail, callee.service])
        state[name] = 2

    visit(entry, [entry])


@dataclass(frozen=True)
class _Builder:
    models: Mapping[str, ServiceModel]
    execution_ms: Mapping[str, Mapping[int, float]]
    execution_source: str
    default_data_bytes: float
    min_probability: float
    file: str

    def times(self, service: str, path: str) -> dict[int, float]:
        table = self.execution_ms.get(service)
        if not table:
            raise ScenarioError(
                self.execution_source,
                child("$", service),
                "no execution times for a service the work model calls",
                service,
                f"an entry {{cpu_type: ms}} for {service!r} (called at {self.file}: {path})",
            )
        for cpu_type, value_ms in table.items():
            if not math.isfinite(value_ms) or value_ms <= 0:
                raise ScenarioError(
                    self.execution_source,
                    child(child("$", service), str(cpu_type)),
                    "wrong value",
                    value_ms,
                    "a finite execution time in ms > 0",
                )
        return dict(table)

    def call(self, service: str, path: str, depth: int) -> Call:
        if depth > MAX_CALL_DEPTH:
            raise ScenarioError(
                self.file,
                path,
                f"call path nested deeper than {MAX_CALL_DEPTH} levels",
                service,
                "a shallower call graph",
            )
        model = self.models[service]
        groups = []
        for group in model.groups:
            kept = tuple(self.call(c.service, c.path, depth + 1) for c in group if c.probability > self.min_probability)
            if kept:
                groups.append(kept)
        data = model.response_bytes if model.response_bytes is not None else self.default_data_bytes
        return Call(service, data, self.times(service, path), tuple(groups), path)


def workmodel_to_workload(
    models: Mapping[str, ServiceModel],
    file: str,
    execution_ms: Mapping[str, Mapping[int, float]],
    *,
    entry: str | None = None,
    client: str = "client",
    rps: float = 5.0,
    qos_ms: float | None = None,
    endpoint: str | None = None,
    default_data_bytes: float = DEFAULT_DATA_BYTES,
    min_probability: float = 0.0,
    execution_source: str = "<execution times>",
) -> Workload:
    """Build the workload ``client → entry → …`` from parsed work-model services (see module doc)."""
    entry_name = entry if entry is not None else find_entry(models, file)
    if entry_name not in models:
        raise ScenarioError(
            file, "$", "unknown entry service", entry_name, f"a service of the work model: {sorted(models)}"
        )
    if client in models:
        raise ScenarioError(
            file,
            child("$", client),
            "the client name is also a work-model service",
            client,
            "a client service name that the work model does not define",
        )
    if not rps > 0 or not math.isfinite(rps):
        raise ScenarioError(file, "$", "wrong request rate", rps, "rps > 0")
    _check_acyclic(models, entry_name, file)
    builder = _Builder(models, execution_ms, execution_source, default_data_bytes, min_probability, file)
    root = builder.call(entry_name, models[entry_name].path, 1)
    name = endpoint if endpoint is not None else entry_name
    return Workload(name, (Endpoint(name, client, rps, qos_ms, ((root,),)),))


def load_workmodel(path: str | Path, execution_ms: Mapping[str, Mapping[int, float]], **options: Any) -> Workload:
    """Read a ``workmodel.json`` file and convert it; ``options`` as for :func:`workmodel_to_workload`."""
    file = Path(path)
    models = parse_workmodel(read_json(file), str(file))
    return workmodel_to_workload(models, str(file), execution_ms, **options)
