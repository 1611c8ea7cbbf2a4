"""Leftovers of a migration (review s15, findings 1, 5 and 6): cordons that cannot be lifted, and who says so.

A failed lift after the bind is retried within the migration for a few seconds; if it still fails,
the cycle is blind at once (``leftovers-not-cleaned``, counted), the clean-up runs again before
``run`` returns with ``once``, the result ``migrated-incomplete`` has a series, a help text and an
alert. A clean-up that fails in the failed-node check is one blind record, never followed by
``resumed`` or a second count. The controller says at start that it must be the only live migrator.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from ceenv.schema import ActionRequest
from migrator.actuator import LIFT_RETRY_S, Actuator
from migrator.controller import Controller
from migrator.guards import Move
from migrator.policy import Advice, Stop
from migrator.snapshot import TAINT_TEMPORARY_CORDON, LatencyReading, Taint
from migrator.telemetry import MigratorTelemetry

from .fake_cluster import FakeClock
from .review_s15_support import controller_for, small_cluster

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "observability" / "alerts.yml"


class MoveOnce:
    """Moves the db pod to ``target`` on the first question, then says stop."""

    def __init__(self, target: str = "cloud-2"):
        self.target, self.asked = target, 0

    def ask(self, request: ActionRequest) -> Advice:
        self.asked += 1
        if self.asked > 1:
            return Stop()
        return Move(request.cluster_state.services["db"].pods[0].pod_name, self.target)


def count(telemetry: MigratorTelemetry, name: str, **labels: str) -> float:
    return telemetry.registry.get_sample_value(name, labels) or 0.0


def events(controller: Controller) -> list[object]:
    return [r["event"] for r in controller.journal.records]


# ---- finding 1: a lift that fails after the bind ------------------------------------------------
def test_a_lift_that_fails_for_a_moment_after_the_bind_is_retried_within_the_migration() -> None:
    cluster = small_cluster()
    clock = FakeClock(cluster)
    actuator = Actuator(cluster, clock, deadline_s=5.0, poll_s=0.1, settle_s=5.0)
    lift, tries = cluster.lift_cordon, []

    def fails_twice(names: Sequence[str] | None, migration_id: str | None) -> None:
        tries.append(clock.now)
        if len(tries) <= 2:
            raise ConnectionError("503 from the API server")
        lift(names, migration_id)

    cluster.lift_cordon = fails_twice  # type: ignore[method-assign, assignment]
    old = next(iter(cluster.pods))
    result = actuator.migrate(Move(old, "cloud-2"), cluster.snapshot())
    assert result.migrated and not result.leftovers, result.detail
    assert cluster.cordoned_nodes() == [] and len(tries) == 3
    assert result.cordon_window_s <= actuator.cordon_cap_s


def _lift_tries_of_a_migration_whose_lift_always_fails(cordon_cap_s: float) -> tuple[list[float], str]:
    cluster = small_cluster()
    clock = FakeClock(cluster)
    actuator = Actuator(cluster, clock, deadline_s=30.0, poll_s=0.1, settle_s=5.0, cordon_cap_s=cordon_cap_s)
    tries: list[float] = []

    def always_fails(names: Sequence[str] | None, migration_id: str | None) -> None:
        tries.append(clock.now)
        raise ConnectionError("503 from the API server")

    cluster.lift_cordon = always_fails  # type: ignore[method-assign, assignment]
    result = actuator.migrate(Move(next(iter(cluster.pods)), "cloud-2"), cluster.snapshot())
    assert result.migrated and result.leftovers and "cordons not all lifted" in result.detail
    return tries, result.detail


@pytest.mark.parametrize("cordon_cap_s", [20.0, 0.5])
def test_the_retries_of_the_lift_are_bounded_by_the_cordon_cap_and_a_few_seconds(cordon_cap_s: float) -> None:
    tries, detail = _lift_tries_of_a_migration_whose_lift_always_fails(cordon_cap_s)
    assert len(tries) > 1 and tries[-1] - tries[0] <= min(cordon_cap_s, LIFT_RETRY_S), tries
    assert f"{len(tries)} tries" in detail


def test_cordons_left_after_the_retries_are_a_blind_record_at_once_and_cleaned_up_before_a_once_run_returns(
    tmp_path: Path,
) -> None:
    """Before: with once=True every node but the target stayed cordoned after the process exited."""
    cluster = small_cluster()
    lift = cluster.lift_cordon

    def migration_lift_fails(names: Sequence[str] | None, migration_id: str | None) -> None:
        if migration_id is not None:  # the lift of the migration itself; the clean-up lifts every cordon of ours
            raise ConnectionError("503 from the API server")
        lift(names, migration_id)

    cluster.lift_cordon = migration_lift_fails  # type: ignore[method-assign, assignment]
    controller, telemetry = controller_for(cluster, MoveOnce(), tmp_path, once=True)
    controller.run()
    assert events(controller) == ["cleanup", "migrating", "migrated", "blind", "cleanup"], events(controller)
    blind = controller.journal.records[3]
    assert blind["reason"] == "leftovers-not-cleaned" and "cordons not all lifted" in str(blind["detail"])
    assert cluster.cordoned_nodes() == [] and not controller.cleanup_due
    assert count(telemetry, "reach_migrator_migrations_total", result="migrated-incomplete") == 1
    assert count(telemetry, "reach_migrator_blind_cycles_total", reason="leftovers-not-cleaned") == 1


def test_a_clean_up_that_still_fails_when_a_once_run_ends_is_logged_without_a_second_count(tmp_path: Path) -> None:
    cluster = small_cluster()

    def always_fails(names: Sequence[str] | None, migration_id: str | None) -> None:
        raise ConnectionError("503 from the API server")

    cluster.lift_cordon = always_fails  # type: ignore[method-assign, assignment]
    controller, telemetry = controller_for(cluster, MoveOnce(), tmp_path, once=True)
    controller.run()
    assert events(controller) == ["cleanup", "migrating", "migrated", "blind", "leftovers-left"], events(controller)
    assert controller.cleanup_due and cluster.cordoned_nodes()
    assert count(telemetry, "reach_migrator_blind_cycles_total", reason="leftovers-not-cleaned") == 1


def test_a_migration_that_left_cordons_ends_its_monitoring_cycle_blind(tmp_path: Path) -> None:
    cluster = small_cluster()

    def always_fails(names: Sequence[str] | None, migration_id: str | None) -> None:
        raise ConnectionError("503 from the API server")

    cluster.lift_cordon = always_fails  # type: ignore[method-assign, assignment]
    policy = MoveOnce()
    controller, _ = controller_for(cluster, policy, tmp_path, max_migrations_per_cycle=3)
    [outcome] = controller.monitoring_step()
    assert outcome.kind == "migrated" and outcome.blind and policy.asked == 1
    assert "resumed" not in events(controller) and controller.cleanup_due


def test_migrated_incomplete_is_a_series_from_the_start_and_named_in_the_help() -> None:
    from prometheus_client import generate_latest

    text = generate_latest(MigratorTelemetry().registry).decode()
    assert 'reach_migrator_migrations_total{result="migrated-incomplete"} 0.0' in text
    help_line = next(line for line in text.splitlines() if line.startswith("# HELP reach_migrator_migrations_total"))
    assert "migrated-incomplete" in help_line


def test_an_alert_fires_on_a_migration_that_left_cordons(tmp_path: Path) -> None:
    """Before: result migrated-incomplete matched no alert expression."""
    import yaml

    binary = shutil.which("promtool")
    if binary is None:
        if os.environ.get("REACH_REQUIRE_CLUSTER"):
            pytest.fail("REACH_REQUIRE_CLUSTER is set but promtool is not on PATH: sudo apt-get install prometheus")
        pytest.skip("promtool is not on PATH: install it with `sudo apt-get install prometheus`")
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    matching = [r for r in rules if "migrated-incomplete" in r["expr"]]
    assert len(matching) == 1, "one alert for a migration that left cordons"
    rule = matching[0]
    labels = {"result": "migrated-incomplete", "job": "reach-migrator", "instance": "127.0.0.1:9465"}
    series = "reach_migrator_migrations_total{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    fired = {
        "exp_labels": {**rule["labels"], **labels},
        "exp_annotations": {
            "summary": rule["annotations"]["summary"].replace('{{ $value | printf "%.0f" }}', "1"),
            "description": rule["annotations"]["description"],
        },
    }
    test = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": series, "values": "0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1"}],
            "alert_rule_test": [
                {"eval_time": "5m", "alertname": rule["alert"], "exp_alerts": [fired]},
                {"eval_time": "16m", "alertname": rule["alert"], "exp_alerts": []},
            ],
        }],
    }  # fmt: skip
    (tmp_path / "t.yml").write_text(yaml.safe_dump(test))
    result = subprocess.run(
        [binary, "test", "rules", str(tmp_path / "t.yml")], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- finding 5: the failed-node check's clean-up -------------------------------------------------
@pytest.mark.parametrize("latency_ms", [100.0, 400.0])
def test_a_failed_clean_up_in_the_failed_node_check_is_one_blind_record_and_no_resumed(
    tmp_path: Path, latency_ms: float
) -> None:
    """Before: with the QoS met, 'blind' then 'resumed' and 'qos-met' in one cycle; above it, two blind counts."""
    cluster = small_cluster()
    cluster.nodes["cloud-2"] = replace(cluster.nodes["cloud-2"], taints=(Taint(TAINT_TEMPORARY_CORDON, "old"),))

    def fails(names: Sequence[str] | None, migration_id: str | None) -> None:
        raise RuntimeError("500 from the API server")

    cluster.lift_cordon = fails  # type: ignore[method-assign, assignment]
    controller, telemetry = controller_for(cluster, MoveOnce(), tmp_path)
    controller.latency = lambda: LatencyReading(latency_ms)
    [outcome] = controller.monitoring_step()
    assert outcome.kind == "blind" and "leftovers-not-cleaned" in outcome.detail
    assert events(controller) == ["blind"], events(controller)
    assert count(telemetry, "reach_migrator_blind_cycles_total", reason="leftovers-not-cleaned") == 1


# ---- finding 6: one live migrator per cluster -----------------------------------------------------
def test_the_controller_says_at_start_that_it_must_be_the_only_live_migrator_of_the_cluster(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    controller, _ = controller_for(small_cluster(), MoveOnce(), tmp_path, once=True, mode="pod-distribution",
                                   distribution_csv=str(tmp_path / "d.csv"))  # fmt: skip
    with caplog.at_level(logging.INFO, logger="reach.migrator"):
        controller.run()
    starting = [r.getMessage() for r in caplog.records if '"starting"' in r.getMessage()]
    assert starting and "one live migrator per cluster" in starting[0] and "dry_run" in starting[0]
