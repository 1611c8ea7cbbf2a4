"""The actuator's replacement and reads (review s15, findings 7 and 8).

The replacement is followed by the name it had when it was bound, and checked once more right
before the old pod's deletion (the commit point); a 401/403 on a pod or ReplicaSet read is
``ClusterAccessDenied``, and only a ReplicaSet that does not exist (404) ends a rollback's wait
for it to settle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from migrator.actuator import Actuator
from migrator.guards import Move
from migrator.kube import KubeOps
from migrator.snapshot import ANNOTATION_REPLACEMENT, ClusterAccessDenied, PodInfo

from .builders import node
from .fake_cluster import FakeClock, FakeCluster


@pytest.fixture
def world() -> tuple[FakeCluster, FakeClock, Actuator]:
    nodes = {n.name: n for n in (node("cloud-1", "cloud"), node("cloud-2", "cloud"), node("edge-1", "edge"))}
    fake = FakeCluster(nodes)
    fake.add_deployment("agg", ["cloud-1"])
    clock = FakeClock(fake)
    return fake, clock, Actuator(fake, clock, deadline_s=5.0, poll_s=0.1, settle_s=5.0)


# ---- finding 7: the replacement by name ---------------------------------------------------------------
def test_a_ready_pod_of_a_scale_up_on_the_target_is_not_taken_for_the_replacement(world: Any) -> None:
    """Before: the scale-up's Ready pod, listed first, was taken for the replacement and the old pod deleted
    while the real replacement was not Ready."""
    fake, _, actuator = world
    fake.never_ready_nodes.add("edge-1")  # the real replacement never gets Ready
    old = next(iter(fake.pods))
    lift, scaled = fake.lift_cordon, list[str]()

    def lift_then_scale_up(names: Sequence[str] | None, migration_id: str | None) -> None:
        lift(names, migration_id)
        if scaled:
            return
        selector, _ = fake.replicasets["agg-abc"]
        fake.replicasets["agg-abc"] = (selector, 2)  # someone scales the Deployment up meanwhile
        other = PodInfo(
            "agg-abc-0-scaled", "default", "edge-1", {**selector, "reach.io/app": "demo"}, 500, 2**29, ready=True,
            owner_kind="ReplicaSet", owner_name="agg-abc", created_at_s=0.5,
        )  # fmt: skip
        fake.pods = {other.name: other, **fake.pods}  # listed first, as a name that sorts first would be
        scaled.append(other.name)

    fake.lift_cordon = lift_then_scale_up
    result = actuator.migrate(Move(old, "edge-1"), fake.snapshot())
    assert not result.migrated and result.replacement_pod != "agg-abc-0-scaled", result.detail
    assert old in fake.pods and not fake.pods[old].terminating, "the old pod must stay until its replacement serves"
    assert "agg-abc-0-scaled" in fake.pods


def test_a_replacement_that_is_no_longer_ready_at_the_commit_point_keeps_the_old_pod(world: Any) -> None:
    fake, _, actuator = world
    old = next(iter(fake.pods))
    snapshot = fake.snapshot

    def replacement_fails_before_the_delete() -> Any:  # the read of the old pod's node, just before the delete
        name = fake.pods[old].annotations[ANNOTATION_REPLACEMENT]
        fake.pods[name] = replace(fake.pods[name], ready=False)
        fake.never_ready_nodes.add("edge-1")
        return snapshot()

    fake.snapshot = replacement_fails_before_the_delete
    result = actuator.migrate(Move(old, "edge-1"), snapshot())
    assert not result.migrated and "no longer Ready" in result.detail, result.detail
    assert old in fake.pods and not fake.pods[old].terminating


def test_a_normal_migration_still_reports_its_replacement(world: Any) -> None:
    fake, _, actuator = world
    old = next(iter(fake.pods))
    result = actuator.migrate(Move(old, "edge-1"), fake.snapshot())
    assert result.migrated and fake.pods[result.replacement_pod].node_name == "edge-1" and old not in fake.pods


# ---- finding 8: reads -----------------------------------------------------------------------------------
def _answering(status: int) -> Any:
    error = ApiException(status=status, reason={403: "Forbidden", 404: "Not Found"}.get(status, "Error"))
    error.body = json.dumps({"kind": "Status", "message": f"said {status}", "code": status})

    class Api:
        def __getattr__(self, name: str) -> Any:
            def call(*args: Any, **kwargs: Any) -> Any:
                raise error

            return call

    return Api()


def _ops(status: int) -> KubeOps:
    ops = KubeOps(client.ApiClient(), "shop", "app=shop", "reach-migrator")
    ops.core = ops.apps = _answering(status)
    return ops


def test_a_refused_pod_or_replicaset_read_is_an_access_denial_naming_the_call() -> None:
    """Before: a 403 on these reads was a plain ApiException, reported as cluster-unreadable."""
    ops = _ops(403)
    with pytest.raises(ClusterAccessDenied, match="refused to get pods in namespace shop"):
        ops.get_pod("agg-1")
    with pytest.raises(ClusterAccessDenied, match="refused to list pods in namespace shop"):
        ops.list_pods({"app": "agg"})
    with pytest.raises(ClusterAccessDenied, match="refused to get replicasets in namespace shop"):
        ops.replicaset_replicas("agg-abc")


def test_a_missing_pod_or_replicaset_is_none_and_a_server_error_stays_an_error() -> None:
    assert _ops(404).get_pod("gone") is None and _ops(404).replicaset_replicas("gone") is None
    with pytest.raises(ApiException) as caught:
        _ops(503).replicaset_replicas("agg-abc")
    assert caught.value.status == 503


def _rollback_times(fake: FakeCluster, clock: FakeClock, actuator: Actuator) -> tuple[float, float]:
    """Clock times of the rollback's cordon of every node and of its last lift (a migration that fails)."""
    cordon, lift, times = fake.cordon, fake.lift_cordon, {"cordon": 0.0, "lift": 0.0}

    def cordon_logged(names: Sequence[str], migration_id: str) -> None:
        times["cordon"] = clock.now
        cordon(names, migration_id)

    def lift_logged(names: Sequence[str] | None, migration_id: str | None) -> None:
        times["lift"] = clock.now
        lift(names, migration_id)

    fake.cordon, fake.lift_cordon = cordon_logged, lift_logged  # type: ignore[method-assign, assignment]
    fake.never_ready_nodes.add("edge-1")  # the replacement never gets Ready: the migration rolls back
    result = actuator.migrate(Move(next(iter(fake.pods)), "edge-1"), fake.snapshot())
    assert not result.migrated and not result.leftovers, result.detail
    return times["cordon"], times["lift"]


