"""Guards: every refusal has a typed reason, checked on plain data in a fixed order."""

from __future__ import annotations

import pytest

from migrator.guards import GuardLimits, MigrationLedger, Move, Refusal, check_move
from migrator.observe import FitRules, build_request
from migrator.snapshot import LabelSelector, PdbInfo, SelectorRequirement

from .builders import cluster, node, pod

RULES = FitRules()


def verdict(snap, move, ledger=None, limits=None, now_s=1000.0, started=0):  # type: ignore[no-untyped-def]
    request = build_request(snap, RULES)
    return check_move(move, snap, request, ledger or MigrationLedger(), limits or GuardLimits(), RULES, now_s, started)


def test_a_sound_move_is_allowed() -> None:
    assert verdict(cluster(pod("a", "agg", "cloud-1")), Move("a", "edge-1")).allowed


@pytest.mark.parametrize(
    ("move", "reason"),
    [
        (Move("ghost", "edge-1"), Refusal.UNKNOWN_POD),
        (Move("a", "nowhere"), Refusal.UNKNOWN_NODE),
        (Move("a", "cloud-1"), Refusal.SAME_NODE),
        (Move("a", "client-1"), Refusal.TARGET_NOT_DEPLOYABLE),
    ],
)
def test_moves_the_cluster_cannot_take_are_refused(move: Move, reason: Refusal) -> None:
    assert verdict(cluster(pod("a", "agg", "cloud-1")), move).reason is reason


def test_pods_not_ready_terminating_or_without_replicaset_are_refused() -> None:
    assert (
        verdict(cluster(pod("a", "agg", "cloud-1", ready=False)), Move("a", "edge-1")).reason is Refusal.POD_NOT_READY
    )
    terminating = cluster(pod("a", "agg", "cloud-1", terminating=True))
    assert verdict(terminating, Move("a", "edge-1")).reason is Refusal.POD_TERMINATING
    bare = cluster(pod("a", "agg", "cloud-1", owner_kind=""))
    assert verdict(bare, Move("a", "edge-1")).reason is Refusal.UNSUPPORTED_OWNER
    stateful = cluster(pod("a", "agg", "cloud-1", owner_kind="StatefulSet"))
    assert verdict(stateful, Move("a", "edge-1")).reason is Refusal.UNSUPPORTED_OWNER


def test_a_pod_already_being_migrated_is_refused() -> None:
    labels = {"app": "agg", "reach.io/migration": "x1", "pod-template-hash": "reach-migrating"}
    assert verdict(cluster(pod("a", "agg", "cloud-1", labels=labels)), Move("a", "edge-1")).reason is (
        Refusal.MIGRATION_IN_PROGRESS
    )


def test_cordoned_notready_and_full_targets_are_refused() -> None:
    nodes = (
        node("cloud-1", "cloud"),
        node("cordoned", "cloud", unschedulable=True),
        node("down", "edge", ready=False),
        node("full", "edge", cpu_m=1000),
    )
    snap = cluster(pod("a", "agg", "cloud-1", cpu_m=700), pod("b", "db", "full", cpu_m=500), nodes=nodes)
    assert verdict(snap, Move("a", "cordoned")).reason is Refusal.TARGET_CORDONED
    assert verdict(snap, Move("a", "down")).reason is Refusal.TARGET_NOT_READY
    full = verdict(snap, Move("a", "full"))
    assert full.reason is Refusal.TARGET_FULL
    assert "500m CPU" in full.detail and "700m" in full.detail


def test_a_service_with_a_pod_not_ready_is_not_disturbed() -> None:
    snap = cluster(pod("a", "agg", "cloud-1"), pod("a2", "agg", "cloud-2", ready=False))
    assert verdict(snap, Move("a", "edge-1")).reason is Refusal.SERVICE_NOT_FULLY_READY


def test_a_pdb_without_allowed_disruptions_blocks_and_one_with_room_does_not() -> None:
    blocking = PdbInfo("agg-pdb", "default", LabelSelector({"app": "agg"}), disruptions_allowed=0)
    snap = cluster(pod("a", "agg", "cloud-1"), pdbs=(blocking,))
    assert verdict(snap, Move("a", "edge-1")).reason is Refusal.PDB_BLOCKS
    roomy = PdbInfo("agg-pdb", "default", LabelSelector({"app": "agg"}), disruptions_allowed=1)
    assert verdict(cluster(pod("a", "agg", "cloud-1"), pdbs=(roomy,)), Move("a", "edge-1")).allowed


def test_pdb_selectors_use_expressions_and_empty_selector_semantics_per_api_version() -> None:
    expr = LabelSelector({}, (SelectorRequirement("app", "In", ("agg", "db")),))
    snap = cluster(pod("a", "agg", "cloud-1"), pdbs=(PdbInfo("p", "default", expr, 0),))
    assert verdict(snap, Move("a", "edge-1")).reason is Refusal.PDB_BLOCKS
    empty_v1beta1 = PdbInfo("p", "default", LabelSelector(), 0, empty_selector_matches_all=False)
    assert verdict(cluster(pod("a", "agg", "cloud-1"), pdbs=(empty_v1beta1,)), Move("a", "edge-1")).allowed
    empty_v1 = PdbInfo("p", "default", LabelSelector(), 0, empty_selector_matches_all=True)
    assert verdict(cluster(pod("a", "agg", "cloud-1"), pdbs=(empty_v1,)), Move("a", "edge-1")).reason is (
        Refusal.PDB_BLOCKS
    )


