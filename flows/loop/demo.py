"""``reach demo``'s live pieces: the local cluster, Prometheus, the latency exporter and a background migrator.

:func:`open_session` brings up the local Kubernetes control plane with the scenario's nodes
(:mod:`flows.local.cluster`), Prometheus and the migrator's metrics on 127.0.0.1, and returns a
:class:`Session`; :func:`start_exporter` (re)starts the latency source: the world (requests
emulated on the live placement, Istio-shaped metrics, :mod:`flows.loop.world_live`; read with
Istio's PromQL, :func:`latency_query`) or the twin's exporter (the formula on the live placement,
:mod:`flows.loop.exporter`); and :func:`keep_migrating` leaves a migrator
running until ``reach down``. Everything is recorded with :mod:`flows.local.processes` (the
cluster's components included), so ``reach down`` stops it by PID. One run of the loop is in
:mod:`flows.loop.run`; the demo and the experiments as a whole in :mod:`flows.loop.experiments`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.local import processes
from flows.local.paths import repo_root
from flows.loop.settings import EXPORTER, MIGRATOR, PROMETHEUS, STANDIN_LABEL, DemoSettings

ALERT_RULES = repo_root() / "deploy" / "observability" / "alerts.yml"
DEMO_LEASE_IDENTITY = "reach-demo/background-migrator"  # its name in the cluster's migrator Lease (migrator.lease)


@dataclass
class Session:
    """The live pieces one demo works with."""

    settings: DemoSettings
    kubeconfig: Path
    admin: Any  # migrator.kube.ClusterAdmin: every API call of the loop goes through it
    scenario_dir: Path
    telemetry: Any
    metrics_server: Any
    prometheus_url: str


# ---- processes ---------------------------------------------------------------------------------
def start_cluster(scenario_dir: Path, state_dir: Path | None) -> Path:
    """Bring the local cluster up (or reuse it) and record its components for ``reach down``."""
    from flows.local.cluster import LocalCluster

    cluster = LocalCluster(state_dir)
    recorded_scenario = cluster.state_dir / "scenario"
    if cluster.is_running() and recorded_scenario.is_file():
        running = Path(recorded_scenario.read_text().strip())
        if running != scenario_dir.resolve():
            raise RuntimeError(
                f"a local cluster for {running} is running: `reach down` (or `reach cluster down`) first"
            )
        recorded, wanted = cluster.recorded_failure_detection(), cluster.failure_detection()
        if recorded is not None and recorded != wanted:
            raise RuntimeError(
                f"the running local cluster detects a failed node with {recorded}, this run asks for {wanted}: "
                "`reach down` (or `reach cluster down`) first"
            )
    kubeconfig = Path(cluster.up(scenario_dir))
    for name, entry in cluster.processes.recorded().items():
        log = cluster.state_dir / "logs" / f"{name}.log"
        processes.adopt(f"cluster-{name}", int(str(entry["pid"])), 0, [str(entry["exe"])], str(log))
    return kubeconfig


def restart(name: str, argv: list[str], port: int, ready_path: str) -> processes.ProcessRecord:
    processes.stop(name)
    record = processes.start(name, argv, port)
    processes.wait_http(f"{record.url}{ready_path}", 60, record.pid)
    return record


def latency_query(settings: DemoSettings) -> str:
    """The PromQL of the application's latency: Istio's mean on the world (of the run's ``run_id``, if set), the
    exporter's gauge on the twin."""
    if settings.latency_source == "world":
        from flows.loop.world_live import client_view, mean_query

        return mean_query(settings.latency_window, client_view(settings.run_id))
    return "reach_app_latency_ms"


def start_exporter(
    settings: DemoSettings, kubeconfig: Path, workload: str, traces: Path | None = None, traces_window_s: float = 20.0
) -> processes.ProcessRecord:
    """(Re)start the latency source on ``exporter_port``: the world, or the twin's exporter.

    ``traces`` (the world only): the world rewrites this file with its last ``traces_window_s`` of traces.
    """
    common = [
        "--kubeconfig", str(kubeconfig), "--scenario", settings.scenario, "--workload", workload,
        "--namespace", settings.namespace, "--port", str(settings.exporter_port), "--seed", str(settings.seed),
    ]  # fmt: skip
    if settings.latency_source == "world":
        argv = [sys.executable, "-m", "flows.loop.world_live", *common, "--rps", str(settings.world_rps)]
        if traces is not None:
            argv += ["--traces", str(traces), "--traces-window-s", str(traces_window_s)]
        if settings.run_id:
            argv += ["--run-id", settings.run_id]
    else:
        argv = [sys.executable, "-m", "flows.loop.exporter", *common, "--noise-pct", str(settings.noise_pct)]
    return restart(EXPORTER, argv, settings.exporter_port, "/metrics")


def world_rules(settings: DemoSettings) -> str:
    """A recording rule: ``reach_app_latency_ms`` (dashboard, alerts) from the world's Istio metrics."""
    from flows.loop.world_live import mean_query

    expr = mean_query(settings.latency_window).replace("\n", " ")
    return f"groups:\n  - name: reach-world-latency\n    interval: 5s\n    rules:\n      - record: reach_app_latency_ms\n        expr: '{expr}'\n"


def prometheus_config(settings: DemoSettings, extra_rules: Path | None = None) -> str:
    """Prometheus' configuration: scrape the latency source and the migrator every second; the rules."""
    targets = {"reach-exporter": settings.exporter_port, "reach-migrator": settings.migrator_metrics_port}
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        for job, port in targets.items()
    )
    return (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 5s\n"
        f"rule_files:\n  - {ALERT_RULES}\n"
        + (f"  - {extra_rules}\n" if extra_rules else "")
        + f"scrape_configs:\n{jobs}"
    )


