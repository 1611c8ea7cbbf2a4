"""One bounded run of the closed loop: reset the app to its start, sample latency, fire the event, migrate.

:func:`prepare_run` puts the app on its start placement (a deliberately poor one, the default
scheduler's, or a recorded one) and points the latency source at the workload; :func:`run_loop`
samples the latency from Prometheus, fires the experiment's event and, with a policy, runs the
migrator's monitoring steps for the run's duration. The events are real: a **node failure** kills
the busiest cloud/edge node's hollow kubelet by its recorded PID (SIGKILL; Kubernetes notices
only when its lease expires, ~36 s later) and, at the same moment, fails the node in the world
(``POST /control/fail-node`` on the world's loopback port: its pods stop serving at once); the
node's process is restarted and waited for until Ready when the run ends, whatever happened. A
**surge** multiplies the world's request rate (``POST /control/surge``) and scales a Deployment
up, as an autoscaler would. The mesh's histogram is read at the event and at the end
(:class:`flows.loop.stats.MeshCounters`). Used by :mod:`flows.loop.experiments` and the e2e tests.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from typing import Any

from flows.loop import app, placement
from flows.loop.app import LAYER_LABEL
from flows.loop.demo import Session, latency_query, migrator_settings, start_exporter
from flows.loop.placement import StartPlacement
from flows.loop.report import Event, LoopRun, MovePrediction
from flows.loop.stats import MeshCounters

FAST_WINDOW = "5s"  # the rate window of the plotted series, the recovery time and the calibration


def reset_app(session: Session, start: StartPlacement | None) -> None:
    """Remove the app and every cordon, then deploy it on ``start`` (None: wherever the scheduler puts it)."""
    s, admin = session.settings, session.admin
    app.delete(admin, s.namespace)
    placement.uncordon_all(admin)
    if start is None:
        app.deploy(admin, session.scenario_dir, s.namespace, replicas=s.replicas)
        app.wait_ready(admin, s.namespace)
    else:
        placement.place_app(admin, s.namespace, session.scenario_dir, start.assignment)


def sample_latency(session: Session, run: LoopRun, stop: threading.Event) -> None:
    """Read the application latency from Prometheus every ``sample_s`` until ``stop``.

    On the world also: the p95, and over a 5 s window the mean of the successful requests and the
    share of failed ones (the series of the plots, the time to recover and the calibration).
    """
    from migrator.metrics import PrometheusMetrics

    s = session.settings
    usage = "reach_node_cpu_usage_millicores"
    reader = PrometheusMetrics(session.prometheus_url, latency_query(s), usage)
    extras: list[tuple[Any, list[tuple[float, float]]]] = []
    if s.latency_source == "world":
        from flows.loop.world_live import p95_query

        extras = [
            (PrometheusMetrics(session.prometheus_url, p95_query(s.latency_window), usage), run.p95_samples),
            (PrometheusMetrics(session.prometheus_url, served_mean_query(), usage), run.fast_samples),
            (PrometheusMetrics(session.prometheus_url, failed_share_query(), usage), run.failed_share_samples),
        ]
    while not stop.is_set():
        now = time.time()
        value = reader.latency_ms()
        if value is not None:
            run.samples.append((now, value))
        for extra, series in extras:
            reading = extra.latency_ms()
            if reading is not None:
                series.append((now, reading))
        stop.wait(s.sample_s)


def served_mean_query() -> str:
    """The mean of the client's successful requests over :data:`FAST_WINDOW` (Istio's PromQL)."""
    from flows.loop.world_live import CLIENT_VIEW, mean_query

    return mean_query(FAST_WINDOW, f'{CLIENT_VIEW}, response_code="200"')


def failed_share_query() -> str:
    """The share (0…1) of the client's requests that failed over :data:`FAST_WINDOW`."""
    from flows.loop.world_live import CLIENT_VIEW

    count = "istio_request_duration_milliseconds_count"
    every = f"sum(rate({count}{{{CLIENT_VIEW}}}[{FAST_WINDOW}]))"
    ok = f'(sum(rate({count}{{{CLIENT_VIEW}, response_code="200"}}[{FAST_WINDOW}])) or vector(0))'
    return f"({every} - {ok}) / {every}"


def mesh_counters(session: Session) -> MeshCounters | None:
    """The world's request-duration histogram as the client's proxy reports it now; None when unknown."""
    from flows.loop.world_live import CLIENT_VIEW
    from migrator.metrics import PrometheusMetrics

    name, ok = "istio_request_duration_milliseconds", f'{CLIENT_VIEW}, response_code="200"'
    reader = PrometheusMetrics(session.prometheus_url, "", "reach_node_cpu_usage_millicores")
    buckets = reader.by_label(f"sum by (le) ({name}_bucket{{{CLIENT_VIEW}}})", "le")
    totals = {k: reader.by_label(f"sum({name}_{k}{{{CLIENT_VIEW}}})", "")
              for k in ("sum", "count")}  # fmt: skip
    if not buckets or not all(totals.values()):
        return None
    ok_buckets = reader.by_label(f"sum by (le) ({name}_bucket{{{ok}}})", "le")
    ok_count = reader.by_label(f"sum({name}_count{{{ok}}})", "").get("", 0.0)
    ok_sum_ms = reader.by_label(f"sum({name}_sum{{{ok}}})", "").get("", 0.0)
    return MeshCounters(
        {float(le): v for le, v in buckets.items()}, totals["sum"][""], totals["count"][""],
        {float(le): v for le, v in ok_buckets.items()}, ok_count, ok_sum_ms,
    )  # fmt: skip


