"""``reach demo``: the closed loop on one machine — live cluster, Prometheus, served policy, migrator.

:func:`demo` brings up the local Kubernetes control plane with the scenario's nodes, deploys the
REACH benchmark app with a deliberately poor start placement, starts the latency exporter (latency
**simulated from the live placement**) and Prometheus on 127.0.0.1, serves a policy (the serving
or newest gated bento for the scenario, a freshly trained one, or the clearly named greedy
stand-in; see :mod:`flows.demo_policy`), runs the migrator in monitoring mode for a bounded time,
and reports before/after, a CSV time series and a PNG. Everything it starts is recorded with :mod:`flows.processes` (the
cluster's components included), so ``reach down`` stops it by PID. :func:`experiment` repeats a
run with a node failure or a surge, with and without rescheduling. The typer commands are in
:mod:`flows.cli_demo`.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flows import processes
from flows.demo_cluster import DEFAULT_REPLICAS, StartPlacement
from flows.demo_report import Event, LoopRun
from flows.paths import out_dir

REPO_ROOT = Path(__file__).resolve().parents[1]
ALERT_RULES = REPO_ROOT / "deploy" / "observability" / "alerts.yml"
EXPORTER, PROMETHEUS, STANDIN = "reach-exporter", "reach-prometheus", "reach-policy-standin"
MIGRATOR = "reach-migrator"
STANDIN_LABEL = "greedy-standin"
Experiment = Literal["none", "node-failure", "surge"]


class DemoSettings(BaseModel):
    """Everything ``reach demo`` and the experiments take; every port is on 127.0.0.1."""

    model_config = ConfigDict(extra="forbid")

    scenario: str = Field("7-21", description="Scenario directory or name under data/scenarios.")
    workload: str = Field("aggregator_sequential", description="Workload whose latency the exporter simulates.")
    policy: str = Field(
        "auto",
        description="auto (the serving or newest gated bento of the scenario and workload, else train one with the "
        "quickstart pipeline when train_missing, else the greedy stand-in), greedy-standin (the simulator's "
        "greedy move, not the learned policy), or a bento tag.",
    )
    train_missing: bool = Field(
        True,
        description="auto without a gated bento for the scenario and workload: train one with the quickstart "
        "pipeline (reach demo) instead of falling back to the greedy stand-in (the experiments).",
    )
    duration_s: float = Field(90.0, gt=0, description="How long the migrator runs (bounded run).")
    interval_s: float = Field(2.0, gt=0, description="Seconds between two migrator cycles.")
    sample_s: float = Field(1.0, gt=0, description="Seconds between two latency samples read from Prometheus.")
    qos_threshold_ms: float = Field(100.0, gt=0, description="Monitoring mode acts only above this latency.")
    pod_cooldown_s: float = Field(60.0, ge=0, description="A moved pod is not moved again within this.")
    noise_pct: float = Field(2.0, ge=0, description="Exporter noise: standard deviation in % of the latency.")
    seed: int = Field(0, description="Seed of the start placement and of the exporter's noise.")
    replicas: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_REPLICAS), description="Pods per service.")
    start: Literal["poor", "scheduler"] = Field(
        "poor",
        description="poor (the worst of many seeded random placements) or scheduler (the default scheduler places "
        "the app, as in a run without rescheduling).",
    )
    experiment: Experiment = Field("none", description="none, node-failure (drain nodes) or surge (scale up).")
    event_at_s: float = Field(30.0, ge=0, description="When the experiment's event happens, seconds into the run.")
    drain_count: int = Field(2, ge=1, description="node-failure: how many of the busiest nodes are drained.")
    drain: list[str] = Field(
        default_factory=list, description="node-failure: these nodes instead of the busiest (the same in every run)."
    )
    surge_service: str = Field("aggregator", description="surge: the Deployment that is scaled up.")
    surge_extra: int = Field(2, ge=1, description="surge: replicas added.")
    out: Path = Field(default_factory=lambda: out_dir() / "demo", description="Output folder (CSV, PNG, JSON).")
    namespace: str = Field("default", description="Namespace of the app.")
    cluster_state: Path | None = Field(None, description="State folder of the local cluster (default: reach's).")
    prometheus_port: int = Field(9090, description="Prometheus on 127.0.0.1.")
    exporter_port: int = Field(9464, description="The latency exporter on 127.0.0.1.")
    migrator_metrics_port: int = Field(9465, description="The migrator's own metrics on 127.0.0.1.")
    prefect: bool = Field(True, description="Also start the Prefect server and dashboard (`reach up`).")
    keep_migrating: bool = Field(True, description="After the bounded run, keep a migrator running until reach down.")


@dataclass
class Session:
    """The live pieces one demo works with."""

    settings: DemoSettings
    kubeconfig: Path
    api_client: Any
    scenario_dir: Path
    demo_app: ModuleType
    telemetry: Any
    metrics_server: Any
    prometheus_url: str


# ---- processes ---------------------------------------------------------------------------------
def load_deploy_module(name: str) -> ModuleType:
    """``deploy/local/<name>.py`` of this checkout (the local cluster's scripts are not a package)."""
    path = REPO_ROOT / "deploy" / "local" / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run reach demo from a source checkout of the project")
    spec = importlib.util.spec_from_file_location(f"reach_deploy_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def start_cluster(scenario_dir: Path, state_dir: Path | None) -> Path:
    """Bring the local cluster up (or reuse it) and record its components for ``reach down``."""
    cluster = load_deploy_module("cluster").LocalCluster(state_dir)
    recorded_scenario = cluster.state_dir / "scenario"
    if cluster.is_running() and recorded_scenario.is_file():
        running = Path(recorded_scenario.read_text().strip())
        if running != scenario_dir.resolve():
            raise RuntimeError(
                f"a local cluster for {running} is running: `reach down` (or `reach cluster down`) first"
            )
    kubeconfig = Path(cluster.up(scenario_dir))
    for name, entry in cluster.recorded().items():
        log = cluster.state_dir / "logs" / f"{name}.log"
        processes.adopt(f"cluster-{name}", int(str(entry["pid"])), 0, [str(entry["exe"])], str(log))
    return kubeconfig


def restart(name: str, argv: list[str], port: int, ready_path: str) -> processes.ProcessRecord:
    processes.stop(name)
    record = processes.start(name, argv, port)
    processes.wait_http(f"{record.url}{ready_path}", 60, record.pid)
    return record


def start_exporter(settings: DemoSettings, kubeconfig: Path, workload: str) -> processes.ProcessRecord:
    argv = [
        sys.executable, "-m", "flows.exporter", "--kubeconfig", str(kubeconfig), "--scenario", settings.scenario,
        "--workload", workload, "--namespace", settings.namespace, "--port", str(settings.exporter_port),
        "--noise-pct", str(settings.noise_pct), "--seed", str(settings.seed),
    ]  # fmt: skip
    return restart(EXPORTER, argv, settings.exporter_port, "/metrics")


def prometheus_config(settings: DemoSettings) -> str:
    """Prometheus' configuration: scrape the exporter and the migrator every second; the alert rules."""
    targets = {"reach-exporter": settings.exporter_port, "reach-migrator": settings.migrator_metrics_port}
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        for job, port in targets.items()
    )
    return (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 5s\n"
        f"rule_files:\n  - {ALERT_RULES}\nscrape_configs:\n{jobs}"
    )


def start_prometheus(settings: DemoSettings) -> processes.ProcessRecord:
    """Prometheus (Debian's) on 127.0.0.1, its data under ``$REACH_HOME/prometheus``; reused when running."""
    running = processes.find(PROMETHEUS)
    if running is not None:
        return running
    home = processes.reach_home() / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    config.write_text(prometheus_config(settings))
    argv = [
        "prometheus", f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{settings.prometheus_port}", "--storage.tsdb.retention.time=2d",
    ]  # fmt: skip
    return restart(PROMETHEUS, argv, settings.prometheus_port, "/-/ready")


# ---- one run ---------------------------------------------------------------------------------------
def reset_app(session: Session, start: StartPlacement | None) -> None:
    """Remove the app and every cordon, then deploy it on ``start`` (None: wherever the scheduler puts it)."""
    from flows.demo_cluster import place_app, uncordon_all

    s, api = session.settings, session.api_client
    session.demo_app.delete(api, s.namespace)
    uncordon_all(api)
    if start is None:
        session.demo_app.deploy(api, session.scenario_dir, s.namespace, replicas=s.replicas)
        session.demo_app.wait_ready(api, s.namespace)
    else:
        place_app(api, s.namespace, session.demo_app, session.scenario_dir, start.assignment)


def sample_latency(session: Session, run: LoopRun, stop: threading.Event) -> None:
    """Read the application latency from Prometheus every ``sample_s`` until ``stop``."""
    from migrator.metrics import PrometheusMetrics

    reader = PrometheusMetrics(session.prometheus_url, "reach_app_latency_ms", "reach_node_cpu_usage_millicores")
    while not stop.is_set():
        value = reader.latency_ms()
        if value is not None:
            run.samples.append((time.time(), value))
        stop.wait(session.settings.sample_s)


def apply_event(session: Session, run: LoopRun) -> None:
    """The experiment's event: drain the busiest nodes, or scale the surge service up."""
    from flows import demo_cluster

    s, api = session.settings, session.api_client
    if s.experiment == "node-failure":
        client_nodes = {n for n, layer in node_layers(session).items() if layer == "client"}
        nodes = s.drain or demo_cluster.busiest_nodes(api, s.namespace, s.drain_count, client_nodes)
        for pod, node in demo_cluster.drain_nodes(api, s.namespace, nodes):
            run.events.append(Event(time.time(), "evicted", pod, node, ""))
        run.events.append(Event(time.time(), "drained", "", ",".join(nodes), ""))
    elif s.experiment == "surge":
        current = len(demo_cluster.live_assignment(api, s.namespace).get(s.surge_service, []))
        demo_cluster.scale_service(api, s.namespace, s.surge_service, current + s.surge_extra)
        run.events.append(Event(time.time(), "scaled", s.surge_service, str(current), str(current + s.surge_extra)))


def node_layers(session: Session) -> dict[str, str]:
    from kubernetes import client

    nodes: list[Any] = client.CoreV1Api(session.api_client).list_node().items
    return {n.metadata.name: (n.metadata.labels or {}).get("reach.io/layer", "") for n in nodes}


def migrator_settings(session: Session, url: str) -> Any:
    from migrator.settings import MigratorSettings

    s = session.settings
    values: dict[str, Any] = {
        "kubeconfig": str(session.kubeconfig), "policy_url": url, "namespace": s.namespace,
        "interval_s": s.interval_s, "qos_threshold_ms": s.qos_threshold_ms, "pod_cooldown_s": s.pod_cooldown_s,
        "max_migrations_per_window": 100, "migration_deadline_s": 30.0, "prometheus_url": session.prometheus_url,
        "episode_csv": str(s.out / "migration_episode.csv"),
    }  # fmt: skip
    return MigratorSettings(_env_file=None, **values)


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


# ---- the whole demo ----------------------------------------------------------------------------------
def open_session(settings: DemoSettings) -> Session:
    """Cluster, exporter and Prometheus up; the migrator's metrics served; nothing deployed yet."""
    from flows.paths import resolve_scenario
    from migrator.kube import make_api_client
    from migrator.telemetry import MigratorTelemetry

    scenario_dir = resolve_scenario(settings.scenario)
    kubeconfig = start_cluster(scenario_dir, settings.cluster_state)
    prometheus = start_prometheus(settings)
    telemetry = MigratorTelemetry()
    server = telemetry.serve(settings.migrator_metrics_port)
    return Session(settings, kubeconfig, make_api_client(str(kubeconfig)), scenario_dir,
                   load_deploy_module("demo_app"), telemetry, server, prometheus.url)  # fmt: skip


def start_placement(session: Session, workload: str) -> StartPlacement:
    from ceenv.latency import LatencyModel
    from ceenv.layout import layout_from_scenario
    from ceenv.scenario import load_scenario
    from ceenv.workload import load_workload
    from flows.demo_cluster import poor_start
    from flows.paths import resolve_workload

    scenario = load_scenario(session.scenario_dir)
    model = LatencyModel(scenario, load_workload(resolve_workload(workload, session.scenario_dir), scenario))
    return poor_start(model, layout_from_scenario(scenario), session.settings.replicas, session.settings.seed)


def wait_for_first_sample(session: Session, timeout_s: float = 30.0) -> None:
    """Prometheus answers nothing until its first scrape after the exporter (re)started: wait for it."""
    from migrator.metrics import PrometheusMetrics

    reader = PrometheusMetrics(session.prometheus_url, "reach_app_latency_ms", "reach_node_cpu_usage_millicores")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if reader.latency_ms() is not None:
            return
        time.sleep(0.5)
    raise TimeoutError(f"Prometheus at {session.prometheus_url} has no reach_app_latency_ms: {reader.last_error}")


def prepare_run(session: Session, workload: str) -> StartPlacement | None:
    """Reset the app to its start (poor or the scheduler's) and point the exporter at ``workload``."""
    start = start_placement(session, workload) if session.settings.start == "poor" else None
    reset_app(session, start)
    start_exporter(session.settings, session.kubeconfig, workload)
    time.sleep(2.5)  # let Prometheus scrape the restarted exporter before the first sample
    wait_for_first_sample(session)
    return start


def keep_migrating(session: Session, url: str, policy: str) -> processes.ProcessRecord:
    """A background migrator (monitoring mode) that runs until ``reach down``; it follows blue/green switches."""
    from flows.serving import endpoint_file

    s = migrator_settings(session, url)
    env = {f"REACH_MIGRATOR_{k.upper()}": str(v) for k, v in s.model_dump().items() if v is not None}
    if not policy.startswith(STANDIN_LABEL):
        env["REACH_MIGRATOR_POLICY_ENDPOINT_FILE"] = str(endpoint_file())
    env["REACH_MIGRATOR_METRICS_PORT"] = str(session.settings.migrator_metrics_port)
    session.metrics_server.shutdown()  # the background migrator publishes on the same port from now on
    session.metrics_server.server_close()
    processes.stop(MIGRATOR)
    return processes.start(MIGRATOR, [sys.executable, "-m", "migrator"], session.settings.migrator_metrics_port, env)


__all__ = ["DemoSettings", "Session", "open_session", "prepare_run", "run_loop"]