def test_a_replicaset_that_cannot_be_read_for_a_moment_is_waited_for_not_taken_as_gone(world: Any) -> None:
    """Before: any failed read ended the wait at once, and the cordons were lifted before the ReplicaSet settled."""
    fake, clock, actuator = world
    reads: list[float] = []

    def unreadable_once(name: str) -> int:
        reads.append(clock.now)
        if len(reads) == 1:
            raise ConnectionError("API server away")
        return int(fake.replicasets[name][1])

    fake.replicaset_replicas = unreadable_once
    cordoned_at, lifted_at = _rollback_times(fake, clock, actuator)
    assert len(reads) >= 2 and lifted_at > cordoned_at
    assert not fake.cordoned_nodes() and len(fake.pods) == 1


def test_a_replicaset_that_does_not_exist_ends_the_wait_at_once(world: Any) -> None:
    fake, clock, actuator = world
    fake.replicaset_replicas = lambda name: None
    cordoned_at, lifted_at = _rollback_times(fake, clock, actuator)
    assert lifted_at == cordoned_at and not fake.cordoned_nodes()


def test_a_failed_read_at_the_commit_point_does_not_undo_a_ready_replacement(world: Any) -> None:
    """An evacuation off a NotReady node: the replacement is Ready, then the read just before the delete fails
    once (a 503). That read says nothing new, so the migration commits; rolling back on it deleted the only
    serving pod and left the one on the failed node (found by the review of this session's diff)."""
    fake, _, actuator = world
    old = next(iter(fake.pods))
    fake.nodes["cloud-1"] = replace(fake.nodes["cloud-1"], ready=False)
    snapshot, get_pod = fake.snapshot, fake.get_pod
    failing: list[bool] = []

    def node_read_then_flaky_pod_read() -> Any:  # the read of the old pod's node, just before the delete
        if fake.pods[old].annotations.get(ANNOTATION_REPLACEMENT):
            failing.append(True)
        return snapshot()

    def flaky_get_pod(name: str) -> PodInfo | None:
        if failing and failing.pop():
            raise RuntimeError("API server said 503")
        return get_pod(name)

    fake.snapshot, fake.get_pod = node_read_then_flaky_pod_read, flaky_get_pod  # type: ignore[method-assign]
    result = actuator.migrate(Move(old, "edge-1"), snapshot())
    assert result.migrated, result.detail
    serving = [p for p in fake.pods.values() if not p.terminating and p.node_name == "edge-1" and p.ready]
    assert [p.name for p in serving] == [result.replacement_pod]
