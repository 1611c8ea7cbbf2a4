"""One live migrator per cluster (migrator/lease.py): the Lease's rules, and a controller that writes only while it holds it.

The Lease lives in an in-memory store with the API server's optimistic concurrency (a write must carry
the version it read); the real API server's side is in ``test_e2e_lease.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from pydantic import ValidationError

from ceenv.schema import ActionRequest
from migrator.controller import Controller
from migrator.guards import Move
from migrator.lease import LeaderLease, LeaseConflict, LeaseRecord, LeaseRenewer
from migrator.policy import Advice, Stop
from migrator.settings import MigratorSettings
from migrator.telemetry import MigratorTelemetry

from .fake_cluster import FakeCluster
from .review_s15_support import controller_for, small_cluster


@dataclass
class MemoryLeaseStore:
    """A Lease with resourceVersions: a write with an older version is a conflict, as on the API server."""

    where: str = "kube-system/reach-migrator"
    record: LeaseRecord | None = None
    wall_s: float = 1_000_000.0
    writes: int = 0
    fail_with: Exception | None = None
    before_write: list[object] = field(default_factory=list)  # callables run once before the next write

    def read(self) -> LeaseRecord | None:
        if self.fail_with is not None:
            raise self.fail_with
        return self.record

    def create(self, holder: str, duration_s: float) -> LeaseRecord:
        if self.record is not None:
            raise LeaseConflict("exists")
        return self._put(holder, duration_s, 0)

    def write(self, current: LeaseRecord, holder: str, duration_s: float) -> LeaseRecord:
        while self.before_write:
            self.before_write.pop(0)()  # type: ignore[operator]
        if self.record is None or self.record.version != current.version:
            raise LeaseConflict("changed")
        return self._put(holder, duration_s, current.transitions + (holder != current.holder))

    def _put(self, holder: str, duration_s: float, transitions: int) -> LeaseRecord:
        self.writes += 1
        self.record = LeaseRecord(holder, duration_s, str(self.writes), self.wall_s, transitions)
        return self.record


@dataclass
class Ticker:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def lease(store: MemoryLeaseStore, identity: str, ticker: Ticker, duration_s: float = 120.0) -> LeaderLease:
    return LeaderLease(store, identity, duration_s, monotonic_s=ticker)


# ---- the Lease's rules ---------------------------------------------------------------------------------
def test_the_first_migrator_takes_the_lease_and_a_second_stands_by_until_it_expires_on_its_own_clock() -> None:
    store, ticker = MemoryLeaseStore(), Ticker()
    first, second = lease(store, "pod-a/1", ticker), lease(store, "pod-b/1", ticker)
    assert first.hold().held and first.held
    status = second.hold()
    assert not status.held and status.holder == "pod-a/1" and status.wait_s == pytest.approx(120.0)
    ticker.now = 119.0
    assert not second.hold().held  # not renewed, but not expired on the second's clock either
    ticker.now = 120.5
    taken = second.hold()
    assert taken.held and taken.took_over_from == "pod-a/1"
    assert store.record is not None and store.record.holder == "pod-b/1" and store.record.transitions == 1
    assert not first.hold().held  # the old holder finds it gone and stops writing


def test_a_renewal_restarts_the_standby_s_wait() -> None:
    store, ticker = MemoryLeaseStore(), Ticker()
    first, second = lease(store, "pod-a/1", ticker), lease(store, "pod-b/1", ticker)
    first.hold()
    second.hold()
    ticker.now = 100.0
    assert first.hold().held  # renewed: a new version, seen by the standby at its next read
    ticker.now = 150.0
    status = second.hold()
    assert not status.held and status.wait_s == pytest.approx(120.0)  # seen changed at 150: 120 s from now
    ticker.now = 219.0
    assert not second.hold().held


def test_the_holder_s_renew_time_is_never_compared_with_this_clock() -> None:
    """A holder whose clock is hours behind (its renewTime looks stale here) still holds a Lease it renews."""
    store, ticker = MemoryLeaseStore(), Ticker()
    holder = lease(store, "pod-a/1", ticker)
    holder.hold()
    store.wall_s -= 3 * 3600  # the holder's next renewTime: three hours in this migrator's past
    holder.hold()
    assert not lease(store, "pod-b/1", ticker).hold().held


def test_a_released_lease_is_taken_at_once_and_release_is_only_the_holder_s() -> None:
    store, ticker = MemoryLeaseStore(), Ticker()
    first, second = lease(store, "pod-a/1", ticker), lease(store, "pod-b/1", ticker)
    first.hold()
    assert not second.hold().held
    assert not second.release()  # not its to give up
    assert first.release() and store.record is not None and store.record.holder == ""
    assert second.hold().held


def test_the_same_identity_takes_its_own_lease_back_at_once() -> None:
    """A container restarted in place (same pod name, same PID): no wait for its own dead instance."""
    store, ticker = MemoryLeaseStore(), Ticker()
    lease(store, "reach-migrator-abc/1", ticker).hold()
    assert lease(store, "reach-migrator-abc/1", ticker).hold().held


def test_of_two_migrators_writing_at_once_only_one_holds_it() -> None:
    store, ticker = MemoryLeaseStore(), Ticker()
    lease(store, "old/1", ticker, duration_s=120).hold()
    ticker.now = 500.0
    first, second = lease(store, "pod-a/1", ticker), lease(store, "pod-b/1", ticker)
    first.hold(), second.hold()  # both see it; neither may take it yet
    ticker.now = 700.0
    store.before_write.append(second.hold)  # the other takes it between this one's read and its write
    status = first.hold()
    assert not status.held and not first.held
    assert store.record is not None and store.record.holder == "pod-b/1" and second.held


# ---- the controller ------------------------------------------------------------------------------------
class MoveDb:
    """Moves the db pod to cloud-2, then says stop."""

    def __init__(self) -> None:
        self.asked = 0

    def ask(self, request: ActionRequest) -> Advice:
        self.asked += 1
        if self.asked > 1:
            return Stop()
        return Move(request.cluster_state.services["db"].pods[0].pod_name, "cloud-2")


def state(cluster: FakeCluster) -> tuple[object, ...]:
    """Everything a migrator could write: pods (placement, labels, annotations), nodes (taints), events."""
    return (dict(cluster.pods), dict(cluster.nodes), list(cluster.events))


def with_lease(controller: Controller, store: MemoryLeaseStore, identity: str = "me/1") -> Controller:
    clock = controller.clock
    controller.lease = LeaderLease(store, identity, 120.0, monotonic_s=clock.now_s)
    return controller


def test_a_standby_reads_asks_and_writes_nothing_and_once_gives_up_after_twice_the_lease(tmp_path: Path) -> None:
    cluster, policy = small_cluster(), MoveDb()
    store, ticker = MemoryLeaseStore(), Ticker()
    lease(store, "other/1", ticker).hold()
    store.before_write.clear()
    controller, telemetry = controller_for(cluster, policy, tmp_path, once=True, interval_s=30.0)
    with_lease(controller, store)
    # The other migrator keeps renewing: every read by the standby sees a new version.
    renewals = 0
    original_read = store.read

    def read_renewed() -> LeaseRecord | None:
        nonlocal renewals
        record = original_read()
        if record is not None and record.holder == "other/1":
            renewals += 1
            store.record = replace(record, version=f"r{renewals}")
        return store.record

    store.read = read_renewed  # type: ignore[method-assign]
    before = state(cluster)
    assert controller.run() is False
    events = [r["event"] for r in controller.journal.records]
    assert set(events) == {"standby"} and len(events) >= 2, events
    assert policy.asked == 0 and state(cluster) == before
    assert controller.clock.now_s() >= 240.0  # waited twice the Lease's duration, polling every 30 s
    assert telemetry.registry.get_sample_value("reach_migrator_lease_held") == 0
    assert telemetry.registry.get_sample_value("reach_migrator_standby_turns_total") == len(events)


def test_once_takes_over_a_lease_its_holder_stopped_renewing_then_migrates_and_releases(tmp_path: Path) -> None:
    cluster, policy = small_cluster(), MoveDb()
    store, ticker = MemoryLeaseStore(), Ticker()
    lease(store, "killed/9", ticker).hold()
    controller, _ = controller_for(cluster, policy, tmp_path, once=True, interval_s=30.0)
    with_lease(controller, store)
    assert controller.run() is True
    events = [r["event"] for r in controller.journal.records]
    assert events[0] == "standby" and "leading" in events and "migrated" in events, events
    assert events.index("leading") < events.index("cleanup") < events.index("migrated")  # start-up clean-up waits
    assert next(r for r in controller.journal.records if r["event"] == "leading")["took_over_from"] == "killed/9"
    assert events[-1] == "lease-released" and store.record is not None and store.record.holder == ""
    assert 120.0 <= controller.clock.now_s() < 240.0  # one Lease duration after it first saw the dead holder's


def test_a_lease_lost_between_the_question_and_the_migration_stops_the_migration(tmp_path: Path) -> None:
    cluster = small_cluster()
    store = MemoryLeaseStore()

    class LoseLeaseWhileAsked(MoveDb):
        def ask(self, request: ActionRequest) -> Advice:
            assert store.record is not None
            # Another migrator took it over meanwhile (e.g. this one stalled longer than the Lease).
            store.record = replace(store.record, holder="other/2", version="taken")
            return super().ask(request)

    policy = LoseLeaseWhileAsked()
    controller, _ = controller_for(cluster, policy, tmp_path, once=True)
    with_lease(controller, store)
    before = state(cluster)
    controller.run()
    events = [r["event"] for r in controller.journal.records]
    assert policy.asked == 1 and "migrating" not in events and state(cluster) == before, events
    assert "leadership-lost" in events and events[events.index("leadership-lost") + 1] == "standby"


def test_a_lease_that_cannot_be_read_is_a_blind_turn(tmp_path: Path) -> None:
    cluster, policy = small_cluster(), MoveDb()
    store = MemoryLeaseStore(fail_with=ConnectionError("connection refused"))
    controller, _ = controller_for(cluster, policy, tmp_path, once=True)
    with_lease(controller, store)
    before = state(cluster)
    controller.run(should_stop=lambda: True)
    [record] = [r for r in controller.journal.records if r["event"] == "blind"]
    assert record["reason"] == "cluster-unreadable" and "Lease kube-system/reach-migrator" in str(record["detail"])
    assert policy.asked == 0 and state(cluster) == before


def test_a_leader_renews_while_it_waits_between_turns(tmp_path: Path) -> None:
    cluster, policy = small_cluster(), MoveDb()
    store = MemoryLeaseStore()
    controller, _ = controller_for(cluster, policy, tmp_path, interval_s=300.0)
    with_lease(controller, store)
    written_at: list[float] = []
    put = store._put

    def timed_put(holder: str, duration_s: float, transitions: int) -> LeaseRecord:
        written_at.append(controller.clock.now_s())
        return put(holder, duration_s, transitions)

    store._put = timed_put  # type: ignore[method-assign]
    controller.run(should_stop=lambda: controller.clock.now_s() >= 300.0)  # two turns, 300 s apart
    # 300 s between turns with a 120 s Lease: renewed every 40 s in between, so a standby never sees it expire.
    events = [r["event"] for r in controller.journal.records]
    assert "leadership-lost" not in events and "standby" not in events, events
    within = [*sorted(t for t in written_at if t <= 300.0), 300.0]  # up to the second turn
    gaps = [b - a for a, b in zip([0.0, *within], within, strict=False)]
    assert max(gaps) <= 41.0, written_at  # every 40 s of the wait (it began after the first turn's 0.4 s)
    assert policy.asked == 2  # a move in the first turn, stop in the second


def test_a_stop_signal_ends_the_wait_between_turns_and_releases_the_lease(tmp_path: Path) -> None:
    cluster, policy = small_cluster(), MoveDb()
    store = MemoryLeaseStore()
    controller, _ = controller_for(cluster, policy, tmp_path, interval_s=600.0)
    with_lease(controller, store)
    signalled = lambda: controller.clock.now_s() >= 5.0  # noqa: E731 (SIGTERM 5 s into the wait)
    controller.run(should_stop=signalled, interrupt=signalled)
    assert controller.clock.now_s() < 6.0
    assert store.record is not None and store.record.holder == ""


def test_a_dry_run_never_takes_the_lease(tmp_path: Path) -> None:
    cluster, policy = small_cluster(), MoveDb()
    store = MemoryLeaseStore()
    controller, _ = controller_for(cluster, policy, tmp_path, once=True, dry_run=True)
    with_lease(controller, store)
    controller.run()
    assert store.record is None and policy.asked == 1


def test_the_lease_must_leave_time_for_a_renewal_that_times_out() -> None:
    with pytest.raises(ValidationError, match="REACH_MIGRATOR_LEASE_DURATION_S to at least 60"):
        MigratorSettings(_env_file=None, lease_duration_s=30)  # type: ignore[call-arg]
    # No Lease taken, nothing to check: leader election off, or a dry run (a long deadline is fine too).
    MigratorSettings(_env_file=None, lease_duration_s=30, leader_election=False)  # type: ignore[call-arg]
    MigratorSettings(_env_file=None, lease_duration_s=30, dry_run=True, migration_deadline_s=300)  # type: ignore[call-arg]
    settings = MigratorSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.lease_duration_s >= settings.lease_minimum_s()


def test_the_lease_gauge_follows_the_records() -> None:
    telemetry = MigratorTelemetry()
    for event, held in (("leading", 1), ("standby", 0), ("leading", 1), ("leadership-lost", 0), ("leading", 1),
                        ("lease-released", 0)):  # fmt: skip
        telemetry.observe_record({"event": event})
        assert telemetry.registry.get_sample_value("reach_migrator_lease_held") == held


@pytest.mark.parametrize("field", ["lease_name", "lease_namespace"])
def test_a_lease_name_the_api_server_would_refuse_is_refused_when_the_settings_are_read(field: str) -> None:
    with pytest.raises(ValidationError, match="is not a Kubernetes name"):
        MigratorSettings(_env_file=None, **{field: "reach_test"})  # type: ignore[arg-type]


# ---- review of the Lease (session 16): no clean-up without it, the renewer, a blind once ---------------
def test_a_standby_does_not_clean_up_on_exit_what_may_be_the_holder_s_migration(tmp_path: Path) -> None:
    """Leftovers from when it led, then the Lease lost: on SIGTERM it used to lift every reach cordon, the new
    holder's in flight included."""
    cluster, policy = small_cluster(), MoveDb()
    store, ticker = MemoryLeaseStore(), Ticker()
    lease(store, "holder/2", ticker).hold()
    controller, _ = controller_for(cluster, policy, tmp_path, once=True)
    with_lease(controller, store)
    controller.cleanup_due = True
    cluster.cordon(["cloud-2", "edge-1"], "holders-migration")  # the holder's migration in flight
    before = state(cluster)
    controller.run(should_stop=lambda: True)
    assert state(cluster) == before
    left = [r for r in controller.journal.records if r["event"] == "leftovers-left"]
    assert left and "does not hold the Lease" in str(left[0]["detail"])


