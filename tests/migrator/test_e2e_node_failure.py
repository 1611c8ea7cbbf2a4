"""End to end: a hollow node's process is killed by PID; the migrator evacuates its pods, no cycle fails.

On the real local control plane (7-21 services on hollow nodes): the test kills the kubelet of a
cloud/edge node that hosts application pods (SIGKILL by its recorded PID, not a drain), then runs
migrator cycles every second against the greedy stand-in's decision (only its evacuation answers
are passed on, so nothing else moves meanwhile). Kubernetes marks the node NotReady after the
local cluster's grace period; from then on every request carries the node as ``available: false``
with its pods, the stand-in evacuates them first, and the actuator force-deletes each old pod once
its replacement is Ready. Checked: no cycle raises or meets a refused payload, every pod of the
failed node is re-placed by a migration (not by Kubernetes' eviction, 300 s later), the Ready
count of each service is back, no temporary cordon is left. The times to detect and to recover
are printed (``-s``); ``benchmarks/bench_failure.py`` measures them. The killed node's process is
restarted afterwards (``LocalCluster.restart``) and waited for until Ready, so the session's
cluster stays whole for the other tests.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .e2e_support import APP_REPLICAS, ROOT, SCENARIO, cordoned_nodes

pytestmark = pytest.mark.e2e
NS = "default"
WORKLOAD = ROOT / "data" / "workloads" / "aggregator_sequential_call_patterns.json"


def app_pods(core: Any) -> list[Any]:
    return list(core.list_namespaced_pod(NS, label_selector="reach.io/app=demo").items)


def node_ready(core: Any, name: str) -> bool:
    node = core.read_node(name)
    return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])


def victim_node(controller: Any) -> tuple[str, list[str]]:
    """The cloud/edge node hosting the most application pods, each of which could move elsewhere now."""
    from migrator.observe import build_request

    request = build_request(controller.ops.snapshot(), controller.rules)
    hosted: dict[str, list[str]] = {}
    for service in request.cluster_state.services.values():
        for pod in service.pods:
            hosted.setdefault(pod.node_name, []).append(pod.pod_name)
    candidates = [
        (len(pods), node, pods)
        for node, pods in hosted.items()
        if "client" not in node and all(request.pod_deployable.get(p) for p in pods)
    ]
    assert candidates, f"no node whose pods could all move: {hosted}"
    _, node, pods = max(candidates)
    return node, sorted(pods)


@pytest.fixture
def evacuations_only() -> Iterator[Any]:
    """A policy on 127.0.0.1 that answers the greedy stand-in's evacuations and STOP otherwise."""
    from ceenv.schema import ActionRequest
    from flows.loop.standin import STOP, greedy_advisor

    from .e2e_support import FakePolicy

    advisor = greedy_advisor(SCENARIO, WORKLOAD)
    policy = FakePolicy()
    policy.refused = []  # type: ignore[attr-defined]

    def answer(body: dict[str, Any]) -> dict[str, Any]:
        try:
            decision = advisor.answer(ActionRequest.model_validate(body))
        except ValueError as exc:  # a request the service would answer 422: the migrator would be blind
            policy.refused.append(str(exc))  # type: ignore[attr-defined]
            return STOP
        return decision if decision.get("decision_rule") else STOP

    policy.answer = answer
    yield policy
    policy.close()


def test_a_killed_node_is_detected_and_its_pods_are_re_placed_by_the_migrator(
    local_cluster: Any, core: Any, demo_app: Any, evacuations_only: Any, settings_for: Any
) -> None:
    from migrator.app import build_controller

    controller = build_controller(settings_for(evacuations_only.url, once=True))
    victim, victims_pods = victim_node(controller)
    count_before = len([p for p in app_pods(core) if not p.metadata.deletion_timestamp])
    pid = local_cluster.recorded_pids()[f"node-{victim}"]
    killed_s = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    outcomes: list[Any] = []
    detected_s = recovered_s = None
    try:
        while time.monotonic() - killed_s < 180:
            outcomes += controller.run_cycle()  # raises on a bug: the test fails with it
            if detected_s is None and not node_ready(core, victim):
                detected_s = time.monotonic() - killed_s
            live = [p for p in app_pods(core) if not p.metadata.deletion_timestamp]
            on_victim = [p.metadata.name for p in live if p.spec.node_name == victim]
            ready = [
                p for p in live if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            ]
            if detected_s is not None and not on_victim and len(ready) == count_before:
                recovered_s = time.monotonic() - killed_s
                break
            time.sleep(1.0)
        print(f"\nnode {victim} killed: NotReady after {detected_s} s, pods re-placed after {recovered_s} s")
        assert detected_s is not None, f"node {victim} never went NotReady within 180 s"
        assert recovered_s is not None, [f"{o.kind}: {o.detail}" for o in outcomes if o.kind != "stop"]
        assert evacuations_only.refused == [], evacuations_only.refused
        migrated = [o.result for o in outcomes if o.kind == "migrated"]
        assert sorted(r.move.pod_name for r in migrated) == victims_pods
        assert all(r.forced_removal for r in migrated)
        assert [o for o in outcomes if o.kind not in ("migrated", "stop")] == []
        services = [p.metadata.labels["app"] for p in app_pods(core) if not p.metadata.deletion_timestamp]
        for service, replicas in APP_REPLICAS.items():
            assert services.count(service) == replicas
        assert not cordoned_nodes(core)
    finally:
        local_cluster.restart(f"node-{victim}")
    assert node_ready(core, victim)
