"""``reach down`` stops a local cluster component that was started again, under its new PID.

The closed-loop experiments restart each failed node's hollow kubelet through the cluster's own process
table. The registry used to keep the old PID, so `reach down` dropped the dead record and left the new
kubelet running. Real processes (``sleep``) stand in for the components here (a non-node name: a restarted hollow node is
waited for until Ready).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.local import ops, processes
from flows.local.cluster import LocalCluster
from flows.local.cluster.supervisor import ProcessTable, is_our_process, stop_pid


@pytest.fixture
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A registry of its own: `ops.down` stops every recorded process, so it must see only this test's."""
    home = tmp_path / "reach-home"
    monkeypatch.setenv("REACH_HOME", str(home))
    return home


@pytest.fixture
def cluster_table(tmp_path: Path, isolated_home: Path) -> Iterator[ProcessTable]:
    """A cluster state directory whose table runs one component, adopted by the registry as
    `reach demo` adopts the cluster's components."""
    table = ProcessTable(tmp_path / "cluster")
    proc = table.spawn("kube-scheduler", ["sleep", "300"])
    processes.adopt(
        "cluster-kube-scheduler", proc.pid, 0, ["sleep"], str(table.state_dir / "logs" / "kube-scheduler.log")
    )
    yield table
    for entry in table.recorded().values():  # whatever a failing test left running, by its recorded PID
        if is_our_process(int(str(entry["pid"])), "sleep"):
            stop_pid(int(str(entry["pid"])), grace_s=1)


def pid_of(table: ProcessTable) -> int:
    return table.recorded_pids()["kube-scheduler"]


def test_down_stops_a_component_restarted_behind_the_registrys_back(cluster_table: ProcessTable) -> None:
    old = pid_of(cluster_table)
    new = cluster_table.restart("kube-scheduler").pid  # what the experiments did: the registry still holds `old`
    assert new != old and not is_our_process(old, "sleep")
    stopped = ops.down()
    assert not is_our_process(new, "sleep"), "the restarted component outlived `reach down`"
    assert "cluster-kube-scheduler" in stopped
    assert processes.recorded("cluster-kube-scheduler") is None


def test_a_restart_through_ops_moves_the_registry_record_to_the_new_pid(cluster_table: ProcessTable) -> None:
    old = pid_of(cluster_table)
    pid = ops.restart_cluster_component(LocalCluster(cluster_table.state_dir), "kube-scheduler")
    record = processes.recorded("cluster-kube-scheduler")
    assert record is not None and record.pid == pid == pid_of(cluster_table) != old
    assert processes.find("cluster-kube-scheduler") is not None  # alive, and the PID's start time matches
    assert ops.down() == ["cluster-kube-scheduler"]
    assert not is_our_process(pid, "sleep")


def test_down_leaves_a_cluster_table_whose_pid_now_runs_something_else(
    cluster_table: ProcessTable, isolated_home: Path
) -> None:
    """A recorded PID that another program now holds is never signalled (the table's guard against reuse)."""
    entries = cluster_table.recorded()
    entries["kube-controller-manager"] = {"pid": os.getpid(), "exe": "not-this-program", "argv": ["x"], "env": {}}
    cluster_table.pids_path.write_text(json.dumps(entries))
    assert ops.down() == ["cluster-kube-scheduler"]  # and this test process is still alive to check it


def test_down_leaves_a_pid_that_runs_the_same_program_with_another_command_line(
    cluster_table: ProcessTable, isolated_home: Path
) -> None:
    """After a reboot a recorded PID may run another `etcd` (same program, other state directory): only the
    recorded command line is ours."""
    entries = cluster_table.recorded()
    pid = int(str(entries["kube-scheduler"]["pid"]))
    processes.forget("cluster-kube-scheduler")  # only the cluster's table still knows it, as after a restart
    # a dead record of the same cluster, as a reboot leaves: `down` reads that cluster's table
    processes.adopt("cluster-etcd", 999_999_999, 0, ["etcd"], str(cluster_table.state_dir / "logs" / "etcd.log"))
    entries["kube-scheduler"]["argv"] = ["sleep", "301"]  # what the table recorded; the PID now runs `sleep 300`
    cluster_table.pids_path.write_text(json.dumps(entries))
    ops.down()
    assert is_our_process(pid, "sleep"), "a process whose command line is not the recorded one was stopped"


def test_a_restart_of_another_clusters_component_leaves_this_clusters_record(
    cluster_table: ProcessTable, tmp_path: Path
) -> None:
    other = ProcessTable(tmp_path / "other-cluster")
    other.spawn("kube-scheduler", ["sleep", "300"])
    try:
        pid = ops.restart_cluster_component(LocalCluster(other.state_dir), "kube-scheduler")
        record = processes.recorded("cluster-kube-scheduler")
        assert record is not None and record.pid == pid_of(cluster_table) != pid
    finally:
        for entry in other.recorded().values():
            if is_our_process(int(str(entry["pid"])), "sleep"):
                stop_pid(int(str(entry["pid"])), grace_s=1)
