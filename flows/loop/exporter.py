"""The latency exporter: application latency **simulated from the live placement**, as Prometheus metrics.

Hollow nodes run no containers, so nothing on the local cluster can measure a request. This
exporter reads where the application's pods run from the API server (Ready, non-terminating pods
of the app, grouped by their service label and node), evaluates the CEEnv latency model of
MODEL.md §2 on that placement under the scenario's nominal conditions (optionally with seeded
multiplicative noise) and publishes the result on 127.0.0.1 for Prometheus: end-to-end latency per
endpoint and for the application, per-service latency, and node usage (the requests of the app's
pods). Every value is computed at scrape time and every help text says that it is simulated. Used
by ``reach demo`` (as the background process ``python -m flows.loop.exporter``), the experiments and
the closed-loop e2e test.
"""

from __future__ import annotations

import argparse
import math
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ceenv.latency import LatencyModel, build_network, nominal_conditions
from ceenv.scenario import Scenario, load_scenario
from ceenv.workload import load_workload
from migrator.snapshot import PodInfo

SIMULATED = "simulated by the CEEnv latency model from the live placement read from the API server"
LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 9464


@dataclass(frozen=True)
class LivePlacement:
    """Ready pods per (service, node) in scenario order, and what did not fit the scenario."""

    counts: np.ndarray  # (S, N) float
    unknown_pods: int
    missing_services: tuple[str, ...]


@dataclass(frozen=True)
class LatencyReading:
    """One evaluation of the model on a live placement; NaN latencies when a called service has no pod."""

    app_ms: float
    endpoints_ms: dict[str, float]
    services_ms: dict[str, float]
    service_pods: dict[str, int]
    node_cpu_millicores: dict[str, float]
    node_memory_bytes: dict[str, float]
    unknown_pods: int


def live_placement(pods: Iterable[PodInfo], model: LatencyModel, service_label: str) -> LivePlacement:
    """Count the Ready, non-terminating pods per service and node; pods outside the scenario are counted apart."""
    scenario = model.scenario
    services = {name: i for i, name in enumerate(scenario.service_names)}
    nodes = {name: i for i, name in enumerate(scenario.node_names)}
    counts = np.zeros((len(services), len(nodes)))
    unknown = 0
    for pod in pods:
        if not pod.ready or pod.terminating:
            continue
        s, n = services.get(pod.labels.get(service_label, "")), nodes.get(pod.node_name)
        if s is None or n is None:
            unknown += 1
            continue
        counts[s, n] += 1.0
    missing = tuple(
        name for name, called in zip(scenario.service_names, model.called_services, strict=True) if called
        if counts[services[name]].sum() == 0
    )  # fmt: skip
    return LivePlacement(counts, unknown, missing)


def _call_weights(model: LatencyModel) -> np.ndarray:
    """Each call's endpoint weight (rps share), found by walking every endpoint's call tree."""
    weights = np.zeros(len(model.call_service))
    for root, weight in zip(model.roots, model.endpoint_weights, strict=True):
        stack = [root]
        while stack:
            call = stack.pop()
            weights[call] += weight
            stack.extend(c for group in model.call_groups[call] for c in group)
    return weights


