"""The live world's trace export: a rolling window of complete traces, in Jaeger JSON that ``reach profiles`` ingests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ceenv.scenario import Scenario
from ceenv.workload import Workload
from flows.loop.world.emulator import World
from flows.loop.world.model import Cluster, WorldOptions, pods_from_assignment
from flows.loop.world.trace_window import RollingTraceLog, root_end_ms
from flows.loop.world_live import LiveWorld, TraceExport
from tests.loop.world.conftest import SCENARIO_DIR, SPREAD, WORKLOADS
from tests.loop.world.test_live import FakeClock, _pods


def test_the_window_keeps_only_complete_traces_that_ended_within_it(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    log = RollingTraceLog(window_ms=10_000.0)
    world = World(scenario, workloads["chain"], pods_from_assignment(Cluster.from_scenario(scenario), SPREAD),
                  WorldOptions(), seed=3, traces=log)  # fmt: skip
    world.run(30.0)
    window = log.snapshot(world.env.now)
    ends = [root_end_ms(t) for t in window.traces]
    assert window.traces and all(e is not None and e >= world.env.now - 10_000.0 for e in ends)
    assert 30 < len(window.traces) < 80  # 5 rps for the last 10 of 30 s
    # the log forgot the older ones, and what is still running is kept for the next snapshot, not written
    assert all(root_end_ms(t) is None or root_end_ms(t) >= world.env.now - 10_000.0 for t in log.traces)  # type: ignore[operator]
    assert len(log.traces) >= len(window.traces)


def test_a_non_positive_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window_ms"):
        RollingTraceLog(window_ms=0)


def test_the_live_world_writes_its_recent_traces_and_reach_profiles_ingests_them(
    scenario: Scenario, workloads: dict[str, Workload], tmp_path: Path
) -> None:
    from flows.cli import app

    clock = FakeClock()
    path = tmp_path / "world-traces.json"
    export = TraceExport(path, window_s=20.0, every_s=2.0)
    live = LiveWorld(scenario, workloads["aggregator_sequential"], lambda: _pods(SPREAD), WorldOptions(), seed=1,
                     clock=clock, traces=export)  # fmt: skip
    live.step()
    for _ in range(30):  # 60 s of wall clock, stepped every 2 s
        clock.now += 2.0
        live.step()
    document = json.loads(path.read_text())
    assert 60 < len(document["data"]) < 150  # about 5 rps × 20 s: only the last window
    hosts = {tag["value"] for t in document["data"] for p in t["processes"].values() for tag in p["tags"]}
    assert hosts <= set(Cluster.from_scenario(scenario).node_names)
    out = tmp_path / "dataset"
    workload = WORKLOADS / "aggregator_sequential_call_patterns.json"
    result = CliRunner().invoke(app, ["profiles", "ingest", "--scenario", str(SCENARIO_DIR), "--workload",
                                      str(workload), "--jaeger", str(path), "--keep-current", "--out", str(out),
                                      "--reports", str(tmp_path / "reports")])  # fmt: skip
    assert result.exit_code == 0, result.output
    ingested = json.loads((out / workload.name).read_text())
    nominal = json.loads(workload.read_text())
    assert ingested != nominal  # the measured cells replaced the nominal execution times