def test_cooldown_cycle_and_window_limits() -> None:
    snap = cluster(pod("a", "agg", "cloud-1"), pod("b", "db", "cloud-1"))
    ledger = MigrationLedger()
    ledger.record(990.0, ("a",), cooldown_s=120)
    assert verdict(snap, Move("a", "edge-1"), ledger).reason is Refusal.POD_COOLDOWN
    assert verdict(snap, Move("a", "edge-1"), ledger, now_s=1111.0).allowed
    limits = GuardLimits(max_migrations_per_cycle=1, max_migrations_per_window=1, window_s=600)
    assert verdict(snap, Move("b", "edge-1"), MigrationLedger(), limits, started=1).reason is Refusal.CYCLE_LIMIT
    assert verdict(snap, Move("b", "edge-1"), ledger, limits).reason is Refusal.WINDOW_LIMIT
    assert verdict(snap, Move("b", "edge-1"), ledger, limits, now_s=1591.0).allowed


def test_dry_run_refuses_last_so_it_reports_only_moves_that_would_happen() -> None:
    snap = cluster(pod("a", "agg", "cloud-1"))
    dry = GuardLimits(dry_run=True)
    assert verdict(snap, Move("a", "edge-1"), limits=dry).reason is Refusal.DRY_RUN
    assert verdict(snap, Move("ghost", "edge-1"), limits=dry).reason is Refusal.UNKNOWN_POD


def test_a_pod_on_a_failed_node_may_be_evacuated_though_it_and_its_service_are_not_ready() -> None:
    nodes = (node("cloud-1", "cloud"), node("down", "cloud", ready=False), node("edge-1", "edge"))
    dead = pod("a1", "agg", "down", ready=False)
    snap = cluster(dead, pod("a2", "agg", "cloud-1"), pod("a3", "agg", "down", ready=False), nodes=nodes)
    assert verdict(snap, Move("a1", "edge-1")).allowed
    assert verdict(snap, Move("a2", "edge-1")).reason is Refusal.SERVICE_NOT_FULLY_READY


def test_an_evacuation_still_respects_the_target_and_the_rate_limits() -> None:
    nodes = (node("cloud-1", "cloud"), node("down", "cloud", ready=False), node("edge-1", "edge", unschedulable=True))
    snap = cluster(pod("a1", "agg", "down", ready=False), nodes=nodes)
    assert verdict(snap, Move("a1", "edge-1")).reason is Refusal.TARGET_CORDONED
    full = verdict(snap, Move("a1", "cloud-1"), limits=GuardLimits(max_migrations_per_cycle=0))
    assert full.reason is Refusal.CYCLE_LIMIT


def test_a_pod_that_just_moved_onto_a_node_that_then_failed_is_evacuated_despite_its_cooldown() -> None:
    nodes = (node("cloud-1", "cloud"), node("down", "cloud", ready=False), node("edge-1", "edge"))
    ledger = MigrationLedger()
    ledger.record(990.0, ("a1", "b1"), cooldown_s=120)  # one migration 10 s ago (old pod and replacement)
    snap = cluster(pod("a1", "agg", "down", ready=False), pod("b1", "db", "cloud-1"), nodes=nodes)
    assert verdict(snap, Move("a1", "edge-1"), ledger).allowed
    assert verdict(snap, Move("b1", "edge-1"), ledger).reason is Refusal.POD_COOLDOWN
    window = GuardLimits(max_migrations_per_window=1, window_s=600)
    assert verdict(snap, Move("a1", "edge-1"), ledger, window).reason is Refusal.WINDOW_LIMIT


def test_an_evacuation_needs_no_predicted_gain_and_ignores_the_return_hold_down() -> None:
    nodes = (node("cloud-1", "cloud"), node("down", "cloud", ready=False), node("edge-1", "edge"))
    snap = cluster(pod("a1", "agg", "down", ready=False), pod("b1", "agg", "cloud-1"), nodes=nodes)
    worse = Move("a1", "edge-1", predicted_before_ms=100.0, predicted_after_ms=120.0)
    ledger = MigrationLedger()
    ledger.record_departure(990.0, ("a1",), "edge-1", 900.0)
    assert verdict(snap, worse, ledger=ledger, limits=GuardLimits(require_predicted_gain=True)).allowed
    healthy = cluster(pod("a1", "agg", "cloud-1"), nodes=(*nodes[:1], node("cloud-2", "cloud"), nodes[2]))
    refused = verdict(healthy, Move("a1", "edge-1", predicted_before_ms=100.0, predicted_after_ms=120.0))
    assert refused.reason is Refusal.GAIN_TOO_SMALL
