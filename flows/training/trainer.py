"""Training a MaskablePPO rescheduling policy and saving it as an artefact.

:func:`train` builds the vectorised envs (:mod:`flows.training.envs`), the MaskablePPO model with the
config's hyperparameters, a progress bar (SB3's rich/tqdm bar), TensorBoard logs under
``<out>/tensorboard`` and the validation callback that keeps the best model
(:mod:`flows.training.validation`). Ctrl-C (KeyboardInterrupt) and the wall-clock limit stop
training cleanly: the best model so far becomes the artefact (``reach train`` reports the interruption;
the pipeline's training task stops its run on it, :func:`flows.pipeline.train_policy`). The artefact
(:mod:`bento.artefact`) is written to ``<out>/policy`` and the learning curve to
``<out>/training_curve.csv``. Before anything is written, it refuses more training clusters than envs
and an ``init_from`` artefact whose network does not fit the config (:func:`load_init_from`). Used by
``reach train``, ``reach train-general``, the pipeline's training task and the benchmarks.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ceenv.scenario import load_scenario
from ceenv.search import CEILING
from ceenv.workload import load_workload
from flows.training.config import TrainConfig

POLICY_DIR = "policy"
CURVE_FILE = "training_curve.csv"


@dataclass(frozen=True)
class TrainResult:
    """Where the artefact is and how training ended."""

    artefact_dir: Path
    timesteps: int
    wall_seconds: float
    best_fraction_of_best_known: float
    best_timesteps: int
    interrupted: bool
    stopped_by_wall_clock: bool
    curve: list[dict[str, float]]
    selection: dict[str, Any] = field(default_factory=dict)

    def best_text(self) -> str:
        """The selected checkpoint in words: its score, when, its moves against greedy's (and the budget)."""
        text = (
            f"best validation fraction of the best-known reduction {self.best_fraction_of_best_known:.3f} "
            f"at {self.best_timesteps} steps"
        )
        sel = self.selection
        if sel.get("best_moves_per_episode") is not None:
            text += f", {sel['best_moves_per_episode']:.1f} moves per episode (greedy {sel['greedy_moves_per_episode']:.1f})"
            if sel.get("moves_over_greedy") is not None:
                text += (
                    f", within greedy + {sel['moves_over_greedy']:g}"
                    if sel["best_within_moves"]
                    else f"; no checkpoint was within greedy + {sel['moves_over_greedy']:g}, so the one with the fewest moves was kept"
                )
        return text


def build_model(config: TrainConfig, venv: Any, tensorboard_dir: Path | None, init_source: Any = None) -> Any:
    """A MaskablePPO with the config's hyperparameters (SB3 names), on CPU.

    With ``config.init_from``, the weights are those of the artefact (``init_source``: its
    :func:`load_init_from`, loaded here when not given); the optimizer starts fresh.
    """
    from sb3_contrib import MaskablePPO

    from bento.network import GainBiasedPolicy
    from bento.pod_node import PodNodePolicy

    policy_class: Any = {"gain_biased": GainBiasedPolicy, "pod_node": PodNodePolicy}.get(config.policy, "MlpPolicy")
    policy_kwargs: dict[str, Any] = {"net_arch": list(config.net_arch)}
    if config.policy == "pod_node":
        policy_kwargs = {
            "max_nodes": config.max_nodes,
            "max_slots": config.max_slots,
            "hidden": config.hidden,
            "gain_scale": config.gain_scale,
        }
    buffer: dict[str, Any] = {}
    if config.group_minibatches:
        from flows.training.buffer import SizeGroupedRolloutBuffer

        limits = {"max_nodes": config.max_nodes, "max_slots": config.max_slots}
        # The buffer normalises the advantages over the whole rollout; per minibatch would be per cluster.
        buffer = {
            "rollout_buffer_class": SizeGroupedRolloutBuffer,
            "rollout_buffer_kwargs": limits,
            "normalize_advantage": False,
        }
    model = MaskablePPO(
        policy_class,
        venv,
        learning_rate=_schedule(config),
        n_steps=config.n_steps,
        batch_size=config.batch_size,
        n_epochs=config.n_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_range,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs=policy_kwargs,
        tensorboard_log=None if tensorboard_dir is None else str(tensorboard_dir),
        seed=config.seed,
        device="cpu",
        verbose=0,
        **buffer,
    )
    if tensorboard_dir is None:
        from stable_baselines3.common.logger import Logger

        # SB3's default logger creates an empty /tmp/SB3-<date> folder on every learn(); this one
        # keeps the recorded values in memory (the validation callback records its scores there).
        model.set_logger(Logger(folder=None, output_formats=[]))
    if config.init_from is not None:
        _init_from(model, config.init_from, init_source or load_init_from(config))
    return model