class SimulatedLatency:
    """The CEEnv model of one scenario and workload under nominal conditions, plus seeded noise."""

    def __init__(self, scenario: Scenario, model: LatencyModel, noise_pct: float = 0.0, seed: int = 0) -> None:
        self.scenario = scenario
        self.model = model
        self.costs = model.prepare(build_network(scenario, nominal_conditions(scenario)))
        self.noise_pct = noise_pct
        self.rng = np.random.default_rng(seed)
        self.call_weights = _call_weights(model)
        self.cpu_request = np.array([s.cpu_millicores for s in scenario.services])
        self.memory_request = np.array([round(s.memory_bytes) for s in scenario.services], dtype=float)

    def _noise(self) -> float:
        """A multiplicative factor ≥ 0 with standard deviation ``noise_pct`` %."""
        if self.noise_pct <= 0:
            return 1.0
        return max(0.0, 1.0 + self.noise_pct / 100.0 * float(self.rng.standard_normal()))

    def _services_ms(self, counts: np.ndarray) -> dict[str, float]:
        """Per service: execution plus the network hop from its caller, summed over its calls, rps-weighted.

        Uses the model's own per-call decomposition so that it can never drift from the formula.
        """
        own = self.model._own_costs(counts, self.costs)
        totals = np.zeros(len(self.scenario.services))
        np.add.at(totals, self.model.call_service, own * self.call_weights)
        called = self.model.called_services
        return {name: float(totals[i]) for i, name in enumerate(self.scenario.service_names) if called[i]}

    def read(self, placement: LivePlacement) -> LatencyReading:
        counts = placement.counts
        nodes = self.scenario.node_names
        usage_cpu = self.cpu_request @ counts
        usage_memory = self.memory_request @ counts
        if placement.missing_services:
            endpoints = dict.fromkeys(self.model.endpoint_names, math.nan)
            app_ms, services = math.nan, dict.fromkeys(self.scenario.service_names, math.nan)
        else:
            factor = self._noise()
            endpoints = {k: v * factor for k, v in self.model.endpoint_latencies(counts, self.costs).items()}
            app_ms = self.model.latency(counts, self.costs) * factor
            services = {k: v * factor for k, v in self._services_ms(counts).items()}
        return LatencyReading(
            app_ms=app_ms,
            endpoints_ms=endpoints,
            services_ms=services,
            service_pods={name: int(counts[i].sum()) for i, name in enumerate(self.scenario.service_names)},
            node_cpu_millicores={n: float(usage_cpu[i]) for i, n in enumerate(nodes)},
            node_memory_bytes={n: float(usage_memory[i]) for i, n in enumerate(nodes)},
            unknown_pods=placement.unknown_pods,
        )


def metric_families(reading: LatencyReading, workload: str) -> list[Any]:
    """The Prometheus metric families of one reading (every help text says it is simulated)."""
    from prometheus_client.core import GaugeMetricFamily

    def gauge(name: str, what: str, labels: list[str], values: dict[str, float] | None = None) -> Any:
        family = GaugeMetricFamily(name, f"{what}, {SIMULATED}.", labels=labels)
        for key, value in (values or {}).items():
            family.add_metric([key, workload][: len(labels)] if labels else [], value)
        return family

    app = GaugeMetricFamily("reach_app_latency_ms", f"Application end-to-end latency (rps-weighted), ms, {SIMULATED}.",
                            labels=["workload"])  # fmt: skip
    app.add_metric([workload], reading.app_ms)
    unknown = GaugeMetricFamily("reach_exporter_unknown_pods", f"Ready app pods outside the scenario, {SIMULATED}.")
    unknown.add_metric([], reading.unknown_pods)
    return [
        app,
        gauge("reach_endpoint_latency_ms", "End-to-end latency per endpoint, ms", ["endpoint", "workload"],
              reading.endpoints_ms),
        gauge("reach_service_latency_ms", "Per-service latency (execution plus the hop from its caller), ms",
              ["service", "workload"], reading.services_ms),
        gauge("reach_service_ready_pods", "Ready pods per service counted into the latency", ["service", "workload"],
              {k: float(v) for k, v in reading.service_pods.items()}),
        gauge("reach_node_cpu_usage_millicores", "CPU requested by the app's pods per node, millicores", ["node"],
              reading.node_cpu_millicores),
        gauge("reach_node_memory_usage_bytes", "Memory requested by the app's pods per node, bytes", ["node"],
              reading.node_memory_bytes),
        unknown,
    ]  # fmt: skip


