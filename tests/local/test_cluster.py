"""The local cluster package without starting anything: scenario → hollow nodes, hosts entries, command lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.local.cluster import LocalCluster, read_scenario_nodes
from flows.local.cluster.hollow import (
    ensure_hosts_entries,
    failure_detection_env,
    hollow_timing_env,
    node_monitor_grace_s,
)
from flows.local.cluster.supervisor import loopback_env
from tests.conftest import scenario_dir

SCENARIO = scenario_dir("7-21")


def test_scenario_nodes_get_names_labels_and_nominal_capacity() -> None:
    nodes = read_scenario_nodes(SCENARIO)
    assert [n.name for n in nodes] == [
        "tb-cloud-vm-8-1", "tb-cloud-vm-8-2", "tb-edge-vm-4-1", "tb-edge-vm-4-2",
        "tb-edge-vm-2-1", "tb-edge-vm-2-2", "tb-client-vm-2-1",
    ]  # fmt: skip
    cloud = nodes[0]
    assert (cloud.cpu_cores, cloud.memory_bytes) == (7, 27_680_000_000)
    assert cloud.labels() == {
        "reach.io/layer": "cloud",
        "reach.io/node-type": "tb-cloud-vm-8",
        "reach.io/cpu-type": "0",
    }
    assert nodes[-1].labels()["reach.io/layer"] == "client"


def test_a_missing_scenario_names_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nodes.json is missing: pass a scenario directory"):
        read_scenario_nodes(tmp_path)


def test_hosts_entries_are_added_once(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    ensure_hosts_entries(["a-1", "b-1"], hosts)
    ensure_hosts_entries(["a-1", "b-1", "c-1"], hosts)
    assert hosts.read_text().splitlines()[1:] == [
        "127.0.0.1 a-1 b-1 # reach-local-cluster",
        "127.0.0.1 c-1 # reach-local-cluster",
    ]


def test_hollow_nodes_bind_distinct_loopback_ports_and_carry_their_capacity(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path, bin_dir=tmp_path)
    (tmp_path / "kubemark").write_text("")
    (tmp_path / "kubemark").chmod(0o755)
    nodes = read_scenario_nodes(SCENARIO)
    argv0, env0 = cluster.hollow_node_argv(nodes[0], 0)
    argv1, _ = cluster.hollow_node_argv(nodes[1], 1)
    ports0 = {a for a in argv0 if "port=" in a}
    ports1 = {a for a in argv1 if "port=" in a}
    assert len(ports0) == 2 and not ports0 & ports1
    assert env0["REACH_HOLLOW_CPU_CORES"] == "7" and env0["REACH_HOLLOW_MEMORY_BYTES"] == "27680000000"
    assert "--node-labels=reach.io/layer=cloud,reach.io/node-type=tb-cloud-vm-8,reach.io/cpu-type=0" in argv0
    env = loopback_env(env0)
    assert env["AWS_EC2_METADATA_DISABLED"] == "true" and "HTTPS_PROXY" not in env


def test_hollow_kubelets_get_the_fast_pleg_and_status_batch_unless_overridden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REACH_HOLLOW_PLEG_RELIST_S", raising=False)
    monkeypatch.delenv("REACH_KUBELET_STATUS_SYNC_PERIOD_S", raising=False)
    cluster = LocalCluster(tmp_path, bin_dir=tmp_path)
    (tmp_path / "kubemark").write_text("")
    (tmp_path / "kubemark").chmod(0o755)
    node = read_scenario_nodes(SCENARIO)[0]
    _, env = cluster.hollow_node_argv(node, 0)
    assert (env["REACH_HOLLOW_PLEG_RELIST_S"], env["REACH_KUBELET_STATUS_SYNC_PERIOD_S"]) == ("0.2", "0.2")
    monkeypatch.setenv("REACH_HOLLOW_PLEG_RELIST_S", "1")
    assert cluster.hollow_node_argv(node, 0)[1]["REACH_HOLLOW_PLEG_RELIST_S"] == "1"


@pytest.mark.parametrize("value", ["fast", "0", "-1", "nan", "0.01"])
def test_a_bad_pleg_relist_override_names_the_variable(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACH_HOLLOW_PLEG_RELIST_S", value)
    with pytest.raises(ValueError, match=r"REACH_HOLLOW_PLEG_RELIST_S=.*seconds > 0 and ≥ 0\.05; unset it"):
        hollow_timing_env()


def test_failure_detection_defaults_to_a_32_s_grace_over_a_20_s_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REACH_NODE_MONITOR_GRACE_S", raising=False)
    monkeypatch.delenv("REACH_HOLLOW_NODE_LEASE_DURATION_S", raising=False)
    assert LocalCluster(Path("/nonexistent")).failure_detection() == {"node_monitor_grace_s": 32, "lease_s": 20.0}


def test_faster_failure_detection_shortens_the_lease_with_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    env = failure_detection_env(12)
    assert env == {"REACH_NODE_MONITOR_GRACE_S": "12", "REACH_HOLLOW_NODE_LEASE_DURATION_S": "8"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert node_monitor_grace_s() == 12
    with pytest.raises(ValueError, match="≥ 6 s"):
        failure_detection_env(3)


@pytest.mark.parametrize("value", ["fast", "0", "12.5", "10"])
def test_a_grace_period_without_room_for_four_lease_renewals_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REACH_HOLLOW_NODE_LEASE_DURATION_S", raising=False)  # 20 s lease, renewed every 5 s
    monkeypatch.setenv("REACH_NODE_MONITOR_GRACE_S", value)
    with pytest.raises(ValueError, match=r"REACH_NODE_MONITOR_GRACE_S=.*REACH_HOLLOW_NODE_LEASE_DURATION_S=20"):
        node_monitor_grace_s()


def test_a_missing_binary_names_the_install_script(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"deploy/local/install\.sh"):
        LocalCluster(tmp_path, bin_dir=tmp_path).binary("kube-apiserver")


def test_down_on_a_cluster_that_never_started_is_a_no_op(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path / "state")
    cluster.down()
    assert not cluster.is_running()


def test_a_component_that_died_is_restarted_with_its_recorded_command_and_environment(tmp_path: Path) -> None:
    import os
    import signal
    import sys
    import time

    from flows.local.cluster.supervisor import ProcessTable, pid_alive, stop_pid

    table = ProcessTable(tmp_path)
    out = tmp_path / "starts.txt"
    script = "import os, sys, time; open(sys.argv[1], 'a').write(os.environ['REACH_MARK'] + '\\n'); time.sleep(60)"

    def wait_for_starts(count: int) -> list[str]:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < count):
            time.sleep(0.05)
        return out.read_text().splitlines()

    first = table.spawn("node-x", [sys.executable, "-c", script, str(out)], {"REACH_MARK": "x"})
    try:
        assert wait_for_starts(1) == ["x"]
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert not table.is_alive("node-x")
        second = table.restart("node-x")
        assert wait_for_starts(2) == ["x", "x"]
        assert table.recorded_pids()["node-x"] == second.pid != first.pid and table.is_alive("node-x")
        with pytest.raises(KeyError, match="node-y"):
            table.restart("node-y")
    finally:
        for pid in table.recorded_pids().values():
            if pid_alive(pid):
                stop_pid(pid)