def test_every_episode_step_confirms_the_lease_before_its_clean_up(tmp_path: Path) -> None:
    cluster, policy = small_cluster(), MoveDb()
    store = MemoryLeaseStore()
    controller, _ = controller_for(cluster, policy, tmp_path, once=True, mode="episode")
    with_lease(controller, store)
    assert controller._lead() is None
    # The first step migrates; then another migrator takes the Lease, and this one has leftovers to clean up.
    original_act = controller._act

    def act_then_lose_the_lease(*args: object) -> object:
        outcome = original_act(*args)  # type: ignore[arg-type]
        assert store.record is not None
        store.record = replace(store.record, holder="other/3", version="taken")
        controller.cleanup_due = True
        cluster.cordon(["edge-1"], "others-migration")
        return outcome

    controller._act = act_then_lose_the_lease  # type: ignore[method-assign]
    outcomes = controller.run_episode()
    assert [o.kind for o in outcomes] == ["migrated", "standby"], outcomes
    assert any(t.value == "others-migration" for t in cluster.nodes["edge-1"].taints)


def test_once_with_a_lease_it_cannot_read_is_one_blind_turn_not_a_long_wait(tmp_path: Path) -> None:
    cluster, policy = small_cluster(), MoveDb()
    store = MemoryLeaseStore(fail_with=PermissionError("403 Forbidden"))
    controller, _ = controller_for(cluster, policy, tmp_path, once=True, interval_s=30.0)
    with_lease(controller, store)
    assert controller.run() is True  # a blind turn is a turn: exit 0 at once, as before the Lease
    assert controller.clock.now_s() < 1.0
    assert [r["event"] for r in controller.journal.records] == ["blind"]