class PodCache:
    """The app's pods, re-read from the API server every ``refresh_s`` by a daemon thread.

    A scrape then never waits for the API server (Prometheus' scrape timeout is one interval);
    the placement it reports is at most ``refresh_s`` old.
    """

    def __init__(self, list_pods: Callable[[], list[PodInfo]], refresh_s: float = 0.5) -> None:
        self.list_pods = list_pods
        self.refresh_s = refresh_s
        self.pods: list[PodInfo] | None = None
        self.last_error = ""
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, name="pod-cache", daemon=True)

    def start(self) -> PodCache:
        self.thread.start()
        return self

    def _follow(self) -> None:
        while not self.stop.is_set():
            try:
                self.pods = self.list_pods()
                self.last_error = ""
            except Exception as exc:  # the API server may be briefly away: keep the last placement
                self.last_error = str(exc)
            self.stop.wait(self.refresh_s)

    def current(self) -> list[PodInfo]:
        return self.pods if self.pods is not None else self.list_pods()


class LatencyCollector:
    """A prometheus_client collector that evaluates the model on the latest placement at every scrape."""

    def __init__(self, list_pods: Callable[[], list[PodInfo]], simulated: SimulatedLatency, service_label: str):
        self.list_pods = list_pods
        self.simulated = simulated
        self.service_label = service_label
        self.lock = threading.Lock()  # the generator is not thread-safe; scrapes may overlap

    def reading(self) -> LatencyReading:
        placement = live_placement(self.list_pods(), self.simulated.model, self.service_label)
        with self.lock:
            return self.simulated.read(placement)

    def collect(self) -> Iterator[Any]:
        yield from metric_families(self.reading(), self.simulated.model.workload.name)

    def describe(self) -> list[Any]:
        return []  # collected on demand: registering must not read the cluster


def pod_lister(kubeconfig: str | None, namespace: str, pod_selector: str) -> Callable[[], list[PodInfo]]:
    """A function listing the app's pods as :class:`PodInfo` (the migrator's own conversion)."""
    from migrator.kube import ClusterAdmin, make_api_client

    admin = ClusterAdmin(make_api_client(kubeconfig))
    return lambda: admin.pods(namespace, pod_selector)


def build_collector(args: argparse.Namespace) -> LatencyCollector:
    from flows.local.paths import resolve_scenario, resolve_workload

    scenario_dir = resolve_scenario(args.scenario)
    scenario = load_scenario(scenario_dir)
    model = LatencyModel(scenario, load_workload(resolve_workload(args.workload, scenario_dir), scenario))
    simulated = SimulatedLatency(scenario, model, args.noise_pct, args.seed)
    cache = PodCache(pod_lister(args.kubeconfig, args.namespace, args.pod_selector), args.refresh_s).start()
    return LatencyCollector(cache.current, simulated, args.service_label)


def live_source_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every latency source on the live placement takes (this exporter and the live world)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--kubeconfig", default=None, help="kubeconfig path (default: in-cluster)")
    parser.add_argument("--scenario", default="7-21", help="scenario directory or name")
    parser.add_argument("--workload", default="aggregator_sequential", help="workload name or call-patterns file")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--pod-selector", default="reach.io/app=demo")
    parser.add_argument("--service-label", default="app")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = live_source_parser("python -m flows.loop.exporter", __doc__.split("\n\n")[0])
    parser.add_argument("--noise-pct", type=float, default=0.0, help="standard deviation of the noise, %% of latency")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise generator")
    parser.add_argument("--refresh-s", type=float, default=0.5, help="seconds between two reads of the pods")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve the metrics on 127.0.0.1 until SIGTERM or SIGINT."""
    from prometheus_client import CollectorRegistry, start_http_server

    args = parse_args(argv)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(build_collector(args))
    server, thread = start_http_server(args.port, addr=LOOPBACK, registry=registry)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"exporter on http://{LOOPBACK}:{args.port}/metrics ({SIMULATED})", flush=True)
    stop.wait()
    server.shutdown()
    thread.join(timeout=5)
    return 0


if __name__ == "__main__":  # pragma: no cover - process entry point
    raise SystemExit(main())
