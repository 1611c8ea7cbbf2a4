"""Validation during training: a fixed set of held-out start states, the best-known ceiling, the best model.

:class:`Validator` draws ``eval_episodes`` start states from the validation seed range
(:func:`flows.evaluation.seeds.validation_seed`), computes each state's best-known reduction once,
and then scores any decision function by the fraction of the best-known reduction it achieves
(ratio of sums); it also plays greedy on the same states once (within the env's ``max_steps``), for
the move budget. :class:`ValidationCallback`
is the SB3 callback that scores the model every ``eval_freq_steps``, logs to TensorBoard, records the
learning curve against wall time (and rewrites it as CSV after every point, when given a file), saves
the best model (by score, or by score within a move budget, :func:`selection_key`; written whole or not
at all, :func:`save_model_atomic`) and stops at the wall-time limit. Used by :mod:`flows.training.trainer`.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from ceenv.baselines import run_greedy
from ceenv.env import CloudEdgeEnv
from ceenv.search import best_known
from ceenv.simulator import Simulator
from flows.evaluation.episodes import Decide, State, fraction_of_best_known, run_policy, start_state
from flows.evaluation.seeds import validation_seed
from flows.local.paths import write_text_atomic


@dataclass(frozen=True)
class Score:
    """A policy's result on the validation states."""

    fraction_of_best_known: float
    reduction_pct: float
    moves_per_episode: float
    invalid_actions: int


class Validator:
    """Fixed validation states and their best-known reductions, on one env or several (clusters).

    With several envs, each gets ``episodes // len(envs)`` states (at least 1) and the fraction of
    the best-known reduction is the mean of the per-env ratios of sums, so a cluster with large
    latencies does not outweigh the others. ``self.episodes`` is the number of states scored.
    """

    def __init__(self, env: CloudEdgeEnv | list[CloudEdgeEnv], episodes: int) -> None:
        self.envs = env if isinstance(env, list) else [env]
        self.env = self.envs[0]
        per_env = max(1, episodes // len(self.envs))
        self.states: list[list[State]] = []
        self.best_reduction_ms: list[list[float]] = []
        greedy_moves: list[int] = []
        for e in self.envs:
            states = [start_state(e, "steady", validation_seed(k)) for k in range(per_env)]
            self.states.append(states)
            sims = [Simulator(e.model, e.layout, *s) for s in states]
            self.best_reduction_ms.append(
                [best_known(sim, np.random.default_rng(validation_seed(k))).reduction_ms for k, sim in enumerate(sims)]
            )
            # Within the env's episode length, as the policy scored against it is.
            greedy_moves.extend(run_greedy(sim, e.step_cost_ms, e.max_steps).moves for sim in sims)
        # Greedy sees the true conditions (as in the evaluation), the policy the measured ones.
        self.greedy_moves_per_episode = float(np.mean(greedy_moves))
        self.episodes = sum(len(states) for states in self.states)  # what is scored, not what was asked for

    def score(self, decide: Decide) -> Score:
        fractions, outcomes = [], []
        for env, states, best_ms in zip(self.envs, self.states, self.best_reduction_ms, strict=True):
            # Seeded per state: with measured conditions the noise is the same for every model scored.
            mine = [run_policy(env, state, decide, seed=validation_seed(k)) for k, state in enumerate(states)]
            best = sum(max(b, 0.0) for b in best_ms)
            fractions.append(fraction_of_best_known(sum(o.reduction_ms for o in mine), best))
            outcomes.extend(mine)
        return Score(
            fraction_of_best_known=float(np.mean(fractions)),
            reduction_pct=float(np.mean([o.reduction_pct for o in outcomes])),
            moves_per_episode=float(np.mean([o.moves for o in outcomes])),
            invalid_actions=sum(o.invalid_actions for o in outcomes),
        )


@dataclass
class CurvePoint:
    wall_seconds: float
    timesteps: int
    fraction_of_best_known: float
    reduction_pct: float
    moves_per_episode: float


def write_curve(file: Path, curve: list[CurvePoint]) -> None:
    """The learning curve as CSV, one row per validation (header only when there is none yet).

    Written beside ``file`` and renamed over it, so a reader never sees half a file.
    """
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(CurvePoint.__dataclass_fields__))
    writer.writeheader()
    writer.writerows(asdict(point) for point in curve)
    write_text_atomic(file, text.getvalue())


@dataclass
class ValidationState:
    """What the callback learned so far; read by the trainer after ``learn`` returns or is interrupted."""

    curve: list[CurvePoint] = field(default_factory=list)
    best_fraction: float = -np.inf
    best_timesteps: int = 0
    best_moves_per_episode: float | None = None
    best_within_moves: bool = False
    best_key: tuple[bool, float, float] | tuple[()] = ()  # selection_key of the kept checkpoint; () before any
    stopped_by_wall_clock: bool = False


