"""One bounded run of the closed loop: reset the app to its start, sample latency, fire the event, migrate.

:func:`prepare_run` puts the app on its start placement (a deliberately poor one, the default
scheduler's, or a recorded one) and points the latency source at the workload; :func:`run_loop`
samples the latency from Prometheus, fires the experiment's event and, with a policy, runs the
migrator's monitoring steps for the run's duration. The events are real: a **node failure** kills
the busiest cloud/edge node's hollow kubelet by its recorded PID (SIGKILL; Kubernetes notices
only when its lease expires, ~36 s later) and, at the same moment, fails the node in the world
(``POST /control/fail-node`` on the world's loopback port: its pods stop serving at once); the
node's process is restarted and waited for until Ready (and its lease renewed by the new kubelet)
when the run ends, whatever happened; a run that has ended kills no node (:class:`EventGate`). A
**surge** multiplies the world's request rate (``POST /control/surge``) and scales a Deployment
up, as an autoscaler would. The mesh's histogram is read at the event and at the end, exactly
``duration_s`` after the start whatever the migrator is doing (it steps in its own thread), so
every arm measures the same window (:class:`flows.loop.stats.MeshCounters`). Every run gets a
fresh world, and its queries select that world's ``run_id`` only. Used by
:mod:`flows.loop.experiments` and the e2e tests.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from flows.loop import app, placement
from flows.loop.app import LAYER_LABEL
from flows.loop.demo import Session, latency_query, migrator_settings, start_exporter
from flows.loop.placement import StartPlacement
from flows.loop.report import Event, LoopRun, MovePrediction
from flows.loop.stats import MeshCounters

FAST_WINDOW = "5s"  # the rate window of the plotted series, the recovery time and the calibration
EVENT_JOIN_S = 30.0  # how long a run waits for an event under way when it ends (it never kills a node afterwards)
MIGRATOR_JOIN_S = 60.0  # a migrator step under way at the end finishes first (the deadline of a migration is 30 s)

log = logging.getLogger(__name__)


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
        from flows.loop.world_live import client_view, p95_query

        p95 = p95_query(s.latency_window, client_view(s.run_id))
        extras = [
            (PrometheusMetrics(session.prometheus_url, p95, usage), run.p95_samples),
            (PrometheusMetrics(session.prometheus_url, served_mean_query(s.run_id), usage), run.fast_samples),
            (PrometheusMetrics(session.prometheus_url, failed_share_query(s.run_id), usage), run.failed_share_samples),
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


def served_mean_query(run_id: str = "") -> str:
    """The mean of the client's successful requests over :data:`FAST_WINDOW` (Istio's PromQL; the run's world)."""
    from flows.loop.world_live import client_view, mean_query

    return mean_query(FAST_WINDOW, f'{client_view(run_id)}, response_code="200"')


def failed_share_query(run_id: str = "") -> str:
    """The share (0…1) of the client's requests that failed over :data:`FAST_WINDOW` (the run's world)."""
    from flows.loop.world_live import client_view

    count, view = "istio_request_duration_milliseconds_count", client_view(run_id)
    every = f"sum(rate({count}{{{view}}}[{FAST_WINDOW}]))"
    ok = f'(sum(rate({count}{{{view}, response_code="200"}}[{FAST_WINDOW}])) or vector(0))'
    return f"({every} - {ok}) / {every}"