def test_the_renewer_keeps_a_held_lease_while_the_loop_is_busy_and_never_takes_one() -> None:
    import time

    store = MemoryLeaseStore()
    held = LeaderLease(store, "busy/1", 120.0)
    other = LeaderLease(store, "standby/1", 120.0)
    assert held.hold().held
    with LeaseRenewer(held, period_s=0.02) as renewer, LeaseRenewer(other, period_s=0.02) as idle:
        time.sleep(0.3)  # the loop is mid-migration: no call of its own
    assert renewer.renewals >= 3 and idle.renewals == 0
    assert store.record is not None and store.record.holder == "busy/1"
    held.release()
    with LeaseRenewer(held, period_s=0.02) as after_release:
        time.sleep(0.1)
    assert after_release.renewals == 0 and store.record.holder == ""


def test_the_kube_store_writes_what_the_api_server_accepts_and_reads_what_a_proxy_sends() -> None:
    from migrator.kube import KubeLeaseStore, _json_or_message

    store = KubeLeaseStore(None, "kube-system", "reach-migrator", wall_s=lambda: 1_790_000_000.0)  # type: ignore[arg-type]
    spec = store._spec("me/1", 60.2, None, 0)
    assert spec["leaseDurationSeconds"] == 61  # never shorter than the settings ask
    assert spec["renewTime"] == spec["acquireTime"] == "2026-09-21T14:13:20.000000Z"  # six digits at a whole second
    assert store._spec("me/1", 60, "2026-01-01T00:00:00.000001Z", 1)["acquireTime"] == "2026-01-01T00:00:00.000001Z"
    assert "not JSON" in _json_or_message(b"<html>502 Bad Gateway</html>")["message"]
    assert _json_or_message(b"") == {}


