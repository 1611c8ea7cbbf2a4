"""``reach demo``'s three stages: the trace capture, the pipeline run it asks for, and the summary it writes.

The live pieces (cluster, Prometheus, serving) are exercised by the e2e tests; here the stages'
wiring runs against the real pipeline flow (Prefect test server, Great Expectations, the shipped
general policy, the default gate) on traces the world wrote for the 13-29 app on its poor start.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.loop.report import LoopRun, Summary
from flows.loop.settings import DemoSettings
from flows.loop.stages import (
    PIPELINE,
    DemoResult,
    StageClock,
    StageOptions,
    capture_traces,
    check_settings,
    pipeline_params,
    summary_table,
    write_summary,
)
from tests.conftest import DATA, scenario_dir, workload_file


def world_traces(path: Path, scenario: str, seconds: float) -> Path:
    """What the live world's ``--traces`` writes, for the app on the demo's poor start (virtual time)."""
    from ceenv.latency import LatencyModel
    from ceenv.layout import layout_from_scenario
    from ceenv.scenario import load_scenario
    from ceenv.workload import load_workload
    from flows.loop.placement import DEFAULT_REPLICAS, poor_start
    from flows.loop.world.emulator import World
    from flows.loop.world.model import Cluster, WorldOptions, pods_from_assignment
    from flows.loop.world.trace_window import RollingTraceLog

    sc = load_scenario(scenario_dir(scenario))
    work = load_workload(workload_file("aggregator_sequential"), sc)
    start = poor_start(LatencyModel(sc, work), layout_from_scenario(sc), DEFAULT_REPLICAS, 0)
    log = RollingTraceLog(window_ms=seconds * 1000.0)
    pods = pods_from_assignment(Cluster.from_scenario(sc), start.assignment)
    world = World(sc, work, pods, WorldOptions(rps_multiplier=2.0), seed=0, traces=log)
    world.run(seconds + 5.0)
    log.write(path, world.env.now, 1_700_000_000)
    return path


def test_stage_two_asks_the_pipeline_to_ingest_the_traces_and_gate_with_the_default_rules(tmp_path: Path) -> None:
    settings = DemoSettings(scenario="13-29", policy=PIPELINE, out=tmp_path)
    params = pipeline_params(settings, StageOptions(finetune_s=30), tmp_path / "t.json")
    assert params.profiles_jaeger == [str(tmp_path / "t.json")] and params.profiles_keep_current
    assert (params.gate_rules, params.train_config, params.max_wall_seconds) == ("default", "finetune", 30)
    assert params.package and params.policy_from is None  # fine-tuned, not adopted
    # the bento plans, and the gate reads an evaluation of that planner (the pipeline's own planning defaults)
    assert params.planning()["plan_k"] == 4 and params.evaluation_settings()["plan_k"] == 4
    assert pipeline_params(settings, StageOptions(plan_k=0), tmp_path / "t.json").planning() == {}


def test_the_pipeline_stages_need_the_world() -> None:
    check_settings(DemoSettings(policy=PIPELINE))
    check_settings(DemoSettings(policy="auto", latency_source="twin"))
    with pytest.raises(ValueError, match="--latency-source world"):
        check_settings(DemoSettings(policy=PIPELINE, latency_source="twin"))


def test_the_capture_waits_for_a_full_window_then_copies_what_the_world_wrote(tmp_path: Path) -> None:
    live, out = tmp_path / "live.json", tmp_path / "captured.json"
    options = StageOptions(trace_window_s=0.5, min_traces=20)

    def world_writes_later() -> None:
        time.sleep(1.0)
        world_traces(live, "7-21", 10.0)

    writer = threading.Thread(target=world_writes_later)
    writer.start()
    count = capture_traces(live, out, options, timeout_s=30)
    writer.join()
    assert count >= 20 and json.loads(out.read_text()) == json.loads(live.read_text())


def test_too_few_traces_is_an_error_that_names_the_fix(tmp_path: Path) -> None:
    live = tmp_path / "live.json"
    live.write_text(json.dumps({"data": []}))
    with pytest.raises(RuntimeError, match="--world-rps"):
        capture_traces(live, tmp_path / "out.json", StageOptions(trace_window_s=0.1, min_traces=5), timeout_s=3)


def test_the_summary_shows_the_latency_the_twin_and_every_stage(tmp_path: Path) -> None:
    lines: list[str] = []
    clock = StageClock(lines.append)
    with clock.stage("1 profile", "capturing"):
        pass
    summary = Summary("x", "reach-policy-service:abc", 300.0, 150.0, 4, 90.0, 10.0, 60.0)
    pipeline = {"training": {"timesteps": 20000, "wall_seconds": 45.0}, "gate": "passed all 5 checks",
                "seconds": {"profile": 1.0, "train": 47.0}}  # fmt: skip
    result = DemoResult(summary, tmp_path / "a.csv", tmp_path / "a.png", "http://127.0.0.1:9090", None,
                        (500.0, 250.0), (320.0, 140.0), dict(clock.seconds), 200.0, pipeline, 180)  # fmt: skip
    written = write_summary(result, DemoSettings(scenario="13-29"), tmp_path / "demo-stages")
    table = summary_table(written, "(note)")
    assert "300.0 → 150.0 (-50.0 %)" in table and "500.0 → 250.0" in table and "320.0 → 140.0" in table
    assert "stage 2: gate" in table and "wall s: 1 profile" in table and "wall s: total" in table
    assert json.loads(written.report_json.read_text())["traces"] == 180  # type: ignore[union-attr]
    assert "| world mean ms, before → after | 300.0 → 150.0 (-50.0 %) |" in written.report_md.read_text()  # type: ignore[union-attr]
    assert lines[0].endswith("1 profile: capturing …") and "done in" in lines[1]


@pytest.mark.slow
def test_the_worlds_traces_become_the_workload_and_the_default_gate_decides(
    prefect_harness: None, tmp_path: Path
) -> None:
    """Stages 1 and 2 through the real flow; the shipped general policy adopted instead of fine-tuned (no training)."""
    from flows.pipeline import reach_pipeline

    traces = world_traces(tmp_path / "traces.json", "13-29", 20.0)
    settings = DemoSettings(scenario="13-29", policy=PIPELINE, out=tmp_path)
    adopt = {"policy_from": str(DATA / "policies" / "general-v4"), "run_dir": str(tmp_path / "run"), "package": False}
    params = pipeline_params(settings, StageOptions(), traces).model_copy(update=adopt)
    result = reach_pipeline(params)
    ingested = Path(result["workload_file"])
    assert ingested.is_relative_to(tmp_path / "run" / "dataset")
    assert json.loads(ingested.read_text()) != json.loads(workload_file("aggregator_sequential").read_text())
    # the default rules (≥ 0.9 of the best-known reduction) pass the general policy on 13-29 (0.96 nominal)
    assert result["passed"], result["gate"]
    assert set(result["seconds"]) >= {"profile", "train", "evaluate", "gate"}


def recording_atomic_writes(monkeypatch: pytest.MonkeyPatch, owner: Any) -> list[Path]:
    """Replace ``owner.write_text_atomic`` by one that records each path it writes (and writes it)."""
    from flows.local.paths import write_text_atomic

    written: list[Path] = []

    def record(path: Path, text: str) -> None:
        written.append(path)
        write_text_atomic(path, text)

    monkeypatch.setattr(owner, "write_text_atomic", record)
    return written


def a_twin_report(tmp_path: Path) -> DemoResult:
    """``reach demo --latency-source twin``'s report of a short run (CSV, plot, JSON, summary)."""
    import flows.loop.stages as stages

    run = LoopRun("r", "greedy-standin", 1000.0, 1003.0)
    run.samples = [(1000.0, 300.0), (1001.0, 200.0), (1002.0, 150.0)]
    settings = DemoSettings(scenario="13-29", latency_source="twin", policy="greedy-standin", out=tmp_path)
    session = SimpleNamespace(prometheus_url="http://127.0.0.1:9090")
    return stages.report(settings, StageClock(lambda line: None), run, session, None, None, 0, (290.0, 140.0))  # type: ignore[arg-type]


