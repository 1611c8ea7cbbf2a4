"""The live world: the emulator run in real time on the placement read from the API server, as a mesh's metrics.

Hollow nodes run no containers, so nothing on the local cluster serves a request. This process
runs :class:`flows.loop.world.emulator.World` stepped to the wall clock (every ``step_s`` it
advances the emulation to the time elapsed since its start) on the app's Ready, non-terminating
pods, re-read every ``refresh_s`` through the migrator's adapter (:class:`PodInfo` from
``migrator.kube``). It publishes on 127.0.0.1 what Istio's proxies and Goldpinger would publish on
a real cluster: ``istio_request_duration_milliseconds`` (histogram), ``istio_requests_total`` and
``goldpinger_peers_response_time_s``, plus ``reach_world_*`` gauges about itself; with ``--traces
FILE`` it also rewrites FILE every ``--traces-every-s`` with the traces of the requests completed in
the last ``--traces-window-s`` (Jaeger query-API JSON, what a mesh's tracer sends to Jaeger;
:mod:`flows.loop.world.trace_window`). Prometheus
scrapes it; the migrator's latency query is the same PromQL as on an Istio cluster
(:data:`MEAN_QUERY`, :data:`P95_QUERY`). The emulation starts when every service the workload
calls has a Ready pod; afterwards a service without pods answers 503, as behind a mesh. The same
loopback port takes the experiments' events (:class:`ControlServer`): ``POST /control/fail-node``
``{"node": N}`` fails node N in the world the moment its hollow kubelet is killed (a node is a
machine: its pods stop serving at once, while Kubernetes only notices ~40 s later; after the world's
``endpoint_grace_s`` they leave its endpoints and the re-reads of the pods keep them out), and ``POST
/control/surge`` ``{"multiplier": M}`` steps every endpoint's rate to ``rps × M``. Used by
``reach demo`` (as ``python -m flows.loop.world_live``), its experiments and the closed-loop e2e tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ceenv.scenario import Scenario
from ceenv.workload import Workload
from flows.loop.world.emulator import World
from flows.loop.world.metrics import REQUEST_LABELS, MeshMetrics
from flows.loop.world.model import Cluster, PodSpec, WorldError, WorldOptions
from flows.loop.world.trace_window import RollingTraceLog
from migrator.snapshot import PodInfo

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 9464
CLIENT_VIEW = 'reporter="source", source_workload="client", destination_workload="aggregator"'
RUN_LABEL = "run_id"  # --run-id: on every mesh series, so a run's queries never read an earlier world's samples


def client_view(run_id: str = "") -> str:
    """:data:`CLIENT_VIEW`, narrowed to the series of the world started with ``--run-id run_id`` (if given)."""
    return f'{CLIENT_VIEW}, {RUN_LABEL}="{run_id}"' if run_id else CLIENT_VIEW


def mean_query(window: str = "1m", selector: str = CLIENT_VIEW) -> str:
    """Istio's mean request duration as the client's proxy sees it: rate(sum) / rate(count), ms."""
    return (
        f"sum(rate(istio_request_duration_milliseconds_sum{{{selector}}}[{window}]))"
        f" / sum(rate(istio_request_duration_milliseconds_count{{{selector}}}[{window}]))"
    )


def p95_query(window: str = "1m", selector: str = CLIENT_VIEW) -> str:
    """Istio's p95 request duration from the histogram, ms."""
    return (
        "histogram_quantile(0.95, sum by (le) "
        f"(rate(istio_request_duration_milliseconds_bucket{{{selector}}}[{window}])))"
    )


MEAN_QUERY, P95_QUERY = mean_query(), p95_query()


def live_pod_specs(pods: Iterable[PodInfo], cluster: Cluster, service_label: str) -> tuple[list[PodSpec], int]:
    """Ready, non-terminating pods of known services on known nodes; the second value counts the others."""
    services = set(cluster.scenario.service_names)
    specs, unknown = [], 0
    for pod in pods:
        if not pod.ready or pod.terminating:
            continue
        service = pod.labels.get(service_label, "")
        if service not in services or pod.node_name not in cluster.node_names:
            unknown += 1
            continue
        specs.append(PodSpec(pod.name, service, cluster.node_names.index(pod.node_name)))
    return specs, unknown


