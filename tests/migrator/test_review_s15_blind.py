"""Never act blind (review s15, findings 2, 3, 4 and the unregistered reason): more places that must not move unseen.

An evacuations-only cycle re-checks on the fresh read that the move is still an evacuation; episode
mode with a latency source does not migrate while the latency is unknown; measured conditions whose
node labels match no listed node are unavailable, not silently dropped; a measurement query without
a Prometheus is refused when the settings are read; ``latency-unknown`` is a series from the start.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from ceenv.schema import ActionRequest, MeasuredConditions
from migrator.guards import Move
from migrator.observe import FitRules, build_request
from migrator.policy import Advice, Stop
from migrator.settings import MigratorSettings
from migrator.snapshot import LatencyReading, MeasurementUnavailable
from migrator.telemetry import MigratorTelemetry

from .builders import cluster, pod
from .fake_cluster import FakeCluster
from .review_s15_support import controller_for, small_cluster


def count(telemetry: MigratorTelemetry, reason: str) -> float:
    return telemetry.registry.get_sample_value("reach_migrator_blind_cycles_total", {"reason": reason}) or 0.0


# ---- finding 2: the evacuations-only limit on the fresh read ---------------------------------------
class NodeBackWhileAsked:
    """Moves the db pod to cloud-2; while it is asked, the pod's NotReady node comes back (Ready)."""

    def __init__(self, fake: FakeCluster):
        self.fake, self.asked = fake, 0

    def ask(self, request: ActionRequest) -> Advice:
        self.asked += 1
        if self.asked > 1:
            return Stop()
        name = request.cluster_state.services["db"].pods[0].pod_name
        self.meanwhile(name)
        return Move(name, "cloud-2")

    def meanwhile(self, pod_name: str) -> None:
        self.fake.nodes["cloud-1"] = replace(self.fake.nodes["cloud-1"], ready=True)


def test_an_evacuation_that_is_a_regular_move_on_the_fresh_read_is_not_made_while_the_latency_is_unknown(
    tmp_path: Path,
) -> None:
    """Before: the node was Ready again on the fresh read and the pod moved as an ordinary move, blind."""
    fake = small_cluster()
    fake.nodes["cloud-1"] = replace(fake.nodes["cloud-1"], ready=False)
    before = {name: p.node_name for name, p in fake.pods.items()}
    controller, telemetry = controller_for(fake, NodeBackWhileAsked(fake), tmp_path)
    controller.latency = lambda: LatencyReading(None, "prometheus-unreachable", "Prometheus down")
    [outcome] = controller.monitoring_step()
    assert outcome.kind == "blind" and "not an evacuation any more" in outcome.detail, outcome
    assert {name: p.node_name for name, p in fake.pods.items()} == before
    assert "migrating" not in [r["event"] for r in controller.journal.records]
    assert count(telemetry, "prometheus-unreachable") == 1


def test_an_evacuation_that_is_a_regular_move_on_the_fresh_read_is_skipped_while_the_qos_holds(tmp_path: Path) -> None:
    fake = small_cluster()
    fake.nodes["cloud-1"] = replace(fake.nodes["cloud-1"], ready=False)
    before = {name: p.node_name for name, p in fake.pods.items()}
    controller, _ = controller_for(fake, NodeBackWhileAsked(fake), tmp_path)
    controller.latency = lambda: LatencyReading(100.0)
    [outcome] = controller.monitoring_step()
    assert outcome.kind == "skipped" and not outcome.blind and "only evacuations while the QoS holds" in outcome.detail
    assert controller.journal.records[-1]["event"] == "not-evacuation"
    assert {name: p.node_name for name, p in fake.pods.items()} == before


def test_an_evacuation_still_happens_when_the_node_stays_not_ready(tmp_path: Path) -> None:
    fake = small_cluster()
    fake.nodes["cloud-1"] = replace(fake.nodes["cloud-1"], ready=False)
    old = next(iter(fake.pods))

    class Evacuate:
        def ask(self, request: ActionRequest) -> Advice:
            return Move(old, "cloud-2") if old in fake.pods else Stop()

    controller, _ = controller_for(fake, Evacuate(), tmp_path)
    controller.latency = lambda: LatencyReading(None, "prometheus-unreachable", "Prometheus down")
    outcomes = controller.monitoring_step()
    assert outcomes[0].kind == "migrated" and old not in fake.pods


# ---- finding 3: episode mode and an unknown latency ----------------------------------------------
def test_an_episode_with_a_latency_source_does_not_migrate_while_the_latency_is_unknown(tmp_path: Path) -> None:
    """Before: the episode migrated with empty latency columns while Prometheus was down."""
    fake = small_cluster()
    before = dict(fake.pods)

    class Mover:
        asked = 0

        def ask(self, request: ActionRequest) -> Advice:
            self.asked += 1
            return Move(request.cluster_state.services["db"].pods[0].pod_name, "cloud-2")

    policy = Mover()
    controller, telemetry = controller_for(fake, policy, tmp_path, mode="episode")
    controller.latency = lambda: LatencyReading(None, "prometheus-unreachable", "Prometheus at x: refused")
    [outcome] = controller.run_episode()
    assert outcome.kind == "blind" and outcome.blind and policy.asked == 0 and fake.pods == before
    assert count(telemetry, "prometheus-unreachable") == 1
    [row] = list(csv.DictReader((tmp_path / "e.csv").open()))
    assert row["outcome"] == "blind" and row["pod"] == ""


