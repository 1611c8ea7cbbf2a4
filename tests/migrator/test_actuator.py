"""Actuator: make-before-break on an in-memory cluster; deadline, rollback and leftover clean-up."""

from __future__ import annotations

import pytest

from migrator.actuator import Actuator
from migrator.guards import Move

from .builders import node
from .fake_cluster import FakeClock, FakeCluster


@pytest.fixture
def world() -> tuple[FakeCluster, FakeClock, Actuator]:
    nodes = {n.name: n for n in (node("cloud-1", "cloud"), node("cloud-2", "cloud"), node("edge-1", "edge"))}
    cluster = FakeCluster(nodes)
    cluster.add_deployment("agg", ["cloud-1", "cloud-2"])
    cluster.add_deployment("db", ["cloud-1"])
    clock = FakeClock(cluster)
    return cluster, clock, Actuator(cluster, clock, deadline_s=5.0, poll_s=0.1, settle_s=5.0)


def pods_of(cluster: FakeCluster, service: str) -> dict[str, str]:
    return {p.name: p.node_name for p in cluster.pods.values() if p.labels["app"] == service}


def no_reach_marks(cluster: FakeCluster) -> bool:
    nodes_clean = not cluster.cordoned_nodes() and all(not n.annotations for n in cluster.nodes.values())
    pods_clean = all(not any(k.startswith("reach.io/m") for k in p.labels) for p in cluster.pods.values())
    annotations_clean = all(not p.annotations for p in cluster.pods.values())
    hashes = all(p.labels["pod-template-hash"] == "abc" for p in cluster.pods.values())
    return nodes_clean and pods_clean and annotations_clean and hashes


def test_migration_moves_exactly_the_chosen_pod_and_ready_never_drops(world) -> None:  # type: ignore[no-untyped-def]
    cluster, _, actuator = world
    old = next(n for n, where in pods_of(cluster, "agg").items() if where == "cloud-1")
    others = {n: w for n, w in cluster.pods.items() if n != old}
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert result.migrated, result.detail
    assert old not in cluster.pods
    assert cluster.pods[result.replacement_pod].node_name == "edge-1"
    assert {n: cluster.pods[n] for n in others} == others
    assert len(cluster.pods) == 3 and no_reach_marks(cluster)
    assert min(h.get("agg", 0) for h in cluster.ready_history) >= 2
    assert result.replacement_ready_s <= result.old_pod_gone_s


def test_a_replacement_that_never_gets_ready_is_rolled_back_before_the_deadline(world) -> None:  # type: ignore[no-untyped-def]
    cluster, clock, actuator = world
    cluster.never_ready_nodes.add("edge-1")
    old = next(iter(pods_of(cluster, "agg")))
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert not result.migrated and "deadline" in result.detail
    assert old in cluster.pods and cluster.pods[old].ready
    assert len(pods_of(cluster, "agg")) == 2 and no_reach_marks(cluster)
    assert min(h.get("agg", 0) for h in cluster.ready_history) >= 2
    assert clock.now < 5.0 + 5.0 + 1.0


def test_an_api_error_mid_way_rolls_back(world) -> None:  # type: ignore[no-untyped-def]
    cluster, _, actuator = world
    cluster.label_patch_failures = 1
    old = next(iter(pods_of(cluster, "agg")))
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert not result.migrated and "500" in result.detail
    assert old in cluster.pods and len(pods_of(cluster, "agg")) == 2 and no_reach_marks(cluster)


def test_a_failing_rollback_step_does_not_stop_the_others_and_is_reported(world) -> None:  # type: ignore[no-untyped-def]
    cluster, _, actuator = world
    cluster.label_patch_failures = 2
    old = next(iter(pods_of(cluster, "agg")))
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert not result.migrated and "rollback incomplete" in result.detail
    assert not cluster.cordoned_nodes()


def test_clean_up_rolls_back_what_a_killed_migrator_left(world) -> None:  # type: ignore[no-untyped-def]
    cluster, _, actuator = world
    old = next(iter(pods_of(cluster, "agg")))
    cluster.patch_pod_metadata(
        old,
        {"pod-template-hash": "reach-migrating", "reach.io/migration": "m1"},
        {"reach.io/migration-id": "m1", "reach.io/migration-target": "edge-1",
         "reach.io/original-pod-template-hash": "abc", "reach.io/replicaset": "agg-abc"},
    )  # fmt: skip
    for name in ("cloud-1", "cloud-2"):
        cluster.cordon([name], "m1")
    cluster.tick()
    cluster.tick()
    assert len(pods_of(cluster, "agg")) == 3
    cleaned = actuator.clean_up_leftovers()
    assert any(old in c for c in cleaned)
    assert old in cluster.pods and len(pods_of(cluster, "agg")) == 2
    assert no_reach_marks(cluster)


