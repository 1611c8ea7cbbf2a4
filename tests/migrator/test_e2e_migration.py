"""End to end on the real local Kubernetes 1.20 control plane: migrations, refusals, restarts.

Each test deploys the 7-21 scenario's services (aggregator ×3, db ×2, the rest ×1) on hollow nodes
labelled cloud/edge/client, points the migrator at a fake policy on 127.0.0.1 and checks the
cluster afterwards through the API. ``ReadyWatcher`` follows the moved service through the watch
API for the whole migration: its Ready count must never drop below what it was.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from .e2e_support import ReadyWatcher, cordoned_nodes

pytestmark = pytest.mark.e2e
NS = "default"


def placement(core: Any) -> dict[str, tuple[str, str]]:
    """pod name → (service, node) for the demo app's pods that are not terminating."""
    pods = core.list_namespaced_pod(NS, label_selector="reach.io/app=demo").items
    return {
        p.metadata.name: (p.metadata.labels["app"], p.spec.node_name) for p in pods if not p.metadata.deletion_timestamp
    }


def controller_for(settings: Any) -> Any:
    from migrator.app import build_controller

    return build_controller(settings)


def choose_move(controller: Any, service: str) -> tuple[str, str]:
    """A pod of ``service`` and the first node of its pod_deployable, from the live observation."""
    from migrator.observe import build_request

    request = build_request(controller.ops.snapshot(), controller.rules)
    for pod in request.cluster_state.services[service].pods:
        if request.pod_deployable.get(pod.pod_name):
            return pod.pod_name, request.pod_deployable[pod.pod_name][0]
    raise AssertionError(f"no movable pod of {service}: {request.pod_deployable}")


def reach_marks(core: Any) -> list[str]:
    marks = cordoned_nodes(core)
    for pod in core.list_namespaced_pod(NS, label_selector="reach.io/app=demo").items:
        keys = list(pod.metadata.labels or {}) + list(pod.metadata.annotations or {})
        marks += [f"{pod.metadata.name}:{k}" for k in keys if k.startswith("reach.io/m") or k.startswith("reach.io/o")]
    return marks


def events_for(core: Any, pod_name: str) -> list[str]:
    events = core.list_namespaced_event(NS, field_selector=f"involvedObject.name={pod_name}").items
    return [e.reason for e in events]


def test_a_migration_moves_exactly_the_chosen_pod_and_ready_replicas_never_drop(
    core: Any, demo_app: Any, fake_policy: Any, settings_for: Any
) -> None:
    controller = controller_for(settings_for(fake_policy.url, once=True))
    pod, target = choose_move(controller, "aggregator")
    fake_policy.answer = {"pod_name": pod, "target_node": target, "is_stop": False}
    before = placement(core)
    watcher = ReadyWatcher(core, NS, "aggregator").start()
    [outcome] = controller.run_cycle()
    lowest_ready = watcher.stop()
    assert outcome.kind == "migrated", outcome.detail
    after = placement(core)
    assert pod not in after
    new = set(after) - set(before)
    assert len(new) == 1 and after[new.pop()] == ("aggregator", target)
    assert {k: v for k, v in before.items() if k != pod} == {k: v for k, v in after.items() if k in before}
    assert lowest_ready >= 3, f"Ready aggregators dropped to {lowest_ready}"
    assert watcher.events > 0
    assert reach_marks(core) == []
    assert "Migrated" in events_for(core, pod)
    request = fake_policy.requests[0]
    assert set(request["cluster_state"]["nodes"]) >= {"tb-cloud-vm-8-1", "tb-client-vm-2-1"}
    assert request["cluster_state"]["nodes"]["tb-cloud-vm-8-1"]["cpu_availability"] <= 7000.0


def test_a_pdb_that_forbids_disruption_blocks_the_migration(
    api_client: Any, core: Any, demo_app: Any, fake_policy: Any, settings_for: Any
) -> None:
    from kubernetes.dynamic import DynamicClient

    pdbs = DynamicClient(api_client).resources.get(api_version="policy/v1beta1", kind="PodDisruptionBudget")
    body = {
        "apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget", "metadata": {"name": "aggregator"},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": "aggregator"}}},
    }  # fmt: skip
    pdbs.create(body=body, namespace=NS)
    try:
        _wait_for(lambda: (pdbs.get(name="aggregator", namespace=NS).to_dict().get("status") or {}).get(
            "observedGeneration") is not None, 30, "PDB status")  # fmt: skip
        controller = controller_for(settings_for(fake_policy.url, once=True))
        pod, target = choose_move(controller, "aggregator")
        fake_policy.answer = {"pod_name": pod, "target_node": target, "is_stop": False}
        before = placement(core)
        [outcome] = controller.run_cycle()
        assert outcome.kind == "refused" and outcome.verdict.reason.value == "pdb-blocks", outcome.detail
        assert placement(core) == before and reach_marks(core) == []
        assert "MigrationRefused" in events_for(core, pod)
    finally:
        pdbs.delete(name="aggregator", namespace=NS)


