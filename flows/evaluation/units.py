"""The unit of evaluation work: one (scenario, workload, family, seed) with N held-out episodes.

:class:`EvalUnit` holds only plain, serialisable fields so that a Prefect flow can map
:func:`evaluate_unit` over units as tasks; :func:`plan_units` lists the units of an evaluation.
Each unit loads what it needs (scenario, workload, and the policy artefact unless one is passed),
draws its start states from the evaluation seed range (:mod:`flows.evaluation.seeds`) and returns
one :class:`EpisodeRecord` per method and episode. A unit with ``plan_k > 0`` plays the policy with
decision-time planning (:func:`bento.planning.plan_action` on the env's twin, the measured network),
the way the bento decides with those arguments, so the gate judges what serves. Used by
:func:`flows.evaluation.evaluate`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bento.planning_settings import DEFAULTS as PLANNING_DEFAULTS
from bento.planning_settings import PlanningSettings
from ceenv.env import CloudEdgeEnv
from ceenv.layout import OBSERVATION_VERSION, layout_from_scenario
from ceenv.scenario import Scenario, load_scenario
from ceenv.simulator import DEFAULT_STEP_COST_MS, Simulator
from ceenv.workload import Workload, load_workload, workload_name
from flows.evaluation.ceilings import model_digest
from flows.evaluation.episodes import (
    BASELINES,
    Decide,
    EpisodeRecord,
    Family,
    family_problem,
    record,
    run_baselines,
    run_policy,
    start_state,
)
from flows.evaluation.report import EPISODE_DEFAULTS
from flows.evaluation.seeds import EPISODE_STRIDE, MAX_TEST_SEED, evaluation_seed


@dataclass(frozen=True)
class EvalUnit:
    """One fan-out unit: ``episodes`` held-out episodes of one seed, family, workload and scenario."""

    scenario_dir: str
    workload_file: str
    family: Family
    seed: int
    episodes: int
    model_dir: str | None = None  # None: baselines only
    step_cost_ms: float = DEFAULT_STEP_COST_MS
    max_steps: int = int(EPISODE_DEFAULTS["max_steps"])
    baselines: tuple[str, ...] = BASELINES
    # Decision-time planning as the bento serves it (bento arguments plan_k, plan_horizon, plan_width,
    # plan_margin, plan_noise, plan_confidence, plan_slack; defaults from bento.planning_settings); plan_k = 0 evaluates
    # the raw policy.
    plan_k: int = PLANNING_DEFAULTS.plan_k
    plan_horizon: int = PLANNING_DEFAULTS.plan_horizon
    plan_width: int = PLANNING_DEFAULTS.plan_width
    plan_margin: float = PLANNING_DEFAULTS.plan_margin
    plan_noise: float = PLANNING_DEFAULTS.plan_noise
    plan_confidence: float = PLANNING_DEFAULTS.plan_confidence
    plan_slack: int = PLANNING_DEFAULTS.plan_slack


def plan_units(
    scenario_dir: str | Path,
    workload_files: list[str | Path],
    families: list[Family],
    seeds: list[int],
    episodes: int,
    model_dir: str | Path | None,
    **settings: Any,
) -> list[EvalUnit]:
    """All units of an evaluation, workload-major (the order of the report's groups).

    Raises ``ValueError`` before any work when the evaluation cannot run whole: no seeds, a seed
    outside the held-out range, no episode or more episodes than a seed has reset seeds, or a family
    whose events this cluster and application cannot have (:func:`flows.evaluation.episodes.family_problem`).
    """
    check_evaluation(scenario_dir, workload_files, families, seeds, episodes)
    return [
        EvalUnit(
            str(scenario_dir), str(w), family, seed, episodes, None if model_dir is None else str(model_dir), **settings
        )
        for w in workload_files
        for family in families
        for seed in seeds
    ]


def check_evaluation(
    scenario_dir: str | Path, workload_files: list[str | Path], families: list[Family], seeds: list[int], episodes: int
) -> None:
    """Raise ``ValueError`` naming the problem when these settings cannot give a whole evaluation."""
    if not seeds:
        raise ValueError("no evaluation seeds; pass at least one (5 or more for confidence intervals)")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds} contain duplicates; pass distinct evaluation seeds")
    outside = [s for s in seeds if not 0 <= s <= MAX_TEST_SEED]
    if outside:
        raise ValueError(f"evaluation seeds {outside} are outside 0..{MAX_TEST_SEED}; pick seeds in that range")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if episodes > EPISODE_STRIDE:
        raise ValueError(
            f"episodes must be at most {EPISODE_STRIDE} per seed (each evaluation seed owns {EPISODE_STRIDE} "
            f"reset seeds), got {episodes}; evaluate more seeds instead"
        )
    if not families:
        raise ValueError("no families to evaluate; choose from steady, node_failure, traffic_surge")
    scenario = load_scenario(scenario_dir)
    for file in workload_files:
        workload = load_workload(file, scenario)
        for family in families:
            problem = family_problem(scenario, workload, family)
            if problem is not None:
                raise ValueError(f"{scenario.name} / {workload_name(Path(file))}: {problem}")


def evaluate_unit(unit: EvalUnit, policy: Any = None) -> list[EpisodeRecord]:
    """Run the policy (``policy`` or the unit's artefact) and the baselines on the unit's episodes."""
    scenario = load_scenario(unit.scenario_dir)
    workload = load_workload(unit.workload_file, scenario)
    if policy is None and unit.model_dir is not None:
        from bento.artefact import load_artefact  # torch only when a policy is evaluated

        policy = load_artefact(unit.model_dir, layout_from_scenario(scenario))
    env = evaluation_env(scenario, workload, policy, unit.step_cost_ms, unit.max_steps)
    records: list[EpisodeRecord] = []
    labels_base = {
        "scenario": scenario.name,
        "workload": workload_name(Path(unit.workload_file)),
        "family": unit.family,
    }
    model: bytes | None = None  # the ceiling memo's digest of scenario, workload and layout (once per unit)
    with _one_torch_thread(policy is not None):
        for episode in range(unit.episodes):
            seed = evaluation_seed(unit.seed, episode)
            state = start_state(env, unit.family, seed)
            labels = {**labels_base, "seed": unit.seed, "episode": episode}
            if policy is not None:
                records.append(record(run_policy(env, state, _decider(unit, policy, env)), labels))
            sim = Simulator(env.model, env.layout, *state)
            if model is None and "best_known" in unit.baselines:
                model = model_digest(sim)
            outcomes = run_baselines(sim, seed, unit.step_cost_ms, unit.baselines, model)
            records.extend(record(o, labels) for o in outcomes)
    return records


def evaluation_env(
    scenario: Scenario, workload: Workload, policy: Any, step_cost_ms: float, max_steps: int, **measured: Any
) -> CloudEdgeEnv:
    """The env an evaluation plays ``policy`` (or, None, the baselines alone) in.

    It builds the observations the policy was trained on (its layout's version). A version-4 policy
    is served the migrator's measured conditions (MODEL.md §4): the env shows it the drawn network
    through measurement noise (``measured``: e.g. ``measurement_noise``); greedy keeps the true one.
    """
    version = policy.layout.version if policy is not None and hasattr(policy, "layout") else OBSERVATION_VERSION
    limits: dict[str, Any] = {}
    if version >= 4:
        limits = {
            "max_nodes": policy.layout.max_nodes,
            "max_slots": policy.layout.max_slots,
            "measured_conditions": True,
            **measured,
        }
    return CloudEdgeEnv(
        scenario,
        workload,
        dynamic=True,
        step_cost_ms=step_cost_ms,
        max_steps=max_steps,
        observation_version=version,
        **limits,
    )


_THREADS_LOCK = threading.Lock()
_threads_state = {"units": 0, "before": 0}  # units deciding now, and torch's thread count before the first


@contextmanager
def _one_torch_thread(active: bool) -> Iterator[None]:
    """Decide on one torch thread, as the service does (``torch_threads`` 1), so "decision ms" means what serves.

    Units may run concurrently (Prefect's thread pool). torch's OpenMP backend (the CPU wheel this
    project pins) keeps a thread count per OS thread, and a thread takes the process's count when it
    first runs torch code. So each unit sets 1 in its own thread (a count set by the first unit alone
    did not reach pool threads that had run torch before), and each puts its thread back to the
    count from before the first unit came in, not to what its thread read on entry (a thread that
    starts while another unit holds 1 reads 1: later threads would then start on 1).
    """
    if not active:
        yield
        return
    import torch

    with _THREADS_LOCK:
        # Read in every unit's thread: torch sets a thread's count from the process's on its first
        # read, and a count set before that read would be overwritten by it.
        current = torch.get_num_threads()
        if _threads_state["units"] == 0:
            _threads_state["before"] = current
        _threads_state["units"] += 1
        torch.set_num_threads(1)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _threads_state["units"] -= 1
            torch.set_num_threads(_threads_state["before"])


def _decider(unit: EvalUnit, policy: Any, env: CloudEdgeEnv) -> Decide:
    """The policy's own decision, or (``unit.plan_k > 0``) planning on the env's twin, as the bento decides."""
    if unit.plan_k <= 0:
        decide: Decide = policy.decide
        return decide
    model = getattr(policy, "model", None)
    if model is None or not env.layout.padded:
        raise ValueError(
            f"planning (plan_k={unit.plan_k}) needs a general (observation version 4) artefact; "
            f"{unit.model_dir or 'the given policy'} is not one"
        )
    from bento.planning import plan_action

    slack = PlanningSettings.of(unit).move_cap_slack

    def planned(obs: Any, mask: Any) -> int:
        return plan_action(
            model, env.simulator, unit.plan_k, unit.plan_horizon, env.step_cost_ms, mask, unit.plan_width,
            unit.plan_margin, noise=unit.plan_noise, confidence=unit.plan_confidence, greedy_slack=slack,
            observation=obs,
        )  # fmt: skip

    return planned


def unit_to_dict(unit: EvalUnit) -> dict[str, Any]:
    return asdict(unit)
