"""The world: a SimPy discrete-event emulation of the application on a placement, one request at a time.

The time unit is the millisecond. What happens to one request, and where MODEL.md §2 has the same term:

1. Requests of each endpoint arrive as a Poisson process at ``rps × rps_multiplier``.
2. A call (caller pod → service s) picks one of s's pods uniformly at random, as kube-proxy does.
   The twin averages over the replicas instead (``E(c)`` and ``N`` are means over ``R_s``).
3. The request crosses the network: *transfer* ``8·d / bandwidth`` where the bandwidth is
   ``B(n) = bandwidth · (1 − utilisation)`` of the slower NIC divided by the transfers that NIC
   carries at that moment (the twin's ``T`` with one transfer), then *propagation*: the link's
   current delay times a unit-mean gamma jitter (the twin's ``D``). Same node: no network.
4. The callee pod queues for its CPU (servers = its CPU request rounded up, at least one), then
   executes for ``exec_time[cpu_type] × (1 + cpu_slowdown · background load)`` times a unit-mean
   gamma (the twin's ``E(c)``; the twin has no queue).
5. Then its call-path: groups in parallel, the calls of a group one after another; it answers when
   the slowest group is done (the twin's ``max over groups of sums``). Answers travel back in no
   time, as in the twin's one-way path.

In the limit (``WorldOptions.idealised()``, low load, nominal state) the mean of a chain of
sequential calls is the twin's formula exactly; with parallel groups and several replicas, the mean
of a maximum exceeds the maximum of the means, and queues add on top.

Events: :meth:`World.fail_node` (its pods stop serving; a call that reaches one costs
``connect_timeout_ms`` and is retried on a random replica, up to ``retries`` times, as Istio's
default retry policy does on connect failures, else the call answers 503 with response flags ``UF,URX``;
a call to a service with no endpoint answers 503 ``UH`` at once; after ``endpoint_grace_s`` the
node's pods leave the endpoints, and a later :meth:`World.set_placement` (the live world's re-read of
the API server, where they may still be Ready) keeps them out; calls already inside a pod finish) and
:meth:`World.surge` (the rps multiplier steps). Every ``drift_period_s`` the link delays, NIC
utilisation and background CPU load take a random step within the scenario's ranges, pulled back
towards their start values (a discretised Ornstein-Uhlenbeck walk).
Every ``ping_period_s`` each node pings every other one (round trip = two jittered one-way delays).
All randomness comes from one seeded generator (:class:`flows.loop.world.draws.Draws`).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from ceenv.scenario import Scenario
from ceenv.workload import Call, Workload
from flows.loop.world.draws import Draws
from flows.loop.world.metrics import CONNECT_FAILED_RETRIES_EXHAUSTED, NO_HEALTHY_UPSTREAM, MeshMetrics
from flows.loop.world.model import Cluster, PodSpec, State, WorldError, WorldOptions, check_pods, pod_concurrency
from flows.loop.world.traces import SpanRecord, TraceLog

Proc = Generator[Any, Any, Any]


class Pod:
    """A running pod: its CPU queue, and whether its node still serves."""

    __slots__ = ("cpu", "name", "node", "service", "serving")

    def __init__(self, env: simpy.Environment, spec: PodSpec, servers: int) -> None:
        self.name, self.service, self.node = spec.name, spec.service, spec.node
        self.cpu = simpy.Resource(env, capacity=servers)
        self.serving = True


@dataclass
class Completed:
    """Finished requests: arrival time (ms), latency (ms), endpoint index, success; ``keep=False`` only counts."""

    keep: bool = True
    count: int = 0
    start_ms: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    endpoint: list[int] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)


class World:
    """The application running on ``pods`` in ``scenario``; :meth:`World.run` advances it."""

    def __init__(
        self,
        scenario: Scenario,
        workload: Workload,
        pods: Sequence[PodSpec],
        options: WorldOptions | None = None,
        seed: int = 0,
        state: State | None = None,
        env: simpy.Environment | None = None,
        metrics: MeshMetrics | None = None,
        traces: TraceLog | None = None,
    ) -> None:
        self.options = options or WorldOptions()
        self.options.check()
        self.env = env if env is not None else simpy.Environment()
        self.cluster = Cluster.from_scenario(scenario)
        self.workload = workload
        start = state or State.nominal(scenario)
        self.cpu_free = start.cpu_free_cores.astype(np.float64).copy()
        self.utilization = start.utilization.astype(np.float64).copy()
        self.delay_ms = start.delay_ms.astype(np.float64).copy()
        self.draws = Draws(seed)
        self.metrics = metrics
        self.traces = traces
        self.completed = Completed()
        self.arrived = 0  # requests sent (a client pod took them), finished or not
        self.arrived_ms: list[float] = []  # their arrival times (ms), kept as long as completed.keep
        self.rps_multiplier = self.options.rps_multiplier
        n = len(self.cluster.node_names)
        self.node_up = np.ones(n, dtype=bool)
        self.nic_active = [0] * n
        self._cpu_type = self.cluster.node_cpu_type.tolist()
        self._layer = self.cluster.node_layer.tolist()
        self._nodes = self.cluster.node_names
        self._cores = {s.name: s.cpu_cores for s in scenario.services}
        self.pods: dict[str, Pod] = {}
        self.endpoints: dict[str, list[Pod]] = {}
        self.left_endpoints: set[int] = set()  # failed nodes past endpoint_grace_s: their pods stay out
        self.set_placement(pods)
        self.arrival_processes = [
            self.env.process(self._arrivals(e, endpoint.rps / 1000.0)) for e, endpoint in enumerate(workload.endpoints)
        ]
        if self.options.drift_step > 0:
            self.env.process(self._drift())
        if metrics is not None:
            self.env.process(self._pings())

    # ----- placement and events -----------------------------------------------------------------
    def set_placement(self, pods: Sequence[PodSpec], require_all: bool = True) -> None:
        """Make ``pods`` the endpoints; pods that keep their name keep their queue (a live re-read).

        With ``require_all=False`` a called service may have no pod: its calls answer 503, as a mesh does.
        Pods on a node failed for ``endpoint_grace_s`` or longer stay out of the endpoints (a re-read of
        the API server, where they may still show Ready, does not bring them back).
        """
        if require_all:
            check_pods(self.workload, pods)
        current = {}
        for spec in pods:
            if spec.service not in self._cores:
                raise WorldError(f"pod {spec.name}: unknown service {spec.service!r}")
            pod = self.pods.get(spec.name)
            if pod is None or pod.node != spec.node or pod.service != spec.service:
                pod = Pod(self.env, spec, pod_concurrency(self._cores[spec.service]))
            pod.serving = bool(self.node_up[spec.node])
            current[spec.name] = pod
        self.pods = current
        self.endpoints = {}
        for pod in current.values():
            if not self._left_endpoints(pod.node):
                self.endpoints.setdefault(pod.service, []).append(pod)

    def _left_endpoints(self, node: int) -> bool:
        """True when ``node`` is down and its grace period has passed: its pods are no endpoints."""
        return node in self.left_endpoints and not self.node_up[node]

    def fail_node(self, node: str) -> None:
        """The node stops: its pods stop serving now and leave the endpoints after the grace period."""
        index = self.cluster.node_index(node, "fail_node")
        if self.cluster.scenario.nodes[index].layer == "client":
            raise WorldError(f"node {node!r} is a client node; fail a cloud or edge node")
        self.node_up[index] = False
        for pod in self.pods.values():
            if pod.node == index:
                pod.serving = False
        self.env.process(self._remove_endpoints(index))

    def surge(self, multiplier: float) -> None:
        """Every endpoint's rate becomes ``rps × multiplier`` from now on."""
        if not multiplier > 0:
            raise WorldError(f"surge multiplier must be > 0, got {multiplier}")
        self.rps_multiplier = multiplier

    def _remove_endpoints(self, node: int) -> Proc:
        yield self.env.timeout(self.options.endpoint_grace_s * 1000.0)
        if self.node_up[node]:
            return
        self.left_endpoints.add(node)  # remembered: set_placement keeps them out on every re-read
        for service, pods in self.endpoints.items():
            self.endpoints[service] = [p for p in pods if p.node != node]

    # ----- running ------------------------------------------------------------------------------
    def run(self, seconds: float) -> None:
        """Advance the world by ``seconds`` of its time."""
        self.env.run(until=self.env.now + seconds * 1000.0)

    def stop_arrivals(self) -> None:
        """No new requests from now on; those in flight go on (run a while longer to let them finish)."""
        for process in self.arrival_processes:
            if process.is_alive:
                process.interrupt()

    def _arrivals(self, e: int, rate_per_ms: float) -> Proc:
        endpoint = self.workload.endpoints[e]
        try:
            while True:
                yield self.env.timeout(self.draws.exponential() / (rate_per_ms * self.rps_multiplier))
                self.env.process(self._request(e, endpoint.client, endpoint.groups))
        except simpy.Interrupt:
            return

    def _request(self, e: int, client: str, groups: tuple[tuple[Call, ...], ...]) -> Proc:
        start = self.env.now
        pods = self.endpoints.get(client)
        if not pods:
            return
        self.arrived += 1
        if self.completed.keep:
            self.arrived_ms.append(start)
        caller = pods[self.draws.choice(len(pods))]
        trace = self.traces.open() if self.traces is not None else None
        root = self.traces.span_id() if trace is not None and self.traces is not None else None
        ok = yield from self._groups(caller, groups, trace, root)
        end = self.env.now
        done = self.completed
        done.count += 1
        if done.keep:
            done.start_ms.append(start)
            done.latency_ms.append(end - start)
            done.endpoint.append(e)
            done.ok.append(ok)
        if trace is not None and root is not None:
            node = self._nodes[caller.node]
            name = self.workload.endpoints[e].name
            trace.append(SpanRecord(root, None, client, node, "server", name, start, end, 200 if ok else 500))

    def _groups(
        self, caller: Pod, groups: tuple[tuple[Call, ...], ...], trace: list[SpanRecord] | None, parent: int | None
    ) -> Proc:
        """Groups in parallel, calls of a group in sequence; True when every call answered 200."""
        if len(groups) == 1:
            return (yield from self._sequence(caller, groups[0], trace, parent))
        if not groups:
            return True
        runs = [self.env.process(self._sequence(caller, group, trace, parent)) for group in groups]
        results = yield self.env.all_of(runs)
        return all(results.values())

    def _sequence(
        self, caller: Pod, group: tuple[Call, ...], trace: list[SpanRecord] | None, parent: int | None
    ) -> Proc:
        ok = True
        for call in group:
            ok = (yield from self._call(caller, call, trace, parent)) and ok
        return ok

    def _call(self, caller: Pod, call: Call, trace: list[SpanRecord] | None, parent: int | None) -> Proc:
        """One call with Istio-like retries on connect failure; records metrics and spans."""
        env = self.env
        sent = env.now
        flags = CONNECT_FAILED_RETRIES_EXHAUSTED  # unless an attempt finds no endpoint at all (below)
        for _attempt in range(self.options.retries + 1):
            pods = self.endpoints.get(call.service)
            if not pods:
                flags = NO_HEALTHY_UPSTREAM  # Envoy answers 503 UH at once, on the first try or a retry
                break
            pod = pods[self.draws.choice(len(pods))]
            if not pod.serving:
                yield env.timeout(self.options.connect_timeout_ms)
                continue
            yield from self._hop(caller.node, pod.node, call.data_bytes)
            arrived = env.now
            with pod.cpu.request() as slot:
                yield slot
                yield env.timeout(self._service_ms(call, pod.node))
            span = self.traces.span_id() if trace is not None and self.traces is not None else None
            ok = yield from self._groups(pod, call.groups, trace, span)
            code = 200 if ok else 500
            self._record(caller, pod, call, code, sent, arrived, trace, parent, span)
            return ok
        self._record(caller, None, call, 503, sent, None, trace, parent, None, flags)
        return False

    def _record(
        self,
        caller: Pod,
        pod: Pod | None,
        call: Call,
        code: int,
        sent: float,
        arrived: float | None,
        trace: list[SpanRecord] | None,
        parent: int | None,
        span: int | None,
        flags: str = "-",
    ) -> None:
        now = self.env.now
        if self.metrics is not None:
            self.metrics.observe_call(
                caller.service, call.service, code, now - sent, None if arrived is None else now - arrived, flags
            )
        if trace is not None and self.traces is not None:
            client_span = self.traces.span_id()
            node = self._nodes[caller.node]
            trace.append(SpanRecord(client_span, parent, caller.service, node, "client", call.service, sent, now, code))
            if pod is not None and span is not None and arrived is not None:
                where = self._nodes[pod.node]
                trace.append(
                    SpanRecord(span, client_span, pod.service, where, "server", call.service, arrived, now, code)
                )

    def _service_ms(self, call: Call, node: int) -> float:
        opts = self.options
        mean = call.execution_ms[self._cpu_type[node]]
        if opts.cpu_slowdown > 0:
            high = self.cluster.cpu_free_range[node, 1]
            mean *= 1.0 + opts.cpu_slowdown * (1.0 - self.cpu_free[node] / high)
        return mean * self.draws.unit_gamma(opts.service_cv)

    def _hop(self, source: int, target: int, data_bytes: float) -> Proc:
        """Transfer on the shared NICs, then propagation with jitter; nothing on the same node."""
        if source == target:
            return
        env = self.env
        if data_bytes > 0:
            active = self.nic_active
            active[source] += 1
            active[target] += 1
            nic = self.cluster.nic_bits_per_ms
            bits_per_ms = min(
                nic[source] * (1.0 - self.utilization[source]) / active[source],
                nic[target] * (1.0 - self.utilization[target]) / active[target],
            )
            try:
                yield env.timeout(8.0 * data_bytes / bits_per_ms)
            finally:
                active[source] -= 1
                active[target] -= 1
        yield env.timeout(self._delay_ms(source, target))

    def _delay_ms(self, source: int, target: int) -> float:
        return float(self.delay_ms[self._layer[source], self._layer[target]]) * self.draws.unit_gamma(
            self.options.jitter_cv
        )

    # ----- background processes -----------------------------------------------------------------
    def _walk(self, values: np.ndarray, home: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """One mean-reverting step: back towards ``home`` by ``drift_reversion``, plus a uniform step of
        ``± drift_step × range``, clipped to the range."""
        opts = self.options
        steps = np.array([self.draws.uniform() for _ in range(values.size)]).reshape(values.shape)
        moved = values + opts.drift_reversion * (home - values) + opts.drift_step * (high - low) * (2.0 * steps - 1.0)
        return np.asarray(np.clip(moved, low, high))

    def _drift(self) -> Proc:
        cluster = self.cluster
        home = (self.delay_ms.copy(), self.utilization.copy(), self.cpu_free.copy())
        while True:
            yield self.env.timeout(self.options.drift_period_s * 1000.0)
            delay = cluster.delay_range_ms
            self.delay_ms = self._walk(self.delay_ms, home[0], delay[..., 0], delay[..., 1])
            util = cluster.utilization_range
            self.utilization = self._walk(self.utilization, home[1], util[:, 0], util[:, 1])
            cpu = cluster.cpu_free_range
            self.cpu_free = self._walk(self.cpu_free, home[2], cpu[:, 0], cpu[:, 1])

    def _pings(self) -> Proc:
        metrics = self.metrics
        assert metrics is not None
        nodes = range(len(self._nodes))
        while True:
            yield self.env.timeout(self.options.ping_period_s * 1000.0)
            for a in nodes:
                for b in nodes:
                    if a != b and self.node_up[a] and self.node_up[b]:
                        rtt_ms = self._delay_ms(a, b) + self._delay_ms(b, a)
                        metrics.observe_ping(self._nodes[a], self._nodes[b], rtt_ms / 1000.0)