class LiveWorld:
    """A :class:`World` stepped to the wall clock on a placement that ``list_pods`` reports."""

    def __init__(
        self,
        scenario: Scenario,
        workload: Workload,
        list_pods: Callable[[], list[PodInfo]],
        options: WorldOptions,
        seed: int = 0,
        service_label: str = "app",
        refresh_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        traces: TraceExport | None = None,
    ) -> None:
        self.scenario, self.workload, self.options, self.seed = scenario, workload, options, seed
        self.cluster = Cluster.from_scenario(scenario)
        self.list_pods = list_pods
        self.service_label = service_label
        self.refresh_s = refresh_s
        self.clock = clock
        self.metrics = MeshMetrics()
        self.world: World | None = None
        self.started_at = 0.0
        self.last_refresh = float("-inf")
        self.unknown_pods = 0
        self.pods_seen = 0
        self.last_error = ""
        self.traces = traces
        self.failed_nodes: list[str] = []  # in the order they failed; applied to a world created later too
        self.events: queue.SimpleQueue[tuple[str, str | float]] = queue.SimpleQueue()

    # ----- events, from any thread (the control server's); applied by the stepping thread -------------
    def fail_node(self, node: str) -> None:
        """Fail ``node`` at the next step (≤ ``step_s`` later); raises :class:`WorldError` for a bad name."""
        index = self.cluster.node_index(node, "fail-node")
        if self.scenario.nodes[index].layer == "client":
            raise WorldError(f"node {node!r} is a client node; fail a cloud or edge node")
        self.events.put(("fail-node", node))

    def surge(self, multiplier: float) -> None:
        """Every endpoint's rate becomes ``rps × multiplier`` at the next step."""
        if not multiplier > 0:
            raise WorldError(f"surge multiplier must be > 0, got {multiplier}")
        self.events.put(("surge", multiplier))

    def _apply_events(self) -> None:
        while not self.events.empty():
            kind, value = self.events.get()
            if kind == "fail-node" and str(value) not in self.failed_nodes:
                self.failed_nodes.append(str(value))
                if self.world is not None:
                    self.world.fail_node(str(value))
            elif kind == "surge":
                self.options = dataclasses.replace(self.options, rps_multiplier=float(value))
                if self.world is not None:
                    self.world.surge(float(value))

    def _refresh(self, now: float) -> None:
        self.last_refresh = now
        try:
            specs, self.unknown_pods = live_pod_specs(self.list_pods(), self.cluster, self.service_label)
        except Exception as exc:  # the API server may be briefly away: keep the last placement
            self.last_error = str(exc)
            return
        self.last_error = ""
        self.pods_seen = len(specs)
        if self.world is not None:
            self.world.set_placement(specs, require_all=False)
        elif self.workload.services() <= {s.service for s in specs}:
            log = self.traces.log if self.traces is not None else None
            self.world = World(
                self.scenario, self.workload, specs, self.options, self.seed, metrics=self.metrics, traces=log
            )
            self.world.completed.keep = False  # runs for hours: the metrics keep what matters, in constant memory
            for node in self.failed_nodes:
                self.world.fail_node(node)
            self.started_at = now

    def step(self) -> None:
        """Re-read the pods when due, then advance the emulation to the wall clock."""
        now = self.clock()
        self._apply_events()
        if now - self.last_refresh >= self.refresh_s:
            self._refresh(now)
        if self.world is not None:
            target_ms = (now - self.started_at) * 1000.0
            if target_ms > self.world.env.now:
                self.world.env.run(until=target_ms)
            if self.traces is not None:
                self.traces.maybe_write(now, self.world.env.now, time.time() - (now - self.started_at))

    def run(self, stop: threading.Event, step_s: float = 0.05) -> None:
        while not stop.is_set():
            self.step()
            stop.wait(step_s)


class TraceExport:
    """Where and how often a live world writes the traces of its last ``log.window_ms`` (``--traces FILE``)."""

    def __init__(self, path: Path, window_s: float = 20.0, every_s: float = 2.0) -> None:
        if every_s <= 0:
            raise ValueError(f"--traces-every-s {every_s}: give a positive number of seconds")
        self.path, self.every_s = path, every_s
        self.log = RollingTraceLog(window_ms=window_s * 1000.0)
        self.last_write = float("-inf")
        self.written = 0

    def maybe_write(self, now: float, virtual_ms: float, epoch_s: float) -> None:
        """Rewrite the file when ``every_s`` passed since the last write (``now``: the world's clock, s)."""
        if now - self.last_write >= self.every_s:
            self.last_write = now
            self.written = self.log.write(self.path, virtual_ms, int(epoch_s))


class MeshCollector:
    """A prometheus_client collector for the world's mesh metrics (read without stopping the world).

    With a ``run_id`` every mesh series also carries ``run_id="<run_id>"``: a world restarted for the
    next run exports new series, so a query that selects its ``run_id`` (:func:`client_view`) never
    mixes in the samples of the world before it (same job and instance to Prometheus)."""

    def __init__(self, live: LiveWorld, run_id: str = "") -> None:
        self.live = live
        self.run_label, self.run_value = ([RUN_LABEL], [run_id]) if run_id else ([], [])

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        metrics = self.live.metrics
        for name, help_text, labels, series in metrics.families():
            family = HistogramMetricFamily(name, help_text, labels=[*labels, *self.run_label])
            for key, hist in dict(series).items():  # a dict copy is atomic under the GIL
                family.add_metric([*key, *self.run_value], hist.cumulative(), hist.total)
            yield family
        requests = CounterMetricFamily(
            "istio_requests", "Counter of requests (world emulation).", labels=[*REQUEST_LABELS, *self.run_label]
        )
        for key, hist in dict(metrics.requests).items():
            requests.add_metric([*key, *self.run_value], hist.count)
        yield requests
        world = self.live.world
        for name, help_text, value in (
            ("reach_world_running", "1 once the world emulates requests (every called service had a pod).", world is not None),
            ("reach_world_time_seconds", "Emulated time since the world started, s.", world.env.now / 1000 if world else 0.0),
            ("reach_world_requests", "Requests the world completed.", world.completed.count if world else 0),
            ("reach_world_pods", "Ready app pods the world runs on.", self.live.pods_seen),
            ("reach_world_unknown_pods", "Ready app pods outside the scenario (ignored).", self.live.unknown_pods),
        ):  # fmt: skip
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], float(value))
            yield gauge
        failed = GaugeMetricFamily("reach_world_node_failed", "1 for a node failed by an event.", labels=["node"])
        for node in list(self.live.failed_nodes):
            failed.add_metric([node], 1.0)
        yield failed

    def describe(self) -> list[Any]:
        return []


