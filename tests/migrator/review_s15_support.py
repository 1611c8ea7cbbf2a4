"""The controller set-up shared by the session-15 controller tests: a three-node fake cluster with one
``db`` pod, and a controller over it whose journal counts into a telemetry registry."""

from __future__ import annotations

from pathlib import Path

from migrator.controller import Controller
from migrator.settings import MigratorSettings
from migrator.telemetry import MeteredJournal, MigratorTelemetry

from .builders import node
from .fake_cluster import FakeClock, FakeCluster


def small_cluster() -> FakeCluster:
    cluster = FakeCluster(
        {n.name: n for n in (node("cloud-1", "cloud"), node("cloud-2", "cloud"), node("edge-1", "edge"))}
    )
    cluster.add_deployment("db", ["cloud-1"])
    return cluster


def controller_for(
    cluster: FakeCluster, policy: object, tmp_path: Path, **settings: object
) -> tuple[Controller, MigratorTelemetry]:
    telemetry = MigratorTelemetry()
    values: dict[str, object] = {"episode_csv": str(tmp_path / "e.csv"), "migration_deadline_s": 5.0, **settings}
    controller = Controller(
        MigratorSettings(_env_file=None, **values),  # type: ignore[arg-type]
        cluster, policy, FakeClock(cluster), journal=MeteredJournal(telemetry=telemetry),  # type: ignore[arg-type]
    )  # fmt: skip
    return controller, telemetry
