"""Decision-time planning with the twin: a short beam search over move sequences, seeded by the policy.

:func:`plan_action` asks the policy for its ``k`` most likely valid moves, adds the ``width``
moves that gain most on a copy of the simulator whose costs are the *known* ones (what the policy
may know: the measured network, or the nominal one), and searches ``horizon`` moves deep from
them (a beam of ``width`` placements per depth, :func:`ceenv.search.expand`). Each sequence is
valued at its known latency plus ``margin × step_cost_ms`` per move. Each depth's best sequence
is then weighed (:func:`choose_sequence`): against staying put, its known gain less ``margin``
step costs and ``confidence`` standard deviations of that gain per move (:func:`sequence_scores`),
the spread coming from networks the known one may stand for (relative ``noise``, the measurement
noise); a longer sequence must also beat the best shorter one by the same charge on the difference
of their ends per extra move. The chosen sequence's first move is the answer, STOP when none beats
staying put. The charge guards against moves whose
gain is within the measurement noise, in the application's own scale: a fixed charge per move
(``margin`` alone, as planning had before) either lets noise through on an application whose
network dominates or stops early on one whose moves gain a few ms each. Nothing here sees the
true drawn network. The answer is always STOP or a move that ``mask`` allows. :func:`twin_from_state` builds
the simulator from a served request's state (a :class:`ServedTwin`: later moves never touch a node the
request marks failed, nor send a service where ``pod_deployable`` never lets its pods go). Used by :class:`bento.policy.Policy` (bento
arguments ``plan_k``, ``plan_horizon``, ``plan_width``, ``plan_margin``, ``plan_noise``,
``plan_confidence`` and ``plan_slack``, the ``greedy_slack`` of :func:`plan_action`; their defaults:
:mod:`bento.planning_settings`), the evaluation
(:mod:`flows.evaluation.units`, so the gate judges what serves) and ``benchmarks/bench_general.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from bento.planning_settings import CHOSEN_PLAN_K, DEFAULTS
from ceenv.baselines import climb
from ceenv.latency import CallCosts, Conditions, LatencyModel, nominal_conditions, perturbed_network
from ceenv.layout import BoolArray, FloatArray, IntArray, Layout, placement_counts
from ceenv.observation import decode_action, encode_action, policy_mask
from ceenv.search import best_first, expand, latencies_after
from ceenv.simulator import Simulator

DEFAULT_WIDTH = DEFAULTS.plan_width
DEFAULT_HORIZON = DEFAULTS.plan_horizon
DEFAULT_MARGIN = DEFAULTS.plan_margin
DEFAULT_NOISE = DEFAULTS.plan_noise
DEFAULT_CONFIDENCE = DEFAULTS.plan_confidence
NOISE_SAMPLES = 16  # networks drawn to estimate a sequence's gain spread (more: steadier, slower)
NOISE_SEED = 0
DEFAULT_SHORTER_WITHIN = 0.0  # step costs a longer sequence must beat the best shorter one by (choose_sequence)
DEFAULT_GREEDY_SLACK = DEFAULTS.move_cap_slack  # None: the horizon alone bounds a sequence's length (plan_slack)
_EPSILON_MS = 1e-9


def _twin(sim: Simulator) -> Simulator:
    """A copy of ``sim`` whose latency is computed with the known costs (the policy's view)."""
    twin = sim.copy()
    twin.costs = sim.known_costs
    twin.latency_ms = twin.model.latency(twin.counts, twin.costs)
    return twin


def _logits(model: Any, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        tensor = torch.as_tensor(obs[None], dtype=torch.float32)
        distribution = model.policy.get_distribution(tensor, action_masks=mask[None])
        logits: np.ndarray = distribution.distribution.logits[0].numpy()
    return logits


def _native_mask(layout: Layout, mask: np.ndarray) -> np.ndarray:
    """The policy's (padded) action mask in the simulator's index (``N * P + 1``, STOP last)."""
    if not layout.padded:
        return mask
    n, slots = layout.node_count, layout.slot_count
    native = np.zeros(n * slots + 1, dtype=bool)
    native[:-1] = mask[:-1].reshape(layout.max_nodes, layout.max_slots)[:n, :slots].reshape(-1)
    native[-1] = True
    return native


def _root_moves(
    model: Any, twin: Simulator, mask: np.ndarray, k: int, width: int, observation: np.ndarray | None
) -> list[tuple[int, int]]:
    """The first moves to search from: the policy's top ``k`` valid moves, then the twin's ``width`` best."""
    layout = twin.layout
    moves: list[tuple[int, int]] = []
    if k > 0:
        logits = _logits(model, twin.observation() if observation is None else observation, mask)
        valid = np.flatnonzero(mask[:-1])
        for action in valid[np.argsort(-logits[valid], kind="stable")][:k]:
            decoded = decode_action(layout, int(action))
            if decoded is not None:
                moves.append(decoded)
    distinct = twin.distinct_move_array(_native_mask(layout, mask))
    if len(distinct):
        after = latencies_after([twin], [distinct])[0]
        moves += [(int(distinct[j, 0]), int(distinct[j, 1])) for j in best_first(after, width)]
    return list(dict.fromkeys(moves))


@dataclass(frozen=True)
class PlannedSequence:
    """One depth's best sequence in the beam: what :func:`choose_sequence` weighs."""

    value_ms: float  # latency at the end plus the move cost per move, on the twin
    root: int  # index of its first move in the roots
    moves: int
    counts: FloatArray  # the end placement


def plan_action(
    model: Any,
    sim: Simulator,
    k: int = CHOSEN_PLAN_K,
    horizon: int = DEFAULT_HORIZON,
    step_cost_ms: float = 1.25,
    mask: np.ndarray | None = None,
    width: int = DEFAULT_WIDTH,
    margin: float = DEFAULT_MARGIN,
    noise: float = DEFAULT_NOISE,
    confidence: float = DEFAULT_CONFIDENCE,
    shorter_within: float = DEFAULT_SHORTER_WITHIN,
    greedy_slack: int | None = DEFAULT_GREEDY_SLACK,
    observation: np.ndarray | None = None,
) -> int:
    """The policy action (padded index) that starts the best ``horizon``-move sequence on the twin, or STOP.

    ``mask`` (the policy's action index) restricts the first move, e.g. to a request's
    ``pod_deployable``; later moves of a sequence are the twin's own valid moves. Each depth's best
    sequence is weighed by :func:`choose_sequence` (its known gain less ``margin`` step costs and
    ``confidence`` standard deviations of its gain under ``noise`` per move, against staying put
    and against the best shorter sequence so far); the chosen one's first move is the answer. A
    longer sequence must beat the best shorter one so far by more than ``shorter_within`` step
    costs. With ``greedy_slack``, no sequence is longer than the moves greedy would make from here
    on the twin (single moves gaining more than a step cost) plus ``greedy_slack``. ``observation`` is the policy's observation of ``sim``
    when the caller has encoded it already (a served request: the one the raw policy would see).
    """
    if (
        horizon < 1
        or width < 1
        or k < 0
        or margin < 0
        or not 0 <= noise <= 1
        or confidence < 0
        or shorter_within < 0
        or (greedy_slack or 0) < 0
    ):
        raise ValueError(
            f"planning needs horizon >= 1, width >= 1, k >= 0, margin >= 0, 0 <= noise <= 1, confidence >= 0, "
            f"shorter_within >= 0 and greedy_slack >= 0; got horizon={horizon}, width={width}, k={k}, "
            f"margin={margin}, noise={noise}, confidence={confidence}, shorter_within={shorter_within}, "
            f"greedy_slack={greedy_slack}"
        )
    layout = sim.layout
    mask = policy_mask(layout, sim.action_mask()) if mask is None else mask
    twin = _twin(sim)
    if greedy_slack is not None:
        horizon = min(horizon, climb(twin.copy(), step_cost_ms, horizon) + greedy_slack)
    roots = _root_moves(model, twin, mask, k, width, observation)
    if not roots or horizon < 1:
        return int(layout.stop_action)
    best = _best_per_depth(twin, roots, horizon, width, margin * step_cost_ms)
    if not best:
        return int(layout.stop_action)
    depths = sorted(best)
    chosen = choose_sequence(twin, [best[d] for d in depths], noise, confidence, shorter_within * step_cost_ms)
    if chosen is None:
        return int(layout.stop_action)
    return encode_action(layout, *roots[best[depths[chosen]].root])


def choose_sequence(
    twin: Simulator, sequences: list[PlannedSequence], noise: float, confidence: float, prefer_shorter_ms: float = 0.0
) -> int | None:
    """The index of the sequence to play (``sequences`` in ascending moves), or None for STOP.

    A champion–challenger pass: staying put is the first champion. A sequence worth playing at all
    (against staying put: valued lower by more than ``confidence`` standard deviations, under
    ``noise``, of its gain per move; :func:`sequence_scores`' score > 0) replaces the champion when
    it is also valued lower than the champion by more than ``confidence`` standard deviations of the
    difference between their end latencies per extra move, plus ``prefer_shorter_ms`` when the
    champion is a sequence (so a longer one must beat the best shorter one so far by that much).
    Comparing each sequence with the best one so far, not only with staying put, keeps the choice
    consistent from one decision to the next: a plan that parks a pod on a poor node for a move (a
    swap through a third node) is seen again after that move as the better end, where scoring both
    against the poor placement charged the longer one for the noise of the parking move's large gain
    and undid it (7-21 ``aggregator_sequential``, a surge start: a pod moved to and fro until the
    episode's step limit).
    """
    if not sequences:
        return None
    values = np.array([twin.latency_ms, *(s.value_ms for s in sequences)])
    moves = np.array([0, *(s.moves for s in sequences)])
    sampled = _sampled_latencies(twin, [s.counts for s in sequences], noise, confidence)

    def advantage(champion: int, challenger: int) -> float:
        spread = 0.0 if sampled is None else float((sampled[:, champion] - sampled[:, challenger]).std())
        extra = moves[challenger] - moves[champion]
        return float(values[champion] - values[challenger] - extra * confidence * spread)

    champion = 0
    for challenger in range(1, len(values)):
        if advantage(0, challenger) <= 0.0:
            continue  # not worth playing: within its noise charge of staying put
        if champion == 0 or advantage(champion, challenger) > prefer_shorter_ms:
            champion = challenger
    return None if champion == 0 else champion - 1


def _sampled_latencies(twin: Simulator, ends: list[FloatArray], noise: float, confidence: float) -> FloatArray | None:
    """Latency of the twin's placement and of each end placement on :data:`NOISE_SAMPLES` perturbed networks.

    Shape ``(NOISE_SAMPLES, 1 + len(ends))``, column 0 the twin's placement now; None when no charge
    applies (``noise == 0`` or ``confidence == 0``).
    """
    if noise == 0.0 or confidence == 0.0:
        return None
    counts = np.stack([twin.counts, *ends])
    sampled: FloatArray = twin.model.latency_per_network(counts, _perturbed_matrices(twin.model, twin.costs, noise))
    return sampled


def _perturbed_matrices(model: LatencyModel, costs: CallCosts, noise: float) -> FloatArray:
    """The per-call matrices ``(R, C, N, N)`` of the :data:`NOISE_SAMPLES` networks that ``costs`` may stand for under ``noise``.

    Drawn from :data:`NOISE_SEED`, so they depend on the network and ``noise`` only: cached on the
    costs object (like :func:`ceenv.gains.costs_form`), so that a server answering requests with
    the nominal network draws, prepares and stacks them once; preparing them per request was a
    fifth of a planned decision at the limits (40 nodes). A request with a ``measured`` block brings
    its own costs object (:meth:`bento.policy.Policy.known_costs`), so it still draws its own.
    """
    cache: dict[float, FloatArray] = costs.__dict__.setdefault("_perturbed", {})
    if noise not in cache:  # costs belong to the model that prepared them (as costs_form assumes)
        rng = np.random.default_rng(NOISE_SEED)
        networks = [model.prepare(perturbed_network(costs.network, rng, noise)) for _ in range(NOISE_SAMPLES)]
        cache[noise] = np.stack([one.matrices for one in networks])
    return cache[noise]


def sequence_scores(twin: Simulator, sequences: list[PlannedSequence], noise: float, confidence: float) -> FloatArray:
    """Each sequence's score in ms: its known gain less its move costs and ``confidence`` σ(gain) per move.

    The known gain less the move costs is the twin's latency now less the sequence's value. σ(gain)
    is the standard deviation of the gain (latency now − latency at the sequence's end) over
    :data:`NOISE_SAMPLES` networks that the known one may stand for: each delay and bandwidth times
    ``exp(noise * z)`` (:func:`ceenv.latency.perturbed_network`; the env's measurement noise is
    0.1), drawn from a fixed seed so that one request always gets one answer. The charge is in the
    application's own scale: a move whose gain stands well above its noise pays little, one within
    the noise pays about its gain. A score > 0 is worth playing. ``noise = 0`` or ``confidence = 0``
    leaves the known gain less the move costs.
    """
    scores: FloatArray = twin.latency_ms - np.array([s.value_ms for s in sequences])
    sampled = _sampled_latencies(twin, [s.counts for s in sequences], noise, confidence)
    if sampled is None:
        return scores
    spread = (sampled[:, :1] - sampled[:, 1:]).std(axis=0)
    result: FloatArray = scores - np.array([s.moves for s in sequences]) * confidence * spread
    return result


def _best_per_depth(
    twin: Simulator, roots: list[tuple[int, int]], horizon: int, width: int, move_cost_ms: float
) -> dict[int, PlannedSequence]:
    """Depth → the best sequence of that many moves that beats staying put.

    A sequence's value is its latency on the twin plus ``move_cost_ms`` per move; the beam keeps
    ``width`` placements per depth (:func:`ceenv.search.expand`).
    """
    stay = twin.latency_ms - _EPSILON_MS
    best: dict[int, PlannedSequence] = {}
    beam: list[Simulator] = []
    origin: list[int] = []  # the root move each beam state descends from
    first_after = latencies_after([twin], [np.array(roots, dtype=np.int64)])[0]  # the roots' latencies, together
    for index, move in enumerate(roots):
        child = twin.copy()
        child.move(*move, latency_ms=float(first_after[index]))
        beam.append(child)
        origin.append(index)
        value = child.latency_ms + move_cost_ms
        if value < min(stay, best[1].value_ms - _EPSILON_MS if 1 in best else np.inf):
            best[1] = PlannedSequence(value, index, 1, child.counts.copy())
    for depth in range(2, horizon + 1):
        children = expand(beam, width, width)
        if not children:
            break
        next_beam, next_origin = [], []
        for parent, move, latency_ms in children:  # best first: the first that beats staying put is the best
            child = beam[parent].copy()
            child.move(*move, latency_ms=latency_ms)  # expand evaluated it already
            value = latency_ms + depth * move_cost_ms
            if depth not in best and value < stay:
                best[depth] = PlannedSequence(value, origin[parent], depth, child.counts.copy())
            next_beam.append(child)
            next_origin.append(origin[parent])
        beam, origin = next_beam, next_origin
    return best


class ServedTwin(Simulator):
    """The twin of a served request: the simulator's moves, less those the request rules out for every later move.

    A node the request marks unavailable (``available: false``) is never a target, and pods on it stay
    there (the evacuation rule, not the plan, moves them off, to a ``pod_deployable`` node); a node the
    twin would give a service although no pod of that service lists it in ``pod_deployable`` (a rule the
    twin does not model: taints, a node's pod limit, ports) is never that service's target. Capacity
    that changes as the plan moves pods is the twin's own (``pod_deployable`` says what fits *now*).
    The first move is the request's mask (:func:`plan_action`'s ``mask``) in any case.
    """

    unavailable: BoolArray  # (N,) True for a node the request marks unavailable
    blocked: BoolArray  # (S, N) True where a service may never go in this twin

    def target_ok(self) -> BoolArray:
        """:meth:`Simulator.target_ok` less unavailable targets, pods on unavailable nodes and blocked services."""
        services, slots = type(self).move_rules([self])
        result: BoolArray = services[0][self.layout.slot_service]
        result[~slots[0]] = False
        return result

    @classmethod
    def move_rules(cls, sims: Sequence[Simulator]) -> tuple[BoolArray, BoolArray]:
        """:meth:`Simulator.move_rules` less unavailable targets and blocked services; pods on unavailable nodes stay."""
        services, slots = super().move_rules(sims)
        twins = [cast("ServedTwin", sim) for sim in sims]
        first = twins[0]
        slot_node = np.stack([twin.slot_node for twin in twins])
        if all(twin.blocked is first.blocked and twin.unavailable is first.unavailable for twin in twins):
            services &= ~first.blocked & ~first.unavailable  # copies of one twin share both
            stuck = first.unavailable[slot_node]
        else:
            unavailable = np.stack([twin.unavailable for twin in twins])
            services &= ~np.stack([twin.blocked for twin in twins]) & ~unavailable[:, None, :]
            stuck = np.take_along_axis(unavailable, slot_node, axis=1)
        slots &= ~(stuck & (slot_node >= 0))  # an empty slot (-1) read the last node: not stuck
        return services, slots


def twin_from_state(
    model: LatencyModel,
    layout: Layout,
    known_costs: CallCosts,
    free_cpu_millicores: FloatArray,
    free_memory_bytes: FloatArray,
    slot_node: IntArray,
    node_available: BoolArray | None = None,
    target_ok: BoolArray | None = None,
) -> Simulator:
    """A simulator of a served request's state: free capacity plus our pods' requests, the known costs.

    With the request's ``node_available`` (``(N,)``, :attr:`ceenv.payload.DecodedState.node_available`)
    and ``target_ok`` (``(P, N)``, its ``pod_deployable``), a :class:`ServedTwin` whose later moves
    never target an unavailable node, never move a pod off one and keep each service on the nodes its
    pods may be deployed to (for a request whose ``pod_deployable`` lists what the twin's capacity
    allows and that marks no node unavailable, e.g. a simulated state, it moves exactly as the simulator).
    """
    scenario = model.scenario
    counts = placement_counts(layout, slot_node)
    cpu = np.array([s.cpu_millicores for s in scenario.services]) @ counts
    memory = np.array([round(s.memory_bytes) for s in scenario.services], dtype=float) @ counts
    nominal = nominal_conditions(scenario)
    conditions = Conditions(
        free_cpu_millicores + cpu, free_memory_bytes + memory, nominal.utilization, nominal.delay_ms
    )
    if node_available is None and target_ok is None:
        sim = Simulator(model, layout, conditions, slot_node)
        sim.known_costs = known_costs
        return sim
    twin = ServedTwin(model, layout, conditions, slot_node)
    twin.known_costs = known_costs
    twin.unavailable = np.zeros(layout.node_count, dtype=bool) if node_available is None else ~node_available
    twin.blocked = np.zeros((len(layout.service_names), layout.node_count), dtype=bool)
    if target_ok is not None:
        listed = np.zeros_like(twin.blocked)
        hosts = counts > 0
        occupied = np.flatnonzero(np.asarray(slot_node) >= 0)
        np.logical_or.at(listed, layout.slot_service[occupied], target_ok[occupied])
        twin.blocked = twin.fits() & ~listed & ~hosts  # fits now by capacity, yet listed for none of its pods
    return twin
