"""End-to-end latency of a placement (MODEL.md §2), compiled once per scenario and workload.

:class:`LatencyModel` turns the call trees into flat arrays (one row per call, children before
parents) so that evaluating a placement is a few small matrix products plus one pass over the
calls. A placement enters as pod counts per service and node, ``counts[s, n]``; replicas enter
through means (uniform load balancing), so ``W = counts / replicas`` and the mean network cost
between a caller and a callee is ``W_caller · (D + d · T) · W_callee``. :class:`Network` holds
``D`` (delay, ms) and ``T`` (ms per byte) for one draw of the dynamic conditions;
:meth:`LatencyModel.prepare` folds each call's payload into one matrix per call. Used by the simulator, the
baselines, the search and ``reach sim latency``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ceenv.scenario import Scenario
from ceenv.selected_kernel import own_costs_per_network
from ceenv.units import cpu_millicores
from ceenv.workload import Call, Workload

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Conditions:
    """One draw of the dynamic conditions of MODEL.md §3 (or the nominal values)."""

    cpu_millicores: FloatArray  # (N,) free CPU before any of our pods
    memory_bytes: FloatArray  # (N,) free memory before any of our pods
    utilization: FloatArray  # (N,) fraction of NIC bandwidth used by background traffic
    delay_ms: FloatArray  # (L, L) one-way delay between layers, scenario layer order


@dataclass(frozen=True)
class Network:
    """Pairwise network cost between nodes for one :class:`Conditions`: ``D`` and ``T``."""

    delay_ms: FloatArray  # (N, N), 0 on the diagonal
    ms_per_byte: FloatArray  # (N, N), 8 / min(B_n, B_m) in ms, 0 on the diagonal
    bits_per_s: FloatArray  # (N,) each node's available bandwidth B_n, bit/s


@dataclass(frozen=True)
class CallCosts:
    """A :class:`Network` prepared for one :class:`LatencyModel`: ``M_c`` per call, ``(C, N, N)``."""

    network: Network
    matrices: FloatArray


def nominal_conditions(scenario: Scenario) -> Conditions:
    """Largest free capacity, lowest utilisation, lowest delay (MODEL.md §1)."""
    layers = scenario.layers
    delay = np.array([[scenario.delay_range_ms[(a, b)][0] for b in layers] for a in layers])
    return Conditions(
        cpu_millicores=np.array([n.nominal_cpu_millicores for n in scenario.nodes], dtype=np.float64),
        memory_bytes=np.array([round(n.nominal_memory_bytes) for n in scenario.nodes], dtype=np.float64),
        utilization=np.array([n.utilization_range[0] for n in scenario.nodes]),
        delay_ms=delay,
    )


def draw_conditions(scenario: Scenario, rng: np.random.Generator) -> Conditions:
    """Free CPU and memory uniformly from each node's lists, utilisation and delays uniformly in range.

    Delays are drawn per ordered layer pair, as ``nodes.json`` lists them.
    """
    table = _draw_table(scenario)
    picks = rng.random((2, len(scenario.nodes)))
    rows = np.arange(len(scenario.nodes))
    cpu = table.cpu_millicores[rows, (picks[0] * table.cpu_choices).astype(np.int64)]
    mem = table.memory_bytes[rows, (picks[1] * table.memory_choices).astype(np.int64)]
    util = rng.uniform(table.util_low, table.util_high)
    delay = rng.uniform(table.delay_low, table.delay_high)
    return Conditions(cpu, mem, util, delay)


@dataclass(frozen=True)
class _DrawTable:
    """A scenario's choices and ranges as arrays (built once per scenario), for :func:`draw_conditions`."""

    cpu_millicores: FloatArray  # (N, K) choices, padded
    cpu_choices: FloatArray  # (N,) number of choices
    memory_bytes: FloatArray
    memory_choices: FloatArray
    util_low: FloatArray
    util_high: FloatArray
    delay_low: FloatArray  # (L, L)
    delay_high: FloatArray