def test_clean_up_on_a_clean_cluster_changes_nothing(world) -> None:  # type: ignore[no-untyped-def]
    cluster, _, actuator = world
    before = dict(cluster.pods)
    assert actuator.clean_up_leftovers() == []
    assert cluster.pods == before


def test_clean_up_keeps_the_replacement_once_the_old_pod_is_being_deleted(world) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    cluster, _, actuator = world
    old = next(iter(pods_of(cluster, "agg")))
    cluster.patch_pod_metadata(
        old,
        {"pod-template-hash": "reach-migrating", "reach.io/migration": "m2"},
        {"reach.io/migration-id": "m2", "reach.io/original-pod-template-hash": "abc",
         "reach.io/migration-target": "edge-1", "reach.io/replicaset": "agg-abc"},
    )  # fmt: skip
    cluster.cordon(["cloud-1"], "m2")
    before = set(pods_of(cluster, "agg"))
    cluster.tick()
    cluster.tick()
    [replacement] = set(pods_of(cluster, "agg")) - before
    cluster.pods[old] = replace(cluster.pods[old], terminating=True)
    cluster.patch_pod_metadata(old, {}, {"reach.io/replacement-pod": replacement})
    actuator.clean_up_leftovers()
    assert replacement in cluster.pods and cluster.pods[replacement].ready
    assert not cluster.cordoned_nodes()


def test_the_cordons_are_lifted_once_the_replacement_is_bound_before_it_is_ready(world) -> None:  # type: ignore[no-untyped-def]
    cluster, _, actuator = world
    cordoned_while_not_ready: list[bool] = []
    tick = cluster.tick

    def watching_tick() -> None:  # what the actuator left before the next reconcile
        fresh = [p for p in cluster.pods.values() if p.node_name == "edge-1" and not p.ready]
        if fresh:
            cordoned_while_not_ready.append(bool(cluster.cordoned_nodes()))
        tick()

    cluster.tick = watching_tick  # type: ignore[method-assign]
    old = next(iter(pods_of(cluster, "agg")))
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert result.migrated, result.detail
    assert 0 < result.cordon_window_s <= result.replacement_ready_s
    assert cordoned_while_not_ready and not cordoned_while_not_ready[-1]


def test_a_replacement_not_bound_within_the_cordon_cap_is_rolled_back(world) -> None:  # type: ignore[no-untyped-def]
    cluster, clock, actuator = world
    cluster.bind_delay_ticks = 100
    actuator.cordon_cap_s = 1.0
    old = next(iter(pods_of(cluster, "agg")))
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert not result.migrated and "cordon cap" in result.detail
    assert old in cluster.pods and len(pods_of(cluster, "agg")) == 2 and no_reach_marks(cluster)
    assert result.cordon_window_s >= 1.0 and clock.now < 1.0 + 5.0 + 1.0


def test_a_pod_on_a_failed_node_is_force_deleted_only_after_its_replacement_is_ready(world) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    cluster, _, actuator = world
    cluster.nodes["cloud-1"] = replace(cluster.nodes["cloud-1"], ready=False)
    old = next(n for n, where in pods_of(cluster, "agg").items() if where == "cloud-1")
    cluster.pods[old] = replace(cluster.pods[old], ready=False)
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert result.migrated and result.forced_removal, result.detail
    assert cluster.forced_deletions == [old] and old not in cluster.pods
    assert cluster.pods[result.replacement_pod].ready and cluster.pods[result.replacement_pod].node_name == "edge-1"
    assert no_reach_marks(cluster)


def test_a_pod_on_a_ready_node_is_never_force_deleted(world) -> None:  # type: ignore[no-untyped-def]
    cluster, _, actuator = world
    old = next(iter(pods_of(cluster, "agg")))
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert result.migrated and not result.forced_removal
    assert cluster.forced_deletions == []


