"""A trained policy ready to answer REACH requests: the model card, the compatibility check, the decision.

:class:`PolicyCard` is the metadata stored with every policy in the BentoML model store (layout,
scenario and workload identity, observation version, evaluation summary, gate verdict);
:func:`check_card` refuses a card whose observation version or layout does not match this code
(:func:`bento.artefact.check_compatible`, the one check, raising the one :class:`PolicyError`).
:class:`Policy` turns one ``POST /get_action`` request into a decision through the shared encoder
(:mod:`ceenv.observation`): observation, mask from ``pod_deployable``, a deterministic MaskablePPO
prediction (:meth:`bento.artefact.LoadedPolicy.decide`), and STOP whenever the chosen action is
not valid. One rule comes before the policy: a pod on a node the request marks ``available:
false`` is evacuated first, to its deployable node with the lowest predicted latency
(:mod:`ceenv.evacuation`; the policies were never trained with failed nodes). Used by :mod:`bento.store` (which builds it from a stored model) and by
:mod:`bento.service` (which serves it); nothing here touches HTTP or the model store.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bento.artefact import ArtefactMetadata, PolicyError, PolicyIdentity, check_compatible, joined_sha256
from bento.planning_settings import DEFAULTS, PlanningSettings, gated_planning_error, readable_gated_planning
from bento.served import served_block
from ceenv.evacuation import EVACUATION_RULE, evacuation_move
from ceenv.latency import CallCosts, LatencyModel
from ceenv.layout import Layout, placement_counts
from ceenv.observation import (
    LAST_NOMINAL_NETWORK_VERSION,
    decode_action,
    encode_state,
    move_gain_features,
    move_mask,
    observe,
    policy_mask,
)
from ceenv.payload import DecodedState, PayloadError, state_from_request
from ceenv.scenario import scenario_from_documents
from ceenv.schema import BYTES_PER_GIB, ActionRequest, ActionResponse
from ceenv.simulator import DEFAULT_STEP_COST_MS
from ceenv.validation import ScenarioError
from ceenv.workload import check_workload, parse_workload

CARD_FORMAT = 1


class FileIdentity(BaseModel):
    """Which scenario or workload a policy was trained on."""

    name: str = Field(description="Scenario name (e.g. 13-29) or workload name (e.g. aggregator_sequential).")
    sha256: str = Field(description="SHA-256 of the file (scenario: of nodes.json and services.json, joined by +).")


class GateVerdict(BaseModel):
    """The promotion gate's decision on this policy (flows' evaluate → gate step)."""

    passed: bool
    reason: str = Field(description="Why the gate passed or refused the policy, in one line.")


def _without_none(value: Any) -> Any:
    """``value`` with every ``None`` entry of its mappings left out: a BentoML model's metadata holds no
    ``None``, and a report's optional fields (e.g. ``total_reduction_ms``) read back as absent."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


class PolicyCard(PolicyIdentity):
    """The BentoML model metadata of a reach policy; validated whenever a model is loaded."""

    model_config = ConfigDict(extra="allow")

    card_format: int = Field(default=CARD_FORMAT, description="Version of this metadata layout.")
    scenario: FileIdentity
    workload: FileIdentity
    evaluation: dict[str, Any] = Field(default_factory=dict, description="Evaluation report (policy vs baselines).")
    gate: GateVerdict
    trained_utc: str = Field(default="", description="When the artefact was written.")

    @classmethod
    def from_artefact(cls, metadata: ArtefactMetadata, gate: GateVerdict) -> PolicyCard:
        """The card of an artefact: its identity and evaluation, plus the gate's verdict."""
        return cls(
            observation_version=metadata.observation_version,
            layout=metadata.layout,
            layout_fingerprint=metadata.layout_fingerprint,
            scenario=FileIdentity(name=metadata.scenario_name, sha256=joined_sha256(metadata.scenario_files)),
            workload=FileIdentity(name=metadata.workload_name, sha256=metadata.workload_file.sha256),
            evaluation=_without_none(metadata.evaluation_report or {}),
            gate=gate,
            algorithm=metadata.algorithm,
            trained_utc=metadata.created_utc,
        )


def check_card(metadata: Mapping[str, Any], tag: str) -> tuple[PolicyCard, Layout]:
    """Validate a stored model's metadata against this code; raise :class:`PolicyError`."""
    try:
        card = PolicyCard.model_validate(dict(metadata))
    except ValidationError as err:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in err.errors())
        raise PolicyError(
            f"model {tag}: its metadata is not a reach policy card (bad or missing: {fields}); "
            "package it with bento.store.save_policy (or `reach package`)"
        ) from None
    if card.card_format != CARD_FORMAT:
        raise PolicyError(
            f"model {tag}: card format {card.card_format}, this code reads format {CARD_FORMAT}; "
            "re-package the artefact with this version of bento.store"
        )
    return card, check_compatible(card, f"model {tag}", card.scenario.name)


