"""The compiled move-latency loop (ceenv.selected_kernel): what a server warms up, and where it cannot cache."""

from __future__ import annotations

import numpy as np
import pytest

from ceenv import selected_kernel
from ceenv.env import CloudEdgeEnv
from ceenv.gains import latency_after_selected
from ceenv.generator import generate_scenario
from ceenv.simulator import Simulator


def _beam_and_moves(seed: int = 3) -> tuple[CloudEdgeEnv, list[Simulator], list[np.ndarray]]:
    """A generated cluster with parallel call groups, and a small beam of its placements (copies of one twin)."""
    env = CloudEdgeEnv(*generate_scenario(np.random.default_rng(seed), nodes=12, services=8).parse())
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    beam = []
    for _ in range(4):
        child = env.simulator.copy()
        valid = np.flatnonzero(child.action_mask()[:-1])
        action = int(valid[rng.integers(valid.size)])
        child.move(action % child.layout.slot_count, action // child.layout.slot_count)
        beam.append(child)
    return env, beam, [sim.distinct_move_array() for sim in beam]


def _selected(env: CloudEdgeEnv, beam: list[Simulator], moves: list[np.ndarray]) -> np.ndarray:
    state = np.repeat(np.arange(len(beam)), [len(m) for m in moves])
    every = np.concatenate(moves)
    source = np.concatenate([sim.slot_node[m[:, 0]] for sim, m in zip(beam, moves, strict=True)])
    return latency_after_selected(
        env.model, np.stack([s.counts for s in beam]), beam[0].costs.matrices, state,
        env.layout.slot_service[every[:, 0]], source, every[:, 1],
    )  # fmt: skip


def test_the_warm_up_compiles_the_signature_that_the_gains_call() -> None:
    """After warm_up, evaluating moves compiles nothing more: a server's first request does not wait for numba."""
    selected_kernel.warm_up()
    dispatcher = selected_kernel.compiled()
    before = list(dispatcher.signatures)
    env, beam, moves = _beam_and_moves()
    after = _selected(env, beam, moves)
    assert len(before) == 1 and list(dispatcher.signatures) == before
    assert after.shape == (sum(len(m) for m in moves),) and np.isfinite(after).all()


def test_without_a_writable_cache_the_loop_is_compiled_uncached_with_the_same_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """numba refuses cache=True where no cache folder is writable; the loop is then compiled without one."""
    import numba

    env, beam, moves = _beam_and_moves(seed=5)
    cached = _selected(env, beam, moves)
    real_njit = numba.njit
    asked: list[bool] = []

    def njit(*args: object, cache: bool = False, **kwargs: object) -> object:
        asked.append(cache)
        if cache:
            raise RuntimeError("cannot cache function '_after_moves': no locator available for file")
        return real_njit(*args, **kwargs)

    monkeypatch.setattr(numba, "njit", njit)
    monkeypatch.setattr(selected_kernel, "_compiled", None)
    uncached = _selected(env, beam, moves)
    assert asked == [True, False]
    assert np.array_equal(cached, uncached)


def test_moves_given_in_any_order_get_the_same_values() -> None:
    """The loop sorts the moves by service itself: shuffling them only shuffles the answers."""
    env, beam, moves = _beam_and_moves(seed=7)
    state = np.repeat(np.arange(len(beam)), [len(m) for m in moves])
    every = np.concatenate(moves)
    source = np.concatenate([sim.slot_node[m[:, 0]] for sim, m in zip(beam, moves, strict=True)])
    service = env.layout.slot_service[every[:, 0]]
    counts, matrices = np.stack([s.counts for s in beam]), beam[0].costs.matrices
    straight = latency_after_selected(env.model, counts, matrices, state, service, source, every[:, 1])
    order = np.random.default_rng(0).permutation(len(state))
    shuffled = latency_after_selected(
        env.model, counts, matrices, state[order], service[order], source[order], every[order, 1]
    )
    assert len(np.unique(service)) > 1 and np.array_equal(shuffled, straight[order])