def test_a_full_target_is_refused(core: Any, demo_app: Any, fake_policy: Any, settings_for: Any) -> None:
    from kubernetes import client

    controller = controller_for(settings_for(fake_policy.url, once=True))
    pod, target = choose_move(controller, "aggregator")
    free_m = controller.ops.snapshot()
    from migrator.observe import free_resources

    filler_m = int(free_resources(free_m)[target].cpu_millicores) - 100
    filler = client.V1Pod(
        metadata=client.V1ObjectMeta(name="filler", labels={"role": "filler"}),
        spec=client.V1PodSpec(
            node_name=target,
            containers=[client.V1Container(name="f", image="registry.k8s.io/pause:3.2",
                resources=client.V1ResourceRequirements(requests={"cpu": f"{filler_m}m"}))],
        ),
    )  # fmt: skip
    core.create_namespaced_pod(NS, filler)
    try:
        fake_policy.answer = {"pod_name": pod, "target_node": target, "is_stop": False}
        before = placement(core)
        [outcome] = controller.run_cycle()
        assert outcome.kind == "refused" and outcome.verdict.reason.value == "target-full", outcome.detail
        assert placement(core) == before and reach_marks(core) == []
    finally:
        core.delete_namespaced_pod("filler", NS, grace_period_seconds=0)


def test_an_unknown_pod_from_the_policy_is_refused(
    core: Any, demo_app: Any, fake_policy: Any, settings_for: Any
) -> None:
    fake_policy.answer = {"pod_name": "aggregator-does-not-exist", "target_node": "tb-edge-vm-4-1", "is_stop": False}
    controller = controller_for(settings_for(fake_policy.url, once=True))
    before = placement(core)
    [outcome] = controller.run_cycle()
    assert outcome.kind == "refused" and outcome.verdict.reason.value == "unknown-pod"
    assert placement(core) == before and reach_marks(core) == []


def test_a_policy_that_is_down_or_slow_means_no_action(
    core: Any, demo_app: Any, fake_policy: Any, settings_for: Any
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    before = placement(core)
    down = controller_for(settings_for(f"http://127.0.0.1:{closed_port}", once=True))
    [outcome] = down.run_cycle()
    assert outcome.kind == "no-advice" and "cannot reach" in outcome.detail
    fake_policy.delay_s = 1.5
    pod, target = choose_move(down, "aggregator")
    fake_policy.answer = {"pod_name": pod, "target_node": target, "is_stop": False}
    slow = controller_for(settings_for(fake_policy.url, once=True, policy_timeout_s=0.5, policy_retries=1))
    [outcome] = slow.run_cycle()
    assert outcome.kind == "no-advice" and "timed out" in outcome.detail
    assert placement(core) == before and reach_marks(core) == []


@pytest.mark.slow
def test_twenty_migrations_in_a_row_keep_the_pod_count_and_leave_no_cordons(
    core: Any, demo_app: Any, fake_policy: Any, settings_for: Any
) -> None:
    def first_deployable_aggregator(request: dict[str, Any]) -> dict[str, Any]:
        for pod in request["cluster_state"]["services"]["aggregator"]["pods"]:
            targets = request["pod_deployable"].get(pod["pod_name"])
            if targets:
                return {"pod_name": pod["pod_name"], "target_node": targets[-1], "is_stop": False}
        return {"pod_name": "", "target_node": "", "is_stop": True}

    fake_policy.answer = first_deployable_aggregator
    controller = controller_for(settings_for(fake_policy.url, once=True))
    count_before = len(placement(core))
    watcher = ReadyWatcher(core, NS, "aggregator").start()
    outcomes = [controller.run_cycle()[0] for _ in range(20)]
    lowest_ready = watcher.stop()
    assert [o.kind for o in outcomes] == ["migrated"] * 20, [o.detail for o in outcomes if o.kind != "migrated"]
    assert len(placement(core)) == count_before
    assert reach_marks(core) == []
    assert lowest_ready >= 3


def test_a_migrator_killed_mid_way_is_cleaned_up_by_the_next_start(
    kubeconfig: str, core: Any, demo_app: Any, fake_policy: Any, settings_for: Any, tmp_path: Path
) -> None:
    controller = controller_for(settings_for(fake_policy.url, once=True))
    pod, target = choose_move(controller, "aggregator")
    fake_policy.answer = {"pod_name": pod, "target_node": target, "is_stop": False}
    count_before = len(placement(core))
    # Run from tmp_path, its files there: a developer's .env in the repository must not configure it.
    env = {
        **os.environ, "REACH_MIGRATOR_KUBECONFIG": kubeconfig, "REACH_MIGRATOR_POLICY_URL": fake_policy.url,
        "REACH_MIGRATOR_ONCE": "true", "REACH_MIGRATOR_POD_COOLDOWN_S": "0",
        "REACH_MIGRATOR_EPISODE_CSV": str(tmp_path / "episode.csv"),
        "REACH_MIGRATOR_DISTRIBUTION_CSV": str(tmp_path / "distribution.csv"),
        # The restart as in a pod (same name, same PID 1): it takes the killed one's Lease back at once. A Lease of
        # this test's own, so a killed holder never makes another test's migrator stand by.
        "REACH_MIGRATOR_LEASE_IDENTITY": "killed-and-restarted/1", "REACH_MIGRATOR_LEASE_NAME": f"reach-test-{uuid.uuid4().hex[:8]}",
    }  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "migrator"], cwd=tmp_path, env=env, stderr=subprocess.PIPE)
    try:
        _wait_for(lambda: any(":reach.io/m" in m for m in reach_marks(core)), 30, "the migration to start")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert reach_marks(core) != [], "the kill should leave a half-done migration behind"
    fake_policy.answer = {"pod_name": "", "target_node": "", "is_stop": True}
    restarted = subprocess.run(
        [sys.executable, "-m", "migrator"], cwd=tmp_path, env=env, capture_output=True, timeout=120
    )
    assert restarted.returncode == 0, restarted.stderr.decode()[-2000:]
    assert b'"event": "cleanup"' in restarted.stderr
    assert reach_marks(core) == []
    _wait_for(lambda: len(placement(core)) == count_before, 30, "the pod count to settle")
    assert len([s for s, _ in placement(core).values() if s == "aggregator"]) == 3