def test_a_failed_renewal_is_tried_again_soon_and_the_lease_stays_held_meanwhile() -> None:
    """One timeout used to stop every later renewal (held turned False), so the Lease lapsed mid-migration."""
    import time

    store = MemoryLeaseStore()
    clock = {"now": 0.0}
    held = LeaderLease(store, "busy/1", 60.0, monotonic_s=lambda: clock["now"])
    assert held.hold().held
    failing = {"left": 1}
    read = store.read

    def flaky_read() -> LeaseRecord | None:
        if failing["left"]:
            failing["left"] -= 1
            raise TimeoutError("read timed out")
        return read()

    store.read = flaky_read  # type: ignore[method-assign]
    assert held.renew_if_held() == "failed" and held.held  # still within the Lease: ours
    assert held.renew_if_held() == "renewed" and held.held
    failing["left"] = 1
    clock["now"] = 55.0  # no renewal got through for most of the Lease: not counted on any more
    assert held.renew_if_held() == "not-held" and not held.held
    # The renewer retries a failed renewal after RENEW_RETRY_S, not a whole period later.
    clock["now"] = 0.0
    assert held.hold().held
    failing["left"] = 2
    with LeaseRenewer(held, period_s=0.05) as renewer:
        deadline = time.monotonic() + 2
        while renewer.renewals == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert renewer.failures >= 1 and renewer.renewals >= 1 and held.held


