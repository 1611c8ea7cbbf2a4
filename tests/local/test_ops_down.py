"""``reach down`` stops the clients of the cluster first, the cluster late and Prefect's server last."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from flows.local import ops, processes


def test_the_migrator_stops_before_the_cluster_it_talks_to(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["cluster-etcd", "prefect-server", "cluster-kube-apiserver", "reach-exporter", "reach-migrator",
             "bento-blue", "prefect-runner", "reach-prometheus"]  # fmt: skip
    stopped: list[str] = []
    monkeypatch.setattr(
        processes, "records", lambda: [(SimpleNamespace(name=n, log=f"/nonexistent/logs/{n}.log"), True) for n in names]
    )
    monkeypatch.setattr(processes, "stop", lambda name: stopped.append(name) or True)
    monkeypatch.setattr(processes, "forget", lambda name: None)
    assert ops.down() == stopped
    assert set(stopped[:2]) == {"prefect-runner", "reach-migrator"}
    assert stopped[-1] == "prefect-server"
    cluster = [stopped.index(n) for n in ("cluster-etcd", "cluster-kube-apiserver")]
    others = [stopped.index(n) for n in ("reach-exporter", "bento-blue", "reach-prometheus")]
    assert max(others) < min(cluster)
    assert stopped.index("cluster-kube-apiserver") < stopped.index("cluster-etcd")  # the cluster's own order


def test_a_policy_server_is_replaced_by_a_deploy_not_restarted() -> None:
    with pytest.raises(ValueError, match=r"bento-blue is a policy server; `reach deploy`"):
        ops.restart("bento-blue")


def test_a_process_that_does_not_stop_is_named_and_keeps_its_record(monkeypatch: pytest.MonkeyPatch) -> None:
    records = [
        (SimpleNamespace(name="bento-blue", pid=4242), True),
        (SimpleNamespace(name="prefect-server", pid=7), True),
    ]
    forgotten: list[str] = []
    monkeypatch.setattr(processes, "records", lambda: records)
    monkeypatch.setattr(processes, "stop", lambda name: name != "bento-blue")
    monkeypatch.setattr(processes, "recorded", lambda name: records[0][0] if name == "bento-blue" else None)
    monkeypatch.setattr(processes, "forget", forgotten.append)
    with pytest.raises(RuntimeError, match=r"stopped prefect-server, but bento-blue \(pid 4242\) did not stop"):
        ops.down()
    assert forgotten == []


def test_a_process_that_exited_by_itself_meanwhile_is_not_reported_as_surviving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = [(SimpleNamespace(name="bento-blue", pid=4242), True)]
    monkeypatch.setattr(processes, "records", lambda: records)
    monkeypatch.setattr(processes, "stop", lambda name: False)  # gone between the listing and the stop
    monkeypatch.setattr(processes, "recorded", lambda name: None)  # ... and stop() dropped its record
    assert ops.down() == []
