"""A demo session is the cluster's only migrator: the background migrator an earlier ``reach demo`` left running
(``keep_migrating``) is stopped before the session's own runs, and a restarted background migrator keeps one
name in the cluster's migrator Lease."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from flows.local import processes
from flows.loop import demo
from flows.loop.settings import MIGRATOR, STANDIN_LABEL, DemoSettings


def test_a_session_stops_an_earlier_demo_s_background_migrator_before_its_own_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    port = processes.free_port()
    background = processes.start(MIGRATOR, [sys.executable, "-c", "import time; time.sleep(120)"], port)
    try:
        seen_alive: list[bool] = []

        def start_cluster(scenario_dir: Path, state_dir: Path | None) -> Path:
            seen_alive.append(processes.alive(background))  # the cluster of this session comes up after the stop
            return tmp_path / "kubeconfig"

        monkeypatch.setattr(demo, "start_cluster", start_cluster)
        monkeypatch.setattr(demo, "start_prometheus", lambda settings: type("P", (), {"url": "http://127.0.0.1:1"})())
        import migrator.kube

        monkeypatch.setattr(migrator.kube, "make_api_client", lambda kubeconfig: None)
        monkeypatch.setattr(migrator.kube, "ClusterAdmin", lambda api_client: None)
        session = demo.open_session(DemoSettings(out=tmp_path / "out", migrator_metrics_port=processes.free_port()))
        demo.close_metrics(session)
        assert seen_alive == [False] and processes.recorded(MIGRATOR) is None
    finally:
        processes.stop(MIGRATOR)


def test_the_background_migrator_keeps_one_lease_identity_across_restarts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started: list[dict[str, str]] = []

    def start(name: str, argv: list[str], port: int, env: dict[str, str] | None = None, **_: Any) -> Any:
        started.append(dict(env or {}))
        return None

    monkeypatch.setattr(processes, "start", start)
    monkeypatch.setattr(processes, "stop", lambda name, grace_s=10.0: False)
    monkeypatch.setattr(demo, "close_metrics", lambda session: None)
    settings = DemoSettings(out=tmp_path)
    session = demo.Session(settings, tmp_path / "kubeconfig", None, tmp_path, None, None, "http://127.0.0.1:1")  # type: ignore[arg-type]
    for _ in range(2):
        demo.keep_migrating(session, "http://127.0.0.1:3000", STANDIN_LABEL)
    identities = {env.get("REACH_MIGRATOR_LEASE_IDENTITY") for env in started}
    assert identities == {demo.DEMO_LEASE_IDENTITY}
    from migrator.settings import MigratorSettings

    assert MigratorSettings(_env_file=None, **{"lease_identity": demo.DEMO_LEASE_IDENTITY}).leader_election  # type: ignore[arg-type]