def test_a_failed_migration_off_a_failed_node_force_deletes_nothing(world) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    cluster, _, actuator = world
    cluster.nodes["cloud-1"] = replace(cluster.nodes["cloud-1"], ready=False)
    cluster.never_ready_nodes.add("edge-1")
    old = next(n for n, where in pods_of(cluster, "agg").items() if where == "cloud-1")
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert not result.migrated and cluster.forced_deletions == []


def test_a_replicaset_that_cannot_be_read_means_no_migration_and_no_change(world) -> None:  # type: ignore[no-untyped-def]
    cluster, _, actuator = world
    old = next(iter(pods_of(cluster, "agg")))
    before = dict(cluster.pods)

    def gone(name: str) -> dict[str, str]:
        raise ConnectionError("API server gone")

    cluster.replicaset_selector = gone  # type: ignore[assignment, method-assign]
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert not result.migrated and not result.leftovers and "nothing changed" in result.detail
    assert cluster.pods == before and no_reach_marks(cluster)


def test_a_rollback_that_cannot_read_the_old_pod_keeps_both_pods_and_a_later_clean_up_finishes(world) -> None:  # type: ignore[no-untyped-def]
    """The old pod's state is unknown: deleting the replacement could leave the replica with no pod."""
    cluster, _, actuator = world
    cluster.never_ready_nodes.add("edge-1")
    old = next(iter(pods_of(cluster, "agg")))
    real_get_pod = cluster.get_pod

    def unreadable(name: str) -> object:
        raise ConnectionError("API server gone")

    cluster.get_pod = unreadable  # type: ignore[assignment, method-assign]
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert not result.migrated and result.leftovers and "read" in result.detail
    assert old in cluster.pods and result.replacement_pod in cluster.pods, "both pods are kept"
    assert not cluster.cordoned_nodes(), "our cordons are lifted"
    cluster.get_pod = real_get_pod  # type: ignore[method-assign]
    cleaned = actuator.clean_up_leftovers()
    assert any(old in c for c in cleaned)
    assert old in cluster.pods and len(pods_of(cluster, "agg")) == 2 and no_reach_marks(cluster)


def test_a_failed_read_before_removing_the_old_pod_does_not_undo_a_serving_replacement(world) -> None:  # type: ignore[no-untyped-def]
    """The node's state is read once more to choose a forced or a graceful delete; when that read fails, the
    read the migration started from decides, instead of a rollback that deleted the Ready replacement."""
    from dataclasses import replace

    cluster, _, actuator = world
    cluster.nodes["cloud-1"] = replace(cluster.nodes["cloud-1"], ready=False)
    old = next(n for n, where in pods_of(cluster, "agg").items() if where == "cloud-1")
    import inspect

    start = cluster.snapshot()
    real = cluster.snapshot

    def flaky() -> object:  # every read passes but the one that chooses how to remove the old pod
        if any(frame.function == "_remove_old_pod" for frame in inspect.stack()):
            raise TimeoutError("API server slow")
        return real()

    cluster.snapshot = flaky  # type: ignore[method-assign]
    result = actuator.migrate(Move(old, "edge-1"), start)
    assert result.migrated and result.forced_removal, result.detail
    assert old not in cluster.pods and cluster.pods[result.replacement_pod].node_name == "edge-1"


def test_an_old_pod_still_terminating_after_the_settle_time_is_said_not_confirmed(world) -> None:  # type: ignore[no-untyped-def]
    """The removal's confirmation timing out used to pass silently, with a made-up time for it."""
    cluster, _, actuator = world
    old = next(iter(pods_of(cluster, "agg")))
    real_delete = cluster.delete_pod

    def slow_delete(name: str) -> None:  # a long grace period: the pod stays Terminating
        from dataclasses import replace

        cluster.pods[name] = replace(cluster.pods[name], terminating=True)

    cluster.delete_pod = slow_delete  # type: ignore[method-assign]
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert result.migrated and f"removal of {old} not confirmed within 5 s (still Terminating)" in result.detail
    cluster.delete_pod = real_delete  # type: ignore[method-assign]


