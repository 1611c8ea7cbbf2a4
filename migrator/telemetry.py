"""The migrator's own Prometheus metrics: migrations by result, refusals and blind cycles by reason, decision latency, loop duration.

Published on 127.0.0.1 (``metrics_host``: the pod's IP in a cluster) when ``metrics_port`` is set
(``reach migrate --metrics-port``, ``reach demo``) and read by the Grafana dashboard and alert rules in ``deploy/observability/``. Nothing in the
controller changes: :class:`MeteredJournal` counts the structured records the controller already
writes, :class:`TimedAdvisor` times each policy question, and :class:`InstrumentedController` times
each cycle of a mode. Uses ``prometheus_client`` (the exporter side), never ``prometheus_api_client``
(the query side, :mod:`migrator.metrics`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ceenv.schema import ActionRequest
from migrator.controller import BLIND_REASONS, Controller, CycleOutcome, Journal, PolicyAdvisor
from migrator.guards import Refusal
from migrator.policy import Advice, NoAdvice, Stop

LOOPBACK = "127.0.0.1"
RESULT_EVENTS = {"migrated": "migrated", "rolled-back": "rolled-back", "abandoned": "abandoned"}
# Every value of reach_migrator_migrations_total{result}: "-incomplete" when the migration left leftovers (an
# abandoned one always leaves its marks for the clean-up, and is counted as "abandoned").
MIGRATION_RESULTS = ("migrated", "migrated-incomplete", "rolled-back", "rolled-back-incomplete", "abandoned")
# Records after which this migrator does not hold the cluster's Lease (reach_migrator_lease_held 0).
LEASE_GONE_EVENTS = ("standby", "leadership-lost", "lease-released")
T = TypeVar("T")


class MigratorTelemetry:
    """The metric objects, in a registry of their own (so tests and two migrators never collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.migrations = Counter(
            "reach_migrator_migrations", "Migrations carried out, by result (migrated, rolled-back, "
            "rolled-back-incomplete: a rollback left marks that the next cycle cleans up, migrated-incomplete: "
            "moved, but cordons that could not be lifted were left for the clean-up, abandoned: the Lease was lost "
            "before the commit point, so nothing more was written and the Lease holder's clean-up rolls it back).",
            ["result"], registry=self.registry,
        )  # fmt: skip
        self.refusals = Counter(
            "reach_migrator_refusals", "Moves the guards refused, by reason (docs/migrator.md).",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self.blind_cycles = Counter(
            "reach_migrator_blind_cycles", "Cycles that moved nothing because the migrator could not observe "
            "(latency or cluster) or could not check the policy's answer, by reason (docs/migrator.md).",
            ["reason"], registry=self.registry,
        )  # fmt: skip
        self.decisions = Counter(
            "reach_migrator_decisions", "Answers per policy question (stop, no-advice, move).",
            ["kind"], registry=self.registry,
        )  # fmt: skip
        self.decision_seconds = Histogram(
            "reach_migrator_decision_seconds", "Time to get the policy's answer (retries included), seconds.",
            registry=self.registry, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip
        self.loop_seconds = Histogram(
            "reach_migrator_loop_seconds", "Duration of one cycle of the migrator's mode (migration included), seconds.",
            registry=self.registry, buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60, 120),
        )  # fmt: skip
        self.last_cycle = Gauge(
            "reach_migrator_last_cycle_timestamp_seconds", "Unix time when the last cycle ended.",
            registry=self.registry,
        )  # fmt: skip

        self.lease_held = Gauge(
            "reach_migrator_lease_held", "1 while this migrator holds the cluster's migrator Lease and may write; 0 "
            "while it stands by, lost it, or runs without leader election (dry run, leader_election off).",
            registry=self.registry,
        )  # fmt: skip
        self.standby_turns = Counter(
            "reach_migrator_standby_turns", "Turns that did nothing because another migrator held the cluster's Lease.",
            registry=self.registry,
        )  # fmt: skip

        for reason in Refusal:  # every reason is a series from the start (0 until it happens)
            self.refusals.labels(reason=reason.value)
        for blind_reason in BLIND_REASONS:
            self.blind_cycles.labels(reason=blind_reason)
        for result in MIGRATION_RESULTS:  # so that increase() in the alerts sees the first one too
            self.migrations.labels(result=result)

    def serve(self, port: int, host: str = LOOPBACK) -> Any:
        """Publish the registry on http://<host>:<port>/metrics (loopback by default); ``shutdown()`` stops it."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server

    def observe_record(self, entry: dict[str, object]) -> None:
        event = str(entry.get("event", ""))
        if event in RESULT_EVENTS:
            result = RESULT_EVENTS[event] + ("-incomplete" if entry.get("leftovers") and event != "abandoned" else "")
            self.migrations.labels(result=result).inc()
        elif event == "refused":
            self.refusals.labels(reason=str(entry.get("reason") or "unknown")).inc()
        elif event == "blind":
            self.blind_cycles.labels(reason=str(entry.get("reason") or "unknown")).inc()
        elif event == "leading":
            self.lease_held.set(1)
        elif event in LEASE_GONE_EVENTS:
            self.lease_held.set(0)
            if event == "standby":
                self.standby_turns.inc()


@dataclass
class MeteredJournal(Journal):
    """The controller's journal, counting migrations and refusals as it records them."""

    telemetry: MigratorTelemetry | None = field(default=None, repr=False)

    def record(self, event: str, **fields: object) -> dict[str, object]:
        entry = super().record(event, **fields)
        if self.telemetry is not None:
            self.telemetry.observe_record(entry)
        return entry


@dataclass
class TimedAdvisor:
    """A policy advisor that times every question and counts the kind of answer."""

    advisor: PolicyAdvisor
    telemetry: MigratorTelemetry

    def ask(self, request: ActionRequest) -> Advice:
        started = time.perf_counter()
        advice = self.advisor.ask(request)
        self.telemetry.decision_seconds.observe(time.perf_counter() - started)
        self.telemetry.decisions.labels(kind=_advice_kind(advice)).inc()
        return advice


def _advice_kind(advice: Advice) -> str:
    if isinstance(advice, Stop):
        return "stop"
    return "no-advice" if isinstance(advice, NoAdvice) else "move"


@dataclass
class InstrumentedController(Controller):
    """A :class:`Controller` whose mode cycles are timed into ``reach_migrator_loop_seconds``."""

    telemetry: MigratorTelemetry = field(default_factory=MigratorTelemetry)

    def _timed(self, step: Callable[[], T]) -> T:
        started = time.perf_counter()
        try:
            return step()
        finally:
            self.telemetry.loop_seconds.observe(time.perf_counter() - started)
            self.telemetry.last_cycle.set(time.time())

    def _cycle_ended(self) -> None:
        # Every turn of the loop, a blind one included (leftovers not cleaned: no mode step runs), so that
        # ReachMigratorStalled means a loop that stopped turning, not one that turns blind (ReachMigratorBlind).
        self.telemetry.last_cycle.set(time.time())

    def monitoring_step(self) -> list[CycleOutcome]:
        return self._timed(super().monitoring_step)

    def run_episode(self) -> list[CycleOutcome]:
        return self._timed(super().run_episode)

    def record_distribution(self) -> dict[str, dict[str, int]]:
        return self._timed(super().record_distribution)
