"""Best-known placement: local search with restarts, the ceiling every evaluation compares with.

Starting from the given placement, from where a beam over move sequences ends, and from random
placements that single-pod migrations reach from it (random walks of valid moves),
:func:`best_known` climbs by the best single-pod move (all
distinct moves evaluated in one batch) until no move improves the latency, then perturbs the best
placement found by random valid moves and climbs again. Every placement it visits is reached from
the start by valid moves, so its result is a placement some sequence of migrations can reach:
the ceiling of what a rescheduler can do. Moves are free here (no step cost); the outcome's
``moves`` is :func:`migrations_needed`, a lower bound on the migrations to get there, counted per
service and node. ``reachable=False`` restarts from random placements of all pods at once instead
(:func:`random_placement`; the ceiling before 2026-12-01 was that with 4 restarts and 4 kicks): on a
full cluster those can be placements no migration reaches, which only a swap or a redeployment
could. "Reachable" means by some sequence of valid migrations, not within an episode's
``max_steps``. Used by the
evaluation, the gate's "fraction of the best-known reduction" and ``reach sim demo``.
:func:`beam_search` is the other question: the best reduction within a given number of moves (a
beam over move sequences; ``benchmarks/bench_bound.py``), and :func:`expand` its step, which
:mod:`bento.planning` also searches with.
"""

from __future__ import annotations

import time

import numpy as np

from ceenv.baselines import Outcome
from ceenv.baselines import climb as improve
from ceenv.gains import latency_after_selected
from ceenv.layout import FloatArray
from ceenv.selected_kernel import lowest_per_segment_together
from ceenv.simulator import Simulator, distinct_moves_together

_MIN_GAIN_MS = 1e-9
RESTARTS = 8  # best_known's random walks from the start (4 random placements before 2026-12-01)
KICKS = 8  # perturbations per restart (4 before)
SEED_DEPTH, SEED_WIDTH = 12, 16  # best_known also climbs from the end of a beam over move sequences
# What an evaluation report's fractions are fractions of (its settings' "best_known"; reports written
# before 2026-12-01 name none: best_known(..., restarts=4, kicks=4, reachable=False)).
CEILING = (
    f"reachable by migrations: climbs from the start, a {SEED_DEPTH}-move beam (width {SEED_WIDTH}) and "
    f"{RESTARTS} random walks of valid moves, {KICKS} kicks each"
)
# What a report, summary or table that names no ceiling divided by.
CEILING_BEFORE = (
    "the search before 2026-12-01, which also restarted from random placements of all pods at once "
    "(4 restarts x 4 kicks), reachable by migrations or not"
)
TIE_DECIMALS = 9  # latencies equal to 1e-9 ms are ties (the same placement, summed in another order)


def climb(sim: Simulator, max_moves: int = 10_000) -> int:
    """Best-improvement hill climbing in place (any gain counts); returns the number of moves made."""
    return improve(sim, _MIN_GAIN_MS, max_moves)


def random_placement(start: Simulator, rng: np.random.Generator, attempts: int = 50) -> Simulator | None:
    """The same pods (same replica counts, same conditions) placed uniformly at random where they fit."""
    layout = start.layout
    for _ in range(attempts):
        slot_node = np.full(layout.slot_count, -1, dtype=np.int64)
        cpu_left = start.conditions.cpu_millicores.copy()
        memory_left = start.conditions.memory_bytes.copy()
        ok = True
        for slot in np.flatnonzero(start.slot_node >= 0):
            service = layout.slot_service[slot]
            if not layout.service_movable[service]:
                node = int(start.slot_node[slot])
            else:
                cpu, memory = start.request_cpu_millicores[service], start.request_memory_bytes[service]
                room = np.flatnonzero(layout.allowed[service] & (cpu_left >= cpu) & (memory_left >= memory))
                if room.size == 0:
                    ok = False
                    break
                node = int(room[rng.integers(room.size)])
            slot_node[slot] = node
            cpu_left[node] -= start.request_cpu_millicores[service]
            memory_left[node] -= start.request_memory_bytes[service]
        if ok and (cpu_left >= 0).all() and (memory_left >= 0).all():
            sim = start.copy()
            sim.reset_to(start.conditions, slot_node)
            return sim
    return None