def test_an_episode_without_a_latency_source_still_migrates(tmp_path: Path) -> None:
    fake = small_cluster()

    class MoveThenStop:
        asked = 0

        def ask(self, request: ActionRequest) -> Advice:
            self.asked += 1
            return Move(request.cluster_state.services["db"].pods[0].pod_name, "cloud-2") if self.asked == 1 else Stop()

    controller, _ = controller_for(fake, MoveThenStop(), tmp_path, mode="episode")
    assert [o.kind for o in controller.run_episode()] == ["migrated", "stop"]


# ---- finding 4: measured conditions that match no listed node --------------------------------------
def test_measured_delays_labelled_with_no_listed_node_are_unavailable_not_dropped() -> None:
    """Before: the block became None and the policy decided on the nominal network, not counted as blind."""
    snap = cluster(pod("db-1", "db", "cloud-1"))
    by_ip = MeasuredConditions(node_delay_ms={"10.0.0.1": {"10.0.0.2": 40.0}}, node_utilization={"10.0.0.1": 0.5})
    with pytest.raises(MeasurementUnavailable, match=r"measured_delay_query.*10\.0\.0\.1, 10\.0\.0\.2"):
        build_request(snap, FitRules(), by_ip)


def test_a_delay_block_whose_targets_match_no_listed_node_is_unavailable_even_with_utilisation_left() -> None:
    snap = cluster(pod("db-1", "db", "cloud-1"))
    partial = MeasuredConditions(node_delay_ms={"cloud-1": {"edge-9": 40.0}}, node_utilization={"cloud-1": 0.5})
    with pytest.raises(MeasurementUnavailable, match=r"measured_delay_query.*edge-9"):
        build_request(snap, FitRules(), partial)


def test_the_unmatched_labels_in_the_message_are_cut_to_ten() -> None:
    snap = cluster(pod("db-1", "db", "cloud-1"))
    many = MeasuredConditions(node_utilization={f"10.0.0.{i:02d}": 0.1 for i in range(25)})
    with pytest.raises(MeasurementUnavailable) as caught:
        build_request(snap, FitRules(), many)
    message = str(caught.value)
    assert "node_utilization_query" in message and "10.0.0.09" in message and "10.0.0.10" not in message
    assert "and 15 more" in message


def test_measurements_that_match_some_listed_nodes_are_kept() -> None:
    snap = cluster(pod("db-1", "db", "cloud-1"))
    some = MeasuredConditions(
        node_delay_ms={"cloud-1": {"edge-1": 40.0, "x": 1.0}}, node_utilization={"x": 0.5, "cloud-2": 0.2}
    )
    measured = build_request(snap, FitRules(), some).measured
    assert measured is not None and measured.node_delay_ms == {"cloud-1": {"edge-1": 40.0}}
    assert measured.node_utilization == {"cloud-2": 0.2}


def test_unmatched_measurements_make_the_cycle_blind_and_the_policy_is_not_asked(tmp_path: Path) -> None:
    fake = small_cluster()

    class Counting:
        asked = 0

        def ask(self, request: ActionRequest) -> Advice:
            self.asked += 1
            return Stop()

    policy = Counting()
    controller, telemetry = controller_for(fake, policy, tmp_path)
    controller.measured_conditions = lambda: MeasuredConditions(node_utilization={"10.0.0.1": 0.5})
    [outcome] = controller.run_cycle()
    assert outcome.kind == "blind" and policy.asked == 0 and count(telemetry, "measurement-unavailable") == 1


@pytest.mark.parametrize("query", ["measured_delay_query", "node_utilization_query"])
def test_a_measurement_query_without_a_prometheus_url_is_refused_naming_the_variable(query: str) -> None:
    with pytest.raises(
        ValidationError, match=rf"{query} is set but prometheus_url is not.*REACH_MIGRATOR_PROMETHEUS_URL"
    ):
        MigratorSettings(_env_file=None, **{query: "q"})  # type: ignore[arg-type]
    settings = MigratorSettings(_env_file=None, prometheus_url="http://127.0.0.1:9090", **{query: "q"})  # type: ignore[arg-type]
    assert getattr(settings, query) == "q"


# ---- minor: latency-unknown is a series from the start ------------------------------------------
def test_latency_unknown_is_a_blind_reason_series_from_the_start() -> None:
    assert (
        MigratorTelemetry().registry.get_sample_value(
            "reach_migrator_blind_cycles_total", {"reason": "latency-unknown"}
        )
        == 0.0
    )


class PodEvictedWhileAsked(NodeBackWhileAsked):
    """Moves the db pod to cloud-2; while it is asked, the node controller deletes the pod (its node stays NotReady)."""

    def meanwhile(self, pod_name: str) -> None:
        del self.fake.pods[pod_name]


def test_an_evacuation_whose_pod_is_gone_on_the_fresh_read_is_refused_as_unknown_not_as_a_ready_node(
    tmp_path: Path,
) -> None:
    """Found by the review of this session's diff: the pod gone from the fresh read was reported as "not an
    evacuation any more", which says its node is Ready again; the guards refuse it as an unknown pod."""
    fake = small_cluster()
    fake.nodes["cloud-1"] = replace(fake.nodes["cloud-1"], ready=False)
    controller, _ = controller_for(fake, PodEvictedWhileAsked(fake), tmp_path)
    controller.latency = lambda: LatencyReading(None, "prometheus-unreachable", "Prometheus down")
    outcomes = controller.monitoring_step()
    assert not any("not an evacuation" in o.detail for o in outcomes), outcomes
    assert any("not one of the application's pods" in o.detail for o in outcomes), outcomes
    assert "migrating" not in [r["event"] for r in controller.journal.records]