class Decider(Protocol):
    """What :class:`Policy` needs of a loaded artefact (:class:`bento.artefact.LoadedPolicy`)."""

    def decide(self, observation: npt.NDArray[np.float32], mask: npt.NDArray[np.bool_]) -> int: ...


@dataclass(frozen=True)
class NominalLatency:
    """The simulator's latency of a placement under the scenario's nominal network conditions."""

    model: LatencyModel
    costs: CallCosts

    @classmethod
    def from_files(cls, scenario_dir: str, workload_file: str) -> NominalLatency:
        """Built from a REACH-format scenario directory and call-pattern file (serve-time arguments)."""
        from ceenv.scenario import load_scenario
        from ceenv.workload import load_workload

        scenario = load_scenario(scenario_dir)
        model = LatencyModel(scenario, load_workload(workload_file, scenario))
        return cls(model, model.nominal_costs())

    @classmethod
    def from_artefact(cls, metadata: ArtefactMetadata) -> NominalLatency:
        """Built from the scenario and workload files the artefact carries verbatim.

        Raises :class:`PolicyError` naming ``metadata.json`` when a carried file is missing or invalid.
        """
        files = {f.name: f for f in metadata.scenario_files}
        missing = sorted({"nodes.json", "services.json"} - files.keys())
        if missing:
            raise PolicyError(
                f"metadata.json: scenario_files lacks {missing}; the artefact is incomplete, re-train or re-package it"
            )
        workload_file = f"artefact:{metadata.workload_file.name}"
        try:
            scenario = scenario_from_documents(
                metadata.scenario_name,
                files["nodes.json"].content,
                files["services.json"].content,
                "artefact:nodes.json",
                "artefact:services.json",
            )
            workload = parse_workload(metadata.workload_file.content, workload_file, metadata.workload_name)
            check_workload(workload, scenario, workload_file)
        except ScenarioError as err:
            raise PolicyError(
                f"metadata.json: a scenario or workload file it carries is invalid ({err}); re-train or re-package it"
            ) from None
        model = LatencyModel(scenario, workload)
        return cls(model, model.nominal_costs())

    def of(self, layout: Layout, slot_node: npt.NDArray[np.int64], costs: CallCosts | None = None) -> float | None:
        """Latency in ms under ``costs`` (default: the nominal network), or ``None`` when a called service has no pod."""
        counts = placement_counts(layout, slot_node)
        if not counts.sum(axis=1)[self.model.called_services].all():
            return None
        return float(self.model.latency(counts, self.costs if costs is None else costs))

    def unplaced(self, layout: Layout, slot_node: npt.NDArray[np.int64]) -> list[str]:
        """The services the workload calls that have no pod in this placement (the latency is undefined then)."""
        counts = placement_counts(layout, slot_node)
        names = self.model.scenario.service_names
        return [names[s] for s in np.flatnonzero(self.model.called_services & (counts.sum(axis=1) == 0))]


CAPACITY_TOLERANCE = 1e-6  # relative: rounding in the client's unit conversions is not an error


def check_capacity(layout: Layout, state: DecodedState) -> None:
    """Refuse free resources larger than the node's capacity in the model's scenario (nominal CPU and memory).

    A client reporting more free CPU or memory than the node has is wrong (or hostile), and its
    numbers would steer the policy; :class:`ceenv.payload.PayloadError` names the node and both numbers.
    """
    checks = (
        ("cpu_availability", state.free_cpu_millicores, layout.node_cpu_scale_millicores, 1.0, "millicores"),
        ("memory_availability", state.free_memory_bytes, layout.node_memory_scale_bytes, BYTES_PER_GIB, "GiB"),
    )
    for field_name, free, capacity, unit, unit_name in checks:
        over = np.flatnonzero(free > np.asarray(capacity) * (1 + CAPACITY_TOLERANCE))
        if over.size:
            i = int(over[0])
            name = layout.node_names[i]
            raise PayloadError(
                f"cluster_state.nodes.{name}.{field_name} is {free[i] / unit:g} {unit_name}, more than the node's "
                f"capacity of {capacity[i] / unit:g} {unit_name} in the model's scenario"
            )