def test_on_the_twin_the_mean_is_labelled_the_twins(tmp_path: Path) -> None:
    table = summary_table(a_twin_report(tmp_path), "(note)")
    assert "twin (MODEL.md §2, live placement) mean ms, before → after" in table
    assert "world mean ms" not in table


def test_every_report_of_the_demo_is_written_atomically(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import flows.loop.stages as stages

    written = recording_atomic_writes(monkeypatch, stages)
    a_twin_report(tmp_path)
    stem = tmp_path / "demo-13-29-aggregator_sequential"
    assert written == [
        stem.with_suffix(".json"),
        tmp_path / f"{stem.name}-stages.json",
        tmp_path / f"{stem.name}-stages.md",
    ]
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_reach_demo_explains_keep_migrating_and_records_its_summary_atomically(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import flows.local.paths
    import flows.loop.stages as stages
    from flows.cli.demo import app

    help_text = " ".join(CliRunner().invoke(app, ["--help"]).output.replace("│", " ").split())
    assert "--stop-migrating <bool> after the bounded run, keep a migrator running until `reach down`" in help_text
    md, js = tmp_path / "s.md", tmp_path / "s.json"
    md.write_text("| what | value |\n")
    js.write_text('{"traces": 0}')
    summary = Summary("x", "p", 300.0, 150.0, 1, 90.0, 10.0, 60.0)
    result = DemoResult(summary, tmp_path / "a.csv", tmp_path / "a.png", "http://127.0.0.1:9090", None,
                        report_json=js, report_md=md)  # fmt: skip
    monkeypatch.setattr(stages, "demo", lambda settings, options, say: result)
    written = recording_atomic_writes(monkeypatch, flows.local.paths)
    record = tmp_path / "recorded" / "run.md"
    args = ["--policy", "greedy-standin", "--no-prefect", "--out", str(tmp_path), "--record", str(record)]
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    assert written == [record, record.with_suffix(".json")]
    assert record.read_text() == md.read_text() and record.with_suffix(".json").read_text() == js.read_text()
