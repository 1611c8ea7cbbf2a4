"""``reach train``, ``reach train-general``, ``reach evaluate`` and ``reach gate``: thin typer commands over the library.

Each command validates its input, calls one library function (:func:`flows.training.train`,
:func:`flows.evaluation.evaluate`, :func:`flows.evaluation.gate.gate`) and prints a short summary. torch,
sb3 and matplotlib are imported inside the library calls, never at module level, so that
``reach --help`` stays fast. Attached to the ``reach`` app in :mod:`flows.cli`.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bento import planning_settings as planning

if TYPE_CHECKING:
    from flows.evaluation.units import EvalUnit
    from flows.training.config import TrainConfig


def _data(relative: str) -> Path:
    """A file of reach's data folder (``data/`` of the installation or ``$REACH_DATA_DIR``), wherever the command runs."""
    from flows.local.paths import data_dir

    return data_dir() / relative


def _planning_option(name: str) -> Any:
    """A typer option for planning setting ``name``: help and bounds from :mod:`bento.planning_settings`."""
    low, high = planning.bounds(name)
    return typer.Option(help=planning.description(name), min=low, max=high)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def _parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` → [0, 1, 2]; ``"0-4"`` → [0..4]; ``"5"`` → [0..4] (a count)."""
    try:
        if "-" in text:
            low, high = (int(x) for x in text.split("-", 1))
            return list(range(low, high + 1))
        if "," in text:
            return [int(x) for x in text.split(",") if x.strip()]
        return list(range(int(text)))
    except ValueError:
        raise _fail(f"--seeds {text!r} is not a count (5), a range (0-4) or a list (0,1,2,3,4)") from None


def train_command(
    scenario: Annotated[Path, typer.Option(help="Scenario directory (nodes.json, services.json).")],
    workload: Annotated[Path, typer.Option(help="Call-pattern file, e.g. data/workloads/chain_call_patterns.json.")],
    out: Annotated[Path, typer.Option(help="Run directory: policy/ artefact, tensorboard/, training_curve.csv.")],
    config: Annotated[
        Path | None, typer.Option(help="Training config JSON (see docs/training.md); default: data/train/default.json.")
    ] = None,
    timesteps: Annotated[int | None, typer.Option(help="Override total_timesteps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override seed.")] = None,
    max_wall_seconds: Annotated[float | None, typer.Option(help="Override max_wall_seconds.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a policy; Ctrl-C stops cleanly and keeps the best model so far."""
    from bento.artefact import PolicyError
    from flows.training import load_train_config, train

    overrides = {
        k: v
        for k, v in {"total_timesteps": timesteps, "seed": seed, "max_wall_seconds": max_wall_seconds}.items()
        if v is not None
    }
    _check_out_dir(out)
    try:  # every input checked before --out is created (ConfigError and ScenarioError are ValueErrors)
        cfg = load_train_config(config or _data("train/default.json"), **overrides)
        _check_training_inputs(cfg, scenario, workload)
    except (PolicyError, ValueError) as err:
        raise _fail(str(err)) from None
    created = not out.exists()
    try:
        result = train(cfg, scenario, workload, out, progress=progress)
    except (PolicyError, ValueError) as err:  # e.g. an init_from network that does not fit the config
        _remove_if_empty(out, created)
        raise _fail(str(err)) from None
    state = (
        "interrupted (Ctrl-C)"
        if result.interrupted
        else "stopped at the wall-clock limit"
        if result.stopped_by_wall_clock
        else "finished"
    )
    typer.echo(
        f"training {state} after {result.timesteps} steps in {result.wall_seconds:.0f} s; {result.best_text()}; "
        f"artefact: {result.artefact_dir}"
    )


def _check_training_inputs(cfg: TrainConfig, scenario: Path, workload: Path) -> None:
    """Load the scenario, the workload and the config's ``init_from`` artefact as training will (and check that
    the artefact's network fits the config); raise ``ScenarioError`` or ``PolicyError`` naming the file and the fix."""
    from ceenv.scenario import load_scenario
    from ceenv.workload import load_workload
    from flows.training.trainer import load_init_from

    load_workload(workload, load_scenario(scenario))
    if cfg.init_from is not None:
        load_init_from(cfg)


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {out} is a file; pass a directory for the run (policy/, tensorboard/, training_curve.csv)")


def _remove_if_empty(out: Path, created: bool) -> None:
    """Refused before training wrote anything: leave no empty ``--out`` behind (only one this command created)."""
    if created and out.is_dir() and not any(out.iterdir()):
        out.rmdir()


def train_general_command(
    out: Annotated[Path, typer.Option(help="Run directory: policy/ artefact, tensorboard/, training_curve.csv.")],
    config: Annotated[
        Path | None, typer.Option(help="Training config (observation 4, pod_node); default: data/train/general.json.")
    ] = None,
    generated: Annotated[
        int,
        typer.Option(
            help="Generated training clusters beside the 9 reference cells; with them at most n_envs clusters.",
            min=0,
        ),
    ] = 7,
    validation: Annotated[int, typer.Option(help="Held-out generated clusters in validation.", min=0)] = 3,
    max_wall_seconds: Annotated[float | None, typer.Option(help="Override max_wall_seconds.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override seed.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    tensorboard: Annotated[
        bool, typer.Option(help="Write TensorBoard logs (validation scores included) under <out>/tensorboard.")
    ] = True,
) -> None:
    """Train the general (size-agnostic) policy across REACH's 3 sizes x 3 workloads and generated clusters.

    <out>/training_curve.csv is rewritten after every validation, so a running job can be watched;
    Ctrl-C stops cleanly and keeps the best model so far.
    """
    from bento.artefact import PolicyError
    from flows.training import load_train_config
    from flows.training.general import REFERENCE_DEFAULT, check_general, reference_files, train_general

    overrides = {k: v for k, v in {"max_wall_seconds": max_wall_seconds, "seed": seed}.items() if v is not None}
    _check_out_dir(out)
    try:  # as reach train: every input checked before --out is created and validation's best-known is computed
        cfg = load_train_config(config or _data("train/general.json"), **overrides)
        check_general(cfg, generated)
        _check_training_inputs(cfg, *reference_files(*REFERENCE_DEFAULT))
    except (PolicyError, ValueError) as err:
        raise _fail(str(err)) from None
    created = not out.exists()
    try:
        result = train_general(
            cfg, out, generated_count=generated, validation_count=validation, progress=progress, tensorboard=tensorboard
        )
    except (PolicyError, ValueError) as err:
        _remove_if_empty(out, created)
        raise _fail(str(err)) from None
    typer.echo(
        f"trained {result.timesteps} steps in {result.wall_seconds:.0f} s; {result.best_text()}; "
        f"artefact: {result.artefact_dir}"
    )


def evaluate_command(
    model: Annotated[Path | None, typer.Option(help="Policy artefact directory (omit: baselines only).")] = None,
    scenario: Annotated[
        str | None,
        typer.Option(
            help="Scenario directory, or a name under data/scenarios (7-21); default: the artefact's training scenario."
        ),
    ] = None,
    workload: Annotated[
        list[str] | None,
        typer.Option(
            help="Call-pattern file, or a workload name (chain: beside the scenario, then data/workloads); repeat "
            "the option. Default: the artefact's workload."
        ),
    ] = None,
    episodes: Annotated[int, typer.Option(help="Held-out episodes per seed and group.")] = 20,
    seeds: Annotated[str, typer.Option(help="Evaluation seeds: a count (5), a range (0-4) or a list (0,1,2).")] = "5",
    family: Annotated[
        list[str] | None, typer.Option(help="steady, node_failure, traffic_surge; repeat. Default: all three.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Output directory for report.json, report.md, PNG plots.")] = Path("eval"),
    store: Annotated[
        bool | None,
        typer.Option(
            "--store/--no-store",
            help="Also store the report in the artefact's metadata.json (what reach package gates on), when it "
            "judges the raw policy on the artefact's own cluster and workload at least as thoroughly as the stored "
            "one. Default: yes, except for a policy shipped under data/policies (tracked by git): --store for that.",
        ),
    ] = None,
    plan_k: Annotated[
        int,
        typer.Option(
            help="Evaluate with decision-time planning as the bento's plan_k serves it (0: raw policy).",
            min=planning.bounds("plan_k")[0],
            max=planning.bounds("plan_k")[1],
        ),
    ] = planning.default("plan_k"),
    plan_horizon: Annotated[int, _planning_option("plan_horizon")] = planning.default("plan_horizon"),
    plan_width: Annotated[int, _planning_option("plan_width")] = planning.default("plan_width"),
    plan_margin: Annotated[float, _planning_option("plan_margin")] = planning.default("plan_margin"),
    plan_noise: Annotated[float, _planning_option("plan_noise")] = planning.default("plan_noise"),
    plan_confidence: Annotated[float, _planning_option("plan_confidence")] = planning.default("plan_confidence"),
    plan_slack: Annotated[int, _planning_option("plan_slack")] = planning.default("plan_slack"),
    progress: Annotated[
        bool,
        typer.Option(
            help="Show progress on stderr: a bar on a terminal, one line per finished unit (workload, family, seed) "
            "otherwise."
        ),
    ] = True,
) -> None:
    """Evaluate a policy and every baseline on held-out start states; write JSON, Markdown and PNGs."""
    from bento.artefact import PolicyError
    from ceenv.validation import ScenarioError
    from flows.evaluation import FAMILIES, evaluate
    from flows.evaluation.output import write_report

    families = family or list(FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise _fail(f"--family {unknown} unknown; choose from {list(FAMILIES)}")
    if model is None and (scenario is None or not workload):
        raise _fail("without --model, pass --scenario and at least one --workload")
    plan = planning.PlanningSettings(
        plan_k, plan_horizon, plan_width, plan_margin, plan_noise, plan_confidence, plan_slack
    ).to_dict()
    if plan and model is None:
        raise _fail("--plan-k needs --model (planning plays the policy)")
    if out.exists() and not out.is_dir():
        raise _fail(f"--out {out} is a file; pass a directory for report.json, report.md and the plots")
    if model is not None:
        _check_artefact_dir(model)
    with tempfile.TemporaryDirectory(prefix="reach-evaluate-") as scratch:  # the artefact's recorded files, if needed
        copied = False
        try:
            from flows.local.paths import resolve_scenario, resolve_workload

            if scenario is None or not workload:
                from bento.artefact import read_metadata

                own_scenario, own_workload, copied = _artefact_cluster(
                    model,  # type: ignore[arg-type]
                    read_metadata(model),  # type: ignore[arg-type]
                    Path(scratch),
                    scenario_needed=scenario is None,
                    workload_needed=not workload,
                )
                scenario = scenario or str(own_scenario)
                workload = workload or [str(own_workload)]
            scenario_dir = resolve_scenario(scenario)
            workloads = [resolve_workload(w, scenario_dir) for w in workload]
            with EvaluationProgress(progress) as shown:
                report, records = evaluate(
                    scenario_dir, workloads, model, _parse_seeds(seeds), episodes, families,  # type: ignore[arg-type]
                    progress=shown, **plan,
                )  # fmt: skip
        except (PolicyError, ScenarioError, ValueError) as err:
            raise _fail(str(err)) from None
        written = write_report(report, records, out)
        if model is not None and store is not False:
            _store_report(model, scenario_dir, workloads, report, explicit=store is True, copied=copied)
    typer.echo((out / "report.md").read_text())
    typer.echo("wrote " + ", ".join(str(p) for p in written))


class EvaluationProgress:
    """``reach evaluate``'s progress on stderr: a bar on a terminal, else one line per finished unit.

    A unit is one workload, family and seed (``--episodes`` episodes). On a generated 38-node cluster
    a unit of 4 episodes took 16 s here (mostly its best-known ceilings, one search per episode), and a
    run with no output until the end looked hung.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.perf_counter()
        self.bar: Any = None
        self.task: Any = None

    def __enter__(self) -> EvaluationProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, done: int, total: int, unit: EvalUnit | None) -> None:
        if not self.enabled:
            return
        if self.bar is None and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                console=Console(stderr=True), transient=True,
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task("evaluating", total=total)
        if unit is None:
            return
        what = f"{Path(unit.workload_file).stem} / {unit.family} / seed {unit.seed}"
        if self.bar is not None:
            self.bar.update(self.task, completed=done, description=f"evaluated {what}")
        else:
            elapsed = time.perf_counter() - self.started
            print(f"evaluated {done}/{total} units ({what}) after {elapsed:.0f} s", file=sys.stderr, flush=True)


def _check_artefact_dir(model: Path) -> None:
    """A ``reach train --out`` run folder given as ``--model``: name the artefact folder inside it."""
    from bento.artefact import METADATA_FILE

    if not (model / METADATA_FILE).is_file() and (model / "policy" / METADATA_FILE).is_file():
        raise _fail(
            f"--model {model} is a run folder of `reach train` (no {METADATA_FILE} in it); pass its policy artefact: "
            f"--model {model / 'policy'}"
        )


def _artefact_cluster(
    model: Path, metadata: Any, scratch: Path, scenario_needed: bool, workload_needed: bool
) -> tuple[Path, Path, bool]:
    """The artefact's own scenario folder and workload file (those needed), and whether either is a copy.

    ``data/scenarios/<scenario_name>`` and ``data/workloads/<workload_name>_call_patterns.json`` when they hold
    the very files ``metadata.json`` records (same SHA-256); otherwise (a renamed or generated cluster, files
    edited since) the recorded files themselves, written under ``scratch`` with the recorded names."""
    from bento.artefact import source_file

    def same(path: Path, recorded: Any) -> bool:
        return path.is_file() and source_file(path).sha256 == recorded.sha256

    scenario_dir = _data(f"scenarios/{metadata.scenario_name}")
    workload_file = _data(f"workloads/{metadata.workload_name}_call_patterns.json")
    copied = []
    if scenario_needed and not all(same(scenario_dir / f.name, f) for f in metadata.scenario_files):
        copied.append(str(scenario_dir))
        scenario_dir = scratch / metadata.scenario_name
        scenario_dir.mkdir()
        for recorded in metadata.scenario_files:
            _write_recorded(scenario_dir / recorded.name, recorded)
    if workload_needed and not same(workload_file, metadata.workload_file):
        copied.append(str(workload_file))
        workload_file = scratch / metadata.workload_file.name
        _write_recorded(workload_file, metadata.workload_file)
    if copied:
        typer.echo(
            f"{' and '.join(copied)}: missing or other files than {model}/metadata.json records; evaluating on "
            "the recorded files (pass --scenario/--workload to choose others)"
        )
    return scenario_dir, workload_file, bool(copied)


def _write_recorded(path: Path, recorded: Any) -> None:
    """A file ``metadata.json`` records (parsed JSON), written back byte for byte when a usual layout gives
    its recorded SHA-256 (so that the report can be stored), else in the first layout."""
    import hashlib

    content = recorded.content
    layouts = [json.dumps(content, indent=n) + end for n in (1, 2, 4) for end in ("\n", "")]
    text = next((t for t in layouts if hashlib.sha256(t.encode()).hexdigest() == recorded.sha256), layouts[0])
    path.write_text(text)


def _shipped_policies(model: Path) -> Path | None:
    """The ``data/policies`` folder (the checkout's or ``$REACH_DATA_DIR``'s) that holds ``model``, or None."""
    from flows.local.paths import repo_root

    for root in (repo_root() / "data" / "policies", _data("policies")):
        if model.resolve().is_relative_to(root.resolve()):
            return root
    return None


def _store_report(
    model: Path, scenario_dir: Path, workloads: list[Path], report: Any, *, explicit: bool, copied: bool
) -> None:
    """Store ``report`` in the artefact when :func:`flows.evaluation.stored.store_refusal` allows; a shipped
    policy (tracked by git) only on an explicit ``--store``."""
    from bento.artefact import write_evaluation
    from flows.evaluation.stored import store_refusal

    shipped = _shipped_policies(model)
    if shipped is not None and not explicit:
        typer.echo(
            f"report not stored in {model}: it is a policy shipped under {shipped} (tracked by git); "
            "pass --store to replace its stored report"
        )
        return
    refusal = store_refusal(model, scenario_dir, workloads, report.settings)
    if refusal is not None and copied:
        refusal += (
            " (the cluster files were the copies of what its metadata.json records; if they could not be written "
            "back byte for byte, pass --scenario and --workload with the original files)"
        )
    if refusal is None:
        write_evaluation(model, report.model_dump(mode="json"))
        typer.echo(f"stored the report in {model} (what reach package gates on)")
    else:
        typer.echo(f"report not stored in {model}: {refusal}")


def gate_command(
    report: Annotated[Path, typer.Option(help="Candidate's report.json (from reach evaluate).")],
    incumbent: Annotated[
        Path | None, typer.Option(help="Incumbent's report.json; omit when nothing is deployed.")
    ] = None,
    rules: Annotated[Path | None, typer.Option(help="Gate rules JSON; default: data/gate/default.json.")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the verdict as JSON here.")] = None,
) -> None:
    """Apply the gate; exit 0 when the candidate passes, 1 when it is refused, 2 on bad input."""
    from flows.evaluation.gate import gate, load_gate_rules
    from flows.evaluation.report import EvaluationReport
    from flows.local.paths import write_text_atomic
    from flows.training.config import ConfigError, read_config

    if out is not None and out.is_dir():
        raise _fail(f"--out {out} is a folder; pass a file path for the verdict JSON, e.g. {out / 'verdict.json'}")
    if out is not None and not out.parent.is_dir():
        raise _fail(f"--out {out}: folder {out.parent} does not exist; create it or write the verdict elsewhere")
    try:
        verdict = gate(
            read_config(EvaluationReport, report),
            None if incumbent is None else read_config(EvaluationReport, incumbent),
            load_gate_rules(rules or _data("gate/default.json")),
        )
    except ConfigError as err:
        raise _fail(_with_report_hint(str(err), report, incumbent)) from None
    for line in verdict.reasons:
        typer.echo(line)
    typer.echo(verdict.summary())
    if out is not None:
        write_text_atomic(out, json.dumps(verdict.model_dump(mode="json"), indent=1))
    raise typer.Exit(code=0 if verdict.passed else 1)


def _with_report_hint(message: str, *files: Path | None) -> str:
    """``message`` with the fix when one of ``files`` is a policy artefact's metadata.json, not a report.json."""
    for file in (f for f in files if f is not None):
        if str(file) in message and _is_artefact_metadata(file):
            message += (
                f". {file} is a policy artefact's metadata.json, not a report: pass the report.json that "
                f"`reach evaluate --model {file.parent} --out DIR` writes (DIR/report.json)"
            )
    return message


def _is_artefact_metadata(file: Path) -> bool:
    try:
        document = json.loads(file.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and "layout_fingerprint" in document and "groups" not in document


def register(app: typer.Typer) -> None:
    """Attach ``train``, ``evaluate`` and ``gate`` to the ``reach`` app."""
    app.command("train")(train_command)
    app.command("train-general")(train_general_command)
    app.command("evaluate")(evaluate_command)
    app.command("gate")(gate_command)
