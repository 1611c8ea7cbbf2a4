"""``reach demo`` (what ``make run`` runs): REACH's three stages on the world, with nothing hand-written.

:func:`demo` brings the loop up (Prefect dashboard, local cluster, Prometheus), puts the app on its
deliberately poor start and starts the world on it, which also exports the traces of its recent
requests (``world_live --traces``, what a mesh sends to Jaeger). Then, with ``--policy pipeline``
(the default):

1. **profile**: the traces of the last ``trace_window_s`` seconds on the poor start are copied out of
   the live world and ingested by the pipeline's profile step (``PipelineParams.profiles_jaeger``,
   Great Expectations validation) into the workload's execution times; cells the poor start does
   not run keep their current value (``profiles_keep_current``);
2. **train**: the pipeline fine-tunes the shipped general policy on the ingested workload
   (``train_config``, budget ``finetune_s``), evaluates it, gates it with the **default** rules and
   packages the bento; a refusal raises :class:`StagesGateRefused` (``reach demo`` exits 3);
3. **act**: the gated bento is deployed blue/green (:func:`flows.loop.policy.serve_bento`), the
   migrator acts for ``duration_s``, and the world's mean and p95 before and after are reported
   beside the twin's formula on the same placements.

Any other ``--policy`` (``auto``, ``greedy-standin``, a bento tag) skips stages 1 and 2. Each
stage prints a progress line and its wall time; :func:`write_summary` writes the table as JSON
and Markdown under the output folder. Used by ``reach demo`` (:mod:`flows.cli.demo`).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bento.planning_settings import CHOSEN_PLAN_K, pydantic_field
from flows.local.paths import write_text_atomic
from flows.loop.demo import Session, keep_migrating, open_session, start_exporter
from flows.loop.policy import GateRefused, policy_url, serve_bento
from flows.loop.report import LoopRun, Summary, latency_note, summary, write_csv, write_plot
from flows.loop.run import reset_app, run_loop, start_placement, twin_on_live, wait_for_first_sample
from flows.loop.settings import DemoSettings

PIPELINE = "pipeline"  # --policy value that runs stages 1 and 2 before acting
Say = Callable[[str], None]


class StageOptions(BaseModel):
    """What stages 1 and 2 of ``reach demo`` take (``--policy pipeline``)."""

    model_config = ConfigDict(extra="forbid")

    trace_window_s: float = Field(20.0, gt=0, description="Stage 1: seconds of the world's requests ingested.")
    min_traces: int = Field(50, ge=1, description="Stage 1: fewest complete traces the capture must hold.")
    train_config: str = Field("finetune", description="Stage 2: training config (data/train name or JSON path).")
    finetune_s: float = Field(45.0, gt=0, description="Stage 2: wall-clock budget of the fine-tune, s.")
    gate_rules: str = Field("default", description="Stage 2: gate rules (data/gate name or JSON path).")
    eval_seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4], min_length=1, description="Stage 2: held-out evaluation seeds."
    )
    eval_episodes: int = Field(4, ge=1, description="Stage 2: evaluation episodes per seed.")
    plan_k: int = pydantic_field(
        "plan_k",
        "Stage 2: the bento serves with decision-time planning from the policy's top plan_k moves "
        "(the pipeline's plan_k; its other planning settings keep their defaults), and the gate judges an "
        "evaluation of that planner; 0 = the raw policy.",
        CHOSEN_PLAN_K,
    )


class StagesGateRefused(GateRefused):
    """Stage 2's gate refused the fine-tuned policy: nothing was deployed."""

    def __init__(self, scenario: str, workload: str, verdict: str, run_dir: str, rules: str) -> None:
        self.verdict, self.run_dir = verdict, run_dir
        RuntimeError.__init__(
            self,
            f"the gate ({rules} rules) refused the policy fine-tuned for {scenario} / {workload} on the world's "
            f"traces ({verdict}); nothing was deployed. Evaluation and verdict: {run_dir}. Run again (the "
            "fine-tune's budget is wall-clock, so it varies between runs), give it longer (--finetune-s), or "
            "run the loop with the greedy stand-in: `reach demo --policy greedy-standin`",
        )


