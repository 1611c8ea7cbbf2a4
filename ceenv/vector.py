"""Many copies of the env stepped as one numpy batch: the fast path for training and benchmarks.

:class:`BatchedCloudEdgeEnv` holds ``B`` states of one scenario and workload as arrays (placement
``(B, P)``, pod counts ``(B, S, N)``, free resources ``(B, N)``, per-state network matrices
``(B, C, N, N)``) and steps them together: one batched mask (:func:`ceenv.observation.move_mask_batch`),
one batched move-gain table (:func:`ceenv.observation.move_gain_features_batch`) and one batched
observation (:func:`ceenv.observation.observe_batch`; version 4: :func:`ceenv.observation_v4.observe_v4_batch`
into a reused array whose static rows are rewritten only for copies that reset), so the per-step
Python overhead is paid once per batch, not once per env. Version 4 takes padded action indices and
keeps each copy's pods in canonical order, as the simulator does. Each copy behaves exactly like a :class:`ceenv.env.CloudEdgeEnv`
seeded the same way and given the same actions (same start draws from its own generator, same
rewards, same observations; a test compares them step by step). Finished copies reset
automatically, the way Stable-Baselines3's ``VecEnv`` does: the step returns the new episode's
first observation and ``infos[i]["terminal_observation"]`` holds the last one. Pure numpy and
gymnasium; the SB3 adapter lives in :mod:`flows.training.vecenv`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from gymnasium.utils import seeding

from ceenv.env import DEFAULT_MEASUREMENT_NOISE, CloudEdgeEnv
from ceenv.gains import application_latency, call_own_costs, tree_totals
from ceenv.latency import Conditions, build_network, measured_network
from ceenv.layout import (
    DEFAULT_MAX_NODES,
    DEFAULT_MAX_SLOTS,
    OBSERVATION_VERSION,
    BoolArray,
    FloatArray,
    IntArray,
    canonical_slots,
)
from ceenv.observation import move_gain_features_batch, move_mask_batch, observe_batch
from ceenv.observation_v4 import observe_v4_batch
from ceenv.placement import draw_start
from ceenv.scenario import Scenario
from ceenv.simulator import _FIT_TOLERANCE, DEFAULT_STEP_COST_MS
from ceenv.workload import Workload

ObsBatch = npt.NDArray[np.float32]


class BatchedCloudEdgeEnv:
    """``num_envs`` cloud-edge envs of one scenario and workload, stepped together (see the module docstring)."""

    def __init__(
        self,
        num_envs: int,
        scenario: Scenario | str | Path | None = None,
        workload: Workload | str | Path | None = None,
        dynamic: bool = True,
        step_cost_ms: float = DEFAULT_STEP_COST_MS,
        max_steps: int = 100,
        observation_version: int = OBSERVATION_VERSION,
        measured_conditions: bool = False,
        measurement_noise: float = DEFAULT_MEASUREMENT_NOISE,
        max_nodes: int = DEFAULT_MAX_NODES,
        max_slots: int = DEFAULT_MAX_SLOTS,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        # One reference env parses and checks the arguments exactly as CloudEdgeEnv does.
        self.template = CloudEdgeEnv(
            scenario,
            workload,
            dynamic=dynamic,
            step_cost_ms=step_cost_ms,
            max_steps=max_steps,
            observation_version=observation_version,
            measured_conditions=measured_conditions,
            measurement_noise=measurement_noise,
            max_nodes=max_nodes,
            max_slots=max_slots,
        )
        self.num_envs = num_envs
        self.model = self.template.model
        self.layout = self.template.layout
        self.dynamic = dynamic
        self.step_cost_ms = float(step_cost_ms)
        self.max_steps = max_steps
        self.observation_space = self.template.observation_space
        self.action_space = self.template.action_space
        services = self.model.scenario.services
        self._request_cpu = np.array([s.cpu_millicores for s in services])
        self._request_memory = np.array([round(s.memory_bytes) for s in services], dtype=float)
        # Observation versions 1-3 see the nominal network (they were trained on it).
        self._observation_matrices = self.model.nominal_costs().matrices
        b, n = num_envs, self.layout.node_count
        self.rngs = [seeding.np_random(None)[0] for _ in range(b)]
        self.slot_node: IntArray = np.full((b, self.layout.slot_count), -1, dtype=np.int64)
        self.counts: FloatArray = np.zeros((b, len(services), n))
        self.free_cpu_millicores: FloatArray = np.zeros((b, n))
        self.free_memory_bytes: FloatArray = np.zeros((b, n))
        self.matrices: FloatArray = np.zeros((b, len(self.model.call_service), n, n))
        # What each copy's policy may know (CloudEdgeEnv's simulator.known_costs, per copy);
        # None without measured_conditions (then it is the nominal network for every copy).
        self.known_matrices: FloatArray | None = np.zeros_like(self.matrices) if measured_conditions else None
        self.latency_ms: FloatArray = np.zeros(b)
        self.start_latency_ms: FloatArray = np.zeros(b)
        self.steps: IntArray = np.zeros(b, dtype=np.int64)
        self.moves: IntArray = np.zeros(b, dtype=np.int64)
        self._mask: BoolArray | None = None  # the simulator's masks (B, N * P + 1)
        self._policy_mask: BoolArray | None = None  # in the policy's action index (padded from version 4)
        self._observation: ObsBatch | None = None  # version 4: reused, static entries kept per copy
        self._has_state = False

    # --- state ------------------------------------------------------------------------------
    def _set_state(self, i: int, conditions: Conditions, slot_node: IntArray) -> None:
        costs = self.model.prepare(build_network(self.model.scenario, conditions))
        self.matrices[i] = costs.matrices
        if self.layout.padded:  # as Simulator.reset_to: version 4 sees pods in canonical order
            slot_node = slot_node[canonical_slots(self.layout, slot_node)]
        self.slot_node[i] = slot_node
        occupied = slot_node >= 0
        counts = np.zeros(self.counts.shape[1:])
        np.add.at(counts, (self.layout.slot_service[occupied], slot_node[occupied]), 1.0)
        self.counts[i] = counts
        self.free_cpu_millicores[i] = conditions.cpu_millicores - self._request_cpu @ counts
        self.free_memory_bytes[i] = conditions.memory_bytes - self._request_memory @ counts
        self.latency_ms[i] = self.model.latency(counts, costs)
        self.start_latency_ms[i] = self.latency_ms[i]
        self.steps[i] = 0
        self.moves[i] = 0

    def _reset_one(self, i: int) -> None:
        conditions, slot_node = draw_start(self.model, self.layout, self.rngs[i], self.dynamic)
        self._set_state(i, conditions, slot_node)
        self._measure(i, conditions)

    def _measure(self, i: int, conditions: Conditions) -> None:
        """Draw what copy ``i``'s policy measures of ``conditions`` (same draw order as CloudEdgeEnv.reset)."""
        if self.known_matrices is not None:
            network = measured_network(self.model.scenario, conditions, self.rngs[i], self.template.measurement_noise)
            self.known_matrices[i] = self.model.prepare(network).matrices

    def reset(self, seed: int | list[int | None] | None = None) -> ObsBatch:
        """Reset every copy; ``seed`` (one int → ``seed + i``, or one per copy) reseeds their generators."""
        seeds: list[int | None]
        if seed is None or isinstance(seed, int):
            seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} envs")
        for i, s in enumerate(seeds):
            if s is not None or not self._has_state:
                self.rngs[i] = seeding.np_random(s)[0]
            self._reset_one(i)
        self._has_state = True
        self._invalidate()
        self._observation = None
        return self.observe().copy()

    def reset_to(self, i: int, conditions: Conditions, slot_node: IntArray) -> None:
        """Put copy ``i`` into a given state (as ``CloudEdgeEnv.reset(options={"state": ...})``); with measured
        conditions its policy's measured network is drawn anew for them, as the single env does."""
        self._set_state(i, conditions, np.asarray(slot_node, dtype=np.int64))
        self._measure(i, conditions)
        self._invalidate()
        self._observation = None

    # --- encoder ----------------------------------------------------------------------------
    def _invalidate(self) -> None:
        self._mask = None
        self._policy_mask = None

    def action_masks(self) -> BoolArray:
        """``(B, A)`` valid actions of every copy in the policy's action index (cached until the next step; do not modify)."""
        if self._policy_mask is None:
            native = self._native_masks()
            if not self.layout.padded:
                self._policy_mask = native
            else:
                layout, batch = self.layout, self.num_envs
                padded = np.zeros((batch, layout.action_count), dtype=bool)
                moves = padded[:, :-1].reshape(batch, layout.max_nodes, layout.max_slots)
                moves[:, : layout.node_count, : layout.slot_count] = native[:, :-1].reshape(
                    batch, layout.node_count, layout.slot_count
                )
                padded[:, -1] = True
                self._policy_mask = padded
        return self._policy_mask

    def _native_masks(self) -> BoolArray:
        """``(B, N * P + 1)``: the simulator's masks of every copy (:func:`ceenv.observation.move_mask`)."""
        if self._mask is None:
            cpu_ok = self.free_cpu_millicores[:, None, :] + _FIT_TOLERANCE >= self._request_cpu[None, :, None]
            memory_ok = self.free_memory_bytes[:, None, :] + _FIT_TOLERANCE >= self._request_memory[None, :, None]
            fits = self.layout.allowed & cpu_ok & memory_ok  # (B, S, N)
            self._mask = move_mask_batch(self.layout, self.slot_node, fits[:, self.layout.slot_service])
        return self._mask

    def observe(self, envs: IntArray | None = None) -> ObsBatch:
        """Observations of every copy, or of the copies ``envs`` (version 4: every copy's is a reused array)."""
        pick: Any = slice(None) if envs is None else envs
        slot_node = self.slot_node[pick]
        if self.layout.padded:
            known = self._observation_matrices if self.known_matrices is None else self.known_matrices[pick]
            result = observe_v4_batch(
                self.layout,
                self.model,
                known,
                self.free_cpu_millicores[pick],
                self.free_memory_bytes[pick],
                slot_node,
                self._native_masks()[pick],
                out=self._observation if envs is None else None,
                counts=self.counts[pick],
            )
            if envs is None:
                self._observation = result
            return result
        gains = None
        if self.layout.needs_move_gains:
            mask = self._native_masks()[pick]
            gains = move_gain_features_batch(self.layout, self.model, self._observation_matrices, slot_node, mask)
        return observe_batch(
            self.layout, self.free_cpu_millicores[pick], self.free_memory_bytes[pick], slot_node, gains
        )

    # --- stepping ---------------------------------------------------------------------------
    def step(self, actions: npt.ArrayLike) -> tuple[ObsBatch, FloatArray, BoolArray, BoolArray, list[dict[str, Any]]]:
        """Step every copy; finished copies reset (their last observation is in ``infos``)."""
        acts = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        layout = self.layout
        if ((acts < 0) | (acts >= layout.action_count)).any():
            bad = acts[(acts < 0) | (acts >= layout.action_count)][0]
            raise ValueError(f"action {bad} is outside 0..{layout.action_count - 1}")
        valid = self.action_masks()[np.arange(self.num_envs), acts]
        stop = acts == layout.stop_action
        move = valid & ~stop
        self.steps += 1
        rewards = np.where(stop, 0.0, -self.step_cost_ms)
        if move.any():
            rewards[move] += self._apply(np.flatnonzero(move), acts[move])
        terminated = stop
        truncated = (self.steps >= self.max_steps) & ~stop
        infos = [
            {
                "latency_ms": float(self.latency_ms[i]),
                "start_latency_ms": float(self.start_latency_ms[i]),
                "moves": int(self.moves[i]),
                "invalid_action": bool(not valid[i] and not stop[i]),
            }
            for i in range(self.num_envs)
        ]
        obs = self.observe().copy()
        done = np.flatnonzero(terminated | truncated)
        if done.size:
            for i in done:
                infos[i]["terminal_observation"] = obs[i].copy()
                self._reset_one(int(i))
            self._invalidate()
            obs[done] = self.observe(done)
            if self._observation is not None:
                self._observation[done] = obs[done]
        return obs, rewards, terminated, truncated, infos

    def _apply(self, envs: IntArray, actions: IntArray) -> FloatArray:
        """Move one pod in each of ``envs``; return latency before - after (ms)."""
        slots = actions % self.layout.action_slots
        targets = actions // self.layout.action_slots
        services = self.layout.slot_service[slots]
        sources = self.slot_node[envs, slots]
        self.slot_node[envs, slots] = targets
        self.counts[envs, services, sources] -= 1.0
        self.counts[envs, services, targets] += 1.0
        cpu, memory = self._request_cpu[services], self._request_memory[services]
        self.free_cpu_millicores[envs, sources] += cpu
        self.free_cpu_millicores[envs, targets] -= cpu
        self.free_memory_bytes[envs, sources] += memory
        self.free_memory_bytes[envs, targets] -= memory
        if self.layout.padded:
            self._canonicalise(envs)
        own = call_own_costs(self.model, self.counts[envs], self.matrices[envs])
        totals = tree_totals(self.model, [own[:, c] for c in range(own.shape[1])])
        after = np.asarray(application_latency(self.model, totals), dtype=np.float64)
        before = self.latency_ms[envs]
        self.latency_ms[envs] = after
        self.moves[envs] += 1
        self._invalidate()
        gained: FloatArray = before - after
        return gained

    def _canonicalise(self, envs: IntArray) -> None:
        """Re-sort the slots of ``envs`` into the canonical order of version 4 (as ``Simulator.move``)."""
        slot_node = self.slot_node[envs]
        node_key = np.where(slot_node >= 0, slot_node, self.layout.node_count)
        service = np.broadcast_to(self.layout.slot_service, slot_node.shape)
        order = np.lexsort((node_key, service), axis=-1)
        self.slot_node[envs] = np.take_along_axis(slot_node, order, axis=-1)
