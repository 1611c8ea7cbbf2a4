"""The migrator's control loop: clean up leftovers, then observe → ask the policy → guard → migrate.

``Controller`` wires the pure parts (observe, guards, actuator) to the injected I/O (``ops`` for
Kubernetes, ``policy`` for the policy service, ``latency`` for Prometheus) and runs one of three
modes: ``monitoring`` (act only while the measured latency exceeds the QoS threshold, like REACH's
250 ms), ``episode`` (REACH's test mode: migrate until the policy says stop, a refusal, or the step
cap, recording latency before and after each step to CSV) and ``pod-distribution`` (record pods per
node per service to CSV). Every decision, refusal and migration is a structured log record and,
when it concerns a pod, a Kubernetes Event on that pod.

Never act blind: a cycle that cannot observe (cluster unreadable; latency configured but unknown:
Prometheus down, empty, stale, not a number; a configured measurement unavailable; node aliases in
conflict; leftovers of a failed rollback, or cordons a migration could not lift, not yet cleaned up)
or cannot check the policy's answer
(malformed, an unknown pod or node, a target not in the request's ``pod_deployable``) moves nothing
and writes one ``blind`` record with its ``reason``; the first cycle that sees again writes
``resumed``. An unexpected error in a cycle is a blind cycle too (``cycle-failed``): the loop goes
on. A move the guards allowed is checked again on a fresh read of the cluster before it is carried
out, and refused with the guard's reason if it no longer passes. Leftovers of a failed rollback (or
of a start-up clean-up that failed, or cordons not lifted after a migration) are cleaned up before
anything else in every mode, and once more before ``run`` returns. One live migrator per cluster:
with a ``lease`` (:mod:`migrator.lease`; ``reach migrate`` and the in-cluster Deployment have one unless
``leader_election`` is off) nothing is read for a decision or written unless this migrator holds the
cluster's Lease, confirmed at every turn, before every decision and right before every migration; one
that finds another live holder stands by (``standby`` records) and takes over when that one stops
renewing. Without a lease (``dry_run``, or in-process callers: the demo, the benchmarks) the limit is
said in the ``starting`` log line (:data:`ONE_MIGRATOR_PER_CLUSTER`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ceenv.schema import ActionRequest, MeasuredConditions
from migrator.actuator import Actuator, Clock, ClusterOps, MigrationResult
from migrator.aliases import AliasError, from_policy_name, node_aliases, to_policy_names
from migrator.guards import UNCHECKED_ANSWER, GuardLimits, MigrationLedger, Move, Verdict, check_move, is_evacuation
from migrator.lease import LeaderLease
from migrator.observe import FitRules, build_request, pods_per_node
from migrator.policy import Advice, NoAdvice, Stop
from migrator.settings import MigratorSettings, Mode
from migrator.snapshot import ClusterAccessDenied, ClusterSnapshot, LatencyReading, MeasurementUnavailable

# Reasons of a blind cycle besides a LatencyReading's problem (reach_migrator_blind_cycles_total{reason}).
CLUSTER_UNREADABLE = "cluster-unreadable"
CLUSTER_ACCESS_DENIED = "cluster-access-denied"  # a 401/403: it needs a fix, it does not pass by itself
MEASUREMENT_UNAVAILABLE = "measurement-unavailable"
NODE_ALIAS_CONFLICT = "node-alias-conflict"
LEFTOVERS_NOT_CLEANED = "leftovers-not-cleaned"
CYCLE_FAILED = "cycle-failed"
POLICY_ANSWER_MALFORMED = "policy-answer-malformed"
POLICY_ANSWER_UNCHECKED = "policy-answer-unchecked"
LATENCY_PROBLEMS = ("prometheus-unreachable", "latency-empty", "latency-not-a-number", "latency-stale")
LATENCY_UNKNOWN = "latency-unknown"  # a LatencyReading without a value that names no problem
BLIND_REASONS = (
    *LATENCY_PROBLEMS,
    LATENCY_UNKNOWN,
    CLUSTER_UNREADABLE,
    CLUSTER_ACCESS_DENIED,
    MEASUREMENT_UNAVAILABLE,
    NODE_ALIAS_CONFLICT,
    LEFTOVERS_NOT_CLEANED,
    CYCLE_FAILED,
    POLICY_ANSWER_MALFORMED,
    POLICY_ANSWER_UNCHECKED,
)

LOGGER = logging.getLogger("reach.migrator")


class ControllerOps(ClusterOps, Protocol):
    def emit_event(self, pod_name: str, reason: str, message: str, warning: bool = False) -> None: ...


class PolicyAdvisor(Protocol):
    def ask(self, request: ActionRequest) -> Advice: ...


@dataclass
class Journal:
    """Structured records: one JSON log line each, also kept in memory for tests and reports."""

    records: list[dict[str, object]] = field(default_factory=list)
    keep_last: int = 1000

    def record(self, event: str, **fields: object) -> dict[str, object]:
        entry: dict[str, object] = {"event": event, "time": round(time.time(), 3), **fields}
        LOGGER.info(json.dumps(entry, default=str, sort_keys=True))
        self.records.append(entry)
        del self.records[: -self.keep_last]
        return entry


# Said when the controller starts (finding the cordons of another live migrator, it would lift them as leftovers).
ONE_MIGRATOR_PER_CLUSTER = (
    "one live migrator per cluster: the temporary cordon is one taint per node, and every cordon of reach found "
    "between cycles is cleaned up as a leftover, another live migrator's (another namespace's) in-flight ones "
    "included; run others with dry_run (they only report leftovers)"
)

# Said instead when the controller holds the cluster's Lease before it writes (migrator.lease).
ONE_MIGRATOR_BY_LEASE = (
    "one live migrator per cluster: this migrator writes only while it holds the Lease {where}; another migrator "
    "holding it makes this one stand by"
)

# The wait between turns checks for a stop signal this often (seconds).
STOP_CHECK_S = 1.0

# Evacuations in one cycle never exceed this (a bound on the loop; the window limit usually comes first).
MAX_EVACUATIONS_PER_CYCLE = 64


@dataclass(frozen=True)
class EvacuationsOnly:
    """A cycle that runs for a failed node's pods only: a move that is not an evacuation is not made.

    ``blind_reason`` is why nothing else may move (the latency or the measurement cannot be observed),
    or None when nothing else needs to (the QoS holds).
    """

    blind_reason: str | None
    detail: str


@dataclass(frozen=True)
class CycleOutcome:
    """What one cycle did: ``kind`` is stop, no-advice, refused, migrated, rolled-back, skipped or blind;
    ``blind`` also marks a refusal of an answer that could not be checked."""

    kind: str
    detail: str = ""
    verdict: Verdict | None = None
    result: MigrationResult | None = None
    blind: bool = False


@dataclass
class Controller:
    settings: MigratorSettings
    ops: ControllerOps
    policy: PolicyAdvisor
    clock: Clock
    latency: Callable[[], LatencyReading] | None = None
    measured_conditions: Callable[[], MeasuredConditions | None] = lambda: None
    journal: Journal = field(default_factory=Journal)
    ledger: MigrationLedger = field(default_factory=MigrationLedger)
    blind_since_s: float | None = None
    cleanup_due: bool = False  # leftovers of a failed rollback or start-up clean-up wait for the next cycle
    lease: LeaderLease | None = None  # the cluster's migrator Lease; None: no leader election (see the module doc)
    leading: bool = False  # the last check of the Lease found it held by this migrator
    started_up: bool = False  # the start-up clean-up ran (once, when it first leads; after a later takeover
    # the cycles' own reads find leftovers and clean them up first)

    def __post_init__(self) -> None:
        s = self.settings
        self.rules = FitRules(layer_label=s.layer_label, client_layer=s.client_layer, service_label=s.service_label)
        self.limits = GuardLimits(
            max_migrations_per_cycle=s.max_migrations_per_cycle,
            max_migrations_per_window=s.max_migrations_per_window,
            window_s=s.window_s,
            pod_cooldown_s=s.pod_cooldown_s,
            dry_run=s.dry_run,
            min_predicted_gain_ms=s.min_predicted_gain_ms,
            require_predicted_gain=s.require_predicted_gain,
            return_hold_down_s=s.return_hold_down_s,
        )
        self.actuator = Actuator(
            self.ops, self.clock, deadline_s=s.migration_deadline_s, cordon_cap_s=s.cordon_cap_s,
            may_commit=self._may_commit,
        )  # fmt: skip

    # ---- start --------------------------------------------------------------------------------
    def clean_up(self) -> list[str]:
        """Undo what a killed migrator left behind; always the first thing a migrator does.

        In dry-run nothing is changed: leftovers found are only reported (``leftovers-found``), so a
        dry-run migrator next to a live one never undoes the live one's migration in flight.
        """
        if self.settings.dry_run:
            found = self.actuator.find_leftovers(self.ops.snapshot())
            if found:
                self.journal.record("leftovers-found", leftovers=found, action="none", reason="dry-run")
            return []
        cleaned = self.actuator.clean_up_leftovers()
        self.journal.record("cleanup", cleaned=cleaned)
        return cleaned

    def _clean_up_if_due(self) -> CycleOutcome | None:
        """The clean-up a failed rollback (or a failed start-up clean-up) left for later; a blind outcome if it fails."""
        if not self.cleanup_due:
            return None
        try:
            self.clean_up()
        except Exception as exc:
            return self._blind(LEFTOVERS_NOT_CLEANED, f"leftovers of an earlier migration remain: {exc}")
        self.cleanup_due = False
        return None

    def _leftovers_seen(self, snapshot: ClusterSnapshot) -> bool:
        """Whether ``snapshot`` shows marks of a migration (cordon taints, marked pods); they are then due for clean-up.

        Between cycles no migration of this migrator is in flight (one replica; a migration ends
        within its cycle), so a mark now is a leftover: a killed migrator's, or a cordon taint that
        Kubernetes 1.20's node lifecycle controller wrote back (it rewrites a node's whole taint list
        from its cache when the node's readiness changes). Left alone, such a taint keeps the node
        closed to every workload. In dry-run nothing is cleaned (a live migrator may be mid-way).
        """
        if self.settings.dry_run or not self.actuator.find_leftovers(snapshot):
            return False
        self.cleanup_due = True
        return True

    def _read_cleaned(self) -> tuple[ClusterSnapshot, CycleOutcome | None]:
        """The cluster, read again after cleaning up the leftovers the first read showed; with the blind outcome
        of a clean-up that failed (the first read is returned then). A failed read raises."""
        snapshot = self.ops.snapshot()
        if not self._leftovers_seen(snapshot):
            return snapshot, None
        pending = self._clean_up_if_due()
        return (snapshot, pending) if pending is not None else (self.ops.snapshot(), None)

    # ---- one decision -------------------------------------------------------------------------
    def run_cycle(self, only: EvacuationsOnly | None = None) -> list[CycleOutcome]:
        """Ask for and carry out up to ``max_migrations_per_cycle`` moves (at least one question).

        An evacuation (a pod moved off a NotReady node, its old pod force-removed) does not count against
        that limit: it only adds a Ready pod, and a failed node's pods serve nothing until they are all
        moved, so they go one after another in the same cycle instead of one per cycle. The per-window
        limit still bounds them (guards.check_rate), and :data:`MAX_EVACUATIONS_PER_CYCLE` bounds the loop.
        """
        pending = self._lead() or self._clean_up_if_due()
        if pending is not None:
            return [pending]
        outcomes: list[CycleOutcome] = []
        regular = 0
        while regular < max(1, self.settings.max_migrations_per_cycle):
            outcome = self._decide_and_act(regular, only)
            outcomes.append(outcome)
            if outcome.kind != "migrated" or outcome.blind or len(outcomes) > MAX_EVACUATIONS_PER_CYCLE:
                break  # a blind outcome (a migration that left cordons, a refused write) ends the cycle too
            if outcome.result is None or not outcome.result.forced_removal:
                regular += 1
        return outcomes

    def _decide_and_act(self, started_this_cycle: int, only: EvacuationsOnly | None = None) -> CycleOutcome:
        not_leading = self._lead()
        if not_leading is not None:
            return not_leading
        try:
            snapshot, pending = self._read_cleaned()
            if pending is not None:
                return pending
        except Exception as exc:  # the API server may be briefly away: skip the cycle, never crash
            return self._unreadable(exc, "cannot read the cluster")
        try:
            request = build_request(snapshot, self.rules, self.measured_conditions())
        except MeasurementUnavailable as exc:  # told to decide on measured conditions, and cannot see them
            failed = _failed_nodes_with_pods(snapshot)
            if not failed:
                return self._blind(MEASUREMENT_UNAVAILABLE, str(exc))
            # A failed node's pods serve nothing: evacuating them must not wait for a probe (which may
            # have run on that very node). The evacuation rule does not need the measured network.
            self.journal.record("measurement-skipped", reason=str(exc), failed_nodes=failed)
            request = build_request(snapshot, self.rules, None)
            only = EvacuationsOnly(MEASUREMENT_UNAVAILABLE, f"only evacuations without the measurement: {exc}")
        try:
            advice = self._ask(snapshot, request)
        except AliasError as exc:  # a labelling mistake: no move until it is fixed
            return self._blind(NODE_ALIAS_CONFLICT, str(exc))
        if isinstance(advice, Stop):
            self.journal.record("policy-stop")
            return CycleOutcome("stop")
        if isinstance(advice, NoAdvice):
            if advice.malformed:
                return self._blind(POLICY_ANSWER_MALFORMED, advice.reason)
            self.journal.record("no-advice", reason=advice.reason, temporary=advice.temporary)
            return CycleOutcome("no-advice", advice.reason)
        if only is not None and not is_evacuation(advice, snapshot):
            return self._not_evacuation(advice, only)
        now_s = self.clock.now_s()
        verdict = check_move(advice, snapshot, request, self.ledger, self.limits, self.rules, now_s, started_this_cycle)
        if not verdict.allowed:
            outcome = self._refuse(verdict, snapshot.app_pod(advice.pod_name) is not None)
            if verdict.reason in UNCHECKED_ANSWER:
                self._blind(POLICY_ANSWER_UNCHECKED, verdict.detail)
                return dataclasses.replace(outcome, blind=True)
            return outcome
        return self._recheck_and_act(advice, now_s, started_this_cycle, only)

    def _not_evacuation(self, advice: Move, only: EvacuationsOnly, when: str = "") -> CycleOutcome:
        """A move offered in an evacuations-only cycle that is not one: blind with the cycle's reason, or skipped."""
        detail = f"{advice.pod_name} to {advice.target_node} is not an evacuation{when}: {only.detail}"
        if only.blind_reason is not None:
            return self._blind(only.blind_reason, detail)
        self.journal.record("not-evacuation", pod=advice.pod_name, target=advice.target_node, detail=detail)
        return CycleOutcome("skipped", detail)

    def _recheck_and_act(
        self, advice: Move, asked_at_s: float, started_this_cycle: int, only: EvacuationsOnly | None = None
    ) -> CycleOutcome:
        """Read the cluster again and re-run the guards on it, then act on that fresh read.

        The policy may take seconds to answer (timeouts and retries); meanwhile the pod may be gone,
        the target full or cordoned by an admin. A move that no longer passes is refused with the
        guard's reason, noted as found on the fresh read. In an evacuations-only cycle (``only``) the
        move must still be an evacuation on the fresh read: a node that is Ready again turns it into
        an ordinary move, which such a cycle does not make (blind with its reason, or skipped).
        """
        try:
            fresh = self.ops.snapshot()
            request = build_request(fresh, self.rules, None)
        except Exception as exc:
            return self._unreadable(exc, "cannot read the cluster again before migrating")
        # A pod gone from the fresh read (evicted, force-deleted) is the guards' to refuse (unknown pod), not
        # "no longer an evacuation", which would say its node is Ready again.
        if only is not None and fresh.app_pod(advice.pod_name) is not None and not is_evacuation(advice, fresh):
            return self._not_evacuation(advice, only, " any more (found on a fresh read before migrating)")
        verdict = check_move(
            advice, fresh, request, self.ledger, self.limits, self.rules, asked_at_s, started_this_cycle
        )
        if not verdict.allowed:
            changed = dataclasses.replace(verdict, detail=f"{verdict.detail} (found on a fresh read before migrating)")
            return self._refuse(changed, fresh.app_pod(advice.pod_name) is not None)
        return self._act(advice, fresh, asked_at_s)

    def _lead(self) -> CycleOutcome | None:
        """None when this migrator may read for a decision and write now: it holds the Lease, just renewed (or has
        no Lease: see the module doc); else the outcome of a turn that does nothing.

        Held by another live migrator: a ``standby`` record (holder, seconds until a takeover), not blind. The
        Lease cannot be read or written (the API server away, a 403): blind, as a cluster that cannot be read.
        """
        lease = self.lease
        if lease is None or self.settings.dry_run:
            return None
        was_leading, self.leading = self.leading, False
        try:
            status = lease.hold()
        except Exception as exc:
            if was_leading:
                self.journal.record("leadership-lost", lease=lease.store.where, reason=f"cannot renew: {exc}")
            return self._unreadable(exc, f"cannot confirm the migrators' Lease {lease.store.where}")
        if status.held:
            self.leading = True
            if not was_leading:
                self.journal.record(
                    "leading", lease=lease.store.where, identity=lease.identity, took_over_from=status.took_over_from
                )
            return None
        if was_leading:
            self.journal.record("leadership-lost", lease=lease.store.where, reason=f"held by {status.holder}")
        detail = (
            f"the migrators' Lease {lease.store.where} is held by {status.holder}; this migrator ({lease.identity}) "
            f"stands by and takes over if it is not renewed within {status.wait_s:.0f} s"
        )
        self.journal.record(
            "standby", lease=lease.store.where, holder=status.holder, wait_s=status.wait_s, action="none"
        )
        return CycleOutcome("standby", detail)

    def _blind(self, reason: str, detail: str, **extra: object) -> CycleOutcome:
        """No action this cycle because something could not be observed or checked: one record, with why."""
        now_s = self.clock.now_s()
        if self.blind_since_s is None:
            self.blind_since_s = now_s
        blind_for_s = round(now_s - self.blind_since_s, 3)
        self.journal.record("blind", reason=reason, detail=detail, blind_for_s=blind_for_s, action="none", **extra)
        return CycleOutcome("blind", f"{reason}: {detail}", blind=True)

    def _unreadable(self, exc: Exception, what: str) -> CycleOutcome:
        """A blind cycle for a failed cluster read: ``cluster-access-denied`` for a 401/403 (it needs a fix),
        else ``cluster-unreadable`` (it may pass by itself)."""
        reason = CLUSTER_ACCESS_DENIED if isinstance(exc, ClusterAccessDenied) else CLUSTER_UNREADABLE
        return self._blind(reason, f"{what}: {exc}")

    def _seeing(self) -> None:
        """The signal is back: say so once, with how long the migrator was blind."""
        if self.blind_since_s is not None:
            self.journal.record("resumed", blind_for_s=round(self.clock.now_s() - self.blind_since_s, 3))
            self.blind_since_s = None

    def _ask(self, snapshot: ClusterSnapshot, request: ActionRequest) -> Advice:
        """Ask the policy, in the scenario's node names when ``node_name_label`` is set (migrator.aliases)."""
        label = self.settings.node_name_label
        if not label:
            return self.policy.ask(request)
        aliases = node_aliases(snapshot, label)
        advice = self.policy.ask(to_policy_names(request, aliases))
        if isinstance(advice, Move):
            target = from_policy_name(advice.target_node, aliases)
            if target is None:
                return NoAdvice(
                    f"the policy answered target node {advice.target_node!r}, which is none of the names it was sent "
                    f"(node aliases from label {label})",
                    temporary=False,
                    malformed=True,
                )
            return Move(advice.pod_name, target, advice.predicted_before_ms, advice.predicted_after_ms)
        return advice

    def _refuse(self, verdict: Verdict, pod_exists: bool) -> CycleOutcome:
        reason = verdict.reason.value if verdict.reason else ""
        move = verdict.move
        self.journal.record("refused", pod=move.pod_name, target=move.target_node, reason=reason, detail=verdict.detail)
        if pod_exists:
            message = f"migration to {move.target_node} refused ({reason}): {verdict.detail}"
            self.ops.emit_event(move.pod_name, "MigrationRefused", message, warning=reason != "dry-run")
        return CycleOutcome("refused", verdict.detail, verdict=verdict)

    def _may_commit(self) -> bool:
        """Whether a migration in flight may reach its commit point: no Lease to keep (see the module doc), or this
        migrator still counts on it (:meth:`migrator.lease.LeaderLease.may_write`)."""
        lease = self.lease
        return lease is None or self.settings.dry_run or lease.may_write()

    def _act(self, move: Move, snapshot: ClusterSnapshot, now_s: float) -> CycleOutcome:
        not_leading = self._lead()  # confirmed right now; the renewer thread keeps it through the migration
        if not_leading is not None:
            return not_leading
        source = snapshot.app_pod(move.pod_name)
        source_node = source.node_name if source else ""
        self.journal.record(
            "migrating", pod=move.pod_name, source=source_node, target=move.target_node,
            predicted_before_ms=move.predicted_before_ms, predicted_after_ms=move.predicted_after_ms,
        )  # fmt: skip
        result = self.actuator.migrate(move, snapshot)
        if not result.started:  # nothing changed: the cluster could not be read, not a rollback
            return self._blind(CLUSTER_ACCESS_DENIED if result.access_denied else CLUSTER_UNREADABLE, result.detail)
        lineage = (move.pod_name, result.replacement_pod)
        self.ledger.record(now_s, lineage, self.limits.pod_cooldown_s)
        if result.migrated and source_node:
            self.ledger.record_departure(now_s, lineage, source_node, self.limits.return_hold_down_s)
        kind = "migrated" if result.migrated else "abandoned" if result.abandoned else "rolled-back"
        if result.leftovers:
            self.cleanup_due = True
        self.journal.record(
            kind,
            pod=move.pod_name,
            target=move.target_node,
            migration_id=result.migration_id,
            replacement=result.replacement_pod,
            replacement_ready_s=round(result.replacement_ready_s, 3),
            old_pod_gone_s=round(result.old_pod_gone_s, 3),
            cordon_window_s=round(result.cordon_window_s, 3),
            forced_removal=result.forced_removal,
            leftovers=result.leftovers,
            detail=result.detail,
        )
        reason = "Migrated" if result.migrated else "MigrationAbandoned" if result.abandoned else "MigrationRolledBack"
        self.ops.emit_event(move.pod_name, reason, result.detail, warning=not result.migrated)
        if result.migrated and result.replacement_pod:
            self.ops.emit_event(result.replacement_pod, "MigrationReplacement", f"replaces {move.pod_name}")
        if result.access_denied:  # the cluster refused a write: every later try would be refused the same way
            self._blind(CLUSTER_ACCESS_DENIED, result.detail)
            return CycleOutcome(kind, result.detail, result=result, blind=True)
        if result.leftovers:  # cordons or marks left (e.g. every other node still closed): said now, not next cycle
            self._blind(LEFTOVERS_NOT_CLEANED, f"{kind} {move.pod_name}, leftovers not cleaned: {result.detail}")
            return CycleOutcome(kind, result.detail, result=result, blind=True)
        return CycleOutcome(kind, result.detail, result=result)

    # ---- modes --------------------------------------------------------------------------------
    def latency_ms(self) -> float | None:
        """The latency now, in ms; None when no latency is configured or it is unknown."""
        return self.latency().value_ms if self.latency is not None else None

    def failed_nodes_with_pods(self) -> list[str]:
        """NotReady nodes that still hold application pods, read from the API (which may raise); leftovers
        seen on that read are cleaned up first (:meth:`Controller._leftovers_seen`), while the QoS holds too."""
        return self._failed_nodes_or_pending()[0]

    def _failed_nodes_or_pending(self) -> tuple[list[str], CycleOutcome | None]:
        """:meth:`Controller.failed_nodes_with_pods`, with the blind outcome of a clean-up of leftovers that failed (its
        record already written): the cycle ends there, it neither resumes nor counts a second blind record."""
        snapshot, pending = self._read_cleaned()
        return _failed_nodes_with_pods(snapshot), pending

    def monitoring_step(self) -> list[CycleOutcome]:
        """Act only while the latency exceeds the QoS threshold; an unknown latency means no action.

        A failed node's pods are the exception: they are moved off whatever the latency (the node's
        state is read from the API, not guessed), so a cycle runs while a NotReady node holds pods;
        while the latency is unknown or within the QoS, that cycle makes evacuations only. A cluster
        that cannot be read is a blind cycle, whatever the latency.
        """
        try:
            failed, pending = self._failed_nodes_or_pending()
        except Exception as exc:
            return [self._unreadable(exc, "cannot read the cluster")]
        if pending is not None:
            return [pending]
        if failed:
            self.journal.record("node-failure", nodes=failed)
            return self.run_cycle(self._evacuations_only())
        if self.latency is not None:
            reading = self.latency()
            if reading.value_ms is None:
                return [self._blind(reading.problem or LATENCY_UNKNOWN, reading.detail)]
            if reading.value_ms <= self.settings.qos_threshold_ms:
                self._seeing()
                self.journal.record("qos-met", latency_ms=reading.value_ms, threshold_ms=self.settings.qos_threshold_ms)
                return [CycleOutcome("skipped", "QoS met")]
        outcomes = self.run_cycle()
        if not any(o.blind for o in outcomes):
            self._seeing()
        return outcomes

    def _evacuations_only(self) -> EvacuationsOnly | None:
        """Whether a failed node's cycle may also make regular moves: only when the latency is known and above QoS."""
        if self.latency is None:
            return None
        reading = self.latency()
        if reading.value_ms is None:
            return EvacuationsOnly(
                reading.problem or LATENCY_UNKNOWN,
                f"only evacuations while the latency is unknown ({reading.detail})",
            )
        if reading.value_ms <= self.settings.qos_threshold_ms:
            return EvacuationsOnly(None, f"only evacuations while the QoS holds ({reading.value_ms:.1f} ms)")
        return None

    def run_episode(self) -> list[CycleOutcome]:
        """REACH's test mode: one move per step until stop, refusal, failure, a blind step or the step cap.

        The latency's value does not gate a step (it is recorded before and after, as REACH's test mode
        does), but with a latency source configured a step whose latency is unknown (Prometheus down,
        empty, stale) is blind with the reading's problem and ends the episode: nothing moves unseen.
        """
        outcomes: list[CycleOutcome] = []
        path = Path(self.settings.episode_csv)
        new_file = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new_file:
                writer.writerow(["time", "step", "outcome", "pod", "target", "latency_before_ms", "latency_after_ms"])
            for step in range(1, self.settings.episode_max_steps + 1):
                reading = self.latency() if self.latency is not None else None
                before = reading.value_ms if reading is not None else None
                if reading is not None and before is None:
                    outcome = self._blind(reading.problem or LATENCY_UNKNOWN, f"episode step {step}: {reading.detail}")
                else:
                    outcome = self._lead() or self._clean_up_if_due() or self._decide_and_act(0)
                after = self.latency_ms()
                move = outcome.verdict.move if outcome.verdict else (outcome.result.move if outcome.result else None)
                writer.writerow([
                    f"{time.time():.3f}", step, outcome.kind, move.pod_name if move else "",
                    move.target_node if move else "", _csv_float(before), _csv_float(after),
                ])  # fmt: skip
                outcomes.append(outcome)
                if outcome.kind != "migrated" or outcome.blind:
                    break
        return outcomes

    def record_distribution(self) -> dict[str, dict[str, int]]:
        table = {s: dict(n) for s, n in pods_per_node(self.ops.snapshot(), self.rules).items()}
        path = Path(self.settings.distribution_csv)
        new_file = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new_file:
                writer.writerow(["time", "service", "node", "pods"])
            now = f"{time.time():.3f}"
            for service, nodes in sorted(table.items()):
                for node, count in sorted(nodes.items()):
                    writer.writerow([now, service, node, count])
        self.journal.record("pod-distribution", table=table)
        return table

    def _mode_step(self) -> None:
        if self.settings.mode is Mode.POD_DISTRIBUTION:
            self.record_distribution()
        elif self.settings.mode is Mode.EPISODE:
            self.run_episode()
        else:
            self.monitoring_step()

    def run(self, should_stop: Callable[[], bool] = lambda: False, interrupt: Callable[[], bool] | None = None) -> bool:
        """Clean up, then run the configured mode once or every ``interval_s`` until told to stop.

        Nothing ends the loop but the stop signal (or ``once``): a start-up clean-up that cannot
        reach the cluster is retried before the next migration, and an unexpected error in a step
        is a ``cycle-failed`` blind cycle, logged and counted. With a ``lease``, a turn runs only while
        this migrator holds it (the start-up clean-up too: another live migrator's cordons are not
        leftovers); between turns the Lease is renewed, and a standby asks again every
        :meth:`Controller.standby_poll_s`. ``once`` waits for the Lease up to twice its duration (a
        holder that stopped renewing lets go by then). The Lease is released on return.

        ``should_stop`` is asked once after every turn; ``interrupt`` (the stop signal's flag in
        :func:`migrator.app.run_migrator`) is also asked every :data:`STOP_CHECK_S` of the wait between turns,
        so a stop ends the wait (and releases the Lease) before a supervisor's SIGKILL.
        Returns False only for ``once`` when no turn ran (another migrator kept the Lease), else True (a
        long-running standby that is told to stop included).
        """
        self._say_starting()
        waited_s = 0.0
        try:
            while True:
                ran = False
                try:
                    not_leading = self._lead()
                    ran = not_leading is None or not_leading.kind != "standby"  # a blind turn is a turn, as before
                    if not_leading is None:
                        if not self.started_up:
                            self._start_up()
                        if self._clean_up_if_due() is None:  # leftovers left: no mode step (the cycle is blind)
                            self._mode_step()
                except Exception as exc:  # never let one bad cycle end the controller
                    self._blind(CYCLE_FAILED, f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
                self._cycle_ended()
                gave_up = not ran and waited_s >= self._once_wait_s()
                if should_stop() or (self.settings.once and (ran or gave_up)):
                    self._clean_up_before_exit()
                    return ran or not self.settings.once  # a standby told to stop did what it should
                pause_s = self.settings.interval_s if ran else self.standby_poll_s()
                waited_s = 0.0 if ran else waited_s + pause_s
                self._pause(pause_s, interrupt or (lambda: False))
        finally:
            self._release_lease()

    def _start_up(self) -> None:
        """The start-up clean-up (:meth:`Controller.clean_up`); one that fails is retried before the next migration."""
        self.started_up = True
        try:
            self.clean_up()
        except Exception as exc:
            self.cleanup_due = True
            self._blind(LEFTOVERS_NOT_CLEANED, f"start-up clean-up failed, retried before the next migration: {exc}")

    def standby_poll_s(self) -> float:
        """How often a standby asks for the Lease again: every turn, or a quarter of the Lease's duration if sooner."""
        if self.lease is None:
            return self.settings.interval_s
        return min(self.settings.interval_s, self.lease.duration_s / 4)

    def _once_wait_s(self) -> float:
        return 0.0 if self.lease is None else 2 * self.lease.duration_s

    def _pause(self, seconds: float, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Sleep between turns, in steps of at most :data:`STOP_CHECK_S` so that a stop signal ends the wait (the
        Lease is released before a supervisor's SIGKILL); a leader renews its Lease every third of its duration."""
        renew_every_s = self.lease.duration_s / 3 if self.lease is not None and self.leading else math.inf
        since_renewal_s, left = 0.0, seconds
        while left > 0 and not should_stop():
            chunk = min(left, STOP_CHECK_S, renew_every_s - since_renewal_s)
            self.clock.sleep(chunk)
            left -= chunk
            since_renewal_s += chunk
            if since_renewal_s >= renew_every_s and left > 0:
                since_renewal_s = 0.0
                self._lead()

    def _release_lease(self) -> None:
        """Give the Lease up on the way out (best effort: otherwise it expires by itself), so a standby takes over."""
        if self.lease is not None and self.lease.release():
            self.journal.record("lease-released", lease=self.lease.store.where, identity=self.lease.identity)
        self.leading = False

    def _say_starting(self) -> None:
        """One log line at start with the limit an operator must know: one live migrator per cluster, by the Lease or
        by the operator's care (a log line only, not a journal record: nothing happened yet)."""
        s = self.settings
        starting = {"event": "starting", "time": round(time.time(), 3), "mode": str(s.mode), "dry_run": s.dry_run}
        limit = ONE_MIGRATOR_PER_CLUSTER
        if self.lease is not None and not s.dry_run:
            limit = ONE_MIGRATOR_BY_LEASE.format(where=self.lease.store.where)
        LOGGER.info(json.dumps({**starting, "namespace": s.namespace, "limit": limit}))

    def _clean_up_before_exit(self) -> None:
        """The last turn left leftovers (cordons that could not be lifted, a rollback's marks): try once more now,
        since no next cycle will. That turn already wrote its ``blind`` record (and count); a failure here is
        logged as ``leftovers-left`` so the log says what stays behind."""
        if not self.cleanup_due:
            return
        if self._lead() is not None:  # another migrator holds the Lease now: the marks may be its migration's
            self.journal.record(
                "leftovers-left", reason=LEFTOVERS_NOT_CLEANED, action="none",
                detail="exiting with leftovers, not cleaned up: this migrator does not hold the Lease (the holder "
                "cleans them up)",
            )  # fmt: skip
            return
        try:
            self.clean_up()
        except Exception as exc:
            self.journal.record(
                "leftovers-left", reason=LEFTOVERS_NOT_CLEANED, action="none",
                detail=f"exiting with leftovers; the next start cleans them up: {exc}",
            )  # fmt: skip
            return
        self.cleanup_due = False

    def _cycle_ended(self) -> None:
        """One turn of :meth:`Controller.run` is over, whatever it did (a blind turn included); telemetry stamps it."""


def _failed_nodes_with_pods(snapshot: ClusterSnapshot) -> list[str]:
    """NotReady nodes that still hold (non-terminating) application pods."""
    hosting = {p.node_name for p in snapshot.app_pods if p.node_name and not p.terminating}
    return sorted(n.name for n in snapshot.nodes if not n.ready and n.name in hosting)


def _csv_float(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
