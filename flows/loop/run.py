"""One bounded run of the closed loop: reset the app to its start, sample latency, fire the event, migrate.

:func:`prepare_run` puts the app on its start placement (a deliberately poor one, or the default
scheduler's) and points the exporter at the workload; :func:`run_loop` samples the latency from
Prometheus, fires the experiment's event (drain the busiest nodes, or scale a service up) and, with
a policy, runs the migrator's monitoring steps for the run's duration. Used by
:mod:`flows.loop.experiments` and the closed-loop e2e test.
"""

from __future__ import annotations

import threading
import time

from flows.loop import app, placement
from flows.loop.app import LAYER_LABEL
from flows.loop.demo import Session, latency_query, migrator_settings, start_exporter
from flows.loop.placement import StartPlacement
from flows.loop.report import Event, LoopRun


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
    """Read the application latency from Prometheus every ``sample_s`` until ``stop``."""
    from migrator.metrics import PrometheusMetrics

    s = session.settings
    reader = PrometheusMetrics(session.prometheus_url, latency_query(s), "reach_node_cpu_usage_millicores")
    p95 = None
    if s.latency_source == "world":
        from flows.loop.world_live import p95_query

        p95 = PrometheusMetrics(session.prometheus_url, p95_query(s.latency_window), "reach_node_cpu_usage_millicores")
    while not stop.is_set():
        value = reader.latency_ms()
        if value is not None:
            run.samples.append((time.time(), value))
        tail = p95.latency_ms() if p95 is not None else None
        if tail is not None:
            run.p95_samples.append((time.time(), tail))
        stop.wait(s.sample_s)


def apply_event(session: Session, run: LoopRun) -> None:
    """The experiment's event: drain the busiest nodes, or scale the surge service up."""
    s, admin = session.settings, session.admin
    if s.experiment == "node-failure":
        client_nodes = {n for n, layer in node_layers(session).items() if layer == "client"}
        nodes = s.drain or placement.busiest_nodes(admin, s.namespace, s.drain_count, client_nodes)
        for pod, node in placement.drain_nodes(admin, s.namespace, nodes):
            run.events.append(Event(time.time(), "evicted", pod, node, ""))
        run.events.append(Event(time.time(), "drained", "", ",".join(nodes), ""))
    elif s.experiment == "surge":
        current = len(placement.live_assignment(admin, s.namespace).get(s.surge_service, []))
        placement.scale_service(admin, s.namespace, s.surge_service, current + s.surge_extra)
        run.events.append(Event(time.time(), "scaled", s.surge_service, str(current), str(current + s.surge_extra)))


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


def run_loop(session: Session, label: str, url: str | None, policy: str) -> LoopRun:
    """One bounded run: sample latency, fire the experiment's event, and (with a policy) run the migrator."""
    from migrator.app import build_controller

    s = session.settings
    run = LoopRun(label, policy if url else "", time.time())
    stop = threading.Event()
    sampler = threading.Thread(target=sample_latency, args=(session, run, stop), daemon=True)
    sampler.start()
    timer = threading.Timer(s.event_at_s, apply_event, args=(session, run)) if s.experiment != "none" else None
    if timer:
        timer.start()
    controller = build_controller(migrator_settings(session, url), session.telemetry) if url else None
    if controller is not None:
        controller.clean_up()
    end = run.started_s + s.duration_s
    while time.time() < end:
        if controller is not None:
            controller.monitoring_step()
        time.sleep(max(0.0, min(s.interval_s, end - time.time())))
    stop.set()
    sampler.join(timeout=10)
    if timer:
        timer.cancel()
    run.ended_s = time.time()
    if controller is not None:
        run.events.extend(journal_events(controller.journal.records))
    run.events.sort(key=lambda e: e.time_s)
    return run


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


def prepare_run(session: Session, workload: str) -> StartPlacement | None:
    """Reset the app to its start (poor or the scheduler's) and point the exporter at ``workload``."""
    start = start_placement(session, workload) if session.settings.start == "poor" else None
    reset_app(session, start)
    start_exporter(session.settings, session.kubeconfig, workload)
    time.sleep(2.5)  # let Prometheus scrape the restarted exporter before the first sample
    wait_for_first_sample(session)
    return start
