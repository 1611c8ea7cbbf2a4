"""Placements at the edges: user ``placement.json`` files, and random start placements.

:func:`slots_from_assignment` checks a user's service → node-list mapping against the scenario
(known names, replica limits, layer rule, capacity under the given conditions, every called
service placed) and turns it into slot form. :func:`draw_start` draws the dynamic start state of
MODEL.md §3 from a seeded generator. Used by the env, the CLI and the evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ceenv.latency import Conditions, LatencyModel, draw_conditions, nominal_conditions
from ceenv.layout import IntArray, Layout
from ceenv.validation import ScenarioError, child, read_json

DEFAULT_START_ATTEMPTS = 200


def load_assignment(path: str | Path) -> dict[str, list[str]]:
    """Read ``placement.json`` (``{"service": ["node", ...]}``), checking only its shape."""
    file = Path(path)
    raw = read_json(file)
    if not isinstance(raw, dict):
        raise ScenarioError(str(file), "$", "wrong type", raw, 'an object such as {"aggregator": ["tb-cloud-vm-8-1"]}')
    for service, nodes in raw.items():
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            raise ScenarioError(str(file), child("$", service), "wrong type", nodes, "a list of node names")
    return raw


def slots_from_assignment(
    model: LatencyModel, layout: Layout, conditions: Conditions, assignment: Mapping[str, list[str]], file: str
) -> IntArray:
    """Check a service → nodes mapping and return ``slot_node``; raise :class:`ScenarioError` if infeasible."""
    scenario = model.scenario
    node_index = {name: i for i, name in enumerate(layout.node_names)}
    first_slot = np.concatenate([[0], np.cumsum(layout.service_slots)[:-1]]).astype(int)
    slot_node = np.full(layout.slot_count, -1, dtype=np.int64)
    cpu_left = conditions.cpu_millicores.copy()
    memory_left = conditions.memory_bytes.copy()
    for service_name, nodes in assignment.items():
        path = child("$", service_name)
        if service_name not in layout.service_names:
            raise ScenarioError(file, path, "unknown service", service_name, f"one of {list(layout.service_names)}")
        s = layout.service_names.index(service_name)
        service = scenario.services[s]
        if len(nodes) > service.max_replica:
            raise ScenarioError(
                file, path, f"{len(nodes)} pods exceed max-replica", nodes, f"at most {service.max_replica}"
            )
        for r, node_name in enumerate(nodes):
            if node_name not in node_index:
                raise ScenarioError(
                    file, child(path, r), "unknown node", node_name, f"one of {list(layout.node_names)}"
                )
            n = node_index[node_name]
            if not layout.allowed[s, n]:
                rule = f"nodes of layer {service.layer!r}" if service.layer else "a node outside the client layer"
                raise ScenarioError(file, child(path, r), "layer rule violated", node_name, rule)
            cpu_left[n] -= service.cpu_millicores
            memory_left[n] -= round(service.memory_bytes)
            if cpu_left[n] < 0 or memory_left[n] < 0:
                raise ScenarioError(
                    file,
                    child(path, r),
                    f"node {node_name} is over capacity",
                    node_name,
                    "pods whose requests fit the node's free CPU and memory",
                )
            slot_node[first_slot[s] + r] = n
    for s, called in enumerate(model.called_services):
        if called and not assignment.get(layout.service_names[s]):
            raise ScenarioError(
                file,
                child("$", layout.service_names[s]),
                "service called by the workload has no pod",
                expected="at least one node",
            )
    return slot_node


def draw_start(
    model: LatencyModel,
    layout: Layout,
    rng: np.random.Generator,
    dynamic: bool = True,
    attempts: int = DEFAULT_START_ATTEMPTS,
) -> tuple[Conditions, IntArray]:
    """Draw conditions, replica counts and a feasible random placement (MODEL.md §3).

    Each attempt draws everything anew; a scenario where no attempt yields a feasible placement is
    an error, not a hang.
    """
    scenario = model.scenario
    # Plain Python over each service's allowed nodes: the same generator calls and the same float
    # arithmetic as numpy's arrays (IEEE doubles either way), at a third of the time per draw, which
    # every episode's reset pays (a 13-node cluster's arrays are too small for numpy to pay off).
    allowed: list[list[int]] | None = layout.__dict__.get("_allowed_node_lists")
    if allowed is None:  # derived once per layout, like the model's cached tables
        allowed = [[int(n) for n in np.flatnonzero(row)] for row in layout.allowed]
        layout.__dict__["_allowed_node_lists"] = allowed
    requests = [(s.cpu_millicores, round(s.memory_bytes), s.max_replica) for s in scenario.services]
    for _ in range(attempts):
        conditions = draw_conditions(scenario, rng) if dynamic else nominal_conditions(scenario)
        cpu_left = conditions.cpu_millicores.tolist()
        memory_left = conditions.memory_bytes.tolist()
        slot_node = [-1] * layout.slot_count
        slot = 0
        feasible = True
        for s, (cpu, memory, max_replica) in enumerate(requests):
            replicas = int(rng.integers(1, max_replica + 1))
            for r in range(replicas):
                room = [n for n in allowed[s] if cpu_left[n] >= cpu and memory_left[n] >= memory]
                if not room:
                    feasible = False
                    break
                n = room[int(rng.integers(len(room)))]
                cpu_left[n] -= cpu
                memory_left[n] -= memory
                slot_node[slot + r] = n
            if not feasible:
                break
            slot += max_replica
        if feasible:
            return conditions, np.array(slot_node, dtype=np.int64)
    raise ScenarioError(
        scenario.name,
        "$",
        f"no feasible start placement in {attempts} random draws",
        expected="a cluster whose free CPU and memory can hold the services' pods (raise availability or lower max-replica)",
    )