def _wait_for(predicate: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def test_an_admin_s_cordon_set_during_the_migration_s_cordon_window_stays(
    core: Any, demo_app: Any, fake_policy: Any, settings_for: Any
) -> None:
    """The temporary cordons are taints of our own: lifting them never lifts a cordon someone else set.

    With ``spec.unschedulable`` as the temporary cordon, ``kubectl cordon`` of a node the migration
    had cordoned wrote nothing, and the migration's lift uncordoned the node the admin meant to drain.
    """
    controller = controller_for(settings_for(fake_policy.url, once=True))
    pod, target = choose_move(controller, "aggregator")
    fake_policy.answer = {"pod_name": pod, "target_node": target, "is_stop": False}
    cordon = controller.ops.cordon
    admin_cordoned: list[str] = []

    def cordon_then_the_admin_cordons_too(node_names: list[str], migration_id: str) -> None:
        cordon(node_names, migration_id)
        if not admin_cordoned:  # kubectl cordon: sets the flag unless the node reads as cordoned already
            node_name = next(n for n in node_names if not core.read_node(n).spec.unschedulable)
            core.patch_node(node_name, {"spec": {"unschedulable": True}})
            admin_cordoned.append(node_name)

    controller.ops.cordon = cordon_then_the_admin_cordons_too
    [outcome] = controller.run_cycle()
    assert outcome.kind == "migrated", outcome.detail
    assert outcome.result is not None and outcome.result.cordon_window_s > 0
    assert cordoned_nodes(core) == admin_cordoned, "ours are lifted, the admin's stays"


def test_a_taint_write_over_a_stale_node_is_refused_by_the_real_server_and_made_again_keeping_theirs(
    core: Any, demo_app: Any
) -> None:
    """Kubernetes 1.20 itself: a node patch carrying an old resourceVersion is a 409, and ``change_taints`` then
    reads the node again, so a taint someone wrote between our read and our write is kept, not overwritten."""
    from migrator.kube import _ours_removed, _ours_set, change_taints
    from migrator.snapshot import TAINT_TEMPORARY_CORDON

    name = next(n.metadata.name for n in core.list_node().items if not n.spec.unschedulable)
    stale = core.read_node(name)
    theirs = {"key": "example.com/maintenance", "value": "soon", "effect": "PreferNoSchedule"}
    own = [core.api_client.sanitize_for_serialization(t) for t in stale.spec.taints or []]
    core.patch_node(name, {"spec": {"taints": [*own, theirs]}})  # someone else, after our read
    try:
        change_taints(core, name, _ours_set("e2e-409"), 15.0, stale)
        taints = {(t.key, t.value, t.effect) for t in core.read_node(name).spec.taints or []}
        assert (TAINT_TEMPORARY_CORDON, "e2e-409", "NoSchedule") in taints
        assert ("example.com/maintenance", "soon", "PreferNoSchedule") in taints, "their taint was overwritten"
    finally:
        change_taints(core, name, _ours_removed(None), 15.0)
        keep = [core.api_client.sanitize_for_serialization(t) for t in core.read_node(name).spec.taints or []]
        core.patch_node(name, {"spec": {"taints": [t for t in keep if t["key"] != theirs["key"]]}})