def selection_key(
    score: Score, greedy_moves_per_episode: float, moves_over_greedy: float | None
) -> tuple[bool, float, float]:
    """How checkpoints rank (higher is better): by score, and first by a move budget when one is set.

    With ``moves_over_greedy`` set, a checkpoint whose moves per episode exceed greedy's on the same
    states plus the budget ranks below every checkpoint within it, whatever its score: a policy that
    churns pods for a little more latency is not the one to serve (validation scores latency only).
    Among checkpoints over the budget, fewer moves rank first (the score breaks ties), so a run where
    none keeps to the budget keeps the one that comes closest. Without a budget, the score alone
    ranks (fewer moves break ties).
    """
    fraction, moves = score.fraction_of_best_known, score.moves_per_episode
    if moves_over_greedy is None or moves <= greedy_moves_per_episode + moves_over_greedy:
        return True, fraction, -moves
    return False, -moves, fraction


def save_model_atomic(model: Any, path: Path) -> None:
    """``model.save(path)`` through a temporary zip in the same folder, renamed over ``path``.

    SB3 truncates the file it saves to first, so an interrupted save in place would leave a zip that no
    longer loads; here ``path`` holds either the previous model or the new one, whole.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".zip", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def model_decide(model: Any) -> Decide:
    """The deterministic decision of a MaskablePPO model (the same path as the artefact's)."""

    def decide(obs: Any, mask: Any) -> int:
        action, _ = model.predict(obs, action_masks=mask, deterministic=True)
        return int(np.asarray(action).reshape(-1)[0])

    return decide


class ValidationCallback(BaseCallback):
    """Score every ``eval_freq_steps`` env steps, keep the best model at ``best_path``, honour the wall clock."""

    def __init__(
        self,
        validator: Validator,
        eval_freq_steps: int,
        best_path: Path,
        started: float,
        max_wall_seconds: float | None,
        curve_file: Path | None = None,
        moves_over_greedy: float | None = None,
        report: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__()
        self.curve_file = curve_file
        self.report = report  # one line per validation (where no progress bar shows the run)
        self.moves_over_greedy = moves_over_greedy
        self.validator = validator
        self.eval_freq_steps = eval_freq_steps
        self.best_path = best_path
        self.started = started
        self.max_wall_seconds = max_wall_seconds
        self.state = ValidationState()
        self._next_eval = eval_freq_steps

    def validate(self) -> None:
        """Score the current model now, record the point, save it if it is the best so far."""
        score = self.validator.score(model_decide(self.model))
        point = CurvePoint(
            time.perf_counter() - self.started,
            self.num_timesteps,
            score.fraction_of_best_known,
            score.reduction_pct,
            score.moves_per_episode,
        )
        self.state.curve.append(point)
        if self.curve_file is not None:  # rewritten after every validation: a running job can be watched
            write_curve(self.curve_file, self.state.curve)
        for key in ("fraction_of_best_known", "reduction_pct", "moves_per_episode"):
            self.logger.record(f"validation/{key}", getattr(point, key))
        self.logger.record("validation/wall_seconds", point.wall_seconds)
        self.logger.record("validation/greedy_moves_per_episode", self.validator.greedy_moves_per_episode)
        rank = selection_key(score, self.validator.greedy_moves_per_episode, self.moves_over_greedy)
        if rank > self.state.best_key:
            # Saved whole before the state names it: a Ctrl-C mid-save leaves the previous best intact.
            save_model_atomic(self.model, self.best_path)
            self.state.best_key, self.state.best_within_moves = rank, rank[0]
            self.state.best_fraction = score.fraction_of_best_known
            self.state.best_timesteps = self.num_timesteps
            self.state.best_moves_per_episode = score.moves_per_episode
        if self.report is not None:
            self.report(
                f"validation at {point.timesteps:,} steps ({point.wall_seconds:.0f} s): "
                f"{point.fraction_of_best_known:.3f} of the best-known reduction, {point.moves_per_episode:.1f} moves "
                f"per episode (greedy {self.validator.greedy_moves_per_episode:.1f}); the model kept so far: "
                f"{self.state.best_fraction:.3f} at {self.state.best_timesteps:,} steps"
            )

    def _on_training_start(self) -> None:
        # The untrained policy's score is the curve's first point (and the first best model).
        if not self.state.curve:
            self.validate()

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next_eval:
            self._next_eval += self.eval_freq_steps
            self.validate()
        if self.max_wall_seconds is not None and time.perf_counter() - self.started >= self.max_wall_seconds:
            self.state.stopped_by_wall_clock = True
            return False
        return True
