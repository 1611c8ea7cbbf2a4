"""The right policy in service: deploy, redeploy, the gate's incumbent and the canary choose by (scenario, workload).

The BentoML store (the session's private one, tests/conftest.py) holds gated bentos of two scenarios
(7-21, 13-29) and two workloads (chain, aggregator_sequential), packaged in an order where the newest
bento is never the right one for most clusters; they are deleted when the module ends. The serving deployment is an endpoint file pointing
at this live test process, which is all the lookup reads; no server is started here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.bento.conftest import train_briefly
from tests.conftest import scenario_dir, workload_file

# Packaged oldest first: the last one (7-21/aggregator_sequential) is the newest bento in the store.
CLUSTERS = [
    ("13-29", "chain"),
    ("7-21", "chain"),
    ("13-29", "aggregator_sequential"),
    ("7-21", "aggregator_sequential"),
]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, removed_after_the_module: list[str]) -> dict[tuple[str, str], str]:
    """One gated bento per (scenario, workload), each carrying an evaluation report that names its cluster;
    deleted with their models when the module ends (else they are the incumbents of later tests' gates)."""
    import time

    from bento.artefact import write_evaluation
    from flows.release.packaging import package

    root = tmp_path_factory.mktemp("clusters")
    tags = {}
    for scenario, workload in CLUSTERS:
        artefact = train_briefly(scenario_dir(scenario), workload_file(workload), root / f"{scenario}-{workload}", 64)
        write_evaluation(artefact, {"model": {"cluster": f"{scenario}/{workload}"}, "groups": []})
        tags[(scenario, workload)] = package(artefact, True, f"test bento for {scenario} / {workload}")
        removed_after_the_module.append(tags[(scenario, workload)])
        time.sleep(1.1)  # distinct creation times: "newest" is well defined
    return tags


@pytest.fixture
def serving(reach_home: Path) -> Any:
    """Point the endpoint file at a bento 'serving' a cluster (this process's PID keeps it alive); removed after."""
    from flows.release import serving as module
    from flows.release.selection import cluster_of

    def serve(tag: str, scenario: str, workload: str) -> None:
        fields = module.cluster_fields(cluster_of(scenario, workload))  # names and files, as a deploy records them
        module.switch(module.Endpoint("http://127.0.0.1:1", tag, "blue", os.getpid(), 0.0, **fields))

    yield serve
    module.endpoint_file().unlink(missing_ok=True)


@pytest.mark.parametrize(("scenario", "workload"), CLUSTERS)
def test_each_cluster_gets_its_own_bento_not_the_newest(
    store: dict[tuple[str, str], str], scenario: str, workload: str
) -> None:
    from flows.release.packaging import gated_bento_for
    from flows.release.selection import cluster_of

    assert gated_bento_for(cluster_of(scenario, workload)) == store[(scenario, workload)]


def test_the_incumbent_is_the_policy_of_the_cluster_not_whatever_serves(
    store: dict[tuple[str, str], str], serving: Any
) -> None:
    from flows.release.packaging import incumbent_report

    serving(store[("7-21", "aggregator_sequential")], "7-21", "aggregator_sequential")
    report = incumbent_report("13-29", "chain")
    assert report is not None and report.model["cluster"] == "13-29/chain"
    own = incumbent_report(str(scenario_dir("7-21")), str(workload_file("aggregator_sequential")))
    assert own is not None and own.model["cluster"] == "7-21/aggregator_sequential"


def test_the_incumbent_is_the_serving_policy_when_it_serves_that_cluster(
    store: dict[tuple[str, str], str], serving: Any
) -> None:
    from flows.release.packaging import incumbent_report

    older = store[("13-29", "chain")]
    serving(older, "13-29", "chain")
    report = incumbent_report("13-29", "chain")
    assert report is not None and report.model["cluster"] == "13-29/chain"


def test_redeploy_serves_the_cluster_of_the_serving_deployment_by_default(
    store: dict[tuple[str, str], str], serving: Any
) -> None:
    from flows.release.redeploy import choose_bento, target_cluster

    serving(store[("13-29", "chain")], "13-29", "chain")
    cluster = target_cluster.fn(None, None, None)
    assert (cluster.scenario, cluster.workload) == ("13-29", "chain")
    assert choose_bento.fn(None, cluster) is None  # its newest gated bento already serves it
    other = target_cluster.fn(None, "7-21", "chain")
    assert choose_bento.fn(None, other) == store[("7-21", "chain")]


def test_a_named_bento_is_deployed_for_its_own_cluster_when_nothing_serves(
    store: dict[tuple[str, str], str], reach_home: Path
) -> None:
    from flows.release.redeploy import target_cluster

    cluster = target_cluster.fn(store[("13-29", "aggregator_sequential")], None, None)
    assert (cluster.scenario, cluster.workload) == ("13-29", "aggregator_sequential")
    with pytest.raises(ValueError, match="--scenario <name or dir> --workload"):  # bad input: `reach deploy` exits 2
        target_cluster.fn(None, None, None)


def test_a_bento_of_another_cluster_is_refused(store: dict[tuple[str, str], str]) -> None:
    from flows.release.redeploy import choose_bento
    from flows.release.selection import NotServable, cluster_of

    with pytest.raises(NotServable, match=r"cannot serve 13-29 / chain: trained for scenario 7-21"):
        choose_bento.fn(store[("7-21", "chain")], cluster_of("13-29", "chain"))


def test_the_canary_sends_requests_of_the_served_cluster(
    store: dict[tuple[str, str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The switch is replaced by a recorder: what matters is which cluster the canary's requests describe."""
    from flows.release import serving
    from flows.release.redeploy import switch_service
    from flows.release.selection import cluster_of

    seen: dict[str, Any] = {}

    def record(bento: str, requests: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        seen.update(bento=bento, requests=requests, cluster=kwargs["cluster"])
        raise serving.RedeployError("recorded")

    monkeypatch.setattr(serving, "redeploy", record)
    with pytest.raises(serving.RedeployError, match="recorded"):
        switch_service.fn(store[("13-29", "chain")], cluster_of("13-29", "chain"), 3, 1.0, False)
    assert len(seen["requests"]) == 3
    assert {len(r["cluster_state"]["nodes"]) for r in seen["requests"]} == {13}
    assert seen["cluster"].workload == "chain"


def test_reach_deploy_refuses_a_bento_that_cannot_serve_the_cluster_with_exit_2(
    store: dict[tuple[str, str], str], prefect_harness: None
) -> None:
    result = CliRunner().invoke(
        app,
        ["deploy", "--bento", store[("7-21", "chain")], "--scenario", "13-29", "--workload", "chain", "--no-analysis"],
    )
    assert result.exit_code == 2, result.output
    assert "cannot serve 13-29 / chain" in result.output


def test_reach_deploy_refuses_an_unknown_scenario_with_exit_2(
    store: dict[tuple[str, str], str], prefect_harness: None
) -> None:
    result = CliRunner().invoke(app, ["deploy", "--scenario", "99-99", "--workload", "chain", "--no-analysis"])
    assert result.exit_code == 2, result.output
    assert "no such scenario" in result.output


def test_a_live_cluster_request_is_the_migrators_own_in_the_policys_node_names() -> None:
    from flows.release.canary import request_of_snapshot
    from migrator.settings import MigratorSettings
    from migrator.snapshot import NodeInfo
    from tests.migrator.builders import GIB, cluster, pod

    nodes = tuple(
        NodeInfo(name, 4000, 8 * GIB, labels={"reach.io/layer": layer, "reach.io/node-name": alias})
        for name, layer, alias in (("ip-10-0-0-1", "cloud", "cloud-1"), ("ip-10-0-0-2", "edge", "edge-1"))
    )
    snapshot = cluster(pod("db-1", "db", "ip-10-0-0-1"), nodes=nodes)
    plain = request_of_snapshot(snapshot, MigratorSettings())
    assert set(plain["cluster_state"]["nodes"]) == {"ip-10-0-0-1", "ip-10-0-0-2"}
    aliased = request_of_snapshot(snapshot, MigratorSettings(node_name_label="reach.io/node-name"))
    assert set(aliased["cluster_state"]["nodes"]) == {"cloud-1", "edge-1"}
    assert aliased["pod_deployable"] == {"db-1": ["edge-1"]}


def test_the_live_request_leads_the_canary_when_a_kubeconfig_is_given(
    store: dict[tuple[str, str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.release import canary, serving
    from flows.release.redeploy import switch_service
    from flows.release.selection import cluster_of

    live = {"cluster_state": {"nodes": {}}, "live": True}
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(canary, "live_request", lambda settings: {**live, "kubeconfig": settings.kubeconfig})

    def record(bento: str, requests: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        seen.extend(requests)
        raise serving.RedeployError("recorded")

    monkeypatch.setattr(serving, "redeploy", record)
    with pytest.raises(serving.RedeployError):
        switch_service.fn(store[("7-21", "chain")], cluster_of("7-21", "chain"), 2, 1.0, False, "/tmp/kubeconfig")
    assert len(seen) == 3 and seen[0] == {**live, "kubeconfig": "/tmp/kubeconfig"}
