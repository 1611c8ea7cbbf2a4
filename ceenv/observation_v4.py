"""Observation version 4, the size-agnostic one: node, slot and (node, slot) pair rows, padded.

The layout of the vector is described in :mod:`ceenv.observation` (the one encoder, whose
:func:`ceenv.observation.encode_state` calls :func:`observe_v4` here for version 4). The entries
split in two: the *static* ones depend only on the layout, the workload and which slots hold a pod
(fixed for an episode: a move keeps every pod count, and the canonical slot order keeps the empty
slots last), the *dynamic* ones on the placement and free resources. :func:`observe_v4_batch`
writes both into a fresh array, or only the dynamic ones into an array it wrote before, which is
how the simulator (:mod:`ceenv.simulator`) and the batched env (:mod:`ceenv.vector`) avoid
re-allocating and re-filling 17,040 floats per step; a test checks the reused array against a
fresh one after random moves. The dynamic entries are written by one compiled loop
(:func:`ceenv.selected_kernel.observe_v4_dynamic`, since 2026-12-03; the numpy code it replaced is
its test's reference). Used by the env, the batched env and the policy service.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ceenv.gains import LatencyForm, call_weights, costs_form
from ceenv.latency import CallCosts, LatencyModel
from ceenv.layout import NODE_FEATURES, PAIR_FEATURES, SLOT_FEATURES, BoolArray, FloatArray, IntArray, Layout
from ceenv.observation import move_gain_features_batch, placement_counts_batch
from ceenv.selected_kernel import observe_v4_dynamic

# Scales of observation version 4: logarithms keep clusters of any size and speed in a few units.
_LOG_CORES, _LOG_GIB, _LOG_MS, _LOG_CALLS, _LOG_BYTES = np.log1p([128.0, 512.0, 1000.0, 32.0, 1e8])
_LAYER_FLAGS = ("cloud", "edge", "client")


def _service_tables(layout: Layout, model: LatencyModel) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per service: execution ms per request on each node ``(S, N)``, calls and bytes per request ``(S,)``.

    Each call counts with its endpoint's rps weight; cached on the model (it depends on nothing else).
    """
    cached = model.__dict__.get("_v4_tables")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    call_weight = call_weights(model)  # a root is the client's own request, not a call to it: 0
    services = len(layout.service_names)
    exec_ms = np.zeros((services, layout.node_count))
    np.add.at(exec_ms, model.call_service, call_weight[:, None] * model.call_exec_ms)
    calls: FloatArray = np.bincount(model.call_service, weights=call_weight, minlength=services).astype(np.float64)
    data: FloatArray = np.bincount(
        model.call_service, weights=call_weight * model.call_data_bytes, minlength=services
    ).astype(np.float64)
    tables = (exec_ms, calls, data)
    model.__dict__["_v4_tables"] = tables
    return tables


