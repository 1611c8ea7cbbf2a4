"""The ``reach-pipeline`` flow: ingest → validate → train → evaluate → gate → package.

Each task is a verb calling library code (:mod:`flows.profiles`, :mod:`ceenv`,
:mod:`flows.training`, :mod:`flows.evaluation`, :mod:`flows.evaluation.gate`, :mod:`bento.store`). The flow
body reads like a table of contents. Evaluation fans out over (workload, family, seed) units as
mapped tasks in a subflow whose task runner the ``task_runner`` parameter picks
(:mod:`flows.evaluation.runner`: Prefect's default, a local Dask cluster, or a Dask scheduler
whose workers span machines).
Every run publishes artifacts (validation summary, evaluation table and plots, gate verdict) so
the dashboard shows why a model was or was not packaged. A failed validation fails the run; a
refused gate completes it without packaging; nothing deployed is touched either way. Settings the
run could only fail on later (scenario files, evaluation families and seeds, training config, gate
rules, planning without a general policy, a ``run_dir`` holding another run's files) fail it before
any work (:func:`check_run`), and each run writes into a folder of its own (:func:`new_run_dir`).
Ctrl-C during training stops the run (the trainer keeps the best weights, nothing is packaged), and
packaging is retried on I/O errors only.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bento.planning_settings import PlanningSettings, pydantic_field
from flows.evaluation.episodes import Family
from flows.local.paths import data_dir, out_dir, repo_path, resolve_scenario, resolve_workload, write_text_atomic

GENERAL_OBSERVATION_VERSION = 4  # the padded observation (ceenv.layout.Layout.padded): what planning plays

if TYPE_CHECKING:
    from flows.evaluation.gate import Verdict
    from flows.evaluation.report import EvaluationReport
    from flows.evaluation.units import EvalUnit
    from flows.release.packaging import Incumbent


class PipelineParams(BaseModel):
    """Parameters of one pipeline run (the dashboard's run form shows these descriptions)."""

    model_config = ConfigDict(extra="forbid")

    scenario: str = Field("7-21", description="Scenario directory or name under data/scenarios.")
    workload: str = Field(
        "aggregator_sequential", description="Workload name or *_call_patterns.json path the policy is trained on."
    )
    profiles_csv: list[str] = Field(default_factory=list, description="CSV profiles to ingest first (optional).")
    profiles_jaeger: list[str] = Field(
        default_factory=list, description="Jaeger trace exports to ingest first (optional)."
    )
    node_types: str | None = Field(None, description="Node/host → CPU type table for Jaeger hosts.")
    profiles_keep_current: bool = Field(
        False,
        description="Let (service, CPU type) cells the profiles did not measure keep the workload's current "
        "execution time (e.g. traces of one placement, which runs each service on some CPU types only).",
    )
    train_config: str = Field(
        "finetune",
        description="Training config: a name under data/train or a JSON path. The default, finetune, starts from the "
        "shipped general policy (data/policies/general-v4) and fine-tunes it on this cluster for 2 minutes.",
    )
    policy_from: str | None = Field(
        None,
        description="Adopt this general (observation 4) artefact for the cluster instead of training (e.g. "
        "data/policies/general-v4): evaluated, gated and packaged like a trained one; null = train.",
    )
    total_timesteps: int | None = Field(None, ge=1, description="Override the config's step budget.")
    max_wall_seconds: float | None = Field(None, gt=0, description="Override the config's wall-clock limit.")
    eval_seeds: list[int] = Field(
        default_factory=lambda: [0, 1, 2, 3, 4],
        min_length=1,
        description="Held-out evaluation seeds (≥ 5 for confidence intervals).",
    )
    eval_episodes: int = Field(4, ge=1, description="Episodes per evaluation seed.")
    families: list[Family] = Field(
        default_factory=lambda: list[Family](["steady"]),
        description="Scenario families: steady, node_failure, traffic_surge.",
    )
    gate_rules: str = Field("default", description="Gate rules: a name under data/gate or a JSON path.")
    package: bool = Field(True, description="Package a passing policy as a bento.")
    run_dir: str | None = Field(
        None,
        description="Where this run writes: a new or empty folder (another run's outputs are refused); default: a "
        "new out/runs/<time> folder of its own.",
    )
    task_runner: str = Field(
        "default",
        description="Where the evaluation fan-out runs: default (in this process, one unit after another), dask "
        "(a local Dask cluster, one worker process per core) or dask://HOST:PORT (a Dask scheduler; deploy/README.md).",
    )
    # Defaults and bounds of the planning settings: bento.planning_settings (one source).
    plan_k: int = pydantic_field(
        "plan_k",
        "Decision-time planning the bento serves with (bento argument plan_k; general policies only, "
        "docs/service.md); the evaluation the gate reads plays the same planner. 0 = the raw policy.",
    )
    plan_horizon: int = pydantic_field("plan_horizon")
    plan_width: int = pydantic_field("plan_width")
    plan_margin: float = pydantic_field("plan_margin")
    plan_noise: float = pydantic_field("plan_noise")
    plan_confidence: float = pydantic_field("plan_confidence")
    plan_slack: int = pydantic_field("plan_slack")

    @field_validator("task_runner")
    @classmethod
    def _known_runner(cls, value: str) -> str:
        from flows.evaluation.runner import check_runner_spec

        return check_runner_spec(value)

    @field_validator("eval_seeds")
    @classmethod
    def _held_out_seeds(cls, value: list[int]) -> list[int]:
        """Distinct seeds of the held-out range: refused with the parameters, not after training."""
        from flows.evaluation.seeds import MAX_TEST_SEED

        if len(set(value)) != len(value):
            raise ValueError(f"eval_seeds {value} contain duplicates; pass distinct evaluation seeds")
        outside = [s for s in value if not 0 <= s <= MAX_TEST_SEED]
        if outside:
            raise ValueError(f"eval_seeds {outside} are outside 0..{MAX_TEST_SEED}; pick seeds in that range")
        return value

    def evaluation_settings(self) -> dict[str, Any]:
        """The settings the evaluation report records (the gate's report: seeds, episodes, families, planning)."""
        return {"seeds": self.eval_seeds, "episodes": self.eval_episodes, "families": self.families, **self.planning()}

    def planning(self) -> dict[str, Any]:
        """The planning the bento serves with and the evaluation plays: ``plan_*`` fields, or {} (raw policy)."""
        return PlanningSettings.of(self).to_dict()


def _config_path(value: str, folder: str) -> Path:
    path = Path(value)
    return path if path.suffix == ".json" else data_dir() / folder / f"{value}.json"


def _train_overrides(params: PipelineParams) -> dict[str, Any]:
    return {
        k: v
        for k, v in (("total_timesteps", params.total_timesteps), ("max_wall_seconds", params.max_wall_seconds))
        if v is not None
    }


def new_run_dir(run_dir: str | None) -> Path:
    """The run's folder, created now and holding no other run's files.

    An explicit ``run_dir`` must be new or empty (a second run there would mix its model, report and
    verdict with the first one's). The default is ``out/runs/<time>``, suffixed ``-2``, ``-3``… when
    another run took that second: ``mkdir`` claims a name atomically, so concurrent runs never share one.
    """
    if run_dir:
        folder = Path(run_dir)
        check_run_dir(run_dir)  # again: another run may have written there since check_run
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    root = out_dir() / "runs"
    root.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    n = 1
    while True:
        folder = root / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            n += 1
            continue
        return folder


def check_run_dir(run_dir: str | None) -> None:
    """Refuse an explicit ``run_dir`` that is not a new or empty folder (``ValueError`` naming it and the fix)."""
    if not run_dir:
        return
    folder = Path(run_dir)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(
            f"run_dir {folder} already exists and is not an empty folder (another run's outputs?); pass a new "
            "or empty folder, or leave run_dir null for a new out/runs/<time> folder"
        )


@task
def ingest_profiles(params: PipelineParams, scenario_dir: Path, workload_file: Path, run_dir: Path) -> Path:
    """Validate the profiles (Great Expectations) and write a new dataset; return its workload file."""
    from flows.profiles.checks import CheckOptions
    from flows.profiles.ingest import ProfileInputs
    from flows.profiles.ingest import ingest_profiles as ingest

    inputs = ProfileInputs(
        tuple(Path(p) for p in params.profiles_csv),
        tuple(Path(p) for p in params.profiles_jaeger),
        Path(params.node_types) if params.node_types else None,
    )
    options = CheckOptions(keep_current=params.profiles_keep_current)
    dataset, run = ingest(
        inputs, scenario_dir, [workload_file], run_dir / "dataset", options, reports_dir=run_dir / "reports"
    )
    checks = run.report.get("checks", [])
    create_markdown_artifact(
        "# Profile validation (Great Expectations)\n\n"
        + "\n".join(f"- {'PASS' if c['success'] else 'FAIL'} {c['check']}" for c in checks),
        key="profile-validation",
        description="GX validation summary of the ingested profiles",
    )
    return dataset / workload_file.name


def check_files(scenario_dir: Path, workload_file: Path) -> str:
    """Validate the scenario and workload files (ceenv's checks); raise ``ValueError`` with every problem."""
    from flows.evaluation.placements import validate_files

    problems, summary = validate_files(str(scenario_dir), str(workload_file))
    if problems:
        raise ValueError("invalid scenario or workload:\n" + "\n".join(problems))
    return summary


@task
def validate_scenario(scenario_dir: Path, workload_file: Path) -> str:
    """Validate the scenario and workload files (ceenv's checks); fail the run with every problem."""
    return check_files(scenario_dir, workload_file)


def check_run(params: PipelineParams, scenario_dir: Path, workload_file: Path) -> None:
    """Refuse, before any work (a run folder, ingestion, training), settings the run could only fail on later.

    The scenario and workload files (every problem: :func:`check_files`), the
    evaluation settings (a family this cluster and application cannot have, bad seeds), the training
    config (or the ``policy_from`` artefact's metadata), planning (``plan_k`` > 0) of a policy that is not
    general (observation version 4), the gate rules, and an explicit ``run_dir`` holding files already
    (:func:`check_run_dir`); each error is a ``ValueError`` naming the problem and the fix.
    """
    from flows.evaluation.gate import load_gate_rules
    from flows.evaluation.units import check_evaluation
    from flows.training.config import load_train_config

    check_run_dir(params.run_dir)
    check_files(scenario_dir, workload_file)
    check_evaluation(scenario_dir, [workload_file], params.families, params.eval_seeds, params.eval_episodes)
    if params.policy_from is None:
        config = load_train_config(_config_path(params.train_config, "train"), **_train_overrides(params))
        _check_planning(params, config.observation_version, f"train_config {params.train_config} trains")
    else:
        from bento.artefact import read_metadata

        metadata = read_metadata(repo_path(params.policy_from))  # PolicyError naming the folder and the fix
        _check_planning(params, metadata.observation_version, f"policy_from {params.policy_from} is")
    load_gate_rules(_config_path(params.gate_rules, "gate"))


def _check_planning(params: PipelineParams, observation_version: int, policy: str) -> None:
    """Planning (``plan_k`` > 0) plays a general policy only: refused here, not when the evaluation starts."""
    if params.plan_k > 0 and observation_version < GENERAL_OBSERVATION_VERSION:
        raise ValueError(
            f"plan_k={params.plan_k} plans with a general (observation version {GENERAL_OBSERVATION_VERSION}) "
            f"policy, but {policy} observation version {observation_version}; set plan_k to 0 (the raw policy), "
            "or train_config to finetune or general (or policy_from to data/policies/general-v4)"
        )


def check_params(params: PipelineParams) -> tuple[Path, Path]:
    """The run's scenario folder and workload file, once :func:`check_run` passed: what the flow and ``reach
    pipeline run`` (exit 2) refuse before any work; a ``ValueError`` naming the field and the fix."""
    scenario_dir = resolve_scenario(params.scenario)
    workload_file = resolve_workload(params.workload, scenario_dir)
    check_run(params, scenario_dir, workload_file)
    return scenario_dir, workload_file


@task
def train_policy(params: PipelineParams, scenario_dir: Path, workload_file: Path, run_dir: Path) -> dict[str, Any]:
    """Train MaskablePPO (no progress bar inside the flow; Prefect logs instead) and save the artefact.

    With ``policy_from`` the shipped general policy is adopted for the cluster instead (no training).
    """
    from flows.training.config import load_train_config
    from flows.training.trainer import train

    if params.policy_from is not None:
        from bento.artefact import retarget_artefact

        source = repo_path(params.policy_from)
        artefact = retarget_artefact(source, scenario_dir, workload_file, run_dir / "training" / "policy")
        get_run_logger().info("adopted %s for %s (no training)", source, scenario_dir.name)
        return {"artefact_dir": str(artefact), "timesteps": 0, "wall_seconds": 0.0, "adopted_from": str(source)}

    config = load_train_config(_config_path(params.train_config, "train"), **_train_overrides(params))
    result = train(config, scenario_dir, workload_file, run_dir / "training", progress=False)
    # The trainer stops cleanly on Ctrl-C (`reach train` then keeps the best weights): so does the run.
    if result.interrupted:
        raise KeyboardInterrupt(
            f"training was interrupted (Ctrl-C) after {result.timesteps} steps; the run stops before evaluating, "
            f"gating or packaging (the best weights so far: {result.artefact_dir})"
        )
    get_run_logger().info(
        "trained %d steps in %.0f s; best validation fraction %.3f",
        result.timesteps,
        result.wall_seconds,
        result.best_fraction_of_best_known,
    )
    return {
        "artefact_dir": str(result.artefact_dir),
        "timesteps": result.timesteps,
        "wall_seconds": result.wall_seconds,
    }


def evaluation_units(
    params: PipelineParams, scenario_dir: Path, workload_file: Path, artefact_dir: str
) -> list[EvalUnit]:
    """The units of the run's evaluation: they play ``params.planning()``, what the packaged bento serves."""
    from flows.evaluation.units import plan_units

    return plan_units(
        scenario_dir,
        [workload_file],
        params.families,
        params.eval_seeds,
        params.eval_episodes,
        artefact_dir,
        **params.planning(),
    )


def _image_markdown(path: Path) -> str:
    return f"![{path.stem}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})"


@task
def publish_evaluation(
    artefact_dir: str, records: list[Any], settings: dict[str, Any], run_dir: Path
) -> EvaluationReport:
    """Summarise the records, write report.json/.md and plots, attach them to the run and the artefact."""
    from bento.artefact import write_evaluation
    from flows.evaluation import report_from_records
    from flows.evaluation.output import markdown, write_report

    report = report_from_records(artefact_dir, records, settings)
    written = write_report(report, records, run_dir / "evaluation")
    write_evaluation(artefact_dir, report.model_dump(mode="json"))
    create_markdown_artifact(
        markdown(report), key="evaluation-table", description="Policy vs baselines on held-out start states"
    )
    plots = [p for p in written if p.suffix == ".png"]
    if plots:
        create_markdown_artifact(
            "\n\n".join(_image_markdown(p) for p in plots),
            key="evaluation-plots",
            description="Latency distribution per method; moves vs gain",
        )
    return report


@task
def find_incumbent(scenario_dir: Path, workload_file: Path) -> Incumbent | None:
    """The incumbent of this scenario and workload: the policy serving this cluster, else the newest gated
    bento that can serve it (never a policy serving another cluster); its bento, model folder and report."""
    from flows.release.packaging import find_incumbent as incumbent_of

    return incumbent_of(str(scenario_dir), str(workload_file))


def incumbent_on_these_states(
    found: Incumbent | None, report: EvaluationReport, params: PipelineParams, scenario_dir: Path, workload_file: Path
) -> EvaluationReport | None:
    """The incumbent's report on this run's start states (:func:`flows.release.packaging.incumbent_like_for_like`),
    evaluated again on the run's task runner when its stored report is not like for like."""
    from flows.evaluation.runner import evaluate_on
    from flows.release.packaging import incumbent_like_for_like

    incumbent, note = incumbent_like_for_like(
        found, report, scenario_dir, [workload_file], lambda units: evaluate_on(params.task_runner, units)
    )
    if note:
        get_run_logger().info("%s", note)
    return incumbent


@task
def gate_policy(report: EvaluationReport, incumbent: EvaluationReport | None, rules_file: Path) -> Verdict:
    """Apply the gate rules; publish the verdict with every reason."""
    from flows.evaluation.gate import gate, load_gate_rules

    verdict = gate(report, incumbent, load_gate_rules(rules_file))
    create_markdown_artifact(
        f"# Gate: {'PASSED' if verdict.passed else 'REFUSED'}\n\n{verdict.summary()}\n\n"
        + "\n".join(f"- {r}" for r in verdict.reasons)
        + ("\n\n(no incumbent: nothing deployed yet)" if incumbent is None else ""),
        key="gate-verdict",
        description="Why the policy was or was not packaged",
    )
    create_table_artifact([c.model_dump() for c in verdict.checks], key="gate-checks", description="Gate checks")
    return verdict


def retry_on_io_error(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's ``retry_condition_fn``: retry an I/O error (``OSError``: a full disk, a busy store), never a
    refusal (``ValueError``, ``PolicyError``): the same input fails the same way again."""
    return isinstance(state.data, OSError)


@task(retries=2, retry_delay_seconds=5, retry_condition_fn=retry_on_io_error)
def package_bento(artefact_dir: str, verdict: Verdict, planning: dict[str, Any]) -> str:
    """Store the policy in the BentoML model store and build its bento (labelled with the verdict), serving
    with ``planning`` (bento arguments ``plan_*``; {} = the raw policy)."""
    from flows.release.packaging import package

    return package(artefact_dir, verdict.passed, verdict.summary(), planning)


class _StepClock:
    """Wall seconds of the pipeline's steps (``result["seconds"]``), for the demo's stage table."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = round(now - self._last, 2)
        self._last = now


@flow(name="reach-pipeline", log_prints=True)
def reach_pipeline(params: PipelineParams | None = None) -> dict[str, Any]:
    """Ingest → validate → train → evaluate → gate → package (see the module docstring)."""
    from flows.evaluation.runner import evaluate_on

    params = params or PipelineParams()
    scenario_dir, workload_file = check_params(params)  # before any work: not after training
    run_dir = new_run_dir(params.run_dir)
    clock = _StepClock()
    if params.profiles_csv or params.profiles_jaeger:
        workload_file = ingest_profiles(params, scenario_dir, workload_file, run_dir)
    summary = validate_scenario(scenario_dir, workload_file)
    clock.mark("profile")
    trained = train_policy(params, scenario_dir, workload_file, run_dir)
    clock.mark("train")
    planning = params.planning()  # what the bento will serve: the gate must judge the same decisions
    units = evaluation_units(params, scenario_dir, workload_file, trained["artefact_dir"])
    records = evaluate_on(params.task_runner, units)  # a subflow on the chosen task runner
    settings = params.evaluation_settings()
    report = publish_evaluation(trained["artefact_dir"], records, settings, run_dir)
    clock.mark("evaluate")
    incumbent = incumbent_on_these_states(
        find_incumbent(scenario_dir, workload_file), report, params, scenario_dir, workload_file
    )
    verdict = gate_policy(report, incumbent, _config_path(params.gate_rules, "gate"))
    clock.mark("gate")
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "validated": summary,
        "scenario_dir": str(scenario_dir),
        "workload_file": str(workload_file),  # the ingested one when profiles were given: what the bento serves
        "training": trained,
        "gate": verdict.summary(),
        "passed": verdict.passed,
        "bento": None,
        "seconds": clock.seconds,
    }
    if verdict.passed and params.package:
        result["bento"] = package_bento(trained["artefact_dir"], verdict, planning)
        clock.mark("package")
    write_text_atomic(run_dir / "pipeline.json", json.dumps(result, indent=2))  # never half a result file
    return result