def load_init_from(config: TrainConfig) -> Any:
    """The config's ``init_from`` artefact (a :class:`bento.artefact.LoadedPolicy`), checked against the config.

    Refuses (:class:`bento.artefact.PolicyError`, naming every differing key) an artefact whose recorded
    training config differs in :func:`init_from_keys`; :func:`flows.local.paths.repo_path` resolves the folder.
    """
    from bento.artefact import PolicyError, load_artefact
    from flows.local.paths import repo_path

    if config.init_from is None:
        raise ValueError("load_init_from needs a config whose init_from names an artefact")
    try:
        source = load_artefact(repo_path(config.init_from))
    except PolicyError as err:
        raise PolicyError(f"init_from {config.init_from}: {err}") from None
    recorded = _recorded_network(source)
    wanted = config.model_dump(mode="json")
    differing = [key for key in init_from_keys(config) if key in recorded and recorded[key] != wanted[key]]
    if differing:
        pairs = ", ".join(
            f"{key} {recorded[key]!r} in the artefact but {wanted[key]!r} in the config" for key in differing
        )
        raise PolicyError(
            f"init_from {config.init_from}: its network does not fit this config ({pairs}); set "
            f"{', '.join(differing)} as the artefact's metadata.json training_config has them, or init_from null"
        )
    return source


def init_from_keys(config: TrainConfig) -> tuple[str, ...]:
    """The config keys a fine-tuned artefact must share: its policy and observation, and what shapes the network
    (``pod_node``: the embedding width and the limits it is padded to; the others: ``net_arch``)."""
    shaping = ("hidden", "max_nodes", "max_slots") if config.policy == "pod_node" else ("net_arch",)
    return ("policy", "observation_version", *shaping)


def _recorded_network(source: Any) -> dict[str, Any]:
    """What an artefact records of its network: its training config, its observation version and limits."""
    recorded = dict(source.metadata.training_config)
    recorded["observation_version"] = source.metadata.observation_version
    if source.layout.padded:
        recorded.update(max_nodes=source.layout.max_nodes, max_slots=source.layout.max_slots)
    return recorded


def _init_from(model: Any, artefact_dir: str, source: Any) -> None:
    """Start from an artefact's weights (fine-tuning); refuse one whose network does not fit."""
    from bento.artefact import PolicyError

    try:
        model.policy.load_state_dict(source.model.policy.state_dict())
    except RuntimeError as err:
        raise PolicyError(
            f"init_from {artefact_dir}: its network does not fit this config ({str(err).splitlines()[0]}); use the "
            "same policy, observation_version, limits and hidden width as the artefact, or init_from null"
        ) from None


def initial_gain_scale(model: Any) -> float | None:
    """A ``pod_node`` policy's gain scale (logits per unit of move gain) as it is now; None for other policies."""
    log_gain_scale = getattr(getattr(model.policy, "net", None), "log_gain_scale", None)
    return None if log_gain_scale is None else float(log_gain_scale.detach().exp())


def _schedule(config: TrainConfig) -> Any:
    """The learning rate, or SB3's progress-driven schedule (``progress_remaining`` goes 1 → 0)."""
    if config.learning_rate_schedule == "constant":
        return config.learning_rate
    initial = config.learning_rate
    return lambda progress_remaining: initial * progress_remaining


def _report_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def validation_report(progress: bool) -> Callable[[str], None] | None:
    """Where each validation's line goes: stderr, unless a progress bar shows the run on a terminal.

    A run written to a log file (a pipeline, ``reach train … > log``) or started with ``--no-progress``
    otherwise says nothing until it ends; on a terminal the bar shows it.
    """
    return None if progress and sys.stderr.isatty() else _report_line


def _learn(model: Any, config: TrainConfig, callback: Any, progress: bool) -> bool:
    """Run ``model.learn``; return True when the user interrupted it (Ctrl-C)."""
    try:
        model.learn(config.total_timesteps, callback=callback, progress_bar=progress, tb_log_name="ppo")
    except KeyboardInterrupt:
        return True
    return False


