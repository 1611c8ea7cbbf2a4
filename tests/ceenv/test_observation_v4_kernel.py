"""Observation version 4's dynamic entries, the move-gain features and a simulator's mask come from compiled loops.

``ceenv.selected_kernel._observe_v4_dynamic`` replaced some 20 numpy operations on strided views of
the observation (a quarter of an env step on 13-29), and ``_table_gain_fractions`` the gather,
division, clip and ``where`` that turned a move table into features; ``_form_gain_fractions`` (and
a template of the static entries) followed on 2026-12-03, the features straight from a latency
form's products, without the table. The numpy code they replaced is kept here as the reference
(the static entries' too), and the loops must write the same float32 values: after random
moves, STOPs, node failures and surges on every reference cluster × workload and a generated
cluster, in the batched env with one network per copy, and on synthetic inputs with free resources
below zero, above capacity, NaN and a zero scale, latencies of zero, below zero and NaN, and table
entries past ±1 and NaN. ``_fitting_move_mask`` replaced ``Simulator.fits``, ``target_ok`` and
``move_mask`` for a simulator's own rules; it must give ``move_mask``'s answer with ``target_ok`` in
every state above and at the edges of the fit (free + tolerance exactly the request, NaN). The
loops check no bounds, so shapes that do not fit and indices out of range are refused before they
write.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from ceenv import selected_kernel
from ceenv.env import CloudEdgeEnv
from ceenv.gains import LatencyForm, _delta_from_form, form_terms, gather_moves, latency_form, move_delta_table
from ceenv.latency import LatencyModel
from ceenv.layout import NODE_FEATURES, PAIR_FEATURES, SLOT_FEATURES, Layout
from ceenv.observation import move_mask, placement_counts_batch
from ceenv.observation_v4 import (
    _LAYER_FLAGS,
    _LOG_BYTES,
    _LOG_CALLS,
    _LOG_CORES,
    _LOG_GIB,
    _LOG_MS,
    _blocks,
    _log_exec,
    _service_tables,
)
from ceenv.reference import reference_scenario, reference_workload
from ceenv.simulator import _FIT_TOLERANCE, Simulator
from ceenv.vector import BatchedCloudEdgeEnv
from tests.ceenv.test_incremental import _clusters, random_walk

Shape = tuple[int, int, int, int, int]


def _numpy_dynamic(
    out: np.ndarray, free_cpu: np.ndarray, free_memory: np.ndarray, cpu_scale: np.ndarray,
    memory_scale: np.ndarray, counts: np.ndarray, slot_node: np.ndarray, slot_service: np.ndarray,
    log_exec: np.ndarray, gains: np.ndarray, mask: np.ndarray, shape: Shape,
) -> None:  # fmt: skip
    """The reference: ceenv.observation_v4.observe_v4_batch's dynamic entries as numpy wrote them until 2026-12-03."""
    max_n, max_p, nf, sf, pf = shape
    batch, n, slots = out.shape[0], counts.shape[2], slot_node.shape[1]
    slot_start, pair_start = max_n * nf, max_n * nf + max_p * sf
    nodes = out[:, :slot_start].reshape(batch, max_n, nf)
    slot_rows = out[:, slot_start:pair_start].reshape(batch, max_p, sf)
    pairs = out[:, pair_start:].reshape(batch, max_n, max_p, pf)
    with np.errstate(all="ignore"):
        cpu = nodes[:, :n, 3]
        np.clip(free_cpu / cpu_scale, 0.0, 1.0, out=cpu, casting="unsafe")
        np.clip(free_memory / memory_scale, 0.0, 1.0, out=nodes[:, :n, 4], casting="unsafe")
        np.subtract(1.0, cpu, out=nodes[:, :n, 5])
        pods = counts.sum(axis=1)
        nodes[:, :n, 9] = pods / np.maximum(pods.sum(axis=1, keepdims=True), 1.0)
        occupied = slot_node >= 0
        slot_rows[:, :slots, 7] = occupied * log_exec[slot_service[None, :], np.maximum(slot_node, 0)]
        pairs[:, :n, :slots, 0] = gains.reshape(-1, n, slots)
        pairs[:, :n, :slots, 1] = mask[:, : n * slots].reshape(-1, n, slots)
        pairs[:, :n, :slots, 2] = slot_node[:, None, :] == np.arange(n)[None, :, None]
        fraction = counts / np.maximum(counts.sum(axis=2), 1.0)[:, :, None]
        pairs[:, :n, :slots, 4] = fraction[:, slot_service, :].transpose(0, 2, 1) * occupied[:, None, :]


