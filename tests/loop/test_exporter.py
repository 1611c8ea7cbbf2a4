"""The latency exporter: the live placement → the CEEnv model → Prometheus metrics that say they are simulated."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ceenv.latency import LatencyModel
from ceenv.scenario import load_scenario
from ceenv.workload import load_workload
from flows.loop.exporter import SIMULATED, LatencyCollector, SimulatedLatency, live_placement, metric_families
from migrator.snapshot import PodInfo

DATA = Path(__file__).resolve().parents[2] / "data"
SCENARIO = DATA / "scenarios" / "7-21"
WORKLOAD = DATA / "workloads" / "aggregator_sequential_call_patterns.json"
ALL_ON_CLOUD = {"aggregator": "tb-cloud-vm-8-1", "machine-learning": "tb-cloud-vm-8-1",
                "detection": "tb-cloud-vm-8-1", "db": "tb-cloud-vm-8-1"}  # fmt: skip


def pod(name: str, service: str, node: str, ready: bool = True, terminating: bool = False) -> PodInfo:
    return PodInfo(
        name=name, namespace="default", node_name=node, labels={"app": service}, cpu_request_millicores=0.0,
        memory_request_bytes=0.0, ready=ready, terminating=terminating, phase="Running", owner_kind="ReplicaSet",
        owner_name=f"{service}-rs", node_selector={}, tolerations=(), annotations={}, created_at_s=0.0,
    )  # fmt: skip


@pytest.fixture(scope="module")
def model() -> LatencyModel:
    scenario = load_scenario(SCENARIO)
    return LatencyModel(scenario, load_workload(WORKLOAD, scenario))


def hand_example_pods() -> list[PodInfo]:
    return [pod("client-0", "client", "tb-client-vm-2-1")] + [pod(f"{s}-0", s, n) for s, n in ALL_ON_CLOUD.items()]


def test_the_hand_checkable_example_of_model_md_gives_121_6_ms(model: LatencyModel) -> None:
    reading = SimulatedLatency(model.scenario, model).read(live_placement(hand_example_pods(), model, "app"))
    assert reading.app_ms == pytest.approx(121.6)
    assert reading.endpoints_ms == {"aggregator_sequential": pytest.approx(121.6)}
    assert reading.services_ms["aggregator"] == pytest.approx(50 + 4 + 7)  # delay + 0.1 MB at 200 Mbit/s + exec
    assert reading.node_cpu_millicores["tb-cloud-vm-8-1"] == pytest.approx(700 + 1500 + 1000 + 500)


def test_pods_that_are_not_ready_or_terminating_or_outside_the_scenario_do_not_count(model: LatencyModel) -> None:
    pods = [
        *hand_example_pods(),
        pod("aggregator-1", "aggregator", "tb-edge-vm-4-1", ready=False),
        pod("aggregator-2", "aggregator", "tb-edge-vm-4-2", terminating=True),
        pod("stranger", "aggregator", "some-other-node"),
    ]
    placement = live_placement(pods, model, "app")
    assert placement.counts.sum() == 5 and placement.unknown_pods == 1
    assert SimulatedLatency(model.scenario, model).read(placement).app_ms == pytest.approx(121.6)


def test_a_called_service_without_a_ready_pod_makes_the_latency_unknown_not_wrong(model: LatencyModel) -> None:
    pods = [p for p in hand_example_pods() if p.labels["app"] != "db"]
    placement = live_placement(pods, model, "app")
    reading = SimulatedLatency(model.scenario, model).read(placement)
    assert placement.missing_services == ("db",)
    assert math.isnan(reading.app_ms) and all(math.isnan(v) for v in reading.endpoints_ms.values())


def test_noise_is_seeded_and_centred_on_the_model(model: LatencyModel) -> None:
    placement = live_placement(hand_example_pods(), model, "app")
    draws = [SimulatedLatency(model.scenario, model, noise_pct=5.0, seed=7).read(placement).app_ms for _ in range(2)]
    assert draws[0] == draws[1] != pytest.approx(121.6, abs=1e-9)
    noisy = SimulatedLatency(model.scenario, model, noise_pct=5.0, seed=1)
    mean = sum(noisy.read(placement).app_ms for _ in range(400)) / 400
    assert mean == pytest.approx(121.6, rel=0.02)


def test_every_metric_says_it_is_simulated_from_the_live_placement(model: LatencyModel) -> None:
    collector = LatencyCollector(hand_example_pods, SimulatedLatency(model.scenario, model), "app")
    families = list(collector.collect())
    names = {f.name for f in families}
    assert {"reach_app_latency_ms", "reach_endpoint_latency_ms", "reach_service_latency_ms",
            "reach_node_cpu_usage_millicores"} <= names  # fmt: skip
    assert all(SIMULATED in f.documentation for f in families)
    [app] = [f for f in families if f.name == "reach_app_latency_ms"]
    assert app.samples[0].value == pytest.approx(121.6)
    assert app.samples[0].labels == {"workload": "aggregator_sequential"}


def test_metric_families_label_every_node_and_service(model: LatencyModel) -> None:
    reading = SimulatedLatency(model.scenario, model).read(live_placement(hand_example_pods(), model, "app"))
    families = {f.name: f for f in metric_families(reading, "w")}
    nodes = {s.labels["node"] for s in families["reach_node_cpu_usage_millicores"].samples}
    assert nodes == set(model.scenario.node_names)
    services = {s.labels["service"] for s in families["reach_service_ready_pods"].samples}
    assert services == set(model.scenario.service_names)