def local_cluster(session: Session) -> Any:
    from flows.local.cluster import LocalCluster

    return LocalCluster(session.settings.cluster_state)


def fail_nodes(session: Session, run: LoopRun, nodes: list[str]) -> None:
    """Kill each node's hollow kubelet by its recorded PID and fail the node in the world at the same moment."""
    table = local_cluster(session).processes
    for node in nodes:
        entry = table.recorded().get(f"node-{node}")
        if entry is None or not table.is_alive(f"node-{node}"):
            raise RuntimeError(f"node {node}: no running hollow kubelet recorded in {table.pids_path}")
        os.kill(int(str(entry["pid"])), signal.SIGKILL)
        # recorded before the world is told: if that fails, the run still restarts the killed node
        run.events.append(Event(time.time(), "node-failed", "", node, str(entry["pid"])))
        if session.settings.latency_source == "world":
            post_event(session.settings.exporter_port, "/control/fail-node", {"node": node})


FAILURE_TAINTS = ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")


def restore_nodes(session: Session, nodes: list[str], timeout_s: float = 120.0) -> None:
    """Start the failed nodes' hollow kubelets again; wait until each is Ready and without the failure taints
    that the node controller set (else the next arm could not place a pod there): no leftover between runs."""
    cluster = local_cluster(session)
    for node in nodes:
        cluster.restart(f"node-{node}")
    deadline = time.monotonic() + timeout_s
    while nodes and time.monotonic() < deadline:
        tainted = [n.name for n in session.admin.nodes() if n.name in nodes and
                   any(t.key in FAILURE_TAINTS for t in n.taints)]  # fmt: skip
        if not tainted:
            return
        time.sleep(0.5)
    if nodes:
        raise TimeoutError(f"nodes {nodes} still carry a failure taint {timeout_s:.0f} s after their restart")


def failed_nodes(run: LoopRun) -> list[str]:
    return [e.source for e in run.events if e.event == "node-failed"]


def fire_event(session: Session, run: LoopRun, errors: list[BaseException]) -> None:
    """:func:`apply_event` in the timer's thread; an error is kept for the run to raise."""
    try:
        apply_event(session, run)
    except Exception as exc:  # raised again by the run, with its own traceback
        errors.append(exc)


def apply_event(session: Session, run: LoopRun) -> None:
    """The experiment's event (see the module docstring); the mesh's counters are read first."""
    s, admin = session.settings, session.admin
    counters = mesh_counters(session) if s.latency_source == "world" else None
    if counters is not None:
        run.counters["event"] = counters
    if s.experiment == "node-failure":
        client_nodes = {n for n, layer in node_layers(session).items() if layer == "client"}
        nodes = s.fail_nodes or placement.busiest_nodes(admin, s.namespace, s.fail_count, client_nodes)
        fail_nodes(session, run, nodes)
    elif s.experiment == "surge":
        if s.latency_source == "world":
            post_event(s.exporter_port, "/control/surge", {"multiplier": s.world_rps * s.surge_multiplier})
        run.events.append(Event(time.time(), "surged", "", str(s.world_rps), str(s.world_rps * s.surge_multiplier)))
        if s.surge_extra:
            current = len(placement.live_assignment(admin, s.namespace).get(s.surge_service, []))
            placement.scale_service(admin, s.namespace, s.surge_service, current + s.surge_extra)
            run.events.append(Event(time.time(), "scaled", s.surge_service, str(current), str(current + s.surge_extra)))


def post_event(port: int, path: str, payload: dict[str, Any]) -> None:
    from flows.loop.world_live import post_event as post

    post(port, path, payload)


def node_layers(session: Session) -> dict[str, str]:
    return {n.name: n.labels.get(LAYER_LABEL, "") for n in session.admin.nodes()}


def journal_events(records: list[dict[str, object]]) -> list[Event]:
    """Migration events (pod, from, to) out of the migrator's structured records."""
    sources: dict[str, str] = {}
    events = []
    for r in records:
        pod = str(r.get("pod", ""))
        if r["event"] == "migrating":
            sources[pod] = str(r.get("source", ""))
        elif r["event"] in ("migrated", "rolled-back"):
            events.append(Event(float(str(r["time"])), str(r["event"]), pod, sources.get(pod, ""), str(r["target"])))
    return events


def _ms(value: object) -> float | None:
    return float(str(value)) if isinstance(value, int | float) and math.isfinite(value) else None