@dataclass
class StageClock:
    """Wall seconds per stage, in order; prints a line when each starts and ends."""

    say: Say
    seconds: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def stage(self, name: str, what: str) -> Iterator[None]:
        self.say(f"[{self.elapsed():6.1f} s] {name}: {what} …")
        begun = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - begun, 1)
        self.say(f"[{self.elapsed():6.1f} s] {name}: done in {self.seconds[name]:.1f} s")

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


@dataclass(frozen=True)
class DemoResult:
    summary: Summary
    csv: Path
    plot: Path
    prometheus_url: str
    dashboard_url: str | None
    p95_ms: tuple[float, float] | None = None  # the world's p95 before and after (None on the twin)
    twin_ms: tuple[float | None, float | None] = (None, None)  # the twin's formula on the live placements
    stage_seconds: dict[str, float] = field(default_factory=dict)
    total_s: float = 0.0
    pipeline: dict[str, Any] | None = None  # stage 2's result (run folder, training, gate, bento, step seconds)
    traces: int = 0  # stage 1: complete traces ingested
    report_json: Path | None = None
    report_md: Path | None = None
    latency_source: str = "world"  # what before_ms/after_ms are: the world's requests, or the twin's formula


def stem_of(settings: DemoSettings) -> str:
    return f"demo-{Path(settings.scenario).name}-{settings.workload}"


def start_prefect(settings: DemoSettings) -> str | None:
    """The Prefect server and dashboard (``reach up``), so that the pipeline's run shows in it."""
    if not settings.prefect:
        return None
    from flows.local import ops, processes

    dashboard = ops.up().dashboard_url
    server = processes.find(ops.PREFECT_SERVER)
    if server is not None and "PREFECT_API_URL" not in os.environ:
        os.environ.update(ops.prefect_env(server.port))
    return dashboard


def world_traces_file(settings: DemoSettings) -> Path:
    return settings.out / f"{stem_of(settings)}-world-traces.json"


def place_poorly(session: Session, workload: str, traces: Path | None, window_s: float) -> None:
    """The app on its poor start, the world (exporting traces to ``traces``) started on it, Prometheus reading it."""
    reset_app(session, start_placement(session, workload))
    if traces is not None:
        traces.unlink(missing_ok=True)  # the file of an earlier run is not this placement's
    start_exporter(session.settings, session.kubeconfig, workload, traces, window_s)
    time.sleep(2.5)  # let Prometheus scrape the restarted world before the first sample
    wait_for_first_sample(session)


def count_traces(path: Path) -> int:
    try:
        return len(json.loads(path.read_text(encoding="utf-8")).get("data") or [])
    except (OSError, ValueError):
        return 0


def capture_traces(live_file: Path, out: Path, options: StageOptions, timeout_s: float = 120.0) -> int:
    """Stage 1's capture: wait until the world's file covers ``trace_window_s`` of requests, copy it to ``out``."""
    wait_until = time.monotonic() + options.trace_window_s + 2.0  # the world writes every 2 s
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(max(0.5, min(2.0, wait_until - time.monotonic())))
        if time.monotonic() < wait_until:
            continue
        count = count_traces(live_file)
        if count >= options.min_traces:
            shutil.copyfile(live_file, out)
            return count_traces(out)
    raise RuntimeError(
        f"the world wrote {count_traces(live_file)} complete traces to {live_file} within {timeout_s:.0f} s; "
        f"stage 1 needs at least {options.min_traces}: raise --world-rps or --trace-window-s"
    )


