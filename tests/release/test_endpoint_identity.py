"""The endpoint file says which cluster a deployment serves by its files' contents, not only by their names.

A folder named ``7-21`` outside ``data/`` (or a workload file of a known name) may hold another
cluster. The serving deployment is an endpoint file pointing at this live test process; no server
is started here, and the bento store is replaced by a stand-in where a lookup would read it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.release import serving
from flows.release.selection import Cluster, cluster_of
from tests.conftest import scenario_dir, workload_file

SERVING = "reach-policy-service:serving"


@pytest.fixture
def endpoint(reach_home: Path) -> Iterator[Any]:
    """Write an endpoint 'serving' a cluster from this live process; the file is removed after the test."""

    def serve(cluster: Cluster | None = None, **fields: Any) -> serving.Endpoint:
        record = serving.Endpoint(
            "http://127.0.0.1:1", SERVING, "blue", os.getpid(), 0.0, **serving.cluster_fields(cluster), **fields
        )
        serving.switch(record)
        return record

    yield serve
    serving.endpoint_file().unlink(missing_ok=True)


@pytest.fixture
def other_7_21(tmp_path: Path) -> Path:
    """A folder named 7-21 whose nodes.json differs from data/'s by one trailing byte (still a valid scenario)."""
    other = tmp_path / "elsewhere" / "7-21"
    shutil.copytree(scenario_dir("7-21"), other)
    nodes = other / "nodes.json"
    nodes.write_text(nodes.read_text() + "\n")
    return other


def test_a_deployment_serves_the_cluster_of_the_same_names_and_files(endpoint: Any) -> None:
    served = endpoint(cluster_of("7-21", "chain"))
    assert served.scenario_sha256 and served.workload_sha256
    assert serving.current_endpoint() == served  # the hashes and files went through the file
    assert served.serves(cluster_of(str(scenario_dir("7-21")), str(workload_file("chain"))))  # by path: same files


def test_a_deployment_does_not_serve_another_folder_of_the_same_scenario_name(endpoint: Any, other_7_21: Path) -> None:
    served = endpoint(cluster_of("7-21", "chain"))
    other = cluster_of(str(other_7_21), "chain")
    assert (other.scenario, other.workload) == (served.scenario, served.workload)
    assert not served.serves(other)


def test_a_deployment_does_not_serve_another_workload_file_of_the_same_name(endpoint: Any, tmp_path: Path) -> None:
    served = endpoint(cluster_of("7-21", "chain"))
    edited = tmp_path / "chain_call_patterns.json"
    edited.write_text(workload_file("chain").read_text() + "\n")
    other = cluster_of("7-21", str(edited))
    assert other.workload == "chain" and other.scenario_sha256 == served.scenario_sha256
    assert not served.serves(other)


def test_an_endpoint_file_written_before_the_hashes_reads_but_serves_no_cluster_whose_files_are_known(
    endpoint: Any,
) -> None:
    old = {"url": "http://127.0.0.1:1", "bento": SERVING, "slot": "blue", "pid": os.getpid(), "since": 0.0,
           "scenario": "7-21", "workload": "chain", "arguments": {}, "pid_start": None}  # fmt: skip
    endpoint()
    serving.endpoint_file().write_text(json.dumps(old))
    read = serving.current_endpoint()
    assert read is not None and (read.scenario_sha256, read.workload_sha256) == ("", "")
    assert not read.serves(cluster_of("7-21", "chain")), "an unhashed record must be redeployed, not trusted"
    assert read.serves(Cluster("7-21", "chain"))  # a cluster known by its names only: the names decide


def test_an_endpoint_file_with_a_field_this_version_does_not_know_still_reads(endpoint: Any) -> None:
    served = endpoint(cluster_of("7-21", "chain"))
    serving.endpoint_file().write_text(json.dumps({**json.loads(serving.endpoint_file().read_text()), "later": 1}))
    assert serving.current_endpoint() == served


def test_redeploy_replaces_a_bento_serving_other_files_of_the_same_names(
    endpoint: Any, other_7_21: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.release import packaging
    from flows.release.redeploy import choose_bento

    endpoint(cluster_of("7-21", "chain"))
    monkeypatch.setattr(packaging, "gated_bento_for", lambda cluster, exclude=None: SERVING)
    assert choose_bento.fn(None, cluster_of("7-21", "chain")) is None  # it serves these files: nothing to do
    assert choose_bento.fn(None, cluster_of(str(other_7_21), "chain")) == SERVING  # other files: deploy again


def test_redeploy_replaces_a_deployment_recorded_without_hashes(endpoint: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.release import packaging
    from flows.release.redeploy import choose_bento

    endpoint(scenario="7-21", workload="chain")  # names only, as files written before the hashes
    monkeypatch.setattr(packaging, "gated_bento_for", lambda cluster, exclude=None: SERVING)
    assert choose_bento.fn(None, cluster_of("7-21", "chain")) == SERVING


def test_a_redeploy_naming_no_cluster_serves_the_files_the_deployment_recorded(endpoint: Any, other_7_21: Path) -> None:
    from flows.release.redeploy import target_cluster

    served = cluster_of(str(other_7_21), "chain")
    endpoint(served)
    assert target_cluster.fn(None, None, None) == served  # not data/scenarios/7-21, which has the same name


def test_the_demos_auto_policy_does_not_reuse_a_bento_serving_other_files_of_the_same_names(
    endpoint: Any, other_7_21: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.loop import policy

    endpoint(cluster_of("7-21", "chain"))
    monkeypatch.setattr(policy, "gated_bento_for", lambda scenario, workload: None)
    assert policy.resolve_auto("7-21", "chain") == SERVING
    assert policy.resolve_auto(str(other_7_21), "chain") is None


def test_the_same_bento_is_switched_in_again_for_other_files_of_the_same_names(
    endpoint: Any, other_7_21: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not refused as 'already serving': the new endpoint records the other files and their hashes."""
    endpoint(cluster_of("7-21", "chain"))
    new = serving.processes.ProcessRecord("bento-green", os.getpid(), 1, ["x"], "x.log", 0.0)
    monkeypatch.setattr(serving, "start_bento", lambda *args, **kwargs: new)
    monkeypatch.setattr(serving, "canary", lambda *args: serving.CanaryResult(0, 0, []))
    monkeypatch.setattr(serving.processes, "stop", lambda name, *a, **k: True)
    other = cluster_of(str(other_7_21), "chain")
    with pytest.raises(serving.RedeployError, match="already serving"):
        serving.redeploy(SERVING, [], drain_s=0.0, cluster=cluster_of("7-21", "chain"))
    result = serving.redeploy(SERVING, [], drain_s=0.0, cluster=other)
    assert result.endpoint.serves(other) and result.endpoint.scenario_dir == str(other_7_21.resolve())
    assert serving.current_endpoint() == result.endpoint