class ControlServer:
    """``/metrics`` (the mesh's metrics) and the events' ``POST /control/…`` on one loopback port (a daemon thread)."""

    def __init__(self, live: LiveWorld, port: int, run_id: str = "") -> None:
        from prometheus_client import CollectorRegistry

        self.live = live
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(MeshCollector(live, run_id))
        self.server = ThreadingHTTPServer((LOOPBACK, port), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, name="world-control", daemon=True)

    def handle(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        """Apply one event; (HTTP status, JSON answer). A bad body or node is a 400 naming the fix."""
        try:
            payload = json.loads(body or b"{}")
            if path == "/control/fail-node":
                self.live.fail_node(str(payload["node"]))
                return 200, {"failed": str(payload["node"])}
            if path == "/control/surge":
                self.live.surge(float(payload["multiplier"]))
                return 200, {"multiplier": float(payload["multiplier"])}
        except (ValueError, KeyError, TypeError, WorldError) as exc:
            return 400, {"detail": f"{path}: {exc}; send {{'node': NAME}} or {{'multiplier': M > 0}} as JSON"}
        return 404, {"detail": f"unknown path {path}: POST /control/fail-node or /control/surge"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        control = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

                if self.path.split("?", 1)[0] != "/metrics":
                    self._send(404, b"GET /metrics", "text/plain")
                    return
                self._send(200, generate_latest(control.registry), CONTENT_TYPE_LATEST)

            def do_POST(self) -> None:
                status, answer = control.handle(
                    self.path, self.rfile.read(int(self.headers.get("Content-Length") or 0))
                )
                self._send(status, json.dumps(answer).encode(), "application/json")

            def _send(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                return

        return Handler

    def start(self) -> ControlServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def post_event(port: int, path: str, payload: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
    """POST one event to the world on 127.0.0.1:``port`` (``/control/fail-node`` or ``/control/surge``)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://{LOOPBACK}:{port}{path}", json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as answer:
            return dict(json.loads(answer.read()))
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"the world on port {port} refused {path} {payload}: {exc.read().decode()}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from flows.loop.exporter import live_source_parser

    parser = live_source_parser("python -m flows.loop.world_live", __doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the world")
    parser.add_argument("--rps", type=float, default=1.0, help="multiplies every endpoint's rps")
    parser.add_argument("--ideal", action="store_true", help="fixed service times, no jitter, no drift")
    parser.add_argument("--refresh-s", type=float, default=1.0, help="seconds between two reads of the pods")
    parser.add_argument("--traces", type=Path, default=None, help="rewrite this Jaeger JSON file with recent traces")
    parser.add_argument("--traces-window-s", type=float, default=20.0, help="--traces: seconds of requests kept")
    parser.add_argument("--traces-every-s", type=float, default=2.0, help="--traces: seconds between two writes")
    parser.add_argument("--run-id", default="", help="label every mesh series run_id=RUN_ID (one run's series apart)")
    return parser.parse_args(argv)


def build(args: argparse.Namespace) -> LiveWorld:
    from ceenv.scenario import load_scenario
    from ceenv.workload import load_workload
    from flows.local.paths import resolve_scenario, resolve_workload
    from flows.loop.exporter import pod_lister

    scenario_dir = resolve_scenario(args.scenario)
    scenario = load_scenario(scenario_dir)
    workload = load_workload(resolve_workload(args.workload, scenario_dir), scenario)
    options = WorldOptions(rps_multiplier=args.rps)
    if args.ideal:
        options = options.idealised()
    options.check()
    lister = pod_lister(args.kubeconfig, args.namespace, args.pod_selector)
    traces = TraceExport(args.traces, args.traces_window_s, args.traces_every_s) if args.traces else None
    return LiveWorld(scenario, workload, lister, options, args.seed, args.service_label, args.refresh_s, traces=traces)


def main(argv: list[str] | None = None) -> int:
    """Run the world and serve its metrics and events on 127.0.0.1 until SIGTERM or SIGINT."""
    args = parse_args(argv)
    live = build(args)
    control = ControlServer(live, args.port, args.run_id).start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"world on http://{LOOPBACK}:{args.port}/metrics (Istio- and Goldpinger-shaped, emulated)", flush=True)
    live.run(stop)
    control.close()
    return 0


if __name__ == "__main__":  # pragma: no cover - process entry point
    raise SystemExit(main())