def pipeline_params(settings: DemoSettings, options: StageOptions, traces: Path) -> Any:
    """Stage 2's pipeline run: ingest the world's traces, fine-tune, evaluate, gate (default rules), package."""
    from flows.pipeline import PipelineParams

    return PipelineParams(
        scenario=settings.scenario, workload=settings.workload, profiles_jaeger=[str(traces)],
        profiles_keep_current=True, train_config=options.train_config, max_wall_seconds=options.finetune_s,
        eval_seeds=options.eval_seeds, eval_episodes=options.eval_episodes, gate_rules=options.gate_rules,
        package=True, plan_k=options.plan_k,
    )  # fmt: skip


def run_pipeline(settings: DemoSettings, options: StageOptions, traces: Path) -> dict[str, Any]:
    """Stages 1 (ingest) and 2 (fine-tune, evaluate, gate, package) as one pipeline run; the gated bento or a refusal."""
    from flows.pipeline import reach_pipeline

    result = reach_pipeline(pipeline_params(settings, options, traces))
    if not result.get("passed") or not result.get("bento"):
        raise StagesGateRefused(Path(settings.scenario).name, settings.workload, str(result.get("gate")),
                                str(result.get("run_dir")), options.gate_rules)  # fmt: skip
    return result


def check_settings(settings: DemoSettings) -> None:
    """Stages 1 and 2 profile the world's traces: refuse ``--policy pipeline`` on the twin, naming the fix."""
    if settings.policy == PIPELINE and settings.latency_source != "world":
        raise ValueError(
            "--policy pipeline profiles the world's traces, so it needs --latency-source world; on the twin "
            "use --policy auto, greedy-standin or a bento tag"
        )


def demo(settings: DemoSettings, options: StageOptions | None = None, say: Say = print) -> DemoResult:
    """The three stages (see the module docstring); leaves everything running until ``reach down``."""
    check_settings(settings)
    options = options or StageOptions()
    clock = StageClock(say)
    workload, staged = settings.workload, settings.policy == PIPELINE
    settings.out.mkdir(parents=True, exist_ok=True)
    with clock.stage("up", "Prefect dashboard, local cluster, Prometheus"):
        dashboard = start_prefect(settings)
        session = open_session(settings)
    live_traces = world_traces_file(settings) if staged else None
    with clock.stage("poor start", "the app on its deliberately poor placement, the world emulating it"):
        place_poorly(session, workload, live_traces, options.trace_window_s)
    pipeline, traces = None, 0
    if live_traces is not None:
        captured = settings.out / f"{stem_of(settings)}-traces.json"
        with clock.stage("1 profile", f"capturing {options.trace_window_s:.0f} s of the world's traces (Jaeger JSON)"):
            traces = capture_traces(live_traces, captured, options)
        say(f"           {traces} traces → {captured}")
        with clock.stage("2 train", f"pipeline: ingest (GX), fine-tune {options.finetune_s:.0f} s, evaluate, "
                         f"gate ({options.gate_rules} rules), package"):  # fmt: skip
            pipeline = run_pipeline(settings, options, captured)
        say(f"           gate: {pipeline['gate']}; bento {pipeline['bento']}; run {pipeline['run_dir']}")
    serving = "blue/green deploy of the gated bento" if pipeline else f"serving --policy {settings.policy}"
    with clock.stage("3 deploy", serving):
        if pipeline is not None:
            url, policy = serve_bento(settings, str(pipeline["workload_file"]), str(pipeline["bento"]))
        else:
            url, policy = policy_url(settings, workload)
    with clock.stage("3 act", f"the migrator acts for {settings.duration_s:.0f} s, the world measures"):
        twin_before = twin_on_live(session, workload)
        run = run_loop(session, f"{workload} with the migrator", url, policy)
        twin_after = twin_on_live(session, workload)
    result = report(settings, clock, run, session, dashboard, pipeline, traces, (twin_before, twin_after))
    if settings.keep_migrating:
        keep_migrating(session, url, policy)
    return result