def test_a_rollback_keeps_the_other_nodes_cordoned_no_longer_than_the_cordon_cap(world) -> None:  # type: ignore[no-untyped-def]
    """Every node cordoned stops every workload's scheduling, not only ours: the rollback's window is capped too."""
    cluster, clock, actuator = world
    actuator.cordon_cap_s = 1.0  # below settle_s (5 s), which bounded the rollback's wait before
    cluster.never_ready_nodes.add("edge-1")  # the replacement never gets Ready: the migration rolls back
    cluster.replicaset_replicas = lambda name: 99  # type: ignore[method-assign]  # a ReplicaSet that never settles
    changes: list[tuple[float, str]] = []
    cordon, lift = cluster.cordon, cluster.lift_cordon

    def cordon_logged(node_name: str, migration_id: str) -> None:
        changes.append((clock.now, "cordon"))
        cordon(node_name, migration_id)

    def lift_logged(node_name: str, migration_id: str | None) -> None:
        changes.append((clock.now, "lift"))
        lift(node_name, migration_id)

    cluster.cordon, cluster.lift_cordon = cordon_logged, lift_logged  # type: ignore[method-assign]
    old = next(iter(pods_of(cluster, "agg")))
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert not result.migrated and "rolled back" in result.detail
    lifted_at = max(t for t, what in changes if what == "lift")
    rollback_cordoned_at = max(t for t, what in changes if what == "cordon")
    assert lifted_at - rollback_cordoned_at <= actuator.cordon_cap_s + actuator.poll_s, changes
    assert not cluster.cordoned_nodes()


def test_a_cordon_that_cannot_be_lifted_after_the_bind_keeps_the_migration_and_is_left_for_the_clean_up(world) -> None:  # type: ignore[no-untyped-def]
    """Bound means the move is made: a failed lift must not undo it (the next cycle's clean-up lifts it).

    The lift is retried for a few seconds first (tests/migrator/test_review_s15_leftovers.py); here the
    API server stays away longer than that.
    """
    cluster, _, actuator = world
    lift = cluster.lift_cordon
    away = {"yes": True}

    def fails_while_away(node_names: object, migration_id: str | None) -> None:
        if away["yes"]:
            raise ConnectionError("API server away")
        lift(node_names, migration_id)  # type: ignore[arg-type]

    cluster.lift_cordon = fails_while_away  # type: ignore[assignment, method-assign]
    old = next(iter(pods_of(cluster, "agg")))
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    away["yes"] = False
    assert result.migrated and result.leftovers and "cordons not all lifted" in result.detail
    assert old not in cluster.pods and result.replacement_pod in cluster.pods
    assert cluster.cordoned_nodes(), "still cordoned: the clean-up's job"
    assert actuator.clean_up_leftovers() and not cluster.cordoned_nodes()


def test_cordoning_that_uses_the_whole_cap_fails_before_the_pod_is_released(world) -> None:  # type: ignore[no-untyped-def]
    """On a cluster too large for the cap, say so; do not release the pod into a window already over."""
    cluster, clock, actuator = world
    actuator.cordon_cap_s = 1.0
    cordon = cluster.cordon

    def slow(node_names: list[str], migration_id: str) -> None:
        clock.now += 0.6 * len(node_names)  # 0.6 s per node, as on a slow API server
        cordon(node_names, migration_id)

    cluster.cordon = slow  # type: ignore[method-assign]
    old = next(iter(pods_of(cluster, "agg")))
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert not result.migrated and "raise cordon_cap_s" in result.detail
    assert old in cluster.pods and len(pods_of(cluster, "agg")) == 2 and no_reach_marks(cluster)


def test_an_admin_cordoned_node_gets_our_cordon_too_and_keeps_the_admin_s(world) -> None:  # type: ignore[no-untyped-def]
    """A pod may tolerate the admin's cordon (``node.kubernetes.io/unschedulable``), never ours."""
    from dataclasses import replace

    from migrator.snapshot import temporary_cordons

    cluster, _, actuator = world
    cluster.nodes["cloud-2"] = replace(cluster.nodes["cloud-2"], unschedulable=True)
    seen: list[set[str]] = []
    cordon = cluster.cordon

    def watched(node_names: list[str], migration_id: str) -> None:
        cordon(node_names, migration_id)
        seen.append(temporary_cordons(cluster.nodes["cloud-2"]))

    cluster.cordon = watched  # type: ignore[method-assign]
    old = next(iter(pods_of(cluster, "agg")))
    result = actuator.migrate(Move(old, "edge-1"), cluster.snapshot())
    assert result.migrated, result.detail
    assert seen and seen[0] == {result.migration_id}
    assert cluster.cordoned_nodes() == ["cloud-2"] and not temporary_cordons(cluster.nodes["cloud-2"])