def _blocks(layout: Layout, obs: npt.NDArray[np.float32]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Views of ``(B, size)`` as node rows ``(B, Nmax, F)``, slot rows ``(B, Pmax, F)``, pairs ``(B, Nmax, Pmax, F)``."""
    max_n, max_p, batch = layout.max_nodes, layout.max_slots, obs.shape[0]
    slot_start = max_n * NODE_FEATURES
    pair_start = slot_start + max_p * SLOT_FEATURES
    nodes = obs[:, :slot_start].reshape(batch, max_n, NODE_FEATURES)
    slot_rows = obs[:, slot_start:pair_start].reshape(batch, max_p, SLOT_FEATURES)
    pairs = obs[:, pair_start:].reshape(batch, max_n, max_p, PAIR_FEATURES)
    return nodes, slot_rows, pairs  # type: ignore[return-value]


def observe_v4(
    layout: Layout,
    model: LatencyModel,
    costs: CallCosts,
    free_cpu_millicores: FloatArray,
    free_memory_bytes: FloatArray,
    slot_node: IntArray,
    mask: BoolArray,
) -> npt.NDArray[np.float32]:
    """Observation version 4 of one state (see :mod:`ceenv.observation`): node, slot and pair rows, padded."""
    obs: npt.NDArray[np.float32] = observe_v4_batch(
        layout,
        model,
        costs.matrices,
        free_cpu_millicores[None],
        free_memory_bytes[None],
        slot_node[None],
        mask[None],
        form=costs_form(model, costs),
    )[0]
    return obs


def observe_v4_batch(
    layout: Layout,
    model: LatencyModel,
    matrices: FloatArray,
    free_cpu_millicores: FloatArray,
    free_memory_bytes: FloatArray,
    slot_node: IntArray,
    mask: BoolArray,
    out: npt.NDArray[np.float32] | None = None,
    counts: FloatArray | None = None,
    form: LatencyForm | None = None,
) -> npt.NDArray[np.float32]:
    """:func:`observe_v4` of ``B`` states (arguments with a leading batch axis) → ``(B, size)``.

    ``matrices`` are the network costs the policy may know, shared ``(C, N, N)`` or per state
    ``(B, C, N, N)``. Given ``out`` (an earlier result for states with the same occupied slots),
    only the dynamic entries are rewritten, in place, and ``out`` is returned. ``counts``
    (:func:`ceenv.observation.placement_counts_batch` of ``slot_node``) saves recomputing them;
    ``form`` (:func:`ceenv.gains.latency_form` of shared ``matrices``) speeds the move gains up.
    """
    if counts is None:
        counts = placement_counts_batch(layout, slot_node)
    if out is None:
        out = np.empty((slot_node.shape[0], layout.observation_size), dtype=np.float32)
        write_static_v4(layout, model, slot_node, out, counts)
    gains = move_gain_features_batch(layout, model, matrices, slot_node, mask, counts, form)
    # The rest of the dynamic entries (free and used resources, pods per node, the slots' execution
    # times, the pairs' gain, validity, position and share) in one compiled pass: numpy's some 20
    # small operations on strided views were a quarter of an env step on 13-29 (docs/training.md).
    observe_v4_dynamic(
        out,
        free_cpu_millicores,
        free_memory_bytes,
        layout._cpu_scale,
        layout._memory_scale,
        counts,
        slot_node,
        layout.slot_service,
        _log_exec(layout, model),
        gains,
        mask,
        (layout.max_nodes, layout.max_slots, NODE_FEATURES, SLOT_FEATURES, PAIR_FEATURES),
    )
    return out


def _log_exec(layout: Layout, model: LatencyModel) -> FloatArray:
    """``log1p(exec_ms) / log1p(1000)`` per service and node (cached on the model)."""
    cached: FloatArray | None = model.__dict__.get("_v4_log_exec")
    if cached is None:
        cached = np.minimum(np.log1p(_service_tables(layout, model)[0]) / _LOG_MS, 1.0)
        model.__dict__["_v4_log_exec"] = cached
    return cached


def write_static_v4(
    layout: Layout,
    model: LatencyModel,
    slot_node: IntArray,
    out: npt.NDArray[np.float32],
    counts: FloatArray | None = None,
) -> None:
    """The entries that depend on the layout, the workload and the occupied slots only, into ``out`` ``(B, size)``.

    ``out`` is overwritten whole: the entries that depend on the layout and the workload alone come
    from a template built once (:func:`_static_template`), then those of the occupied slots are
    written; every other entry is left 0. ``counts``: :func:`ceenv.observation.placement_counts_batch`
    of ``slot_node``, when the caller has them. A reset pays this once per episode (about 150 µs on 13-29
    computed anew, a sixth of a reset, before the template).
    """
    slots = layout.slot_count
    template, pair_relative = _static_template(layout, model)
    out[:] = template
    _, slot_rows, pairs = _blocks(layout, out)
    occupied = slot_node >= 0  # (B, P)
    service = layout.slot_service
    if counts is None:
        counts = placement_counts_batch(layout, slot_node)
    replicas = counts.sum(axis=2)  # (B, S)
    slot_rows[:, :slots, 0] = occupied
    slot_rows[:, :slots, 1] = layout.slot_movable & occupied
    slot_rows[:, :slots, 5] = replicas[:, service] / np.array(layout.service_slots)[service]
    slot_rows[:, :slots, 6] = occupied / np.maximum(replicas[:, service], 1.0)
    pairs[:, : layout.node_count, :slots, 3] = pair_relative[None] * occupied[:, None, :]


def _static_template(layout: Layout, model: LatencyModel) -> tuple[npt.NDArray[np.float32], FloatArray]:
    """The static entries that do not depend on the placement ``(size,)``, and the pairs' relative speed ``(N, P)``.

    Cached on the model per padded size. Node rows: present, log cores, log GiB and the layer flags;
    slot rows: the service's mean execution time, calls and bytes (for every slot, held or not). The
    pairs' relative speed ``clip(log((exec + 1e-3) / (mean + 1e-3)))`` is written times "occupied".
    """
    key = f"_v4_static_template_{layout.max_nodes}x{layout.max_slots}"
    cached = model.__dict__.get(key)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    n, slots = layout.node_count, layout.slot_count
    template = np.zeros((1, layout.observation_size), dtype=np.float32)
    nodes, slot_rows, _ = _blocks(layout, template)
    exec_ms, calls, data = _service_tables(layout, model)
    service = layout.slot_service
    nodes[:, :n, 0] = 1.0
    # Log scales saturate at their caps (1000 ms, 128 cores, 512 GiB, 32 calls, 1e8 bytes): the space is [-1, 1].
    nodes[:, :n, 1] = np.minimum(np.log1p(layout._cpu_scale / 1000.0) / _LOG_CORES, 1.0)
    nodes[:, :n, 2] = np.minimum(np.log1p(layout._memory_scale / 2**30) / _LOG_GIB, 1.0)
    for k, flag in enumerate(_LAYER_FLAGS):
        nodes[:, :n, 6 + k] = np.array(layout.node_layers) == flag
    mean_exec = exec_ms.mean(axis=1)
    slot_rows[:, :slots, 2] = np.minimum(np.log1p(mean_exec[service]) / _LOG_MS, 1.0)
    slot_rows[:, :slots, 3] = np.minimum(np.log1p(calls[service]) / _LOG_CALLS, 1.0)
    slot_rows[:, :slots, 4] = np.minimum(np.log1p(data[service]) / _LOG_BYTES, 1.0)
    relative = np.log((exec_ms + 1e-3) / (mean_exec[:, None] + 1e-3))  # (S, N)
    pair_relative: FloatArray = np.clip(relative[service].T, -1.0, 1.0)  # (N, P)
    template.setflags(write=False)
    pair_relative.setflags(write=False)
    result = (template[0], pair_relative)
    model.__dict__[key] = result
    return result