def _numpy_fractions(
    now: np.ndarray, delta: np.ndarray, slot_service: np.ndarray, slot_node: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """The reference: ceenv.observation._gain_fractions after the table, as numpy computed it until 2026-12-03."""
    nodes, slots = delta.shape[2], slot_node.shape[1]
    with np.errstate(all="ignore"):
        saved = gather_moves(delta, slot_service, slot_node).transpose(0, 2, 1)
        fractions = saved / -np.maximum(now, 1e-9)[:, None, None]
        np.minimum(fractions, 1.0, out=fractions)
        np.maximum(fractions, -1.0, out=fractions)
        valid = mask[:, : nodes * slots].reshape(fractions.shape)
        return np.where(valid, fractions, 0.0).astype(np.float32).reshape(len(now), -1)


def _numpy_gains(
    layout: Layout, model: LatencyModel, matrices: np.ndarray, slot_node: np.ndarray, mask: np.ndarray,
    counts: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """The move-gain features (ceenv.observation.move_gain_features_batch) with the numpy reference after the table."""
    ready = counts.sum(axis=2)[:, model.called_services].all(axis=1)
    gains = np.zeros((len(slot_node), layout.node_count * layout.slot_count), dtype=np.float32)
    if ready.any():
        per_state = matrices if matrices.ndim == 3 else matrices[ready]
        form = latency_form(model, per_state) if per_state.ndim == 3 else None  # the env's costs_form
        now, delta = move_delta_table(model, counts[ready], per_state, form)
        gains[ready] = _numpy_fractions(now, delta, layout.slot_service, slot_node[ready], mask[ready])
    return gains


def _numpy_static(layout: Layout, model: LatencyModel, slot_node: np.ndarray, out: np.ndarray) -> None:
    """The reference: ceenv.observation_v4.write_static_v4 as numpy computed it anew each time until 2026-12-03."""
    n, slots = layout.node_count, layout.slot_count
    nodes, slot_rows, pairs = _blocks(layout, out)
    exec_ms, calls, data = _service_tables(layout, model)
    occupied = slot_node >= 0  # (B, P)
    service = layout.slot_service
    counts = placement_counts_batch(layout, slot_node)
    replicas = counts.sum(axis=2)  # (B, S)
    nodes[:, :n, 0] = 1.0
    nodes[:, :n, 1] = np.minimum(np.log1p(layout._cpu_scale / 1000.0) / _LOG_CORES, 1.0)
    nodes[:, :n, 2] = np.minimum(np.log1p(layout._memory_scale / 2**30) / _LOG_GIB, 1.0)
    for k, flag in enumerate(_LAYER_FLAGS):
        nodes[:, :n, 6 + k] = np.array(layout.node_layers) == flag
    mean_exec = exec_ms.mean(axis=1)
    slot_rows[:, :slots, 0] = occupied
    slot_rows[:, :slots, 1] = layout.slot_movable & occupied
    slot_rows[:, :slots, 2] = np.minimum(np.log1p(mean_exec[service]) / _LOG_MS, 1.0)
    slot_rows[:, :slots, 3] = np.minimum(np.log1p(calls[service]) / _LOG_CALLS, 1.0)
    slot_rows[:, :slots, 4] = np.minimum(np.log1p(data[service]) / _LOG_BYTES, 1.0)
    slot_rows[:, :slots, 5] = replicas[:, service] / np.array(layout.service_slots)[service]
    slot_rows[:, :slots, 6] = occupied / np.maximum(replicas[:, service], 1.0)
    relative = np.log((exec_ms + 1e-3) / (mean_exec[:, None] + 1e-3))  # (S, N)
    pairs[:, :n, :slots, 3] = np.clip(relative[service].T, -1.0, 1.0)[None] * occupied[:, None, :]


def _reference_observation(env: CloudEdgeEnv) -> np.ndarray:
    """The env's current observation built with the numpy reference: static entries, then the dynamic ones."""
    sim, layout = env.simulator, env.layout
    slot_node, mask, counts = sim.slot_node[None], sim.action_mask()[None], sim.counts[None]
    out = np.zeros((1, layout.observation_size), dtype=np.float32)
    _numpy_static(layout, env.model, slot_node, out)
    gains = _numpy_gains(layout, env.model, sim.known_costs.matrices, slot_node, mask, counts)
    _numpy_dynamic(
        out, sim.free_cpu_millicores[None], sim.free_memory_bytes[None], layout._cpu_scale, layout._memory_scale,
        counts, slot_node, layout.slot_service, _log_exec(layout, env.model), gains, mask, _shape(env),
    )  # fmt: skip
    return out[0]


def _shape(env: CloudEdgeEnv | BatchedCloudEdgeEnv) -> Shape:
    return (env.layout.max_nodes, env.layout.max_slots, NODE_FEATURES, SLOT_FEATURES, PAIR_FEATURES)


@pytest.mark.parametrize("name,scenario,workload", _clusters(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_env_observation_is_what_the_numpy_code_wrote(name: str, scenario, workload) -> None:
    """Random moves and STOPs, a node failure or a surge every 20 steps: every observation equal to the numpy one."""
    env = CloudEdgeEnv(scenario, workload, observation_version=4, measured_conditions=True, max_steps=30)
    start, _ = env.reset(seed=7)
    for _, obs in random_walk(env, np.random.default_rng(7), start, 60, 20):
        np.testing.assert_array_equal(obs, _reference_observation(env))
        sim = env.simulator
        np.testing.assert_array_equal(sim.action_mask(), move_mask(env.layout, sim.slot_node, sim.target_ok()))


def test_the_batched_env_with_a_network_per_copy_writes_what_the_numpy_code_wrote() -> None:
    """Six copies stepped as one batch, each with its own measured network, finished copies reset in between."""
    scenario = reference_scenario("13-29")
    env = BatchedCloudEdgeEnv(
        6, scenario, reference_workload(scenario, "aggregator_parallel"), observation_version=4,
        measured_conditions=True, max_steps=5,
    )  # fmt: skip
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    layout = env.layout
    for _ in range(12):
        masks = env.action_masks()
        obs, *_ = env.step(np.argmax(rng.random(masks.shape) * masks, axis=1))
        native = env._native_masks()
        assert env.known_matrices is not None
        expected = np.zeros_like(obs)
        _numpy_static(layout, env.model, env.slot_node, expected)
        gains = _numpy_gains(layout, env.model, env.known_matrices, env.slot_node, native, env.counts)
        _numpy_dynamic(
            expected, env.free_cpu_millicores, env.free_memory_bytes, layout._cpu_scale, layout._memory_scale,
            env.counts, env.slot_node, layout.slot_service, _log_exec(layout, env.model), gains, native, _shape(env),
        )  # fmt: skip
        np.testing.assert_array_equal(obs, expected)


def _synthetic(rng: np.random.Generator, batch: int = 3, services: int = 4, nodes: int = 5, slots: int = 9):
    """Inputs of the loop with every edge: free resources below zero, above the scale and NaN, a zero scale, empty slots."""
    shape: Shape = (nodes + 2, slots + 3, NODE_FEATURES, SLOT_FEATURES, PAIR_FEATURES)
    size = shape[0] * NODE_FEATURES + shape[1] * SLOT_FEATURES + shape[0] * shape[1] * PAIR_FEATURES
    slot_service = np.sort(rng.integers(0, services, slots)).astype(np.int64)
    slot_node = rng.integers(-1, nodes, (batch, slots)).astype(np.int64)
    counts = np.zeros((batch, services, nodes))
    for b in range(batch):
        for p in np.flatnonzero(slot_node[b] >= 0):
            counts[b, slot_service[p], slot_node[b, p]] += 1.0
    free_cpu = rng.normal(0.5, 1.0, (batch, nodes)) * 4000.0
    free_memory = rng.normal(0.5, 1.0, (batch, nodes)) * 2.0**33
    free_cpu[0, 0], free_memory[1, 2] = np.nan, np.nan
    cpu_scale, memory_scale = np.full(nodes, 4000.0), np.full(nodes, 2.0**33)
    cpu_scale[3] = 0.0  # free / 0: inf or NaN as numpy gives, not ZeroDivisionError
    arrays = (
        rng.random((batch, size)).astype(np.float32), free_cpu, free_memory, cpu_scale, memory_scale, counts,
        slot_node, slot_service, rng.random((services, nodes)), rng.normal(size=(batch, nodes * slots)).astype(np.float32),
        rng.random((batch, nodes * slots + 1)) < 0.5,
    )  # fmt: skip
    return arrays, shape


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edge_values_are_written_as_numpy_wrote_them(seed: int) -> None:
    arrays, shape = _synthetic(np.random.default_rng(seed))
    expected, got = arrays[0].copy(), arrays[0].copy()
    _numpy_dynamic(expected, *arrays[1:], shape)
    selected_kernel.observe_v4_dynamic(got, *arrays[1:], shape)
    assert np.isnan(got).any(), "a NaN free resource stays NaN"
    np.testing.assert_array_equal(got, expected)


def test_shapes_that_do_not_fit_and_indices_out_of_range_are_refused_before_anything_is_written() -> None:
    arrays, shape = _synthetic(np.random.default_rng(4))
    out = arrays[0]
    before = out.copy()
    wrong_gains = (*arrays[:9], np.ascontiguousarray(arrays[9][:, :-1]), arrays[10])  # the warmed-up types
    with pytest.raises(ValueError, match=r"shapes that do not fit.*gains \(3, 44\)"):
        selected_kernel.observe_v4_dynamic(*wrong_gains, shape)
    too_small = (shape[0] - 3, *shape[1:])
    with pytest.raises(ValueError, match="shapes that do not fit"):
        selected_kernel.observe_v4_dynamic(*arrays, too_small)
    far_node = arrays[6].copy()
    far_node[1, 2] = arrays[5].shape[2]  # a node index past the cluster's nodes
    with pytest.raises(ValueError, match="out of range"):
        selected_kernel.observe_v4_dynamic(*arrays[:6], far_node, *arrays[7:], shape)
    bad_service = arrays[7].copy()
    bad_service[-1] = arrays[5].shape[1]
    with pytest.raises(ValueError, match="out of range"):
        selected_kernel.observe_v4_dynamic(*arrays[:7], bad_service, *arrays[8:], shape)
    np.testing.assert_array_equal(out, before)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_gain_fractions_of_a_table_are_numpys_at_every_edge(seed: int) -> None:
    """Latencies of zero, below zero and NaN, entries past ±1 and NaN, empty slots, invalid moves: numpy's float32 values."""
    rng = np.random.default_rng(seed)
    batch, services, nodes, slots = 5, 4, 6, 11
    now = rng.normal(100.0, 50.0, batch)
    now[:4] = 0.0, -3.0, np.nan, 1e-12
    delta = rng.normal(0.0, 120.0, (batch, services, nodes, nodes))
    delta[rng.random(delta.shape) < 0.05] = np.nan
    slot_service = np.sort(rng.integers(0, services, slots)).astype(np.int64)
    slot_node = rng.integers(-1, nodes, (batch, slots)).astype(np.int64)
    mask = rng.random((batch, nodes * slots + 1)) < 0.6
    got = selected_kernel.table_gain_fractions(now, delta, slot_service, slot_node, mask)
    expected = _numpy_fractions(now, delta, slot_service, slot_node, mask)
    assert np.isnan(got).any() and (np.abs(got) == 1.0).any() and (got == 0.0).any()
    np.testing.assert_array_equal(got, expected)
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_gain_fractions_from_a_latency_form_are_the_tables_at_every_edge(seed: int) -> None:
    """form_gain_fractions against _delta_from_form's whole table and numpy's fractions: a random form (self-calls,
    NaN entries), latencies of zero, below zero and NaN, empty slots, services without a pod, invalid moves."""
    rng = np.random.default_rng(seed)
    batch, services, nodes, slots = 5, 4, 6, 11
    cross = rng.normal(0.0, 30.0, (services * nodes, services * nodes))
    symmetric = cross + cross.T
    index = np.arange(services)
    blocks = symmetric.reshape(services, nodes, services, nodes)[index, :, index, :]
    form = LatencyForm(rng.normal(20.0, 10.0, services * nodes), cross, symmetric, blocks)
    slot_service = np.sort(rng.integers(0, services, slots)).astype(np.int64)
    slot_node = rng.integers(-1, nodes, (batch, slots)).astype(np.int64)
    counts = np.zeros((batch, services, nodes))
    for b in range(batch):
        for p in np.flatnonzero(slot_node[b] >= 0):
            counts[b, slot_service[p], slot_node[b, p]] += 1.0
    mask = rng.random((batch, nodes * slots + 1)) < 0.6
    now, coupled, inv = form_terms(form, counts)
    now[:4] = 0.0, -3.0, np.nan, 1e-12
    coupled[4, rng.integers(0, services * nodes, 3)] = np.nan  # NaN entries of the product reach single moves
    got = selected_kernel.form_gain_fractions(
        now, coupled, form.exec_weights, inv, form.self_blocks, slot_service, slot_node, mask
    )
    u = (form.exec_weights + coupled).reshape(batch, services, nodes) * inv[:, :, None]  # _delta_from_form's table
    delta = u[:, :, None, :] - u[:, :, :, None]
    delta -= form.self_blocks * (inv * inv)[:, :, None, None]
    np.testing.assert_array_equal(_delta_from_form(form, counts)[1][:4], delta[:4])
    expected = _numpy_fractions(now, delta, slot_service, slot_node, mask)
    assert np.isnan(got).any() and (np.abs(got) == 1.0).any() and (got == 0.0).any()
    assert got.tobytes() == expected.tobytes()
    with pytest.raises(ValueError, match="shapes that do not fit"):
        selected_kernel.form_gain_fractions(
            now, coupled[:, :-1], form.exec_weights, inv, form.self_blocks, slot_service, slot_node, mask
        )
    far = slot_node.copy()
    far[0, 0] = nodes
    with pytest.raises(ValueError, match="out of range"):
        selected_kernel.form_gain_fractions(
            now, coupled, form.exec_weights, inv, form.self_blocks, slot_service, far, mask
        )


def test_a_table_that_does_not_fit_the_slots_is_refused() -> None:
    delta, now = np.zeros((2, 3, 4, 4)), np.ones(2)
    slot_service, slot_node = np.zeros(5, dtype=np.int64), np.zeros((2, 5), dtype=np.int64)
    mask = np.ones((2, 21), dtype=bool)
    with pytest.raises(ValueError, match="shapes that do not fit"):
        selected_kernel.table_gain_fractions(now, delta, slot_service, slot_node, np.ascontiguousarray(mask[:, :10]))
    slot_node[1, 3] = 4
    with pytest.raises(ValueError, match="out of range"):
        selected_kernel.table_gain_fractions(now, delta, slot_service, slot_node, mask)


def test_the_compiled_mask_is_move_masks_at_the_edges_of_the_fit() -> None:
    """Free resources exactly at request − tolerance, just below it, negative and NaN; empty slots, and pinned slots
    whose layer rule would allow other nodes (in the reference clusters a pinned service is allowed on its node only)."""
    scenario = reference_scenario("7-21")
    env = CloudEdgeEnv(scenario, reference_workload(scenario, "chain"), observation_version=4)
    env.reset(seed=1)
    rng = np.random.default_rng(1)
    layout = env.layout
    for _ in range(40):
        sim: Simulator = env.simulator.copy()
        service = rng.integers(len(layout.service_names), size=layout.node_count)
        sim.free_cpu_millicores = sim.request_cpu_millicores[service] - _FIT_TOLERANCE  # exactly fits
        sim.free_memory_bytes = sim.request_memory_bytes[service] - _FIT_TOLERANCE * rng.choice(
            [1.0, 1.5], layout.node_count
        )
        sim.free_cpu_millicores[rng.integers(layout.node_count)] = np.nan
        sim.free_memory_bytes[rng.integers(layout.node_count)] = -1.0
        sim.slot_node = sim.slot_node.copy()
        sim.slot_node[rng.integers(layout.slot_count)] = -1  # an empty slot
        pinned = copy.copy(layout)  # a layout whose pinned slots may be placed elsewhere by the layer rule
        object.__setattr__(pinned, "slot_movable", rng.random(layout.slot_count) < 0.7)
        sim.layout = pinned
        sim._mask = None
        mask = sim.action_mask()
        assert mask[-1] and mask.dtype == np.bool_ and mask.shape == (layout.node_count * layout.slot_count + 1,)
        np.testing.assert_array_equal(mask, move_mask(pinned, sim.slot_node, sim.target_ok()))


def test_a_mask_that_does_not_fit_the_layout_is_refused() -> None:
    allowed = np.ones((2, 3), dtype=bool)
    free, requests = np.ones(3), np.ones(2)
    slots = np.zeros(4, dtype=np.int64)
    movable = np.ones(4, dtype=bool)
    with pytest.raises(ValueError, match="shapes that do not fit"):
        selected_kernel.fitting_move_mask(slots, slots, movable, allowed, free, free, np.ones(3), requests, 1e-6)
    with pytest.raises(ValueError, match="out of range"):
        selected_kernel.fitting_move_mask(slots + 3, slots, movable, allowed, free, free, requests, requests, 1e-6)
