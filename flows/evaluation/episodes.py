"""One evaluation episode per method on one start state, and the start states of each scenario family.

:func:`start_state` draws the held-out start state of an episode for a family: ``steady`` (the
dynamic start of MODEL.md §3), ``node_failure`` (then one or two nodes fail and the default
scheduler re-places their pods, :func:`ceenv.events.fail_nodes`) or ``traffic_surge`` (then the
front service, :func:`surge_target`, grows to its max-replica, :func:`ceenv.events.surge_service`).
:func:`family_problem` says up front when a cluster or application cannot have a family's events.
:func:`run_policy` plays a policy in the env from such a state and :func:`run_baselines` every
baseline on it. Used by the evaluation units and by the trainer's validation callback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ceenv.baselines import Outcome, run_balancer, run_greedy, run_noop, run_random
from ceenv.env import CloudEdgeEnv
from ceenv.events import EventError, draw_failed_nodes, fail_nodes, surge_service
from ceenv.scenario import Scenario
from ceenv.simulator import Simulator
from ceenv.workload import Workload
from flows.evaluation.ceilings import cached_best_known
from flows.evaluation.seeds import TEST_SEED_BASE

Family = Literal["steady", "node_failure", "traffic_surge"]
FAMILIES: tuple[Family, ...] = ("steady", "node_failure", "traffic_surge")
BASELINES = ("noop", "random", "greedy", "balancer", "best_known")
EVENT_ATTEMPTS = 50
NO_GAIN_TOLERANCE_MS = 1e-6  # a reduction this close to 0 is 'left as it was' (float sums)
Decide = Callable[[npt.NDArray[np.float32], npt.NDArray[np.bool_]], int]
State = tuple[Any, npt.NDArray[np.int64]]


@dataclass(frozen=True)
class EpisodeRecord:
    """What one method did on one held-out start state."""

    scenario: str
    workload: str
    family: str
    seed: int
    episode: int
    method: str
    start_latency_ms: float
    end_latency_ms: float
    moves: int
    decision_seconds: float
    invalid_actions: int


def surge_target(workload: Workload) -> str:
    """The service ``traffic_surge`` grows: the first one the application's first endpoint calls.

    In REACH's reference applications that is the ``aggregator`` (the front service an autoscaler
    would scale under more traffic); a generated application's front service plays the same part.
    """
    for endpoint in workload.endpoints:
        for group in endpoint.groups:
            for call in group:
                return call.service
    raise ValueError(f"workload {workload.name!r} calls no service: nothing can surge")


def family_problem(scenario: Scenario, workload: Workload, family: str) -> str | None:
    """Why no start state of ``family`` can be drawn on this cluster and application, or None when it can."""
    if family not in FAMILIES:
        return f"unknown family {family!r}; choose from {list(FAMILIES)}"
    if family == "node_failure":
        hosts = [n.name for n in scenario.nodes if n.layer != "client"]
        if len(hosts) < 2:
            return (
                f"node_failure needs at least 2 non-client nodes (one to fail, one to re-place its pods on); "
                f"{scenario.name} has {len(hosts)}"
            )
    if family == "traffic_surge":
        target = surge_target(workload)
        service = next(s for s in scenario.services if s.name == target)
        if service.max_replica < 2:
            return (
                f"traffic_surge grows {target!r} (the service the application calls first), whose max-replica is 1 "
                "in services.json: nothing can surge; leave the family out or raise its max-replica"
            )
    return None


def _apply_event(env: CloudEdgeEnv, family: Family, rng: np.random.Generator) -> State | None:
    sim = env.simulator
    try:
        if family == "node_failure":
            outcome = fail_nodes(sim, draw_failed_nodes(sim, rng, count=int(rng.integers(1, 3))))
        else:
            outcome = surge_service(sim, surge_target(env.model.workload), extra_replicas=env.layout.slot_count)
            if not outcome.rescheduled_slots:
                return None  # the front service was already at max-replica: no surge possible, draw again
    except EventError:
        return None
    return outcome.conditions, outcome.slot_node


def redraw_seed(rng: np.random.Generator) -> int:
    """The reset seed of another try when a family's event could not be applied to a start state.

    Drawn from the episode's own generator, and never below :data:`TEST_SEED_BASE`: a redrawn
    held-out state is never a training or validation seed's state (the seed split holds).
    """
    while True:
        seed = int(rng.integers(2**31))
        if seed >= TEST_SEED_BASE:
            return seed


def fraction_of_best_known(reduction_ms: float, best_reduction_ms: float) -> float:
    """The policy's latency reduction as a fraction of the best-known one (sums over episodes).

    Where best-known found nothing to gain, a policy that leaves latency as it was (or finds a gain)
    scores 1.0 and one that makes it worse scores 0.0: making things worse never scores full marks.
    A best-known gain within :data:`NO_GAIN_TOLERANCE_MS` counts as nothing to gain: the search keeps
    gains of a few nanoseconds, and dividing by one would score an unchanged placement 0 (or -250).
    """
    if best_reduction_ms > NO_GAIN_TOLERANCE_MS:
        return reduction_ms / best_reduction_ms
    return 1.0 if reduction_ms >= -NO_GAIN_TOLERANCE_MS else 0.0


def start_state(env: CloudEdgeEnv, family: Family, seed: int) -> State:
    """The start state of a held-out episode: ``env.reset(seed=seed)``, then the family's event."""
    rng = np.random.default_rng(seed)
    for attempt in range(EVENT_ATTEMPTS):
        env.reset(seed=seed if attempt == 0 else redraw_seed(rng))
        sim = env.simulator
        if family == "steady":
            return sim.conditions, sim.slot_node.copy()
        state = _apply_event(env, family, rng)
        if state is not None:
            return state
    raise RuntimeError(f"no start state for family {family!r} after {EVENT_ATTEMPTS} draws from seed {seed}")