def perturb(sim: Simulator, rng: np.random.Generator, moves: int) -> Simulator:
    """A copy of ``sim`` after ``moves`` random valid moves (a kick out of a local optimum)."""
    kicked = sim.copy()
    for _ in range(moves):
        valid = np.flatnonzero(kicked.action_mask()[:-1])
        if valid.size == 0:
            break
        action = int(valid[rng.integers(valid.size)])
        kicked.move(action % kicked.layout.slot_count, action // kicked.layout.slot_count)
    return kicked


def wander(start: Simulator, rng: np.random.Generator, moves: int | None = None) -> Simulator:
    """A copy of ``start`` after a random walk of valid moves (default: two per placed pod).

    A restart that stays reachable: each step is a migration the cluster allows, so the walk ends
    on a placement that migrations reach from ``start`` (on a full cluster, ``start`` itself).
    """
    steps = 2 * int((start.slot_node >= 0).sum()) if moves is None else moves
    return perturb(start, rng, steps)


def best_known(
    start: Simulator,
    rng: np.random.Generator,
    restarts: int = RESTARTS,
    kicks: int = KICKS,
    reachable: bool = True,
) -> Outcome:
    """The lowest latency found from the start placement, ``restarts`` random starts and ``kicks`` perturbations each.

    The other starts are where a beam over move sequences ends (:func:`beam_search`, ``SEED_DEPTH``
    moves, width ``SEED_WIDTH``) and random walks of valid moves from ``start`` (:func:`wander`), so
    the result is reachable by migrations; with ``reachable=False`` they are random placements of all pods at once
    (:func:`random_placement`), which a full cluster may not reach. ``moves`` in the outcome is
    :func:`migrations_needed` from the start to that placement: a lower bound on the migrations needed
    to reach it.
    """
    began = time.perf_counter()
    best = start.copy()
    climb(best)
    if reachable:
        seeded = start.copy()  # where a beam over move sequences ends: it finds detours a single climb misses
        for move in beam_search(start, SEED_DEPTH, SEED_WIDTH)[1]:
            seeded.move(*move)
        starts = [start.copy(), seeded] + [wander(start, rng) for _ in range(restarts)]
    else:
        starts = [start.copy()] + [s for s in (random_placement(start, rng) for _ in range(restarts)) if s is not None]
    for candidate in starts:
        climb(candidate)
        for _ in range(kicks):
            kicked = perturb(candidate, rng, moves=max(2, start.layout.slot_count // 8))
            climb(kicked)
            if kicked.latency_ms < candidate.latency_ms - _MIN_GAIN_MS:
                candidate = kicked
        if candidate.latency_ms < best.latency_ms - _MIN_GAIN_MS:
            best = candidate
    return Outcome(
        "best_known",
        start.latency_ms,
        best.latency_ms,
        migrations_needed(start.counts, best.counts),
        time.perf_counter() - began,
        0,
        best.placement(),
    )


def migrations_needed(start_counts: FloatArray, end_counts: FloatArray) -> int:
    """The fewest single-pod migrations that turn placement ``start_counts`` into ``end_counts`` (``(S, N)`` pods).

    Pods of one service on one node are interchangeable and replica counts do not change, so each
    service needs at least ``Σ_n max(0, start − end)`` pods to leave a node, and that many moves
    suffice when capacity does not get in the way: a lower bound on the migrations. Counted from
    the counts, not slot by slot: a slot-wise count would charge two pods of one service that swap
    nodes (no migration needed) and depends on the slot order (re-sorted in padded layouts).
    """
    return round(float(np.maximum(start_counts - end_counts, 0.0).sum()))


def latencies_after(beam: list[Simulator], moves: list[np.ndarray]) -> list[np.ndarray]:
    """Latency after each of ``moves[i]`` (``(K, 2)`` rows of slot and target) applied to ``beam[i]``, ms; nothing changes.

    States that share one latency model and one network (a planner's beam: copies of one twin) are
    evaluated together, only the listed moves (:func:`ceenv.gains.latency_after_selected`, equal to
    the full evaluation up to rounding); others one by one (:meth:`Simulator.latency_after`).
    """
    if not beam:
        return []
    pairs = [np.asarray(chosen, dtype=np.int64).reshape(-1, 2) for chosen in moves]  # (slot, target) rows
    sizes = np.array([len(rows) for rows in pairs], dtype=np.int64)
    after = _latencies_after_together(beam, np.concatenate(pairs), sizes)
    return np.split(after, np.cumsum(sizes)[:-1])


def _latencies_after_together(beam: list[Simulator], every: np.ndarray, sizes: np.ndarray) -> FloatArray:
    """:func:`latencies_after` of moves given one state after another (``sizes[i]`` rows for ``beam[i]``), as one array."""
    first = beam[0]
    if any(sim.model is not first.model or sim.costs is not first.costs for sim in beam):
        parts = np.split(every, np.cumsum(sizes)[:-1])
        return np.concatenate(
            [sim.latency_after([(int(a), int(b)) for a, b in rows]) for sim, rows in zip(beam, parts, strict=True)]
        )
    state = np.repeat(np.arange(len(beam)), sizes)
    slots = every[:, 0]
    if all(sim.layout is first.layout for sim in beam):
        sources = np.stack([sim.slot_node for sim in beam])[state, slots]
    else:
        parts = np.split(slots, np.cumsum(sizes)[:-1])
        sources = np.concatenate([sim.slot_node[part] for sim, part in zip(beam, parts, strict=True)])
    return latency_after_selected(
        first.model,
        np.stack([sim.counts for sim in beam]),
        first.costs.matrices,
        state,
        first.layout.slot_service[slots],
        sources,
        every[:, 1],
    )


def best_first(latencies_ms: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` lowest latencies, lowest first, ties (to 1e-9 ms) by index.

    The first ``count`` of a stable sort of the rounded values, without sorting them all: the
    values up to the ``count``-th smallest (ties included) are sorted, the rest only partitioned.
    """
    rounded = np.round(latencies_ms, TIE_DECIMALS)
    if count < 1:
        return np.zeros(0, dtype=np.int64)
    if 4 * count < len(rounded) and not np.isnan(rounded).any():  # NaN sorts last: leave those to argsort
        threshold = np.partition(rounded, count - 1)[count - 1]
        candidates = np.flatnonzero(rounded <= threshold)  # in index order: the stable sort's tie order
        result: np.ndarray = candidates[np.argsort(rounded[candidates], kind="stable")[:count]]
        return result
    return np.argsort(rounded, kind="stable")[:count]


def expand(
    beam: list[Simulator], width: int, per_state: int, candidates: list[list[tuple[int, int]]] | None = None
) -> list[tuple[int, tuple[int, int], float]]:
    """The ``width`` best children of a beam: ``(parent index, move, latency after)``, best first.

    Each parent contributes its ``per_state`` best single moves (from ``candidates[i]`` when given,
    else every distinct valid move); children that reach the same placement (service × node counts)
    are merged. Latencies equal to 1e-9 ms are ties, broken by parent and then by move.
    """
    if not beam:
        return []
    if candidates is None:
        every, sizes = distinct_moves_together(beam)
    else:
        pairs = [np.array(chosen, dtype=np.int64).reshape(-1, 2) for chosen in candidates]
        every, sizes = np.concatenate(pairs), np.array([len(rows) for rows in pairs], dtype=np.int64)
    after = _latencies_after_together(beam, every, sizes)
    rounded = np.round(after, TIE_DECIMALS)
    within, kept = lowest_per_segment_together(rounded, sizes, per_state)  # each parent's best, one compiled pass
    picked = np.repeat(np.cumsum(sizes) - sizes, kept) + within
    parents = np.repeat(np.arange(len(beam)), kept)
    slots, nodes = every[picked, 0], every[picked, 1]
    # Equal placements reached by different paths differ by rounding only: compare values to 1e-9 ms
    # and break ties by parent and move, so that the search does not depend on summation order.
    order = np.lexsort((nodes, slots, parents, rounded[picked])).tolist()
    value_of, parent_of, slot_of, node_of = (x.tolist() for x in (after[picked], parents, slots, nodes))
    children: list[tuple[int, tuple[int, int], float]] = []
    seen: set[bytes] = set()
    for i in order:
        index, slot, node = parent_of[i], slot_of[i], node_of[i]
        parent = beam[index]
        counts = parent.counts.copy()
        service = parent.layout.slot_service[slot]
        counts[service, parent.slot_node[slot]] -= 1.0
        counts[service, node] += 1.0
        key = counts.tobytes()
        if key in seen:
            continue
        seen.add(key)
        children.append((index, (slot, node), value_of[i]))
        if len(children) == width:
            break
    return children


def beam_search(
    start: Simulator, depth: int, width: int = 32, step_cost_ms: float = 0.0, per_state: int | None = None
) -> tuple[float, list[tuple[int, int]]]:
    """The lowest ``latency + step_cost_ms × moves`` found within ``depth`` moves, and its move sequence.

    A beam over move sequences on ``start``'s own costs: at each depth every state of the beam is
    expanded by its ``per_state`` best single moves (default ``width``) and the ``width`` best
    resulting placements (duplicates merged) form the next beam. The empty sequence (stay) is a
    candidate. Being a beam, it gives a *lower bound* of the reduction the best ``depth``-move
    sequence reaches, not that optimum. ``start`` is not changed. Used by
    ``benchmarks/bench_bound.py`` (the k-move bound).
    """
    best_value, best_moves = start.latency_ms, []
    beam: list[tuple[Simulator, list[tuple[int, int]]]] = [(start, [])]
    for level in range(1, depth + 1):
        children = expand([sim for sim, _ in beam], width, per_state or width)
        if not children:
            break
        next_beam = []
        for index, move, _ in children:
            parent, moves = beam[index]
            child = parent.copy()
            child.move(*move)
            next_beam.append((child, [*moves, move]))
            value = child.latency_ms + step_cost_ms * level
            if value < best_value - _MIN_GAIN_MS:
                best_value, best_moves = value, [*moves, move]
        beam = next_beam
    return best_value, best_moves
