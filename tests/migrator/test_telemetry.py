"""The migrator's own metrics: counted from its records, timed around its questions and cycles."""

from __future__ import annotations

from typing import Any

from migrator.policy import NoAdvice, Stop
from migrator.telemetry import MeteredJournal, MigratorTelemetry, TimedAdvisor


def value(telemetry: MigratorTelemetry, name: str, **labels: str) -> float:
    sample = telemetry.registry.get_sample_value(name, labels or None)
    return sample if sample is not None else 0.0


def test_migrations_and_refusals_are_counted_from_the_journal() -> None:
    telemetry = MigratorTelemetry()
    journal = MeteredJournal(telemetry=telemetry)
    journal.record("migrated", pod="a", target="n")
    journal.record("rolled-back", pod="b", target="n")
    journal.record("refused", pod="c", target="n", reason="pdb-blocks")
    journal.record("policy-stop")
    assert value(telemetry, "reach_migrator_migrations_total", result="migrated") == 1
    assert value(telemetry, "reach_migrator_migrations_total", result="rolled-back") == 1
    assert value(telemetry, "reach_migrator_refusals_total", reason="pdb-blocks") == 1
    assert [r["event"] for r in journal.records] == ["migrated", "rolled-back", "refused", "policy-stop"]


class Scripted:
    def __init__(self, answers: list[Any]):
        self.answers = answers

    def ask(self, request: Any) -> Any:
        return self.answers.pop(0)


def test_every_policy_question_is_timed_and_its_answer_kind_counted() -> None:
    telemetry = MigratorTelemetry()
    advisor = TimedAdvisor(Scripted([Stop(), NoAdvice("down", True)]), telemetry)
    advisor.ask(None)  # type: ignore[arg-type]
    advisor.ask(None)  # type: ignore[arg-type]
    assert value(telemetry, "reach_migrator_decision_seconds_count") == 2
    assert value(telemetry, "reach_migrator_decisions_total", kind="stop") == 1
    assert value(telemetry, "reach_migrator_decisions_total", kind="no-advice") == 1


def test_the_metrics_are_served_on_loopback_only() -> None:
    import urllib.request

    from flows.local.processes import free_port

    telemetry = MigratorTelemetry()
    port = free_port()
    server = telemetry.serve(port)
    try:
        assert server.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert b"reach_migrator_loop_seconds" in response.read()
    finally:
        server.shutdown()
        server.server_close()


def test_every_refusal_and_blind_reason_is_a_series_from_the_start() -> None:
    from migrator.controller import BLIND_REASONS, LATENCY_PROBLEMS
    from migrator.guards import Refusal
    from migrator.metrics import EMPTY, NOT_A_NUMBER, STALE, UNREACHABLE

    telemetry = MigratorTelemetry()
    for reason in Refusal:
        assert telemetry.registry.get_sample_value("reach_migrator_refusals_total", {"reason": reason.value}) == 0
    for reason in BLIND_REASONS:
        assert telemetry.registry.get_sample_value("reach_migrator_blind_cycles_total", {"reason": reason}) == 0
    assert {UNREACHABLE, EMPTY, NOT_A_NUMBER, STALE} == set(LATENCY_PROBLEMS)


def test_a_loop_that_turns_blind_is_not_stalled_its_last_cycle_time_moves_on(tmp_path: Any) -> None:
    """Leftovers that cannot be cleaned make every turn blind (no mode step runs); the loop still turns.

    ReachMigratorStalled (``time() - reach_migrator_last_cycle_timestamp_seconds > 300``) is for a loop
    that stopped turning; a blind one has ReachMigratorBlind with its reason.
    """
    from migrator.settings import MigratorSettings
    from migrator.telemetry import InstrumentedController

    from .builders import node
    from .fake_cluster import FakeClock, FakeCluster

    cluster = FakeCluster({"cloud-1": node("cloud-1", "cloud")})

    def unreadable() -> object:
        raise ConnectionError("API server away")

    cluster.snapshot = unreadable  # type: ignore[assignment, method-assign]
    telemetry = MigratorTelemetry()
    settings = MigratorSettings(_env_file=None, episode_csv=str(tmp_path / "e.csv"))  # type: ignore[call-arg]
    controller = InstrumentedController(
        settings, cluster, None, FakeClock(cluster), journal=MeteredJournal(telemetry=telemetry), telemetry=telemetry,  # type: ignore[arg-type]
    )  # fmt: skip
    turns = iter(range(3))
    controller.run(should_stop=lambda: next(turns) == 2)
    assert value(telemetry, "reach_migrator_blind_cycles_total", reason="leftovers-not-cleaned") == 4
    assert value(telemetry, "reach_migrator_last_cycle_timestamp_seconds") > 0