def run_policy(env: CloudEdgeEnv, state: State, decide: Decide, seed: int | None = None) -> Outcome:
    """Play ``decide`` in ``env`` from ``state`` until STOP or truncation; time only the decisions.

    ``seed`` reseeds the env first: with measured conditions on, the noise the policy sees is then
    the same on every call (validation scores one model after another on the same states).
    """
    obs, info = env.reset(seed=seed, options={"state": state})
    start_ms = info["start_latency_ms"]
    decision_seconds = 0.0
    invalid = 0
    done = False
    while not done:
        began = time.perf_counter()
        action = decide(obs, env.action_masks())
        decision_seconds += time.perf_counter() - began
        obs, _, terminated, truncated, info = env.step(action)
        invalid += int(info["invalid_action"])
        done = terminated or truncated
    return Outcome("policy", start_ms, info["latency_ms"], info["moves"], decision_seconds, invalid)


def run_baselines(
    sim: Simulator, seed: int, step_cost_ms: float, methods: tuple[str, ...] = BASELINES, model: bytes | None = None
) -> list[Outcome]:
    """Every baseline in ``methods`` on the same start (random and best_known seeded by ``seed``).

    best_known comes from this process's memo when the same state was searched before
    (:mod:`flows.evaluation.ceilings`; ``model`` is its :func:`~flows.evaluation.ceilings.model_digest`).
    """
    runners: dict[str, Callable[[], Outcome]] = {
        "noop": lambda: run_noop(sim),
        "random": lambda: run_random(sim, np.random.default_rng(seed)),
        "greedy": lambda: run_greedy(sim, step_cost_ms),
        "balancer": lambda: run_balancer(sim),
        "best_known": lambda: cached_best_known(sim, seed, model),
    }
    unknown = set(methods) - set(runners)
    if unknown:
        raise ValueError(f"unknown baseline(s) {sorted(unknown)}; choose from {list(runners)}")
    return [runners[m]() for m in methods]


def record(outcome: Outcome, labels: dict[str, Any]) -> EpisodeRecord:
    return EpisodeRecord(
        method=outcome.method,
        start_latency_ms=outcome.start_latency_ms,
        end_latency_ms=outcome.end_latency_ms,
        moves=outcome.moves,
        decision_seconds=outcome.decision_seconds,
        invalid_actions=outcome.invalid_actions,
        **labels,
    )
