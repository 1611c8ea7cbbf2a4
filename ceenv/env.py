"""The Gymnasium environment: move one pod per step, or stop (MODEL.md §3).

A thin shell around :class:`ceenv.simulator.Simulator`: it draws the start state from its own
seeded generator, turns actions into moves through the shared encoder and reports latency in
``info``. Registered as ``ceenv/CloudEdge-v1`` (observation version 3), ``ceenv/CloudEdge-v2``
(observation version 4, size-agnostic) and ``ceenv/CloudEdge-v0`` (REACH's observation, version 1);
see :mod:`ceenv`. Used by training, evaluation,
the benchmarks and the tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import numpy.typing as npt
from gymnasium import spaces

from ceenv.latency import LatencyModel, measured_network
from ceenv.layout import (
    DEFAULT_MAX_NODES,
    DEFAULT_MAX_SLOTS,
    OBSERVATION_VERSION,
    BoolArray,
    layout_from_scenario,
)
from ceenv.observation import decode_action, native_action, policy_mask
from ceenv.placement import draw_start
from ceenv.reference import reference_scenario, reference_workload
from ceenv.scenario import Scenario, load_scenario
from ceenv.simulator import DEFAULT_STEP_COST_MS, Simulator
from ceenv.workload import Workload, load_workload

ObsType = npt.NDArray[np.float32]
DEFAULT_MAX_STEPS = 100
DEFAULT_MEASUREMENT_NOISE = 0.1  # relative (log-normal sigma) noise of measured delays and bandwidths


class CloudEdgeEnv(gym.Env[ObsType, np.int64]):
    """Adaptive microservice rescheduling in a cloud-edge cluster.

    ## Description
    A cluster of N nodes in layers (cloud, edge, client) runs the pods of S services in P pod slots
    (``max-replica`` slots per service, ordered by service then replica); the application latency is
    the rps-weighted end-to-end latency of MODEL.md §2. Each step the agent migrates one pod to
    another node, or stops. The start state (free capacity, bandwidth utilisation, delays, replica
    counts, a random feasible placement) is drawn at every reset (``dynamic=True``) or uses the
    nominal conditions (``dynamic=False``). Without arguments the env runs REACH's 13-29 cluster
    with the ``aggregator_sequential`` call pattern (:mod:`ceenv.reference`).

    ## Action Space
    ``Discrete(N * P + 1)``: action ``a < N * P`` moves slot ``a % P`` to node ``a // P``; action
    ``N * P`` is STOP. From observation version 4, ``N`` and ``P`` are the padded limits
    ``max_nodes`` and ``max_slots`` (default 40 x 80) and padding actions are always masked. ``action_masks()`` gives the valid actions (a pod in the slot, a movable
    service, another node in an allowed layer with room); STOP is always valid.

    ## Observation Space
    Built by :func:`ceenv.observation.observe`, the function the policy service uses too; all
    entries float32. The blocks, in order, by observation version:

    * version 1 — ``Box(0, 1, (2N + P(N + 1),))``: free CPU per node / the node's largest CPU
      availability, free memory per node / its largest memory availability, then per slot a one-hot
      of ``N + 1`` entries (0 = empty slot, ``1 + n`` = on node ``n``).
    * version 2 — ``Box(0, 1, (2N + P(N + 1) + S(N + 1),))``: version 1, then the fraction of each
      service's pods on each node (``S * N``), then each service's pod count / its slots (``S``).
    * version 3 — ``Box(-1, 1, (2N + P(N + 1) + S(N + 1) + N * P,))``: version 2, then per move
      action (action order) the latency the move saves under the scenario's nominal network, as a
      fraction of the current nominal latency, clipped to [-1, 1] (0 for an invalid move).
    * version 4 — ``Box(-1, 1, (10 N_max + 8 P_max + 5 N_max P_max,))``: per node, per slot and per
      (node, slot) pair rows padded to the limits (:func:`ceenv.observation_v4.observe_v4`); no entry
      depends on the order in which pods are listed beyond its own row.

    ## Rewards
    ``latency_before - latency_after - step_cost_ms`` (ms) per move; 0 for STOP. An invalid
    action is not executed: the placement stays and the reward is ``-step_cost_ms``.

    ## Starting State
    See Description; ``reset(options={"state": (conditions, slot_node)})`` starts from a given state.

    ## Episode End
    Terminated on STOP; truncated after ``max_steps`` steps (default 100).

    ## Info
    ``latency_ms`` (now), ``start_latency_ms``, ``moves`` (executed migrations), ``invalid_action``.

    ## Arguments
    ``scenario`` (a :class:`Scenario` or a directory; default REACH's 13-29), ``workload`` (a
    :class:`Workload` or a call-pattern file; default ``aggregator_sequential``), ``dynamic``,
    ``step_cost_ms`` (default 1.25 ms, MODEL.md §3), ``max_steps``, ``render_mode`` (``"ansi"``),
    ``observation_version`` (fixed by the registered id, see below), ``measured_conditions`` and
    ``measurement_noise``: with ``measured_conditions=True`` every reset also draws (after the start
    state, from the same generator) what a monitor would report of the drawn network: each node
    pair's delay and each node's available bandwidth times ``exp(measurement_noise * z)``,
    ``z ~ N(0, 1)`` (default noise 0.1; 0 reports the truth). It becomes ``simulator.known_costs``,
    the conditions a policy may know (the wire payload's optional ``measured`` block, MODEL.md §4);
    without it ``known_costs`` is the nominal network. Observation versions 1-3 always use the
    nominal network (they were trained on it); the reward always uses the true drawn network.
    ``max_nodes``/``max_slots``: version 4's limits.

    ## Version History
    * v2: observation version 4 (size-agnostic, padded to ``max_nodes`` x ``max_slots``).
    * v1: observation version 3 (placement fractions and nominal move gains); the default id.
    * v0: observation version 1 (REACH's observation).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012  (Gymnasium declares it as an instance attribute)

    def __init__(
        self,
        scenario: Scenario | str | Path | None = None,
        workload: Workload | str | Path | None = None,
        dynamic: bool = True,
        step_cost_ms: float = DEFAULT_STEP_COST_MS,
        max_steps: int = DEFAULT_MAX_STEPS,
        render_mode: str | None = None,
        observation_version: int = OBSERVATION_VERSION,
        max_nodes: int = DEFAULT_MAX_NODES,
        max_slots: int = DEFAULT_MAX_SLOTS,
        measured_conditions: bool = False,
        measurement_noise: float = DEFAULT_MEASUREMENT_NOISE,
    ) -> None:
        if not (np.isfinite(measurement_noise) and measurement_noise >= 0):
            raise ValueError(f"measurement_noise must be a finite relative noise >= 0, got {measurement_noise}")
        if scenario is None:
            scenario = reference_scenario()
        elif not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        if workload is None:
            workload = reference_workload(scenario)
        elif not isinstance(workload, Workload):
            workload = load_workload(workload, scenario)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode {render_mode!r} is not supported; use one of {self.metadata['render_modes']}"
            )
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.scenario = scenario
        self.workload = workload
        self.dynamic = dynamic
        self.step_cost_ms = float(step_cost_ms)
        self.max_steps = max_steps
        self.render_mode = render_mode
        self.measured_conditions = measured_conditions
        self.measurement_noise = float(measurement_noise)
        self.model = LatencyModel(scenario, workload)
        self.layout = layout_from_scenario(scenario, observation_version, max_nodes, max_slots)
        self.action_space = spaces.Discrete(self.layout.action_count)
        self.observation_space = spaces.Box(
            self.layout.observation_low, 1.0, (self.layout.observation_size,), dtype=np.float32
        )
        self.sim: Simulator | None = None
        self._steps = 0
        self._moves = 0
        self._start_latency_ms = 0.0

    @property
    def simulator(self) -> Simulator:
        if self.sim is None:
            raise gym.error.ResetNeeded("call reset() before using the environment")
        return self.sim

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsType, dict[str, Any]]:
        """Draw a new start state. ``options={"state": (conditions, slot_node)}`` starts from a given state."""
        super().reset(seed=seed)
        if options and "state" in options:
            conditions, slot_node = options["state"]
        else:
            conditions, slot_node = draw_start(self.model, self.layout, self.np_random, self.dynamic)
        if self.sim is None:
            self.sim = Simulator(self.model, self.layout, conditions, slot_node)
        else:
            self.sim.reset_to(conditions, slot_node)
        if self.measured_conditions:  # drawn after the start state, so the start draws stay as without it
            network = measured_network(self.scenario, conditions, self.np_random, self.measurement_noise)
            self.sim.known_costs = self.model.prepare(network)
        self._steps = 0
        self._moves = 0
        self._start_latency_ms = self.sim.latency_ms
        return self.sim.observation(), self._info(False)

    def step(self, action: Any) -> tuple[ObsType, SupportsFloat, bool, bool, dict[str, Any]]:
        sim = self.simulator
        action = int(action)
        self._steps += 1
        truncated = self._steps >= self.max_steps
        decoded = decode_action(self.layout, action)
        if action == self.layout.stop_action:
            return sim.observation(), 0.0, True, False, self._info(False)
        if decoded is None or not sim.action_mask()[native_action(self.layout, action)]:
            # a padding row (version 4) or a move the mask forbids
            return sim.observation(), -self.step_cost_ms, False, truncated, self._info(True)
        slot, node = decoded
        before = sim.latency_ms
        after = sim.move(slot, node)
        self._moves += 1
        return sim.observation(), before - after - self.step_cost_ms, False, truncated, self._info(False)

    def action_masks(self) -> BoolArray:
        """Valid actions for the current state (the method MaskablePPO looks for), in the policy's index."""
        return policy_mask(self.layout, self.simulator.action_mask())

    def _info(self, invalid: bool) -> dict[str, Any]:
        return {
            "latency_ms": self.simulator.latency_ms,
            "start_latency_ms": self._start_latency_ms,
            "moves": self._moves,
            "invalid_action": invalid,
        }

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        sim = self.simulator
        lines = [f"latency {sim.latency_ms:.2f} ms after {self._moves} moves"]
        for n, name in enumerate(self.layout.node_names):
            pods = [self.layout.slot_name(int(p)) for p in np.flatnonzero(sim.slot_node == n)]
            lines.append(
                f"{name:>20} [{self.layout.node_layers[n]:>6}] cpu {sim.free_cpu_millicores[n]:7.0f}m "
                f"mem {sim.free_memory_bytes[n] / 2**30:6.2f}Gi  {' '.join(pods)}"
            )
        return "\n".join(lines)
