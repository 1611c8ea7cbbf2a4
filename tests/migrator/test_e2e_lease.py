"""The migrators' Lease on the real 1.20 API server: its optimistic concurrency, its MicroTime, its RBAC, and two
live migrators of which only one migrates.

Each test uses a Lease of its own name, deleted afterwards, except the RBAC test, which must use the name
``deploy/k8s/rbac.yaml`` grants (``kube-system/reach-migrator``) and deletes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from .e2e_support import ROOT
from .test_e2e_migration import choose_move, placement, reach_marks

pytestmark = pytest.mark.e2e
SERVICE_ACCOUNT_USER = "system:serviceaccount:reach-system:reach-migrator"


def delete_lease(api_client: Any, name: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoordinationV1Api(api_client).delete_namespaced_lease(name, "kube-system")
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
def lease_name(api_client: Any) -> Iterator[str]:
    name = f"reach-migrator-test-{uuid.uuid4().hex[:8]}"
    yield name
    delete_lease(api_client, name)


def test_the_api_server_keeps_the_lease_s_versions_and_times(api_client: Any, lease_name: str) -> None:
    from migrator.kube import KubeLeaseStore
    from migrator.lease import LeaseConflict

    whole_second = 1_790_000_000.0  # a MicroTime at a whole second: isoformat() would drop its fraction
    store = KubeLeaseStore(api_client, "kube-system", lease_name, wall_s=lambda: whole_second)
    assert store.read() is None
    created = store.create("pod-a/1", 120)
    assert created.holder == "pod-a/1" and created.duration_s == 120 and created.renewed_at_s == whole_second
    with pytest.raises(LeaseConflict):
        store.create("pod-b/1", 120)
    whole_second += 1  # a renewal writes a new renewTime (an update that changes nothing keeps the version)
    renewed = store.write(created, "pod-a/1", 120)
    assert renewed.version != created.version and store.read() == renewed
    assert renewed.acquired == created.acquired != ""  # a PUT replaces the object: a renewal keeps acquireTime
    with pytest.raises(LeaseConflict):  # the version read before the renewal is stale now
        store.write(created, "pod-b/1", 120)
    whole_second += 5
    taken = store.write(renewed, "pod-b/1", 120)
    assert taken.holder == "pod-b/1" and taken.transitions == 1 and taken.acquired != created.acquired
    released = store.write(taken, "", 120)
    assert released.holder == "" and released.transitions == 1


def test_of_two_live_migrators_only_the_lease_holder_migrates_and_the_other_takes_over_when_it_stops(
    core: Any, demo_app: Any, fake_policy: Any, settings_for: Any, lease_name: str
) -> None:
    from migrator.app import build_controller

    def migrator(identity: str) -> Any:
        settings = settings_for(fake_policy.url, once=True, lease_name=lease_name, lease_identity=identity)
        return build_controller(settings, with_lease=True)

    first, second = migrator("first/1"), migrator("second/1")
    assert first._lead() is None and first.leading
    pod, target = choose_move(second, "aggregator")
    fake_policy.answer = {"pod_name": pod, "target_node": target, "is_stop": False}
    before, asked = placement(core), len(fake_policy.requests)
    [outcome] = second.run_cycle()
    assert outcome.kind == "standby" and "held by first/1" in outcome.detail, outcome.detail
    assert placement(core) == before and len(fake_policy.requests) == asked and reach_marks(core) == []
    first._release_lease()
    [outcome] = second.run_cycle()
    assert outcome.kind == "migrated", outcome.detail
    events = [r["event"] for r in second.journal.records]
    assert events.index("leading") < events.index("migrating"), events
    assert first._lead() is not None and not first.leading  # the first one now stands by
    second._release_lease()


def test_the_service_account_may_hold_the_lease_rbac_yaml_names_and_no_other(api_client: Any) -> None:
    import yaml
    from kubernetes.dynamic import DynamicClient

    from migrator.kube import KubeLeaseStore
    from migrator.lease import LeaderLease
    from migrator.snapshot import ClusterAccessDenied

    from .test_e2e_manifests import create

    dynamic = DynamicClient(api_client)
    for name in ("namespace.yaml", "rbac.yaml"):
        for doc in yaml.safe_load_all((ROOT / "deploy" / "k8s" / name).read_text()):
            if doc:
                create(dynamic, doc, dry_run=False)
    from kubernetes import client

    impersonating = client.ApiClient(api_client.configuration)
    impersonating.set_default_header("Impersonate-User", SERVICE_ACCOUNT_USER)
    try:
        lease = LeaderLease(KubeLeaseStore(impersonating, "kube-system", "reach-migrator"), "sa/1", 120)
        assert lease.hold().held and lease.hold().held and lease.release()  # create, get + update, release
        other = KubeLeaseStore(impersonating, "kube-system", "someone-elses-lease")
        with pytest.raises(ClusterAccessDenied, match=r"rbac\.yaml's Role reach-migrator-lease"):
            other.read()
    finally:
        delete_lease(api_client, "reach-migrator")


def test_two_migrator_processes_one_stands_by_and_takes_over_when_the_other_gets_sigterm(
    kubeconfig: str, demo_app: Any, fake_policy: Any, lease_name: str, tmp_path: Any
) -> None:
    """``python -m migrator`` twice on one cluster: the second stands by; SIGTERM ends the first one's wait between
    turns, it releases the Lease, and the second leads within a turn, not after the Lease's 60 s."""
    import contextlib
    import json
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    fake_policy.answer = {"pod_name": "", "target_node": "", "is_stop": True}
    env = {
        **os.environ, "REACH_MIGRATOR_KUBECONFIG": kubeconfig, "REACH_MIGRATOR_POLICY_URL": fake_policy.url,
        "REACH_MIGRATOR_INTERVAL_S": "60", "REACH_MIGRATOR_LEASE_NAME": lease_name,
        "REACH_MIGRATOR_EPISODE_CSV": str(tmp_path / "e.csv"), "REACH_MIGRATOR_DISTRIBUTION_CSV": str(tmp_path / "d.csv"),
    }  # fmt: skip
    records: dict[str, list[dict[str, Any]]] = {"first": [], "second": []}

    def start(name: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-m", "migrator"], cwd=tmp_path, env=env, stderr=subprocess.PIPE)

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                with contextlib.suppress(ValueError):  # a line that is not a record
                    records[name].append(json.loads(line))

        threading.Thread(target=read, daemon=True).start()
        return proc

    def wait_for(name: str, event: str, timeout_s: float) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(r.get("event") == event for r in records[name]):
                return time.monotonic()
            time.sleep(0.1)
        raise AssertionError(f"{name}: no {event!r} record within {timeout_s} s: {records[name][-5:]}")

    first = start("first")
    second = None
    try:
        wait_for("first", "leading", 30)
        second = start("second")
        wait_for("second", "standby", 30)
        signalled = time.monotonic()
        os.kill(first.pid, signal.SIGTERM)
        assert first.wait(20) == 0  # the 60-s wait between turns ended at the signal
        assert any(r.get("event") == "lease-released" for r in records["first"])
        took_over = wait_for("second", "leading", 30)
        assert took_over - signalled < 20, "the standby waited for the Lease to expire instead of its release"
        led = next(r for r in records["second"] if r.get("event") == "leading")
        assert led["took_over_from"] == ""  # released, not expired
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
