"""Guard rails between the policy's advice and the actuator: each refusal carries a typed reason.

The policy decides, the guard vetoes, the actuator acts (kubernetes-sigs/descheduler's split).
``check_move`` is a pure function of the proposed move, a cluster snapshot, the request that was
sent to the policy (for ``pod_deployable``), the migration ledger and the limits; it returns an
``Allowed`` or a ``Refused`` verdict. The order of the checks is part of the contract: facts about
the move (unknown pod, unfit target, too small a predicted gain…) are reported before the hold-down
and rate limits, and dry-run comes last so that a dry run says exactly which moves *would* have been
made. The scheduler's filters are :func:`migrator.fit.unfit`, shared with ``pod_deployable``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from ceenv.schema import ActionRequest
from migrator.fit import Unfit, unfit
from migrator.observe import FitRules, free_resources, has_room, node_accepts_pods, service_of
from migrator.snapshot import LABEL_MIGRATION, ClusterSnapshot, PdbInfo, PodInfo


class Refusal(StrEnum):
    """Why a proposed migration was not carried out."""

    UNKNOWN_POD = "unknown-pod"
    POD_NOT_READY = "pod-not-ready"
    POD_TERMINATING = "pod-terminating"
    UNSUPPORTED_OWNER = "unsupported-owner"
    MIGRATION_IN_PROGRESS = "migration-in-progress"
    UNKNOWN_NODE = "unknown-node"
    SAME_NODE = "same-node"
    TARGET_NOT_READY = "target-not-ready"
    TARGET_CORDONED = "target-cordoned"
    TARGET_FULL = "target-full"
    TARGET_NODE_AFFINITY = Unfit.NODE_AFFINITY.value
    TARGET_POD_LIMIT = Unfit.POD_LIMIT.value
    TARGET_HOST_PORT = Unfit.HOST_PORT.value
    TARGET_ANTI_AFFINITY = Unfit.ANTI_AFFINITY.value
    TARGET_TOPOLOGY_SPREAD = Unfit.TOPOLOGY_SPREAD.value
    TARGET_NOT_DEPLOYABLE = "target-not-deployable"
    SERVICE_NOT_FULLY_READY = "service-not-fully-ready"
    PDB_BLOCKS = "pdb-blocks"
    NO_PREDICTION = "no-prediction"
    GAIN_TOO_SMALL = "gain-too-small"
    RETURN_HOLD_DOWN = "return-hold-down"
    POD_COOLDOWN = "pod-cooldown"
    CYCLE_LIMIT = "cycle-limit"
    WINDOW_LIMIT = "window-limit"
    DRY_RUN = "dry-run"


# Refusals of an answer the migrator cannot check against the cluster it asked about (counted as blind cycles).
UNCHECKED_ANSWER = frozenset({Refusal.UNKNOWN_POD, Refusal.UNKNOWN_NODE, Refusal.TARGET_NOT_DEPLOYABLE})


@dataclass(frozen=True)
class Move:
    """The policy's advice; the predicted latencies are the service's extra fields, when it sends them."""

    pod_name: str
    target_node: str
    predicted_before_ms: float | None = None
    predicted_after_ms: float | None = None

    @property
    def predicted_gain_ms(self) -> float | None:
        if self.predicted_before_ms is None or self.predicted_after_ms is None:
            return None
        return self.predicted_before_ms - self.predicted_after_ms


@dataclass(frozen=True)
class Verdict:
    """``reason is None`` means allowed."""

    move: Move
    reason: Refusal | None = None
    detail: str = ""

    @property
    def allowed(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class GuardLimits:
    max_migrations_per_cycle: int = 1
    max_migrations_per_window: int = 10
    window_s: float = 600.0
    pod_cooldown_s: float = 120.0
    dry_run: bool = False
    min_predicted_gain_ms: float = 0.5
    require_predicted_gain: bool = False
    return_hold_down_s: float = 900.0


@dataclass
class MigrationLedger:
    """Times of past migrations, per-pod cooldowns and the nodes pods just left (the replacement
    inherits the old pod's cooldown and departures, so a lineage of pods is followed across moves)."""

    started_at_s: deque[float] = field(default_factory=deque)
    cooldown_until_s: dict[str, float] = field(default_factory=dict)
    left_until_s: dict[str, dict[str, float]] = field(default_factory=dict)

    def record(self, now_s: float, pod_names: tuple[str, ...], cooldown_s: float) -> None:
        self.started_at_s.append(now_s)
        for name in pod_names:
            self.cooldown_until_s[name] = now_s + cooldown_s

    def record_departure(self, now_s: float, pod_names: tuple[str, ...], left_node: str, hold_down_s: float) -> None:
        """``pod_names`` (old pod, replacement) left ``left_node``; none of them returns within ``hold_down_s``."""
        inherited: dict[str, float] = {}
        for name in pod_names:
            inherited.update(self.left_until_s.get(name, {}))
        inherited = {n: t for n, t in inherited.items() if t > now_s}
        inherited[left_node] = now_s + hold_down_s
        for name in pod_names:
            self.left_until_s[name] = dict(inherited)
        expired = [n for n, nodes in self.left_until_s.items() if max(nodes.values()) <= now_s]
        for name in expired:  # pods come and go: keep only live hold-downs
            del self.left_until_s[name]

    def left_recently(self, pod_name: str, node_name: str, now_s: float) -> float | None:
        """Seconds until ``pod_name`` may return to ``node_name``, or None when it may."""
        until = self.left_until_s.get(pod_name, {}).get(node_name, float("-inf"))
        return until - now_s if until > now_s else None

    def count_within(self, now_s: float, window_s: float) -> int:
        while self.started_at_s and self.started_at_s[0] <= now_s - window_s:
            self.started_at_s.popleft()
        return len(self.started_at_s)

    def cooling_down(self, pod_name: str, now_s: float) -> bool:
        return self.cooldown_until_s.get(pod_name, float("-inf")) > now_s


def _refuse(move: Move, reason: Refusal, detail: str) -> Verdict:
    return Verdict(move, reason, detail)


def is_evacuation(move: Move, snapshot: ClusterSnapshot) -> bool:
    """The pod runs on a node that is not Ready: moving it off adds a Ready pod and removes none."""
    pod = snapshot.app_pod(move.pod_name)
    node = snapshot.node(pod.node_name) if pod is not None and pod.node_name else None
    return node is not None and not node.ready


def check_pod(move: Move, snapshot: ClusterSnapshot) -> Verdict | None:
    pod = snapshot.app_pod(move.pod_name)
    if pod is None:
        return _refuse(move, Refusal.UNKNOWN_POD, f"pod {move.pod_name!r} is not one of the application's pods")
    if pod.terminating:
        return _refuse(move, Refusal.POD_TERMINATING, f"pod {pod.name} is terminating")
    if not pod.ready and not is_evacuation(move, snapshot):  # a pod on a failed node is not Ready: move it off
        return _refuse(move, Refusal.POD_NOT_READY, f"pod {pod.name} is not Ready")
    if pod.owner_kind != "ReplicaSet":
        owner = pod.owner_kind or "no controller"
        return _refuse(move, Refusal.UNSUPPORTED_OWNER, f"pod {pod.name} is owned by {owner}, not a ReplicaSet")
    if LABEL_MIGRATION in pod.labels:
        return _refuse(move, Refusal.MIGRATION_IN_PROGRESS, f"pod {pod.name} is already being migrated")
    return None


def check_target(move: Move, snapshot: ClusterSnapshot, request: ActionRequest) -> Verdict | None:
    pod = snapshot.app_pod(move.pod_name)
    node = snapshot.node(move.target_node)
    assert pod is not None
    if node is None:
        return _refuse(move, Refusal.UNKNOWN_NODE, f"node {move.target_node!r} does not exist")
    if node.name == pod.node_name:
        return _refuse(move, Refusal.SAME_NODE, f"pod {pod.name} already runs on {node.name}")
    if not node.ready:
        return _refuse(move, Refusal.TARGET_NOT_READY, f"node {node.name} is NotReady")
    if not node_accepts_pods(node):
        return _refuse(move, Refusal.TARGET_CORDONED, f"node {node.name} is cordoned")
    free = free_resources(snapshot)[node.name]
    if not has_room(pod, free):
        detail = (
            f"node {node.name} has {free.cpu_millicores:.0f}m CPU / {free.memory_bytes / 2**20:.0f} MiB free, "
            f"pod {pod.name} requests {pod.cpu_request_millicores:.0f}m / {pod.memory_request_bytes / 2**20:.0f} MiB"
        )
        return _refuse(move, Refusal.TARGET_FULL, detail)
    if found := unfit(pod, node, snapshot):
        return _refuse(move, Refusal(found[0].value), found[1])
    if node.name not in request.pod_deployable.get(pod.name, []):
        return _refuse(move, Refusal.TARGET_NOT_DEPLOYABLE, f"{node.name} is not in pod_deployable[{pod.name}]")
    return None


def check_service(move: Move, snapshot: ClusterSnapshot, rules: FitRules) -> Verdict | None:
    """Every pod of the service Ready and the PDBs allow a disruption; an evacuation (the pod's node is
    not Ready) skips both: the pod it moves serves nothing any more and it is removed only after its
    replacement is Ready, so the Ready count only grows (docs/migrator.md, node failure)."""
    pod = snapshot.app_pod(move.pod_name)
    assert pod is not None
    if is_evacuation(move, snapshot):
        return None
    siblings = [p for p in snapshot.app_pods if service_of(p, rules) == service_of(pod, rules)]
    not_ready = [p.name for p in siblings if not p.ready or p.terminating]
    if not_ready:
        detail = f"service {service_of(pod, rules)!r} has pods not Ready: {', '.join(sorted(not_ready))}"
        return _refuse(move, Refusal.SERVICE_NOT_FULLY_READY, detail)
    for pdb in snapshot.pdbs:
        if pdb.namespace == pod.namespace and _pdb_covers(pdb, pod) and pdb.disruptions_allowed < 1:
            return _refuse(move, Refusal.PDB_BLOCKS, f"PodDisruptionBudget {pdb.name} allows no disruption now")
    return None


def _pdb_covers(pdb: PdbInfo, pod: PodInfo) -> bool:
    """An empty selector matches no pod in policy/v1beta1 and every pod of the namespace in policy/v1."""
    if pdb.selector.is_empty():
        return pdb.empty_selector_matches_all
    return pdb.selector.matches(pod.labels)


def check_gain(move: Move, limits: GuardLimits) -> Verdict | None:
    """A move must be predicted to gain at least ``min_predicted_gain_ms`` (when the service predicts)."""
    gain = move.predicted_gain_ms
    if gain is None:
        if limits.require_predicted_gain:
            detail = "the policy sent no predicted_latency_before_ms/after_ms and require_predicted_gain is on"
            return _refuse(move, Refusal.NO_PREDICTION, detail)
        return None
    if gain < limits.min_predicted_gain_ms:
        detail = (
            f"predicted {move.predicted_before_ms:.2f} → {move.predicted_after_ms:.2f} ms: gain {gain:.2f} ms "
            f"< min_predicted_gain_ms {limits.min_predicted_gain_ms}"
        )
        return _refuse(move, Refusal.GAIN_TOO_SMALL, detail)
    return None


def check_rate(
    move: Move,
    ledger: MigrationLedger,
    limits: GuardLimits,
    now_s: float,
    started_this_cycle: int,
    evacuation: bool = False,
) -> Verdict | None:
    """Hold-down and cooldown (neither for an evacuation: a pod on a failed node serves nothing, so moving it
    off is not churn, even when it just arrived there or goes back where it came from), then the per-cycle
    and per-window limits, which bound every migration, evacuations included."""
    wait_s = None if evacuation else ledger.left_recently(move.pod_name, move.target_node, now_s)
    if wait_s is not None:
        detail = f"pod {move.pod_name} left {move.target_node} less than {limits.return_hold_down_s:.0f} s ago"
        return _refuse(move, Refusal.RETURN_HOLD_DOWN, f"{detail} ({wait_s:.0f} s to go)")
    if not evacuation and ledger.cooling_down(move.pod_name, now_s):
        return _refuse(move, Refusal.POD_COOLDOWN, f"pod {move.pod_name} moved less than {limits.pod_cooldown_s} s ago")
    if started_this_cycle >= limits.max_migrations_per_cycle:
        return _refuse(move, Refusal.CYCLE_LIMIT, f"{limits.max_migrations_per_cycle} migration(s) per cycle reached")
    if ledger.count_within(now_s, limits.window_s) >= limits.max_migrations_per_window:
        detail = f"{limits.max_migrations_per_window} migrations within {limits.window_s:.0f} s reached"
        return _refuse(move, Refusal.WINDOW_LIMIT, detail)
    return None


def check_move(
    move: Move,
    snapshot: ClusterSnapshot,
    request: ActionRequest,
    ledger: MigrationLedger,
    limits: GuardLimits,
    rules: FitRules,
    now_s: float,
    started_this_cycle: int = 0,
) -> Verdict:
    """Run every guard in order; the first refusal wins. An evacuation (the pod's node is not Ready) needs
    no predicted gain: it restores a pod that serves nothing, wherever the latency goes."""
    evacuation = snapshot.app_pod(move.pod_name) is not None and is_evacuation(move, snapshot)
    verdict = (
        check_pod(move, snapshot)
        or check_target(move, snapshot, request)
        or check_service(move, snapshot, rules)
        or (None if evacuation else check_gain(move, limits))
        or check_rate(move, ledger, limits, now_s, started_this_cycle, evacuation)
    )
    if verdict is not None:
        return verdict
    if limits.dry_run:
        return _refuse(move, Refusal.DRY_RUN, f"dry run: would move {move.pod_name} to {move.target_node}")
    return Verdict(move)
