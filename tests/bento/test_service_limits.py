"""The service under hostile input (issue 13): finite numbers, capacity, body size, media type, bounded errors and logs.

In process over ASGI (Starlette's test client): each case found by hand or by Schemathesis is sent
as it was found, and the status, the body and the service's log are checked. The memory of a real
worker under eight concurrent 10 MB bodies is checked in ``test_service_serve.py``.
"""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest
from starlette.testclient import TestClient

from bento.guard import MAX_QUOTED_CHARS
from bento.service import MAX_REQUEST_BYTES
from tests.bento.conftest import CONTRACT_DIR

REQUEST: dict[str, Any] = json.loads((CONTRACT_DIR / "request_7-21.json").read_text())
NODE = "tb-cloud-vm-8-1"  # 7 cores and 24 GiB at most in scenarios/7-21
JSON = {"Content-Type": "application/json"}
TEN_MB = 10 * 2**20


@pytest.fixture
def client(asgi_client: TestClient) -> TestClient:
    return asgi_client


def with_node(**fields: Any) -> dict[str, Any]:
    body = copy.deepcopy(REQUEST)
    body["cluster_state"]["nodes"][NODE].update(fields)
    return body


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "NaN"])
@pytest.mark.parametrize("field", ["cpu_availability", "memory_availability"])
def test_non_finite_free_resources_are_a_400_naming_the_field(client: TestClient, field: str, value: str) -> None:
    text = json.dumps(with_node(**{field: 1.0})).replace(f'"{field}": 1.0', f'"{field}": {value}')
    response = client.post("/get_action", content=text, headers=JSON)
    assert response.status_code == 400, response.text
    assert response.json()["detail"][0]["loc"] == ["cluster_state", "nodes", NODE, field]


@pytest.mark.parametrize(
    ("field", "value"), [("cpu_availability", 1e308), ("memory_availability", 1e308), ("cpu_availability", 7001.0)]
)
def test_free_resources_above_the_node_capacity_are_a_422_naming_the_node(
    client: TestClient, field: str, value: float
) -> None:
    response = client.post("/get_action", json=with_node(**{field: value}))
    assert response.status_code == 422, response.text
    assert f"cluster_state.nodes.{NODE}.{field}" in response.json()["error"]


def test_free_resources_equal_to_the_capacity_are_accepted(client: TestClient) -> None:
    response = client.post("/get_action", json=with_node(cpu_availability=7000.0, memory_availability=24.0))
    assert response.status_code == 200, response.text


def test_a_multipart_body_without_boundary_is_a_415(client: TestClient) -> None:
    response = client.post("/get_action", content=b"--x\r\n\r\n", headers={"Content-Type": "multipart/form-data"})
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


def test_a_body_without_content_type_is_read_as_json(client: TestClient) -> None:
    response = client.post("/get_action", content=json.dumps(REQUEST).encode())
    assert response.status_code == 200, response.text


def test_a_10_mb_body_is_a_413_before_it_is_parsed(client: TestClient) -> None:
    response = client.post("/get_action", content=b"{" + b" " * TEN_MB, headers=JSON)
    assert response.status_code == 413
    assert str(MAX_REQUEST_BYTES) in response.json()["error"]


def test_a_chunked_10_mb_body_is_a_413(client: TestClient) -> None:
    chunks = (b" " * 2**20 for _ in range(10))  # a generator: sent without Content-Length
    response = client.post("/get_action", content=chunks, headers=JSON)
    assert response.status_code == 413


def test_a_10_mb_node_name_is_refused_without_echoing_it(client: TestClient) -> None:
    body = with_node(node_name="n" * TEN_MB)
    assert client.post("/get_action", json=body).status_code == 413
    body = copy.deepcopy(REQUEST)
    long_name = "n" * (MAX_REQUEST_BYTES // 4)  # twice in the body, under its limit: the schema's name limit refuses it
    body["cluster_state"]["nodes"][long_name] = {
        "node_name": long_name,
        "cpu_availability": 1,
        "memory_availability": 1,
    }
    response = client.post("/get_action", json=body)
    assert response.status_code == 400
    assert len(response.content) < 4 * MAX_QUOTED_CHARS
    assert "at most 253 characters" in response.text


def test_a_422_is_one_json_object_and_quotes_a_bounded_name(client: TestClient) -> None:
    body = copy.deepcopy(REQUEST)
    name = "x" * 253
    body["cluster_state"]["nodes"][name] = {"node_name": name, "cpu_availability": 1, "memory_availability": 1}
    response = client.post("/get_action", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert name in error and "the model knows" in error and len(error) <= MAX_QUOTED_CHARS + 40


def test_client_errors_are_one_bounded_info_line_without_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = copy.deepcopy(REQUEST)
    name = "y" * 200
    body["cluster_state"]["nodes"][name] = {"node_name": name, "cpu_availability": 1, "memory_availability": 1}
    with caplog.at_level(logging.DEBUG):
        assert client.post("/get_action", json=body).status_code == 422
        assert client.post("/get_action", json=with_node(cpu_availability=-1)).status_code == 400
        assert client.post("/get_action", content=b"x" * TEN_MB, headers=JSON).status_code == 413
    client_errors = [
        r for r in caplog.records if r.levelno >= logging.INFO and not r.name.startswith(("bentoml.access", "httpx"))
    ]
    assert [r.levelname for r in client_errors] == ["INFO"] * 3, [r.getMessage()[:200] for r in client_errors]
    assert all(r.exc_info is None and len(r.getMessage()) < 500 for r in client_errors)
    assert [r.getMessage().split(": ")[0] for r in client_errors] == [
        "POST /get_action -> 422",
        "POST /get_action -> 400",
        "POST /get_action -> 413",
    ]