def _draw_table(scenario: Scenario) -> _DrawTable:
    cached: _DrawTable | None = scenario.__dict__.get("_draw_table")  # derived once, like nominal_costs
    if cached is not None:
        return cached
    nodes = scenario.nodes

    def padded(values: list[list[float]]) -> FloatArray:
        width = max(len(v) for v in values)
        return np.array([v + [v[-1]] * (width - len(v)) for v in values], dtype=np.float64)

    layers = scenario.layers
    util_low, util_high = np.array([n.utilization_range for n in nodes]).T
    delay_low, delay_high = np.array([[scenario.delay_range_ms[(a, b)] for b in layers] for a in layers]).transpose(
        2, 0, 1
    )
    table = _DrawTable(
        cpu_millicores=padded([[float(cpu_millicores(c)) for c in n.cpu_choices_cores] for n in nodes]),
        cpu_choices=np.array([len(n.cpu_choices_cores) for n in nodes], dtype=np.float64),
        memory_bytes=padded([[float(round(m)) for m in n.memory_choices_bytes] for n in nodes]),
        memory_choices=np.array([len(n.memory_choices_bytes) for n in nodes], dtype=np.float64),
        util_low=util_low,
        util_high=util_high,
        delay_low=delay_low,
        delay_high=delay_high,
    )
    scenario.__dict__["_draw_table"] = table
    return table


def build_network(scenario: Scenario, conditions: Conditions) -> Network:
    """The node-pair matrices ``D`` and ``T`` of MODEL.md §2 for these conditions."""
    node_layer, _ = _node_table(scenario)
    delay = conditions.delay_ms[node_layer[:, None], node_layer[None, :]]
    return network_from_parts(delay, available_bits_per_s(scenario, conditions.utilization))


def network_from_parts(delay_ms: FloatArray, bits_per_s: FloatArray) -> Network:
    """``D`` and ``T`` from a node-pair delay matrix (ms) and each node's available bandwidth (bit/s)."""
    delay = np.array(delay_ms, dtype=np.float64)
    ms_per_byte = 8.0 * 1e3 / np.minimum.outer(bits_per_s, bits_per_s)
    # np.fill_diagonal's stride, without its checks (every reset pays them)
    diagonal = slice(None, None, len(delay) + 1)
    delay.flat[diagonal] = 0.0
    ms_per_byte.flat[diagonal] = 0.0
    return Network(delay, ms_per_byte, np.array(bits_per_s, dtype=np.float64))


def available_bits_per_s(scenario: Scenario, utilization: FloatArray) -> FloatArray:
    """``B(n)`` of MODEL.md §2: NIC bandwidth times the share background traffic leaves free."""
    result: FloatArray = _node_table(scenario)[1] * (1.0 - utilization)
    return result


def _node_table(scenario: Scenario) -> tuple[IntArray, FloatArray]:
    """Each node's layer index (scenario layer order) and NIC bandwidth in bit/s, built once per scenario."""
    cached: tuple[IntArray, FloatArray] | None = scenario.__dict__.get("_node_table")
    if cached is None:
        layer_index = {layer: i for i, layer in enumerate(scenario.layers)}
        node_layer = np.array([layer_index[n.layer] for n in scenario.nodes], dtype=np.int64)
        nic_bits = np.array([n.bandwidth_mbps * 1e6 for n in scenario.nodes])
        node_layer.setflags(write=False)
        nic_bits.setflags(write=False)
        cached = (node_layer, nic_bits)
        scenario.__dict__["_node_table"] = cached
    return cached


def measured_network(
    scenario: Scenario, conditions: Conditions, rng: np.random.Generator, relative_noise: float
) -> Network:
    """The network a monitoring system would report for ``conditions``, through measurement noise.

    Each node pair's delay and each node's available bandwidth are multiplied by an independent
    log-normal factor ``exp(relative_noise * z)``, ``z ~ N(0, 1)`` drawn from ``rng`` (delays first,
    row by row, then bandwidths); ``relative_noise = 0`` reports the true network and draws nothing.
    """
    return perturbed_network(build_network(scenario, conditions), rng, relative_noise)


