"""The compiled move-latency loop (ceenv.selected_kernel): what a server warms up, and where it cannot cache."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ceenv import selected_kernel
from ceenv.env import CloudEdgeEnv
from ceenv.gains import _service_steps, call_terms, latency_after_selected, tree_totals
from ceenv.generator import generate_scenario
from ceenv.latency import LatencyModel, build_network, draw_conditions
from ceenv.search import TIE_DECIMALS, best_first, expand, latencies_after
from ceenv.simulator import Simulator, distinct_move_arrays
from tests.ceenv.test_gains import _self_calling_env


def _beam(env: CloudEdgeEnv, seed: int, size: int = 4) -> list[Simulator]:
    """``size`` copies of one start state (one network: a planner's beam), each one random valid move on."""
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    beam = []
    for _ in range(size):
        child = env.simulator.copy()
        valid = np.flatnonzero(child.action_mask()[:-1])
        action = int(valid[rng.integers(valid.size)])
        child.move(action % child.layout.slot_count, action // child.layout.slot_count)
        beam.append(child)
    return beam


def _generated_beam(seed: int = 3) -> tuple[CloudEdgeEnv, list[Simulator]]:
    """A generated cluster with parallel call groups, and a small beam of its placements (copies of one twin)."""
    env = CloudEdgeEnv(*generate_scenario(np.random.default_rng(seed), nodes=12, services=8).parse())
    return env, _beam(env, seed)


def _every_move(beam: list[Simulator]) -> tuple[np.ndarray, ...]:
    """Every distinct move of each beam state as the gains take them: state, service, source node, target node."""
    moves = [sim.distinct_move_array() for sim in beam]
    every = np.concatenate(moves)
    state = np.repeat(np.arange(len(beam)), [len(m) for m in moves])
    source = np.concatenate([sim.slot_node[m[:, 0]] for sim, m in zip(beam, moves, strict=True)])
    return state, beam[0].layout.slot_service[every[:, 0]], source, every[:, 1]


def _selected(env: CloudEdgeEnv, beam: list[Simulator]) -> np.ndarray:
    counts, matrices = np.stack([s.counts for s in beam]), beam[0].costs.matrices
    return latency_after_selected(env.model, counts, matrices, *_every_move(beam))


def test_the_warm_up_compiles_the_signatures_that_the_beam_step_calls() -> None:
    """After warm_up, a beam step (moves, their latencies, the best per state), a noise charge and an observation
    of version 4 compile nothing more.

    A server's first request does not wait for numba.
    """
    selected_kernel.warm_up()
    dispatchers = [selected_kernel.compiled(kernel) for kernel in selected_kernel.KERNELS]
    before = [list(d.signatures) for d in dispatchers]
    env, beam = _generated_beam()
    children = expand(beam, width=4, per_state=4)
    after = _selected(env, beam)
    env.model.latency_per_network(np.stack([s.counts for s in beam]), [beam[0].costs, beam[0].costs])
    v4 = CloudEdgeEnv(
        *generate_scenario(np.random.default_rng(2)).parse(), observation_version=4, measured_conditions=True
    )
    v4.reset(seed=2)
    v4.step(int(np.flatnonzero(v4.action_masks())[0]))  # version 4's observation, gain features and mask
    assert all(signatures for signatures in before)  # other tests may have compiled other argument types before
    assert [list(d.signatures) for d in dispatchers] == before
    assert len(children) == 4 and after.shape == (len(_every_move(beam)[0]),) and np.isfinite(after).all()


def test_without_a_writable_cache_folder_the_loop_is_compiled_uncached_with_the_same_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """numba's real njit(cache=True) refuses where no cache folder is writable; the loop then compiles without one."""
    from numba.core import caching

    env, beam = _generated_beam(seed=5)
    cached = _selected(env, beam)

    def unwritable(self: object) -> None:
        raise PermissionError(13, "Permission denied", "__pycache__")

    monkeypatch.setattr(caching._CacheLocator, "ensure_cache_path", unwritable)  # every folder numba would try
    monkeypatch.setattr(selected_kernel, "_compiled", {})
    uncached = _selected(env, beam)
    dispatcher = selected_kernel.compiled()
    assert dispatcher is not None and not dispatcher._cache_hits and type(dispatcher._cache).__name__ == "NullCache"
    assert np.array_equal(cached, uncached)


def _numpy_loop(
    model: LatencyModel, counts: np.ndarray, matrices: np.ndarray, state: np.ndarray, service: np.ndarray,
    source: np.ndarray, target: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """The reference: the numpy loop over services that the compiled loop replaced (ceenv/gains.py before 2026-12-02)."""
    own, g, h = call_terms(model, counts, matrices)
    batch, nodes = counts.shape[0], counts.shape[2]
    calls = own.shape[1]
    inv = 1.0 / np.maximum(counts.sum(axis=-1), 1.0)
    own_by_call = np.ascontiguousarray(own.T)
    before = tree_totals(model, list(own_by_call))
    g_flat, h_flat = g.reshape(calls, batch * nodes), h.reshape(calls, batch * nodes)
    result = np.empty(len(state))
    order = np.argsort(service, kind="stable")
    for index in np.split(order, np.flatnonzero(np.diff(service[order])) + 1):
        s = int(service[index[0]])
        b, a, t = state[index], source[index], target[index]
        weight = inv[b, s]
        to_target, to_source = b * nodes + t, b * nodes + a
        plan = _service_steps(model)[s]
        totals: dict = {}
        for step in plan.steps:
            value = own_by_call[step.call].take(b)
            if step.to_service:
                value += (g_flat[step.call].take(to_target) - g_flat[step.call].take(to_source)) * weight
            if step.by_service:
                value += (h_flat[step.call].take(to_target) - h_flat[step.call].take(to_source)) * weight
            if step.self_call:
                if matrices.ndim == 3:
                    trip = matrices[step.call, a, t] + matrices[step.call, t, a]
                else:
                    trip = matrices[b, step.call, a, t] + matrices[b, step.call, t, a]
                value -= trip * weight**2
            slowest = 0.0
            for i, group in enumerate(step.groups):
                parts = [totals[callee] if changed else before[callee].take(b) for callee, changed in group]
                elapsed = parts[0]
                for part in parts[1:]:
                    elapsed = elapsed + part
                slowest = elapsed if i == 0 else np.maximum(slowest, elapsed)
            totals[step.call] = value + slowest
        latency = 0.0
        for w, root, changed in plan.roots:
            latency = latency + w * (totals[root] if changed else before[root].take(b))
        result[index] = latency
    return result


@pytest.mark.parametrize("which", ["self-calling", "generated-3", "generated-9"])
def test_the_loop_gives_the_numpy_loops_values_bit_for_bit(which: str) -> None:
    """Float64 bytes equal to the replaced numpy loop: a self-call and parallel groups, shared and per-state networks."""
    if which == "self-calling":
        env = _self_calling_env()
        beam = _beam(env, seed=2)
    else:
        env, beam = _generated_beam(seed=int(which.rsplit("-", 1)[1]))
    model, counts = env.model, np.stack([s.counts for s in beam])
    state, service, source, target = _every_move(beam)
    rng = np.random.default_rng(1)
    per_state = np.stack(
        [model.prepare(build_network(env.scenario, draw_conditions(env.scenario, rng))).matrices for _ in beam]
    )
    for matrices in (beam[0].costs.matrices, per_state):
        mine = latency_after_selected(model, counts, matrices, state, service, source, target)
        reference = _numpy_loop(model, counts, matrices, state, service, source, target)
        assert mine.tobytes() == reference.tobytes()


def test_indices_out_of_range_are_refused_before_the_loop_reads_them() -> None:
    """The compiled loop checks no bounds: a state or service past the arrays is a ValueError, not a stray read."""
    env, beam = _generated_beam(seed=3)
    counts, matrices = np.stack([s.counts for s in beam]), beam[0].costs.matrices
    state, service, source, target = _every_move(beam)
    with pytest.raises(ValueError, match="state or service is out of range"):
        latency_after_selected(env.model, counts, matrices, state + len(beam), service, source, target)
    with pytest.raises(ValueError, match="state or service is out of range"):
        latency_after_selected(env.model, counts, matrices, state, service + counts.shape[1], source, target)


def test_moves_given_in_any_order_get_the_same_values() -> None:
    """The loop sorts the moves by service itself: shuffling them only shuffles the answers."""
    env, beam = _generated_beam(seed=7)
    state, service, source, target = _every_move(beam)
    counts, matrices = np.stack([s.counts for s in beam]), beam[0].costs.matrices
    straight = latency_after_selected(env.model, counts, matrices, state, service, source, target)
    order = np.random.default_rng(0).permutation(len(state))
    shuffled = latency_after_selected(
        env.model, counts, matrices, state[order], service[order], source[order], target[order]
    )
    assert len(np.unique(service)) > 1 and np.array_equal(shuffled, straight[order])


@pytest.mark.parametrize("count", [0, 1, 3, 12, 40])
def test_the_lowest_per_segment_are_best_firsts_indices(count: int) -> None:
    """Each segment's kept indices are best_first's: lowest first, ties by index, NaN last, short segments whole."""
    rng = np.random.default_rng(count)
    for _ in range(300):
        segments = [
            np.round(rng.integers(0, 5, int(rng.integers(0, 30))) + rng.choice([0.0, 1e-12, 0.5]), TIE_DECIMALS)
            for _ in range(int(rng.integers(1, 5)))
        ]
        for values in segments:
            if len(values) and rng.random() < 0.3:
                values[rng.integers(len(values), size=2)] = np.nan
        sizes = np.array([len(v) for v in segments])
        flat = np.concatenate(segments)
        kept = selected_kernel.lowest_per_segment(flat, sizes, count)
        assert len(kept) == len(segments)
        for values, mine in zip(segments, kept, strict=True):
            assert mine.dtype == np.int64 and np.array_equal(mine, best_first(values, count))


def _expand_with_best_first(
    beam: list[Simulator], width: int, per_state: int
) -> list[tuple[int, tuple[int, int], float]]:
    """The reference: expand as it was before the compiled passes (per-state masks and best_first)."""
    scored = []
    moves = [sim.copy().distinct_move_array() for sim in beam]
    for index, (rows, after) in enumerate(zip(moves, latencies_after(beam, moves), strict=True)):
        if len(rows):
            scored += [
                (float(after[j]), index, (int(rows[j, 0]), int(rows[j, 1]))) for j in best_first(after, per_state)
            ]
    scored.sort(key=lambda item: (round(item[0], TIE_DECIMALS), item[1], item[2]))
    children, seen = [], set()
    for latency_ms, index, (slot, node) in scored:
        counts = beam[index].counts.copy()
        service = beam[index].layout.slot_service[slot]
        counts[service, beam[index].slot_node[slot]] -= 1.0
        counts[service, node] += 1.0
        if counts.tobytes() not in seen:
            seen.add(counts.tobytes())
            children.append((index, (slot, node), latency_ms))
    return children[:width]


@pytest.mark.parametrize("seed", [3, 9, 11])
@pytest.mark.parametrize("pinned", [False, True], ids=["all-movable", "one-service-pinned"])
def test_a_beam_step_picks_the_children_that_per_state_masks_and_best_first_pick(seed: int, pinned: bool) -> None:
    """expand (compiled distinct moves and best per state) equals the numpy way, on a generated cluster's beams.

    ``pinned``: the layout marks the busiest service not movable (its pods are never moved).
    """
    env, beam = _generated_beam(seed)
    beam = beam + _beam(env, seed + 100, size=8)
    if pinned:
        busiest = int(np.argmax(beam[0].counts.sum(axis=1)))
        assert any((beam[0].layout.slot_service[m[:, 0]] == busiest).any() for m in distinct_move_arrays(beam))
        movable = tuple(s != busiest for s in range(len(beam[0].layout.service_movable)))
        layout = dataclasses.replace(beam[0].layout, service_movable=movable)
        for sim in beam:
            sim.layout, sim._mask = layout, None
        assert not any((layout.slot_service[m[:, 0]] == busiest).any() for m in distinct_move_arrays(beam))
    for width, per_state in ((4, 4), (12, 3), (32, 32)):
        assert expand(beam, width, per_state) == _expand_with_best_first(beam, width, per_state)


@pytest.mark.parametrize("seed", [3, 9])
def test_the_compiled_tree_gives_the_numpy_trees_totals_bit_for_bit(seed: int) -> None:
    """compiled_tree_totals (every call, every state) equals gains.tree_totals byte for byte, NaN where numpy has it."""
    from ceenv.gains import tree_program

    env, beam = _generated_beam(seed)
    model = env.model
    assert any(len(groups) > 1 for groups in model.call_groups), "the tree has parallel groups to take maxima of"
    own, _, _ = call_terms(model, np.stack([s.counts for s in beam]), beam[0].costs.matrices)
    own_by_call = np.ascontiguousarray(own.T)
    rng = np.random.default_rng(seed)
    own_by_call *= rng.uniform(0.5, 2.0, own_by_call.shape)  # totals whose maxima change hands between groups
    own_by_call[rng.integers(own_by_call.shape[0]), 0] = np.nan
    mine = selected_kernel.compiled_tree_totals(own_by_call, *tree_program(model))
    reference = np.stack(tree_totals(model, list(own_by_call)))
    assert np.isnan(mine[:, 0]).any() and not np.isnan(mine[:, 1:]).all()
    assert mine.tobytes() == reference.tobytes()
