"""The migrator's control loop: clean up leftovers, then observe → ask the policy → guard → migrate.

``Controller`` wires the pure parts (observe, guards, actuator) to the injected I/O (``ops`` for
Kubernetes, ``policy`` for the policy service, ``latency`` for Prometheus) and runs one of three
modes: ``monitoring`` (act only while the measured latency exceeds the QoS threshold, like REACH's
250 ms), ``episode`` (REACH's test mode: migrate until the policy says stop, a refusal, or the step
cap, recording latency before and after each step to CSV) and ``pod-distribution`` (record pods per
node per service to CSV). Every decision, refusal and migration is a structured log record and,
when it concerns a pod, a Kubernetes Event on that pod. Errors reading the cluster skip the cycle.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ceenv.schema import ActionRequest
from migrator.actuator import Actuator, Clock, ClusterOps, MigrationResult
from migrator.aliases import AliasError, from_policy_name, node_aliases, to_policy_names
from migrator.guards import GuardLimits, MigrationLedger, Move, Verdict, check_move
from migrator.observe import FitRules, build_request, pods_per_node
from migrator.policy import Advice, NoAdvice, Stop
from migrator.settings import MigratorSettings, Mode
from migrator.snapshot import ClusterSnapshot

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


@dataclass(frozen=True)
class CycleOutcome:
    """What one cycle did: ``kind`` is stop, no-advice, refused, migrated, rolled-back or skipped."""

    kind: str
    detail: str = ""
    verdict: Verdict | None = None
    result: MigrationResult | None = None


@dataclass
class Controller:
    settings: MigratorSettings
    ops: ControllerOps
    policy: PolicyAdvisor
    clock: Clock
    latency_ms: Callable[[], float | None] = lambda: None
    journal: Journal = field(default_factory=Journal)
    ledger: MigrationLedger = field(default_factory=MigrationLedger)

    def __post_init__(self) -> None:
        s = self.settings
        self.rules = FitRules(layer_label=s.layer_label, client_layer=s.client_layer, service_label=s.service_label)
        self.limits = GuardLimits(
            max_migrations_per_cycle=s.max_migrations_per_cycle,
            max_migrations_per_window=s.max_migrations_per_window,
            window_s=s.window_s,
            pod_cooldown_s=s.pod_cooldown_s,
            dry_run=s.dry_run,
        )
        self.actuator = Actuator(self.ops, self.clock, deadline_s=s.migration_deadline_s, cordon_cap_s=s.cordon_cap_s)

    # ---- start --------------------------------------------------------------------------------
    def clean_up(self) -> list[str]:
        """Undo what a killed migrator left behind; always the first thing a migrator does."""
        if self.settings.dry_run:
            return []
        cleaned = self.actuator.clean_up_leftovers()
        self.journal.record("cleanup", cleaned=cleaned)
        return cleaned

    # ---- one decision -------------------------------------------------------------------------
    def run_cycle(self) -> list[CycleOutcome]:
        """Ask for and carry out up to ``max_migrations_per_cycle`` moves (at least one question)."""
        outcomes: list[CycleOutcome] = []
        for started in range(max(1, self.settings.max_migrations_per_cycle)):
            outcome = self._decide_and_act(started)
            outcomes.append(outcome)
            if outcome.kind != "migrated":
                break
        return outcomes

    def _decide_and_act(self, started_this_cycle: int) -> CycleOutcome:
        try:
            snapshot = self.ops.snapshot()
        except Exception as exc:  # the API server may be briefly away: skip the cycle, never crash
            self.journal.record("skipped", reason=f"cannot read the cluster: {exc}")
            return CycleOutcome("skipped", str(exc))
        request = build_request(snapshot, self.rules)
        try:
            advice = self._ask(snapshot, request)
        except AliasError as exc:  # a labelling mistake: no move until it is fixed
            self.journal.record("no-advice", reason=str(exc), temporary=False)
            return CycleOutcome("no-advice", str(exc))
        if isinstance(advice, Stop):
            self.journal.record("policy-stop")
            return CycleOutcome("stop")
        if isinstance(advice, NoAdvice):
            self.journal.record("no-advice", reason=advice.reason, temporary=advice.temporary)
            return CycleOutcome("no-advice", advice.reason)
        now_s = self.clock.now_s()
        verdict = check_move(advice, snapshot, request, self.ledger, self.limits, self.rules, now_s, started_this_cycle)
        if not verdict.allowed:
            return self._refuse(verdict, snapshot.app_pod(advice.pod_name) is not None)
        return self._act(advice, snapshot, now_s)

    def _ask(self, snapshot: ClusterSnapshot, request: ActionRequest) -> Advice:
        """Ask the policy, in the scenario's node names when ``node_name_label`` is set (migrator.aliases)."""
        label = self.settings.node_name_label
        if not label:
            return self.policy.ask(request)
        aliases = node_aliases(snapshot, label)
        advice = self.policy.ask(to_policy_names(request, aliases))
        if isinstance(advice, Move):
            return Move(advice.pod_name, from_policy_name(advice.target_node, aliases))
        return advice

    def _refuse(self, verdict: Verdict, pod_exists: bool) -> CycleOutcome:
        reason = verdict.reason.value if verdict.reason else ""
        move = verdict.move
        self.journal.record("refused", pod=move.pod_name, target=move.target_node, reason=reason, detail=verdict.detail)
        if pod_exists:
            message = f"migration to {move.target_node} refused ({reason}): {verdict.detail}"
            self.ops.emit_event(move.pod_name, "MigrationRefused", message, warning=reason != "dry-run")
        return CycleOutcome("refused", verdict.detail, verdict=verdict)

    def _act(self, move: Move, snapshot: ClusterSnapshot, now_s: float) -> CycleOutcome:
        source = snapshot.app_pod(move.pod_name)
        source_node = source.node_name if source else ""
        self.journal.record("migrating", pod=move.pod_name, source=source_node, target=move.target_node)
        result = self.actuator.migrate(move, snapshot)
        self.ledger.record(now_s, (move.pod_name, result.replacement_pod), self.limits.pod_cooldown_s)
        kind = "migrated" if result.migrated else "rolled-back"
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
            detail=result.detail,
        )
        reason = "Migrated" if result.migrated else "MigrationRolledBack"
        self.ops.emit_event(move.pod_name, reason, result.detail, warning=not result.migrated)
        if result.migrated and result.replacement_pod:
            self.ops.emit_event(result.replacement_pod, "MigrationReplacement", f"replaces {move.pod_name}")
        return CycleOutcome(kind, result.detail, result=result)

    # ---- modes --------------------------------------------------------------------------------
    def monitoring_step(self) -> list[CycleOutcome]:
        latency = self.latency_ms()
        if latency is not None and latency <= self.settings.qos_threshold_ms:
            self.journal.record("qos-met", latency_ms=latency, threshold_ms=self.settings.qos_threshold_ms)
            return [CycleOutcome("skipped", "QoS met")]
        return self.run_cycle()

    def run_episode(self) -> list[CycleOutcome]:
        """REACH's test mode: one move per step until stop, refusal, failure or the step cap."""
        outcomes: list[CycleOutcome] = []
        path = Path(self.settings.episode_csv)
        new_file = not path.exists()
        with path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new_file:
                writer.writerow(["time", "step", "outcome", "pod", "target", "latency_before_ms", "latency_after_ms"])
            for step in range(1, self.settings.episode_max_steps + 1):
                before = self.latency_ms()
                outcome = self._decide_and_act(0)
                after = self.latency_ms()
                move = outcome.verdict.move if outcome.verdict else (outcome.result.move if outcome.result else None)
                writer.writerow([
                    f"{time.time():.3f}", step, outcome.kind, move.pod_name if move else "",
                    move.target_node if move else "", _csv_float(before), _csv_float(after),
                ])  # fmt: skip
                outcomes.append(outcome)
                if outcome.kind != "migrated":
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

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Clean up, then run the configured mode once or every ``interval_s`` until told to stop."""
        self.clean_up()
        while True:
            if self.settings.mode is Mode.POD_DISTRIBUTION:
                self.record_distribution()
            elif self.settings.mode is Mode.EPISODE:
                self.run_episode()
            else:
                self.monitoring_step()
            if self.settings.once or should_stop():
                return
            self.clock.sleep(self.settings.interval_s)


def _csv_float(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"