@dataclass(frozen=True)
class Encoded:
    """A request as the policy sees it."""

    state: DecodedState
    observation: npt.NDArray[np.float32]
    mask: npt.NDArray[np.bool_]  # over the policy's actions (padded to its limits for a general policy)
    move_mask: npt.NDArray[np.bool_]  # over the cluster's moves, node × slot of the layout (the evacuation rule's)


class Policy:
    """A loaded, checked policy: ``decide(request)`` is the whole of ``POST /get_action``.

    ``planning`` is how it decides (raw, or decision-time planning: :mod:`bento.planning_settings`);
    ``served`` the identity of the served scenario and workload files when they are not the ones
    trained on (a general policy given a cluster at serve time).
    """

    def __init__(
        self,
        predictor: Decider,
        card: PolicyCard,
        layout: Layout,
        tag: str,
        latency: NominalLatency | None = None,
        planning: PlanningSettings = DEFAULTS,
        served: tuple[FileIdentity, FileIdentity] | None = None,
    ) -> None:
        self.predictor = predictor
        self.card = card
        self.layout = layout
        self.tag = tag
        self.latency = latency
        self.planning = planning
        self.served = served or (card.scenario, card.workload)
        self.gated_planning = readable_gated_planning(card.evaluation)
        self.gated_planning_error = gated_planning_error(card.evaluation)  # a malformed (hand-edited) report
        # The networks keep per-call state (the last distribution, the last observation): one decision at a time.
        self._deciding = threading.Lock()

    def encode(self, request: ActionRequest) -> Encoded:
        """Observation and mask of a request; raises :class:`ceenv.payload.PayloadError` on bad input.

        The request's optional ``measured`` block is decoded into ``state.measured_network`` (its
        errors name the node); :meth:`Policy.known_costs` decides whether the observation uses it.
        """
        scenario = self.latency.model.scenario if self.latency is not None else None
        state = state_from_request(self.layout, request, scenario)
        check_capacity(self.layout, state)
        mask = move_mask(self.layout, state.slot_node, state.target_ok)
        if self.layout.padded and self.latency is not None:  # version 4: rows padded to the limits
            observation = encode_state(
                self.layout,
                self.latency.model,
                self.known_costs(state),
                state.free_cpu_millicores,
                state.free_memory_bytes,
                state.slot_node,
                mask,
            )
            return Encoded(state, observation, policy_mask(self.layout, mask), mask)
        gains = None
        if self.layout.needs_move_gains:
            if self.latency is None:
                raise PolicyError(
                    f"model {self.tag}: observation version {self.layout.version} needs the nominal latency model; "
                    "load the policy with bento.store.load_policy"
                )
            gains = move_gain_features(self.layout, self.latency.model, self.known_costs(state), state.slot_node, mask)
        observation = observe(self.layout, state.free_cpu_millicores, state.free_memory_bytes, state.slot_node, gains)
        return Encoded(state, observation, mask, mask)

    def known_costs(self, state: DecodedState) -> CallCosts:
        """The network the observation's move gains use.

        Observation versions up to ``LAST_NOMINAL_NETWORK_VERSION`` (3) were trained on the scenario's
        nominal network and keep it whatever the request measured; a later version (one that reads
        measured conditions) gets the request's measured network when the request carries one.
        """
        if self.latency is None:
            raise PolicyError(f"model {self.tag} has no latency model to compute network costs with")
        if state.measured_network is None or self.layout.version <= LAST_NOMINAL_NETWORK_VERSION:
            return self.latency.costs
        return self.latency.model.prepare(state.measured_network)

    def decide(self, request: ActionRequest) -> ActionResponse:
        """The move the policy picks (deterministically), or STOP; an invalid pick becomes STOP.

        A pod on an unavailable node is moved off first, whatever the policy would pick. Thread-safe:
        decisions are serialised (the networks keep per-call state).
        """
        with self._deciding:
            return self._decide(request)

    def _decide(self, request: ActionRequest) -> ActionResponse:
        encoded = self.encode(request)
        # Predictions use the network the decision uses (a general policy's measured one, when sent):
        # a nominal prediction could call a move the measured network motivates a loss.
        costs = self.known_costs(encoded.state) if self.latency is not None else None
        before = self.latency.of(self.layout, encoded.state.slot_node, costs) if self.latency else None
        evacuation = self._evacuation(encoded, costs)
        if evacuation is not None:
            return self._move(
                encoded, evacuation, before, {"model_version": self.tag, "decision_rule": EVACUATION_RULE}, costs
            )
        if self.planning.active and before is None and self.latency is not None:
            missing = ", ".join(self.latency.unplaced(self.layout, encoded.state.slot_node))
            return ActionResponse.stop(
                stop_reason=f"planner chose STOP: the workload calls {missing}, which has no pod, so no placement "
                "has a latency to compare; list its pods in the request",
                model_version=self.tag,
            )
        action = (
            self._plan(encoded) if self.planning.active else self.predictor.decide(encoded.observation, encoded.mask)
        )
        extras: dict[str, Any] = {"model_version": self.tag, "action": action}
        if before is not None:
            extras["predicted_latency_before_ms"] = before
        decoded = decode_action(self.layout, action) if 0 <= action < self.layout.action_count else None
        if decoded is None or not encoded.mask[action]:
            decider = "planner" if self.planning.active else "policy"
            reason = (
                f"{decider} chose STOP" if action == self.layout.stop_action else f"{decider} chose an invalid move"
            )
            return ActionResponse.stop(stop_reason=reason, **extras)
        return self._move(encoded, decoded, before, extras, costs)

    def _evacuation(self, encoded: Encoded, costs: CallCosts | None) -> tuple[int, int] | None:
        """The evacuation rule's ``(slot, node)`` (:mod:`ceenv.evacuation`), or None when nothing must move off."""
        latency = self.latency

        def latency_of(slot_node: npt.NDArray[np.int64]) -> float | None:
            return latency.of(self.layout, slot_node, costs) if latency is not None else None

        return evacuation_move(self.layout, encoded.state, encoded.move_mask, latency_of)

    def _move(
        self,
        encoded: Encoded,
        move: tuple[int, int],
        before: float | None,
        extras: dict[str, Any],
        costs: CallCosts | None = None,
    ) -> ActionResponse:
        slot, node = move
        if before is not None and self.latency is not None:
            extras["predicted_latency_before_ms"] = before
            after_nodes = encoded.state.slot_node.copy()
            after_nodes[slot] = node
            extras["predicted_latency_after_ms"] = self.latency.of(self.layout, after_nodes, costs)
        return ActionResponse(
            pod_name=encoded.state.slot_pod[slot], target_node=self.layout.node_names[node], is_stop=False, **extras
        )

    def _plan(self, encoded: Encoded) -> int:
        """Decision-time planning on the twin (:mod:`bento.planning`); general (version 4) policies only."""
        from bento.planning import plan_action, twin_from_state

        model = getattr(self.predictor, "model", None)
        if not self.layout.padded or self.latency is None or model is None:
            raise PolicyError(f"model {self.tag}: planning needs a general (observation version 4) policy")
        state = encoded.state
        twin = twin_from_state(
            self.latency.model,
            self.layout,
            self.known_costs(state),
            state.free_cpu_millicores,
            state.free_memory_bytes,
            state.slot_node,
            state.node_available,
            state.target_ok,
        )
        metadata = getattr(self.predictor, "metadata", None)
        step_cost = float(metadata.step_cost_ms) if metadata is not None else DEFAULT_STEP_COST_MS
        plan = self.planning
        return plan_action(
            model,
            twin,
            plan.plan_k,
            plan.plan_horizon,
            step_cost,
            encoded.mask,
            plan.plan_width,
            plan.plan_margin,
            noise=plan.plan_noise,
            confidence=plan.plan_confidence,
            greedy_slack=plan.move_cap_slack,
            observation=encoded.observation,
        )

    def summary(self) -> dict[str, Any]:
        """What ``GET /metadata`` answers.

        ``scenario``/``workload`` (also under ``trained``) are the files the policy was trained on;
        ``served`` says what this server serves and how it decides (:func:`bento.served.served_block`).
        """
        card = self.card
        scenario, workload = self.served
        return {
            "model_tag": self.tag,
            "algorithm": card.algorithm,
            "trained_utc": card.trained_utc,
            "observation_version": card.observation_version,
            "layout_fingerprint": card.layout_fingerprint,
            "nodes": list(self.layout.node_names),
            "services": dict(zip(self.layout.service_names, self.layout.service_slots, strict=True)),
            "scenario": card.scenario.model_dump(),
            "workload": card.workload.model_dump(),
            "trained": {"scenario": card.scenario.model_dump(), "workload": card.workload.model_dump()},
            "served": served_block(
                scenario.model_dump(),
                workload.model_dump(),
                self.layout.node_count,
                self.layout.slot_count,
                self.planning,
                self.gated_planning,
                self.gated_planning_error,
            ),
            "evaluation": card.evaluation,
            "gate": card.gate.model_dump(),
            "predicts_latency": self.latency is not None,
            "planning": self.planning.to_dict(),
        }