def start_prometheus(settings: DemoSettings) -> processes.ProcessRecord:
    """Prometheus (Debian's) on 127.0.0.1, its data under ``$REACH_HOME/prometheus``; reused when running."""
    running = processes.find(PROMETHEUS)
    if running is not None:
        return running
    home = processes.reach_home() / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "prometheus.yml"
    rules = home / "world-latency.rules.yml"  # yields nothing without the world's Istio series: harmless on the twin
    rules.write_text(world_rules(settings))
    config.write_text(prometheus_config(settings, rules))
    argv = [
        "prometheus", f"--config.file={config}", f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{settings.prometheus_port}", "--storage.tsdb.retention.time=2d",
    ]  # fmt: skip
    return restart(PROMETHEUS, argv, settings.prometheus_port, "/-/ready")


def open_session(settings: DemoSettings) -> Session:
    """Cluster, exporter and Prometheus up; the migrator's metrics served; nothing deployed yet (a background
    migrator of an earlier demo is stopped: this session's migrator is the cluster's only one)."""
    from flows.local.paths import resolve_scenario
    from migrator.kube import ClusterAdmin, make_api_client
    from migrator.telemetry import MigratorTelemetry

    scenario_dir = resolve_scenario(settings.scenario)
    # The background migrator an earlier `reach demo` left running (keep_migrating) would migrate beside this
    # session's own migrator (two live migrators on one cluster) and publishes on its metrics port: stop it first.
    processes.stop(MIGRATOR)
    kubeconfig = start_cluster(scenario_dir, settings.cluster_state)
    prometheus = start_prometheus(settings)
    telemetry = MigratorTelemetry()
    server = telemetry.serve(settings.migrator_metrics_port)
    admin = ClusterAdmin(make_api_client(str(kubeconfig)))
    return Session(settings, kubeconfig, admin, scenario_dir, telemetry, server, prometheus.url)


def close_metrics(session: Session) -> None:
    """Stop serving the session's migrator metrics, freeing their port (for the next session, or the
    background migrator that publishes on it)."""
    session.metrics_server.shutdown()
    session.metrics_server.server_close()


def migrator_settings(session: Session, url: str) -> Any:
    from migrator.settings import MigratorSettings

    s = session.settings
    values: dict[str, Any] = {
        "kubeconfig": str(session.kubeconfig), "policy_url": url, "namespace": s.namespace,
        "interval_s": s.interval_s, "qos_threshold_ms": s.qos_threshold_ms, "pod_cooldown_s": s.pod_cooldown_s,
        "max_migrations_per_window": 100, "migration_deadline_s": 30.0, "prometheus_url": session.prometheus_url,
        "episode_csv": str(s.out / "migration_episode.csv"), "latency_query": latency_query(s),
    }  # fmt: skip
    return MigratorSettings(_env_file=None, **values)


def keep_migrating(session: Session, url: str, policy: str) -> processes.ProcessRecord:
    """A background migrator (monitoring mode) that runs until ``reach down``; it follows blue/green switches."""
    from flows.release.serving import endpoint_file

    s = migrator_settings(session, url)
    env = {f"REACH_MIGRATOR_{k.upper()}": str(v) for k, v in s.model_dump().items() if v is not None}
    if not policy.startswith(STANDIN_LABEL):
        env["REACH_MIGRATOR_POLICY_ENDPOINT_FILE"] = str(endpoint_file())
    env["REACH_MIGRATOR_METRICS_PORT"] = str(session.settings.migrator_metrics_port)
    # One background migrator at a time (the previous one is stopped first): a stable name in the cluster's migrator
    # Lease lets a restarted one take its predecessor's Lease back at once, even after a SIGKILL.
    env["REACH_MIGRATOR_LEASE_IDENTITY"] = DEMO_LEASE_IDENTITY
    close_metrics(session)  # the background migrator publishes on the same port from now on
    processes.stop(MIGRATOR)
    return processes.start(MIGRATOR, [sys.executable, "-m", "migrator"], session.settings.migrator_metrics_port, env)
