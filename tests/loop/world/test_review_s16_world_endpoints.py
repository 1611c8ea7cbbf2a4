"""Review s16: a failed node's pods leave the endpoints after the grace period, and re-reads keep them out;
the world's 503s carry Envoy's response flags (UF,URX: connect failures, retries exhausted; UH: no endpoint)."""

from __future__ import annotations

from ceenv.scenario import Scenario
from ceenv.workload import Workload
from flows.loop.world.emulator import World
from flows.loop.world.metrics import CONNECT_FAILED_RETRIES_EXHAUSTED, NO_HEALTHY_UPSTREAM, MeshMetrics
from flows.loop.world.model import PodSpec, WorldOptions
from flows.loop.world_live import LiveWorld
from tests.loop.world.conftest import ALL_ON_CLOUD_1
from tests.loop.world.test_live import FakeClock
from tests.loop.world.test_live import _pods as _infos

FAILED = "tb-cloud-vm-8-1"
# every service but the client has a replica on the node that fails and one on another cloud node
TWO_EACH = {s: nodes if s == "client" else [FAILED, "tb-cloud-vm-8-2"] for s, nodes in ALL_ON_CLOUD_1.items()}


def _specs(scenario: Scenario, placement: dict[str, list[str]]) -> list[PodSpec]:
    names = [n.name for n in scenario.nodes]
    return [PodSpec(f"{s}-{i}", s, names.index(node)) for s, nodes in placement.items() for i, node in enumerate(nodes)]


def _endpoint_nodes(world: World) -> set[int]:
    return {pod.node for pods in world.endpoints.values() for pod in pods}


def test_the_live_worlds_refreshes_do_not_bring_a_failed_nodes_pods_back_after_the_grace_period(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    clock = FakeClock()
    listed = _infos(TWO_EACH)  # the API server still lists them Ready (Kubernetes has not noticed yet)
    live = LiveWorld(scenario, workloads["chain"], lambda: listed, WorldOptions(), clock=clock, refresh_s=1.0)
    live.step()
    clock.now += 5.0
    live.step()
    assert live.world is not None
    failed = live.cluster.node_names.index(FAILED)
    live.fail_node(FAILED)
    live.step()
    for _ in range(10):  # within the grace period: still endpoints, not serving (calls to them time out)
        clock.now += 1.0
        live.step()
    assert failed in _endpoint_nodes(live.world)
    assert not any(p.serving for pods in live.world.endpoints.values() for p in pods if p.node == failed)
    for _ in range(35):  # 45 s after the failure, re-read every second
        clock.now += 1.0
        live.step()
    assert failed not in _endpoint_nodes(live.world)
    assert {p.service for pods in live.world.endpoints.values() for p in pods} == set(ALL_ON_CLOUD_1)
    assert {p.name for p in live.world.pods.values()} == {p.name for p in listed}  # the pods exist, unrouted
    # from then on every call goes to the live replicas: no connect timeout, no 503
    before = {k: h.count for k, h in live.metrics.requests.items() if k[7] == "503"}
    for _ in range(20):
        clock.now += 1.0
        live.step()
    assert {k: h.count for k, h in live.metrics.requests.items() if k[7] == "503"} == before


def test_set_placement_after_the_grace_period_keeps_the_failed_nodes_pods_out(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    options = WorldOptions(endpoint_grace_s=40.0).idealised()
    world = World(scenario, workloads["chain"], _specs(scenario, TWO_EACH), options, seed=3)
    failed = world.cluster.node_index(FAILED, "test")
    world.fail_node(FAILED)
    world.run(30.0)
    world.set_placement(_specs(scenario, TWO_EACH), require_all=False)
    assert failed in _endpoint_nodes(world)  # before the grace period a re-read keeps them (not serving)
    world.run(15.0)
    world.set_placement(_specs(scenario, TWO_EACH), require_all=False)
    assert failed not in _endpoint_nodes(world)
    assert len(world.pods) == len(_specs(scenario, TWO_EACH))


def test_a_503_is_uf_urx_while_the_dead_pods_are_endpoints_and_uh_once_no_endpoint_is_left(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    metrics = MeshMetrics()
    options = WorldOptions(endpoint_grace_s=40.0).idealised()
    world = World(scenario, workloads["chain"], _specs(scenario, ALL_ON_CLOUD_1), options, seed=4, metrics=metrics)
    world.run(10.0)
    world.fail_node(FAILED)
    world.run(30.0)  # every aggregator pod is on the failed node but still an endpoint: 3 connect timeouts

    def flags(code: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for key, hist in metrics.requests.items():
            if key[0] == "source" and key[3] == "aggregator" and key[7] == code:
                out[key[8]] = out.get(key[8], 0) + hist.count
        return out

    assert flags("200") and set(flags("200")) == {"-"}
    during = flags("503")
    assert set(during) == {CONNECT_FAILED_RETRIES_EXHAUSTED} == {"UF,URX"}
    world.run(30.0)  # past the grace period: no endpoint, Envoy answers 503 UH at once
    after = flags("503")
    assert after[CONNECT_FAILED_RETRIES_EXHAUSTED] >= during[CONNECT_FAILED_RETRIES_EXHAUSTED]
    assert after.get(NO_HEALTHY_UPSTREAM, 0) > 0 and NO_HEALTHY_UPSTREAM == "UH"
    assert "UF" not in {key[8] for key in metrics.requests}  # a bare UF is never what the world reports
    # the mesh text carries them as labels
    text = metrics.exposition()
    assert 'response_code="503",response_flags="UH"' in text
    assert 'response_code="503",response_flags="UF,URX"' in text


def test_a_service_without_pods_in_the_live_world_answers_503_uh(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    clock = FakeClock()
    listed = _infos(ALL_ON_CLOUD_1)
    live = LiveWorld(scenario, workloads["chain"], lambda: listed, WorldOptions(), clock=clock)
    live.step()
    clock.now += 10.0
    live.step()
    listed[:] = [p for p in listed if not p.name.startswith("db")]
    clock.now += 1.0
    live.step()
    clock.now += 20.0
    live.step()
    db = {(k[7], k[8]) for k in live.metrics.requests if k[3] == "db" and k[0] == "source"}
    assert ("503", "UH") in db and ("503", "UF") not in db
    assert {flag for code, flag in db if code == "200"} == {"-"}
