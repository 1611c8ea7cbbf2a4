"""The live adapter: the world stepped to a clock on pods as the API server reports them, served as Istio metrics."""

from __future__ import annotations

import urllib.request

import pytest

from ceenv.scenario import Scenario
from ceenv.workload import Workload
from flows.loop.world.model import Cluster, WorldOptions
from flows.loop.world_live import LiveWorld, MeshCollector, live_pod_specs
from migrator.snapshot import PodInfo
from tests.loop.world.conftest import ALL_ON_CLOUD_1


def _pods(placement: dict[str, list[str]]) -> list[PodInfo]:
    return [
        PodInfo(f"{service}-{i}", "default", node, {"app": service})
        for service, nodes in placement.items()
        for i, node in enumerate(nodes)
    ]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_only_ready_known_pods_count_and_the_rest_is_reported(scenario: Scenario) -> None:
    pods = [
        *_pods(ALL_ON_CLOUD_1),
        PodInfo("x", "default", "tb-cloud-vm-8-1", {"app": "unknown-service"}),
        PodInfo("y", "default", "elsewhere", {"app": "db"}),
        PodInfo("z", "default", "tb-cloud-vm-8-1", {"app": "db"}, ready=False),
        PodInfo("w", "default", "tb-cloud-vm-8-1", {"app": "db"}, terminating=True),
    ]
    specs, unknown = live_pod_specs(pods, Cluster.from_scenario(scenario), "app")
    assert sorted(s.name for s in specs) == sorted(p.name for p in _pods(ALL_ON_CLOUD_1))
    assert unknown == 2


def test_the_world_starts_when_every_called_service_has_a_pod_and_keeps_up_with_the_clock(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    clock = FakeClock()
    listed: list[PodInfo] = [p for p in _pods(ALL_ON_CLOUD_1) if not p.name.startswith("db")]
    live = LiveWorld(scenario, workloads["chain"], lambda: listed, WorldOptions(), clock=clock, refresh_s=1.0)
    live.step()
    assert live.world is None  # db has no pod yet: nothing to emulate
    listed.extend(p for p in _pods(ALL_ON_CLOUD_1) if p.name.startswith("db"))
    clock.now += 1.0
    live.step()
    assert live.world is not None
    clock.now += 60.0
    live.step()
    assert live.world.env.now == pytest.approx(60_000.0)
    assert 200 < live.world.completed.count < 400  # 5 rps for 60 s
    assert not live.world.completed.latency_ms  # counted, not kept
    # the app loses db: its calls answer 503 from the next refresh on, as behind a mesh
    listed[:] = [p for p in listed if not p.name.startswith("db")]
    clock.now += 30.0
    live.step()
    clock.now += 30.0
    live.step()
    codes = {key[7] for key in live.metrics.requests if key[3] == "db"}
    assert codes == {"200", "503"}


def test_the_collector_serves_istio_and_goldpinger_families_over_http(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    from prometheus_client import CollectorRegistry, start_http_server

    clock = FakeClock()
    live = LiveWorld(scenario, workloads["chain"], lambda: _pods(ALL_ON_CLOUD_1), WorldOptions(), clock=clock)
    live.step()
    clock.now += 30.0
    live.step()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MeshCollector(live))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        port = server.server_address[1]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
        thread.join(timeout=5)

    def lines(name: str, *labels: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith(name + "{") and all(x in line for x in labels)]

    client_view = ('reporter="source"', 'source_workload="client"', 'destination_workload="aggregator"')
    assert len(lines("istio_request_duration_milliseconds_bucket", *client_view)) == 20  # 19 bounds and +Inf
    assert lines("istio_requests_total", 'reporter="destination"', 'response_code="200"')
    assert lines("goldpinger_peers_response_time_s_count", 'goldpinger_instance="tb-cloud-vm-8-1"', 'call_type="ping"')
    assert "reach_world_running 1.0" in text


def _post(port: int, path: str, body: bytes) -> tuple[int, dict[str, object]]:
    import json
    import urllib.error

    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_node_failed_over_the_control_port_stops_serving_at_the_next_step(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    from flows.local.processes import free_port
    from flows.loop.world_live import ControlServer, post_event

    clock = FakeClock()
    live = LiveWorld(scenario, workloads["chain"], lambda: _pods(ALL_ON_CLOUD_1), WorldOptions(), clock=clock)
    live.step()
    clock.now += 10.0
    live.step()
    port = free_port()
    control = ControlServer(live, port).start()
    try:
        assert post_event(port, "/control/fail-node", {"node": "tb-cloud-vm-8-1"}) == {"failed": "tb-cloud-vm-8-1"}
        assert post_event(port, "/control/surge", {"multiplier": 3.0}) == {"multiplier": 3.0}
        assert _post(port, "/control/fail-node", b'{"node": "nowhere"}')[0] == 400
        status, answer = _post(port, "/control/fail-node", b'{"node": "tb-client-vm-2-1"}')
        assert status == 400 and "client node" in str(answer["detail"])
        assert _post(port, "/control/surge", b'{"multiplier": 0}')[0] == 400
        assert _post(port, "/control/reboot", b"{}")[0] == 404
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert "istio_request_duration_milliseconds_bucket" in metrics
    finally:
        control.close()
    assert live.world is not None and live.world.rps_multiplier == 1.0  # applied by the stepping thread only
    live.step()
    assert live.world.rps_multiplier == 3.0 and live.failed_nodes == ["tb-cloud-vm-8-1"]
    assert not any(pod.serving for pod in live.world.pods.values() if pod.service != "client")
    clock.now += 1.0
    live.step()  # a re-read of the same pods keeps them failed: the node is down, not the pods
    assert not any(pod.serving for pod in live.world.pods.values() if pod.service != "client")
    clock.now += 20.0
    live.step()
    codes = {key[7] for key in live.metrics.requests if key[3] == "aggregator" and key[0] == "source"}
    assert "503" in codes  # every aggregator pod was on the failed node: after the retries, 503


def test_a_node_failed_before_the_world_starts_is_failed_in_it(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    clock = FakeClock()
    listed: list[PodInfo] = []
    live = LiveWorld(scenario, workloads["chain"], lambda: listed, WorldOptions(), clock=clock)
    live.fail_node("tb-cloud-vm-8-1")
    live.step()
    assert live.world is None
    listed.extend(_pods(ALL_ON_CLOUD_1))
    clock.now += 1.0
    live.step()
    assert live.world is not None and not live.world.node_up[live.cluster.node_names.index("tb-cloud-vm-8-1")]


def test_with_a_run_id_every_mesh_series_carries_it_so_a_run_selects_only_its_own_world(
    scenario: Scenario, workloads: dict[str, Workload]
) -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import generate_latest

    from flows.loop.world_live import client_view, mean_query

    clock = FakeClock()
    live = LiveWorld(scenario, workloads["chain"], lambda: _pods(ALL_ON_CLOUD_1), WorldOptions(), clock=clock)
    live.step()
    clock.now += 10.0
    live.step()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MeshCollector(live, "r1"))
    text = generate_latest(registry).decode()
    mesh = [line for line in text.splitlines() if line.startswith(("istio_", "goldpinger_"))]
    assert mesh and all('run_id="r1"' in line for line in mesh)
    assert 'run_id="r1"' in mean_query("5s", client_view("r1")) and "run_id" not in client_view()
