"""End-to-end tests against a real ``bentoml serve`` on 127.0.0.1: BentoML's client and plain HTTP JSON.

The plain-HTTP tests send the bytes of the shared contract fixtures with the standard library,
the way REACH's pod-migrator (and ours) does, and check the status and the message of every bad
input. One test starts a server on a model whose observation version differs from the code and
expects it to refuse to start with a message that says so.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bentoml
import httpx
import pytest

from ceenv.layout import SUPPORTED_OBSERVATION_VERSIONS
from ceenv.schema import ActionResponse
from tests.bento.conftest import CONTRACT_DIR, SCENARIO_DIR, WORKLOAD_FILE, Server, start_server

CASES: dict[str, Any] = json.loads((CONTRACT_DIR / "cases.json").read_text())

pytestmark = pytest.mark.e2e


def post_like_the_migrator(url: str, body: bytes) -> tuple[int, bytes]:
    """``POST`` a JSON body with urllib, as the migrator does; returns (status, body)."""
    request = urllib.request.Request(
        f"{url}/get_action", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        return int(err.code), bytes(err.read())


GENERAL = Path(__file__).resolve().parents[2] / "data" / "policies" / "general-v4"


@pytest.fixture(scope="module")
def moving_server(bentoml_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``bentoml serve bento.service:PolicyService`` of the shipped general-v4 policy for 7-21 / aggregator_sequential.

    Unlike the 256-step test policy (near-uniform: STOP or any move by a hair), it is known to move on
    request_7-21.json: one move (detection to tb-edge-vm-4-1, predicted 195 → 147 ms) has probability ~1, STOP ~0.
    """
    from bento.policy import GateVerdict
    from bento.store import save_policy

    stored = save_policy(GENERAL, gate=GateVerdict(passed=True, reason="test fixture"), name="reach-policy-general-v4")
    log = tmp_path_factory.mktemp("serve-general") / "serve.log"
    arguments = (f"model_tag={stored.tag}", f"scenario={SCENARIO_DIR}", f"workload={WORKLOAD_FILE}")
    running = start_server(
        "bento.service:PolicyService", bentoml_home, log, *(part for a in arguments for part in ("--arg", a))
    )
    try:
        yield running
    finally:
        running.stop()


def test_sync_http_client_gets_a_move_that_the_request_allows(moving_server: Server) -> None:
    body = json.loads((CONTRACT_DIR / "request_7-21.json").read_text())
    with bentoml.SyncHTTPClient(moving_server.url) as client:
        answer = client.get_action(cluster_state=body["cluster_state"], pod_deployable=body["pod_deployable"])
    decision = ActionResponse.model_validate(answer)
    assert not decision.is_stop, f"general-v4 is known to move on this request: {decision}"
    assert decision.target_node in body["pod_deployable"][decision.pod_name], decision


def test_plain_http_json_like_the_migrator(server: Server) -> None:
    status, raw = post_like_the_migrator(server.url, (CONTRACT_DIR / "request_7-21.json").read_bytes())
    assert status == 200, raw
    answer = json.loads(raw)
    assert set(answer) >= {"pod_name", "target_node", "is_stop"}
    assert isinstance(answer["is_stop"], bool)


def test_no_targets_means_stop(server: Server) -> None:
    status, raw = post_like_the_migrator(server.url, (CONTRACT_DIR / "request_7-21_no_targets.json").read_bytes())
    assert status == 200
    answer = json.loads(raw)
    assert answer["is_stop"] is True and answer["pod_name"] == "" and answer["target_node"] == ""


@pytest.mark.parametrize("case", CASES["invalid"], ids=[c["file"] for c in CASES["invalid"]])
def test_bad_input_over_http_is_a_4xx_naming_the_item(server: Server, case: dict[str, Any]) -> None:
    status, raw = post_like_the_migrator(server.url, (CONTRACT_DIR / case["file"]).read_bytes())
    assert status == case["status"], raw
    assert case["mentions"].lower() in raw.decode().lower()


def test_metadata_and_probes(server: Server, stored_model: str) -> None:
    metadata = httpx.get(f"{server.url}/metadata", timeout=10)
    assert metadata.status_code == 200 and metadata.json()["model_tag"] == stored_model
    assert httpx.get(f"{server.url}/livez", timeout=10).status_code == 200
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
    metrics = httpx.get(f"{server.url}/metrics", timeout=10)
    assert metrics.status_code == 200 and "bentoml_service_request" in metrics.text


def test_server_refuses_to_start_on_a_model_of_another_observation_version(
    stored_model: str, bentoml_home: Path, tmp_path: Path
) -> None:
    from tests.bento.test_service_inprocess import _store_with_metadata

    unsupported = max(SUPPORTED_OBSERVATION_VERSIONS) + 1
    tag = _store_with_metadata(stored_model, observation_version=unsupported)
    with pytest.raises(RuntimeError) as refused:
        started = start_server(
            "bento.service:PolicyService",
            bentoml_home,
            tmp_path / "serve.log",
            "--arg",
            f"model_tag={tag}",
            timeout_s=60,
        )
        started.stop()
    assert f"model {tag}: observation_version is {unsupported}" in str(refused.value)
    assert "PolicyError" in str(refused.value)


def process_tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``bentoml serve`` and its workers."""
    import psutil

    root = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


def post_large(url: str, size_bytes: int) -> int | str:
    """POST a ``size_bytes`` JSON-ish body; the status, or the transport error when the server hung up first."""
    try:
        response = httpx.post(
            f"{url}/get_action",
            content=b"{" + b" " * size_bytes,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
    except httpx.TransportError as err:
        return type(err).__name__
    return response.status_code


def test_eight_concurrent_10_mb_bodies_are_refused_and_the_worker_does_not_grow(server: Server) -> None:
    from concurrent.futures import ThreadPoolExecutor

    assert post_like_the_migrator(server.url, (CONTRACT_DIR / "request_7-21.json").read_bytes())[0] == 200
    log_size_before = server.log.stat().st_size
    rss_before = process_tree_rss_bytes(server.process.pid)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: post_large(server.url, 10 * 2**20), range(8)))
    rss_growth = process_tree_rss_bytes(server.process.pid) - rss_before
    assert 413 in outcomes and all(o in (413, "WriteError", "RemoteProtocolError") for o in outcomes), outcomes
    assert rss_growth < 32 * 2**20, f"the server grew by {rss_growth / 2**20:.0f} MiB"
    assert post_like_the_migrator(server.url, (CONTRACT_DIR / "request_7-21.json").read_bytes())[0] == 200
    log = server.log.read_bytes()[log_size_before:]
    assert b"Traceback" not in log and len(log) < 20_000, log[-2000:]
    assert b"-> 413" in log


def test_client_errors_are_logged_in_one_line_without_traceback(server: Server) -> None:
    log_size_before = server.log.stat().st_size
    for case in CASES["invalid"]:
        post_like_the_migrator(server.url, (CONTRACT_DIR / case["file"]).read_bytes())
    log = server.log.read_text(errors="replace")[log_size_before:]
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
    assert log.count("POST /get_action -> 4") == len(CASES["invalid"]), log[-3000:]