def mesh_counters(session: Session) -> MeshCounters | None:
    """The run's world's request-duration histogram as the client's proxy reports it now; None when unknown."""
    from flows.loop.world_live import client_view
    from migrator.metrics import PrometheusMetrics

    view = client_view(session.settings.run_id)
    name, ok = "istio_request_duration_milliseconds", f'{view}, response_code="200"'
    reader = PrometheusMetrics(session.prometheus_url, "", "reach_node_cpu_usage_millicores")
    buckets = reader.by_label(f"sum by (le) ({name}_bucket{{{view}}})", "le")
    totals = {k: reader.by_label(f"sum({name}_{k}{{{view}}})", "")
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


class RunEnded(RuntimeError):
    """The run ended (and may already be restarting its failed nodes) before its event acted: nothing was done."""


@dataclass
class EventGate:
    """What the run and its event's thread share: the event's errors, and whether the run has ended.

    A node is killed and recorded as one step under ``lock``, and only while the run is open; the run
    closes the gate (under the same lock) before it restarts the nodes recorded. So every killed node
    is restarted, and a run that ended kills no node afterwards, however long the event took."""

    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False

    def close(self) -> None:
        with self.lock:
            self.closed = True

    def check_open(self, run: LoopRun, what: str) -> None:
        """Raise :class:`RunEnded` when the run has ended (call under ``lock``)."""
        if self.closed:
            raise RunEnded(f"{run.label}: the run ended before its event could {what}; nothing was done")


def fail_nodes(session: Session, run: LoopRun, nodes: list[str], gate: EventGate | None = None) -> None:
    """Kill each node's hollow kubelet by its recorded PID and fail the node in the world at the same moment."""
    gate = gate if gate is not None else EventGate()
    table = local_cluster(session).processes
    for node in nodes:
        entry = table.recorded().get(f"node-{node}")
        if entry is None or not table.is_alive(f"node-{node}"):
            raise RuntimeError(f"node {node}: no running hollow kubelet recorded in {table.pids_path}")
        with gate.lock:  # killed and recorded together, while the run is open: it restarts every node it records
            gate.check_open(run, f"fail node {node}")
            os.kill(int(str(entry["pid"])), signal.SIGKILL)
            # recorded before the world is told: if that fails, the run still restarts the killed node
            run.events.append(Event(time.time(), "node-failed", "", node, str(entry["pid"])))
        if session.settings.latency_source == "world":
            post_event(session.settings.exporter_port, "/control/fail-node", {"node": node})


FAILURE_TAINTS = ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")


def restore_nodes(session: Session, nodes: list[str], timeout_s: float = 120.0) -> None:
    """Start the failed nodes' hollow kubelets again; wait until each is back: Ready, without the failure taints
    that the node controller set (else the next arm could not place a pod there) and with its Lease renewed by
    the new kubelet. A node killed shortly before the end was never declared NotReady, so its Ready status is
    the dead kubelet's: only the renewal says the new one runs (else the next arm could see it fail late)."""
    from flows.local.ops import restart_cluster_component

    cluster = local_cluster(session)
    restarted_s: dict[str, float] = {}
    for node in nodes:
        restarted_s[node] = time.time()
        # through ops: the registry's record follows the new PID, so that `reach down` stops the new kubelet
        restart_cluster_component(cluster, f"node-{node}")
    deadline = time.monotonic() + timeout_s
    waiting, problem = list(nodes), ""
    while waiting and time.monotonic() < deadline:
        tainted = {n.name for n in session.admin.nodes() if n.name in waiting and
                   any(t.key in FAILURE_TAINTS for t in n.taints)}  # fmt: skip
        try:
            stale = {n for n in waiting if (session.admin.lease_renewed_s(n) or 0.0) <= restarted_s[n]}
        except Exception as exc:  # the API server may be briefly away: ask again
            stale, problem = set(waiting), f"; reading their leases failed: {exc}"
        waiting = [n for n in waiting if n in tainted or n in stale]
        if waiting:
            time.sleep(0.5)
    if waiting:
        raise TimeoutError(
            f"nodes {waiting} still carry a failure taint or an unrenewed lease {timeout_s:.0f} s after their "
            f"restart{problem}: `reach restart node-NAME`, or `reach down` and start again"
        )


def failed_nodes(run: LoopRun) -> list[str]:
    return [e.source for e in run.events if e.event == "node-failed"]


def fire_event(session: Session, run: LoopRun, gate: EventGate) -> None:
    """:func:`apply_event` in the timer's thread; an error is kept for the run to raise."""
    try:
        apply_event(session, run, gate)
    except Exception as exc:  # raised again by the run, with its own traceback
        gate.errors.append(exc)


def read_counters(session: Session, run: LoopRun, key: str) -> None:
    """The mesh's histogram now, kept as ``run.counters[key]`` with the time it was read (the world only)."""
    if session.settings.latency_source != "world":
        return
    read_s = time.time()
    counters = mesh_counters(session)
    if counters is not None:
        run.counters[key], run.counted_s[key] = counters, read_s


def apply_event(session: Session, run: LoopRun, gate: EventGate | None = None) -> None:
    """The experiment's event (see the module docstring); the mesh's counters are read first."""
    s, admin = session.settings, session.admin
    gate = gate if gate is not None else EventGate()
    read_counters(session, run, "event")
    if s.experiment == "node-failure":
        nodes = s.fail_nodes or placement.busiest_nodes(admin, s.namespace, s.fail_count, client_nodes(session))
        fail_nodes(session, run, nodes, gate)
    elif s.experiment == "surge":
        with gate.lock:
            gate.check_open(run, "surge")
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


def client_nodes(session: Session) -> set[str]:
    return {name for name, layer in node_layers(session).items() if layer == "client"}


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

    A failed node is restarted when the run ends, also when it ends with an error; an error of that
    restart does not hide the run's own (it is logged and noted on it).
    """
    run = LoopRun(label, policy if url else "", time.time())
    gate = EventGate()
    failure: BaseException | None = None
    try:
        _run(session, run, url, gate)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        gate.close()  # from here on the event kills no node: the nodes recorded are all it killed
        try:
            restore_nodes(session, failed_nodes(run))
        except Exception as exc:
            if failure is None:
                raise
            log.error("%s: restarting the failed nodes failed too: %s", run.label, exc)
            failure.add_note(f"and restarting its failed nodes {failed_nodes(run)} failed too: {exc}")
    return run


def migrate_until(controller: Any, run: LoopRun, halt: threading.Event, interval_s: float,
                  errors: list[BaseException], failed: threading.Event) -> None:  # fmt: skip
    """The migrator's monitoring steps, every ``interval_s``, until ``halt`` (a step under way finishes)."""
    try:
        while not halt.is_set():
            run.cycles.extend((time.time(), o.kind, o.detail) for o in controller.monitoring_step())
            halt.wait(interval_s)
    except Exception as exc:  # raised again by the run
        errors.append(exc)
        failed.set()


def _run(session: Session, run: LoopRun, url: str | None, gate: EventGate) -> None:
    from migrator.app import build_controller

    s = session.settings
    stop, halt, failed = threading.Event(), threading.Event(), threading.Event()
    sampler = threading.Thread(target=sample_latency, args=(session, run, stop), daemon=True)
    timer = threading.Timer(s.event_at_s, fire_event, args=(session, run, gate)) if s.experiment != "none" else None
    migrator_errors: list[BaseException] = []
    migrating: threading.Thread | None = None
    controller = None
    end = run.started_s + s.duration_s
    try:  # the threads start inside it: whatever fails after (the migrator's build, Ctrl-C), they are stopped
        sampler.start()
        if timer:
            timer.start()
        controller = build_controller(migrator_settings(session, url), session.telemetry) if url else None
        if controller is not None:
            controller.clean_up()
            args = (controller, run, halt, s.interval_s, migrator_errors, failed)
            migrating = threading.Thread(target=migrate_until, args=args, daemon=True)
            migrating.start()
        # The measurement ends at `end` in every arm, whatever a migrator step is doing then (it may wait
        # up to its migration deadline for a replacement pod): the same window with and without a migrator.
        failed.wait(max(0.0, end - time.time()))
        gate.close()  # the window ends: an event that has not acted by now never acts (nor kills a node)
        if not failed.is_set():
            read_counters(session, run, "end")
            run.ended_s = time.time()
    finally:
        stop.set()
        halt.set()
        if timer:
            timer.cancel()  # an event not yet fired never fires
            if timer.ident is not None:
                timer.join(timeout=EVENT_JOIN_S)  # an event under way finishes (and records its failed node) first
        if sampler.ident is not None:
            sampler.join(timeout=10)
        if migrating is not None:
            migrating.join(timeout=MIGRATOR_JOIN_S)
    if migrator_errors:
        raise RuntimeError(f"{run.label}: the migrator failed: {migrator_errors[0]}") from migrator_errors[0]
    if migrating is not None and migrating.is_alive():
        raise RuntimeError(f"{run.label}: a migrator step still ran {MIGRATOR_JOIN_S:.0f} s after the end")
    if timer is not None and timer.is_alive():
        raise RuntimeError(
            f"{run.label}: the {s.experiment} event was still under way {EVENT_JOIN_S:.0f} s after the end "
            "(Prometheus or the world slow?); the run ended without it and killed no node after it ended"
        )
    if gate.errors:
        raise RuntimeError(f"{run.label}: the {s.experiment} event failed: {gate.errors[0]}") from gate.errors[0]
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
    """Wait until Prometheus answers the latency query. With the run's ``run_id`` (the world of the
    experiments) that is fresh data: the query selects only the series of the world started for this
    run, which has none until its own samples have been scraped."""
    from migrator.metrics import PrometheusMetrics

    query = latency_query(session.settings)
    reader = PrometheusMetrics(session.prometheus_url, query, "reach_node_cpu_usage_millicores")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if reader.latency_ms() is not None:
            return
        time.sleep(0.5)
    raise TimeoutError(f"Prometheus at {session.prometheus_url} has no latency ({query}): {reader.last_error}")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def prepare_run(session: Session, workload: str, start: StartPlacement | None = None) -> StartPlacement | None:
    """Reset the app to ``start`` (default: poor or the scheduler's, as settings say) with a fresh latency source.

    The previous world (its failed node, its surge) is stopped before the reset, and the new one is
    started under a new ``run_id`` that ``session.settings`` takes (so every query of the run selects
    its series only: no sample of the world before it enters a rate window)."""
    from flows.local import processes
    from flows.loop.settings import EXPORTER

    if start is None and session.settings.start == "poor":
        start = start_placement(session, workload)
    processes.stop(EXPORTER)
    session.settings = session.settings.model_copy(update={"run_id": new_run_id()})
    reset_app(session, start)
    start_exporter(session.settings, session.kubeconfig, workload)
    if session.settings.latency_source != "world":
        time.sleep(2.5)  # the twin's gauge carries no run_id: let Prometheus scrape the restarted exporter first
    wait_for_first_sample(session)
    return start