def journal_moves(records: list[dict[str, object]]) -> list[MovePrediction]:
    """Every completed move (``migrating`` … ``migrated``) with the service's predicted latencies, if it gave them."""
    started: dict[str, dict[str, object]] = {}
    moves = []
    for r in records:
        pod = str(r.get("pod", ""))
        if r["event"] == "migrating":
            started[pod] = r
        elif r["event"] == "migrated" and pod in started:
            begin = started.pop(pod)
            moves.append(MovePrediction(
                pod, str(begin.get("source", "")), str(r.get("target", "")), float(str(begin["time"])),
                float(str(r["time"])), _ms(begin.get("predicted_before_ms")), _ms(begin.get("predicted_after_ms")),
            ))  # fmt: skip
    return moves


def run_loop(session: Session, label: str, url: str | None, policy: str) -> LoopRun:
    """One bounded run: sample latency, fire the experiment's event, (with a policy) run the migrator.

    A failed node is restarted when the run ends, also when it ends with an error.
    """
    run = LoopRun(label, policy if url else "", time.time())
    try:
        _run(session, run, url)
    finally:
        restore_nodes(session, failed_nodes(run))
    return run


def _run(session: Session, run: LoopRun, url: str | None) -> None:
    from migrator.app import build_controller

    s = session.settings
    stop = threading.Event()
    sampler = threading.Thread(target=sample_latency, args=(session, run, stop), daemon=True)
    errors: list[BaseException] = []
    timer = threading.Timer(s.event_at_s, fire_event, args=(session, run, errors)) if s.experiment != "none" else None
    end = run.started_s + s.duration_s
    try:  # the threads start inside it: whatever fails after (the migrator's build, Ctrl-C), they are stopped
        sampler.start()
        if timer:
            timer.start()
        controller = build_controller(migrator_settings(session, url), session.telemetry) if url else None
        if controller is not None:
            controller.clean_up()
        while time.time() < end:
            if controller is not None:
                run.cycles.extend((time.time(), o.kind, o.detail) for o in controller.monitoring_step())
            time.sleep(max(0.0, min(s.interval_s, end - time.time())))
    finally:
        stop.set()
        if timer:
            timer.cancel()  # an event not yet fired never fires
            if timer.ident is not None:
                timer.join(timeout=30)  # an event under way finishes (and records its failed node) first
        if sampler.ident is not None:
            sampler.join(timeout=10)
    if errors:
        raise RuntimeError(f"{run.label}: the {s.experiment} event failed: {errors[0]}") from errors[0]
    counters = mesh_counters(session) if s.latency_source == "world" else None
    if counters is not None:
        run.counters["end"] = counters
    run.ended_s = time.time()
    if controller is not None:
        run.events.extend(journal_events(controller.journal.records))
        run.predictions.extend(journal_moves(controller.journal.records))
    run.events.sort(key=lambda e: e.time_s)


def start_placement(session: Session, workload: str) -> StartPlacement:
    from ceenv.latency import LatencyModel
    from ceenv.layout import layout_from_scenario
    from ceenv.scenario import load_scenario
    from ceenv.workload import load_workload
    from flows.local.paths import resolve_workload
    from flows.loop.placement import poor_start

    scenario = load_scenario(session.scenario_dir)
    model = LatencyModel(scenario, load_workload(resolve_workload(workload, session.scenario_dir), scenario))
    return poor_start(model, layout_from_scenario(scenario), session.settings.replicas, session.settings.seed)


def twin_on_live(session: Session, workload: str) -> float | None:
    """The twin's latency (MODEL.md §2, nominal) of the app's live placement; None if a called service has no pod."""
    from ceenv.scenario import load_scenario
    from ceenv.workload import load_workload
    from flows.local.paths import resolve_workload
    from flows.loop.world.measure import twin_latency_ms
    from flows.loop.world.model import Cluster, WorldError, check_pods, pods_from_assignment

    scenario = load_scenario(session.scenario_dir)
    work = load_workload(resolve_workload(workload, session.scenario_dir), scenario)
    live = placement.live_assignment(session.admin, session.settings.namespace)
    try:
        pods = pods_from_assignment(Cluster.from_scenario(scenario), live)
        check_pods(work, pods)
    except WorldError:
        return None
    return twin_latency_ms(scenario, work, pods)


def wait_for_first_sample(session: Session, timeout_s: float = 60.0) -> None:
    """Prometheus answers nothing until its first scrape after the exporter (re)started: wait for it."""
    from migrator.metrics import PrometheusMetrics

    query = latency_query(session.settings)
    reader = PrometheusMetrics(session.prometheus_url, query, "reach_node_cpu_usage_millicores")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if reader.latency_ms() is not None:
            return
        time.sleep(0.5)
    raise TimeoutError(f"Prometheus at {session.prometheus_url} has no latency ({query}): {reader.last_error}")


def prepare_run(session: Session, workload: str, start: StartPlacement | None = None) -> StartPlacement | None:
    """Reset the app to ``start`` (default: poor or the scheduler's, as settings say) and point the exporter at ``workload``."""
    if start is None and session.settings.start == "poor":
        start = start_placement(session, workload)
    reset_app(session, start)
    start_exporter(session.settings, session.kubeconfig, workload)
    time.sleep(2.5)  # let Prometheus scrape the restarted exporter before the first sample
    wait_for_first_sample(session)
    return start