def report(
    settings: DemoSettings,
    clock: StageClock,
    run: LoopRun,
    session: Session,
    dashboard: str | None,
    pipeline: dict[str, Any] | None,
    traces: int,
    twin_ms: tuple[float | None, float | None],
) -> DemoResult:
    """Write the run's CSV, plot and summary (JSON, Markdown); the result."""
    stem = stem_of(settings)
    title = f"reach demo: {settings.scenario} {settings.workload}, {run.policy or 'no policy'}"
    csv = write_csv(run, settings.out / f"{stem}.csv")
    plot = write_plot([run], settings.out / f"{stem}.png", title, latency_note(settings.latency_source))
    p95 = [v for _, v in run.p95_samples]
    p95_ms = (statistics.median(p95[:3]), statistics.median(p95[-5:])) if p95 else None
    result = DemoResult(summary(run), csv, plot, session.prometheus_url, dashboard, p95_ms, twin_ms,
                        dict(clock.seconds), round(clock.elapsed(), 1), pipeline, traces,
                        latency_source=settings.latency_source)  # fmt: skip
    write_text_atomic(settings.out / f"{stem}.json", json.dumps(asdict(result.summary), indent=1))
    return write_summary(result, settings, settings.out / f"{stem}-stages")


def summary_rows(result: DemoResult) -> list[tuple[str, str]]:
    """(what, value) rows of the final table: the latency before and after, then the stages' wall times."""
    s = result.summary

    def pair(values: tuple[float | None, float | None] | None) -> str:
        if values is None or values[0] is None or values[1] is None:
            return "-"
        return f"{values[0]:.1f} → {values[1]:.1f} ({(values[1] - values[0]) / values[0] * 100:+.1f} %)"

    source = "world" if result.latency_source == "world" else "twin (MODEL.md §2, live placement)"
    rows = [("policy", s.policy or "-"), (f"{source} mean ms, before → after", pair((s.before_ms, s.after_ms))),
            ("world p95 ms, before → after", pair(result.p95_ms)),
            ("twin (MODEL.md §2) ms, same placements", pair(result.twin_ms)), ("moves", str(s.moves))]  # fmt: skip
    if result.pipeline is not None:
        training = result.pipeline.get("training", {})
        rows += [("stage 1: traces ingested", str(result.traces)),
                 ("stage 2: fine-tune", f"{training.get('timesteps', 0)} steps in {training.get('wall_seconds', 0):.0f} s"),
                 ("stage 2: gate", str(result.pipeline.get("gate"))),
                 ("stage 2: pipeline steps s", ", ".join(f"{k} {v:.1f}" for k, v in result.pipeline.get("seconds", {}).items()))]  # fmt: skip
    rows += [(f"wall s: {name}", f"{seconds:.1f}") for name, seconds in result.stage_seconds.items()]
    rows.append(("wall s: total", f"{result.total_s:.1f}"))
    return rows


def summary_table(result: DemoResult, note: str) -> str:
    rows = summary_rows(result)
    width = max(len(k) for k, _ in rows)
    return "\n".join([*(f"{k:<{width}}  {v}" for k, v in rows), note])


def summary_markdown(result: DemoResult, settings: DemoSettings) -> str:
    head = f"# reach demo: {settings.scenario} / {settings.workload}\n\n{latency_note(settings.latency_source)}\n\n"
    body = "\n".join(f"| {k} | {v} |" for k, v in summary_rows(result))
    return f"{head}| what | value |\n|---|---|\n{body}\n"


def write_summary(result: DemoResult, settings: DemoSettings, stem: Path) -> DemoResult:
    """``<stem>.json`` (every number) and ``<stem>.md`` (the table), each whole or not at all; the result with their paths."""
    from dataclasses import replace

    json_path, md_path = stem.with_suffix(".json"), stem.with_suffix(".md")
    done = replace(result, report_json=json_path, report_md=md_path)
    write_text_atomic(json_path, json.dumps(asdict(done), indent=1, default=str))
    write_text_atomic(md_path, summary_markdown(done, settings))
    return done