def perturbed_network(network: Network, rng: np.random.Generator, relative_noise: float) -> Network:
    """``network`` with each node pair's delay and each node's bandwidth times ``exp(relative_noise * z)``.

    ``z ~ N(0, 1)`` independent, drawn from ``rng`` (delays first, row by row, then bandwidths);
    ``relative_noise = 0`` returns ``network`` and draws nothing. :func:`measured_network` draws a
    measurement of the true network with it; the planner (``bento.planning``) draws networks the
    measured one may stand for.
    """
    if relative_noise == 0.0:
        return network
    n = len(network.bits_per_s)
    delay = network.delay_ms * np.exp(relative_noise * rng.standard_normal((n, n)))
    bits = network.bits_per_s * np.exp(relative_noise * rng.standard_normal(n))
    return network_from_parts(delay, bits)


class LatencyModel:
    """The latency formula of MODEL.md §2 for one scenario and workload, as arrays.

    ``counts`` arguments are ``(S, N)`` pod counts (or ``(K, S, N)`` for a batch of placements),
    services in scenario order and nodes in node order. Every service the workload calls must have
    at least one pod; :func:`ceenv.placement.slots_from_assignment` enforces that for user input.
    """

    def __init__(self, scenario: Scenario, workload: Workload) -> None:
        self.scenario = scenario
        self.workload = workload
        service_index = {name: i for i, name in enumerate(scenario.service_names)}
        cpu_type = np.array([n.cpu_type for n in scenario.nodes])
        services: list[int] = []
        parents: list[int] = []
        data: list[float] = []
        execs: list[FloatArray] = []
        children: list[list[list[int]]] = []

        def add(call: Call | None, service: int, parent_service: int, groups: tuple[tuple[Call, ...], ...]) -> int:
            own_groups = [[add(c, service_index[c.service], service, c.groups) for c in group] for group in groups]
            services.append(service)
            parents.append(parent_service)
            data.append(call.data_bytes if call is not None else 0.0)
            if call is None:
                execs.append(np.zeros(len(cpu_type)))
            else:
                execs.append(np.array([call.execution_ms[int(t)] for t in cpu_type], dtype=np.float64))
            children.append(own_groups)
            return len(services) - 1

        roots = []
        for endpoint in workload.endpoints:
            client = service_index[endpoint.client]
            roots.append(add(None, client, client, endpoint.groups))
        total_rps = sum(e.rps for e in workload.endpoints)
        self.endpoint_names = tuple(e.name for e in workload.endpoints)
        self.endpoint_weights = tuple(e.rps / total_rps for e in workload.endpoints)
        self.roots = tuple(roots)
        self.call_service: IntArray = np.array(services, dtype=np.int64)
        self.call_parent_service: IntArray = np.array(parents, dtype=np.int64)
        self.call_data_bytes: FloatArray = np.array(data, dtype=np.float64)
        self.call_exec_ms: FloatArray = np.stack(execs)  # (C, N)
        self.call_groups: tuple[tuple[tuple[int, ...], ...], ...] = tuple(
            tuple(tuple(g) for g in groups) for groups in children
        )
        self.called_services = np.zeros(len(service_index), dtype=bool)
        self.called_services[self.call_service] = True

    def nominal_costs(self) -> CallCosts:
        """:meth:`LatencyModel.prepare` of the scenario's nominal network (computed once, then reused)."""
        cached: CallCosts | None = self.__dict__.get("_nominal_costs")
        if cached is None:
            cached = self.prepare(build_network(self.scenario, nominal_conditions(self.scenario)))
            self.__dict__["_nominal_costs"] = cached
        return cached

    def prepare(self, network: Network) -> CallCosts:
        """Per-call network matrices ``M_c = D + d_c · T`` (zero for the root calls)."""
        matrices = network.delay_ms[None, :, :] + self.call_data_bytes[:, None, None] * network.ms_per_byte[None]
        matrices[list(self.roots)] = 0.0
        return CallCosts(network, matrices)

    def _own_costs(self, counts: FloatArray, costs: CallCosts) -> FloatArray:
        """Per call c: E(c) + N(caller, c), the part of L that the caller adds for c.

        With ``W = counts / replicas``: ``W_c · (exec_c + W_caller · M_c)``.
        """
        weights = counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1.0)  # unplaced rows stay 0
        caller = weights[..., self.call_parent_service, :]  # (..., C, N)
        reach = (caller[..., None, :] @ costs.matrices)[..., 0, :] + self.call_exec_ms
        result: FloatArray = (weights[..., self.call_service, :] * reach).sum(axis=-1)
        return result

    def _tree(self, own: list[float]) -> list[float]:
        total = [0.0] * len(own)
        for c, groups in enumerate(self.call_groups):  # children precede parents
            slowest = 0.0
            for group in groups:
                elapsed = 0.0
                for callee in group:
                    elapsed += total[callee]
                if elapsed > slowest:
                    slowest = elapsed
            total[c] = own[c] + slowest
        return total

    def endpoint_latencies(self, counts: FloatArray, costs: CallCosts) -> dict[str, float]:
        """Latency of each endpoint's root call, ms."""
        total = self._tree(self._own_costs(counts, costs).tolist())
        return {name: total[root] for name, root in zip(self.endpoint_names, self.roots, strict=True)}

    def latency(self, counts: FloatArray, costs: CallCosts) -> float:
        """Application latency: the rps-weighted mean of the endpoint latencies, ms."""
        total = self._tree(self._own_costs(counts, costs).tolist())
        return sum(w * total[r] for w, r in zip(self.endpoint_weights, self.roots, strict=True))

    def latency_batch(self, counts: FloatArray, costs: CallCosts) -> FloatArray:
        """Application latency of a batch of placements ``(K, S, N)`` → ``(K,)``, ms."""
        return self._tree_batch(self._own_costs(counts, costs))

    def latency_per_network(self, counts: FloatArray, costs: Sequence[CallCosts] | FloatArray) -> FloatArray:
        """:meth:`LatencyModel.latency_batch` of one batch of placements ``(K, S, N)`` under each network: ``(R, K)``, ms.

        ``costs``: the ``R`` networks, or their matrices stacked ``(R, C, N, N)`` (a caller that asks
        again keeps the stack). The same values as ``R`` calls to rounding, with one pass over the
        call tree for all of them; each own cost is summed over the nodes that hold pods only
        (:func:`ceenv.selected_kernel.own_costs_per_network`), where the matrix products of
        :meth:`LatencyModel.latency_batch` read every entry: a sixth of the time on a 40-node cluster.
        """
        matrices = costs if isinstance(costs, np.ndarray) else np.stack([one.matrices for one in costs])
        weights = counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1.0)
        own = own_costs_per_network(weights, self.call_service, self.call_parent_service, self.call_exec_ms, matrices)
        result: FloatArray = self._tree_batch(own.reshape(-1, own.shape[2])).reshape(own.shape[0], counts.shape[0])
        return result

    def _tree_batch(self, own: FloatArray) -> FloatArray:
        """The call tree over own costs ``(K, C)``, then the rps-weighted endpoints: ``(K,)``."""
        batch = own.shape[0]
        total: list[FloatArray] = [np.zeros(batch)] * len(self.call_groups)
        for c, groups in enumerate(self.call_groups):
            slowest = np.zeros(batch)
            for group in groups:
                elapsed = np.zeros(batch)
                for callee in group:
                    elapsed = elapsed + total[callee]
                slowest = np.maximum(slowest, elapsed)
            total[c] = own[:, c] + slowest
        result = np.zeros(batch)
        for weight, root in zip(self.endpoint_weights, self.roots, strict=True):
            result += weight * total[root]
        return result