def train(
    config: TrainConfig,
    scenario_dir: str | Path,
    workload_file: str | Path,
    out_dir: str | Path,
    *,
    progress: bool = True,
    tensorboard: bool = True,
    clusters: list[tuple[Any, Any]] | None = None,
    validation_clusters: list[tuple[Any, Any]] | None = None,
) -> TrainResult:
    """Train on ``scenario_dir`` + ``workload_file``; write the artefact under ``out_dir``; keep the best model.

    ``clusters`` (observation version 4) trains across several (scenario, workload) pairs at once;
    ``validation_clusters`` (default: the training clusters, on held-out seeds) select the best model.
    ``scenario_dir``/``workload_file`` stay the artefact's default cluster.
    """
    import torch

    from flows.training.envs import check_cluster_count, make_env, make_vec_env
    from flows.training.validation import ValidationCallback, Validator

    # Refused before anything is written or computed: too many clusters, an init_from that does not fit.
    check_cluster_count(config.n_envs, len(clusters or ()))
    init_source = None if config.init_from is None else load_init_from(config)
    torch.set_num_threads(config.torch_threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scenario = load_scenario(scenario_dir)
    workload = load_workload(workload_file, scenario)
    # The clock starts before the validation states get their best-known ceilings: selecting the
    # best model is part of training, so its set-up counts against max_wall_seconds too.
    started = time.perf_counter()
    checked = validation_clusters or clusters
    envs = [make_env(s, w, config) for s, w in checked] if checked else make_env(scenario, workload, config)
    validator = Validator(envs, config.eval_episodes)
    venv = make_vec_env(scenario_dir, workload_file, config, clusters)
    try:
        model = build_model(config, venv, out / "tensorboard" if tensorboard else None, init_source)
        gain_scale = initial_gain_scale(model)  # with init_from, the artefact's learned one, not config.gain_scale
        best_path = out / "best_model.zip"
        callback = ValidationCallback(
            validator,
            config.eval_freq_steps,
            best_path,
            started,
            config.max_wall_seconds,
            out / CURVE_FILE,
            moves_over_greedy=config.select_moves_over_greedy,
            report=validation_report(progress),
        )
        callback.init_callback(model)
        interrupted = _learn(model, config, callback, progress)
        last = callback.state.curve[-1].timesteps if callback.state.curve else None
        if last != model.num_timesteps or not callback.state.best_key:
            callback.validate()  # the final weights may be the best (or a Ctrl-C cut the first save short)
    finally:
        _close(venv)
    wall_seconds = time.perf_counter() - started
    trained_on = [[_name(s), _name(w)] for s, w in (clusters or [(scenario_dir, workload_file)])]
    selection = {
        "greedy_moves_per_episode": validator.greedy_moves_per_episode,
        "moves_over_greedy": config.select_moves_over_greedy,
        "best_moves_per_episode": callback.state.best_moves_per_episode,
        "best_within_moves": callback.state.best_within_moves,
    }
    recorded = {"validation_episodes": validator.episodes, "initial_gain_scale": gain_scale}
    return _finish(
        out,
        model,
        callback.state,
        config,
        interrupted,
        wall_seconds,
        scenario_dir,
        workload_file,
        trained_on,
        selection,
        recorded,
    )


def _finish(
    out: Path,
    model: Any,
    state: Any,
    config: TrainConfig,
    interrupted: bool,
    wall_seconds: float,
    scenario_dir: str | Path,
    workload_file: str | Path,
    trained_on: list[list[str]],
    selection: dict[str, Any],
    recorded: dict[str, Any],
) -> TrainResult:
    """Write the learning curve and the artefact (from the best model); build the result.

    ``recorded``: ``validation_episodes`` (the states the validator scores) and ``initial_gain_scale``
    (``pod_node``: the gain scale training started from; None for other policies)."""
    from flows.training.validation import write_curve

    write_curve(out / CURVE_FILE, state.curve)
    curve = [asdict(p) for p in state.curve]
    timesteps = int(model.num_timesteps)
    summary = {
        "timesteps": timesteps,
        "wall_seconds": wall_seconds,
        "interrupted": interrupted,
        "stopped_by_wall_clock": state.stopped_by_wall_clock,
        "best_timesteps": state.best_timesteps,
        "best_validation_fraction_of_best_known": state.best_fraction,
        "best_known": CEILING,  # the ceiling those fractions divide by (none named: the search before 2026-12-01)
        "validation_episodes": recorded["validation_episodes"],
        "initial_gain_scale": recorded["initial_gain_scale"],
        "selection": selection,
        "clusters": trained_on,
    }
    artefact = _save(out / "best_model.zip", out / POLICY_DIR, config, scenario_dir, workload_file, summary)
    return TrainResult(
        artefact,
        timesteps,
        wall_seconds,
        state.best_fraction,
        state.best_timesteps,
        interrupted,
        state.stopped_by_wall_clock,
        curve,
        selection,
    )


def _name(source: Any) -> str:
    """A cluster's scenario or workload name: a path's file name or a loaded object's ``name``."""
    return str(getattr(source, "name", source) if not isinstance(source, str) else Path(source).name)


def _close(venv: Any) -> None:
    # After Ctrl-C the SubprocVecEnv workers got the signal too and may already be gone.
    with contextlib.suppress(EOFError, BrokenPipeError, ConnectionResetError):
        venv.close()


def _save(
    best_path: Path,
    target: Path,
    config: TrainConfig,
    scenario_dir: str | Path,
    workload_file: str | Path,
    summary: dict[str, Any],
) -> Path:
    from sb3_contrib import MaskablePPO

    from bento.artefact import describe, save_artefact
    from ceenv.layout import layout_from_scenario

    metadata = describe(
        layout_from_scenario(
            load_scenario(scenario_dir), config.observation_version, config.max_nodes, config.max_slots
        ),
        scenario_dir,
        workload_file,
        step_cost_ms=config.step_cost_ms,
        max_steps=config.max_steps,
        training_config=config.model_dump(mode="json"),
        training_summary=summary,
    )
    return save_artefact(target, MaskablePPO.load(str(best_path), device="cpu"), metadata)