def test_a_long_running_standby_told_to_stop_exits_as_done(tmp_path: Path) -> None:
    cluster, policy = small_cluster(), MoveDb()
    store, ticker = MemoryLeaseStore(), Ticker()
    lease(store, "holder/1", ticker).hold()
    controller, _ = controller_for(cluster, policy, tmp_path, interval_s=30.0)
    with_lease(controller, store)
    assert controller.run(should_stop=lambda: True) is True  # not once: exit 0, not "--once: held throughout"


# ---- a migration in flight when the Lease is lost ------------------------------------------------------
def test_a_migrator_paused_past_its_lease_mid_migration_abandons_it_and_the_holder_rolls_it_back(
    tmp_path: Path,
) -> None:
    """The process stops for longer than the Lease (a frozen VM, a long pause) right after the replacement got Ready:
    another migrator may hold the Lease by then. It used to delete the old pod anyway; now it writes nothing more, says
    so (record, Event, metric), and the new holder's clean-up rolls the migration back with Ready pods never short."""
    cluster, policy = small_cluster(), MoveDb()
    store = MemoryLeaseStore()
    controller, telemetry = controller_for(cluster, policy, tmp_path, once=True)
    with_lease(controller, store)
    old = next(name for name, pod in cluster.pods.items() if pod.labels["app"] == "db")
    original_wait = controller.actuator._wait_until_ready
    standby = LeaderLease(store, "other/2", 120.0, monotonic_s=controller.clock.now_s)

    def ready_then_paused(*args: object) -> None:
        original_wait(*args)  # type: ignore[arg-type]
        controller.clock.now += 121.0  # paused past the Lease: no renewal got through meanwhile
        status = standby.hold()  # seen unrenewed for a whole duration on its own clock: it takes over
        assert status.held or status.wait_s > 0

    controller.actuator._wait_until_ready = ready_then_paused  # type: ignore[method-assign]
    assert controller.lease is not None and controller._lead() is None
    outcomes = controller.run_cycle()
    outcome = next((o for o in outcomes if o.result is not None), None)
    assert outcome is not None and outcome.kind == "abandoned", outcomes
    assert outcome.result is not None and outcome.result.abandoned and not outcome.result.migrated
    assert old in cluster.pods, "the old pod was deleted after the Lease was lost"
    replacement = outcome.result.replacement_pod
    assert cluster.pods[replacement].node_name == "cloud-2" and cluster.pods[old].labels["pod-template-hash"] != "abc"
    records = [r for r in controller.journal.records if r["event"] == "abandoned"]
    assert len(records) == 1 and records[0]["leftovers"] is True and "Lease" in str(records[0]["detail"])
    assert (old, "MigrationAbandoned") in cluster.events
    assert telemetry.registry.get_sample_value("reach_migrator_migrations_total", {"result": "abandoned"}) == 1.0
    # The new holder cleans the migration up: the old pod back in its ReplicaSet, no replacement, no marks.
    from migrator.actuator import Actuator

    Actuator(cluster, controller.clock, deadline_s=5.0, poll_s=0.1, settle_s=5.0).clean_up_leftovers()
    db = {name: pod for name, pod in cluster.pods.items() if pod.labels["app"] == "db"}
    assert list(db) == [old] and db[old].labels["pod-template-hash"] == "abc" and not cluster.cordoned_nodes()
    assert min(h.get("db", 0) for h in cluster.ready_history) >= 1


def test_may_write_is_the_renewal_window_and_asks_nothing_of_the_api_server() -> None:
    store, ticker = MemoryLeaseStore(), Ticker()
    held = lease(store, "me/1", ticker)
    assert not held.may_write()  # never taken
    assert held.hold().held and held.may_write()
    store.fail_with = TimeoutError("the API server is away")
    ticker.now = 100.0  # within 120 s less the 12 s margin of the last renewal: still ours
    assert held.may_write()
    ticker.now = 109.0
    assert not held.may_write(), "past most of the Lease without a renewal, a standby may take it soon"
    store.fail_with = None
    assert held.hold().held and held.may_write()
    held.release()
    assert not held.may_write()
