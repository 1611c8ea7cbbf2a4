"""ASGI tests: the service's ``to_asgi()`` app driven by Starlette's test client (HTTP semantics, no socket).

Checks status codes and bodies of ``/get_action`` and ``/metadata`` and BentoML's own probes,
including every shared contract fixture (tests/contract/cases.json).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from ceenv.schema import ActionResponse
from tests.bento.conftest import CONTRACT_DIR

CASES: dict[str, Any] = json.loads((CONTRACT_DIR / "cases.json").read_text())


@pytest.fixture
def client(asgi_client: TestClient) -> TestClient:
    return asgi_client


def test_get_action_answers_the_reach_fields(client: TestClient) -> None:
    body = (CONTRACT_DIR / "request_7-21.json").read_bytes()
    response = client.post("/get_action", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert {"pod_name", "target_node", "is_stop"} <= answer.keys()
    ActionResponse.model_validate(answer)


def test_extra_top_level_fields_are_ignored(client: TestClient) -> None:
    body = json.loads((CONTRACT_DIR / "request_7-21.json").read_text())
    body["timestamp"] = "2026-11-28T12:00:00Z"
    assert client.post("/get_action", json=body).status_code == 200


@pytest.mark.parametrize("case", CASES["invalid"], ids=[c["file"] for c in CASES["invalid"]])
def test_bad_input_is_a_4xx_naming_the_item(client: TestClient, case: dict[str, Any]) -> None:
    body = (CONTRACT_DIR / case["file"]).read_bytes()
    response = client.post("/get_action", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == case["status"], response.text
    assert case["mentions"].lower() in response.text.lower()


def test_an_empty_body_is_a_400_naming_cluster_state(client: TestClient) -> None:
    response = client.post("/get_action", content=b"", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "cluster_state" in response.text


def test_metadata_is_a_get(client: TestClient, stored_model: str) -> None:
    response = client.get("/metadata")
    assert response.status_code == 200
    assert response.json()["model_tag"] == stored_model
    assert response.json()["scenario"]["name"] == "7-21"
    # The packaged cluster, raw, with no stored evaluation (the fixture policy was never evaluated).
    served = response.json()["served"]
    assert (served["scenario"]["name"], served["node_count"], served["slot_count"]) == ("7-21", 7, 21)
    assert served["scenario"] == response.json()["trained"]["scenario"] == response.json()["scenario"]
    assert served["planning"] == "raw" and served["gated_planning"] is None and served["warnings"] == []


def test_bentoml_probes_answer(client: TestClient) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_the_measured_block_reaches_the_policy_over_http(client: TestClient) -> None:
    """BentoML builds the API's input from get_action's signature and drops other keys: ``measured`` must be one."""
    body = json.loads((CONTRACT_DIR / "request_7-21.json").read_text())
    body["measured"] = {"node_utilization": {"no-such-node": 0.1}}
    response = client.post("/get_action", json=body)
    assert response.status_code == 422 and "no-such-node" in response.text, response.text
    body["measured"] = {"schema_version": 1}
    response = client.post("/get_action", json=body)
    assert response.status_code == 400 and "schema_version" in response.text, response.text
    node = next(iter(body["cluster_state"]["nodes"]))
    body["measured"] = {"node_utilization": {node: 0.2}}
    assert client.post("/get_action", json=body).status_code == 200
    body["measured"] = None  # what a client that measured nothing may send: the nominal network
    assert client.post("/get_action", json=body).status_code == 200


def test_the_api_takes_every_field_of_the_request_schema() -> None:
    from bento.service import PolicyService
    from ceenv.schema import ActionRequest

    service: Any = PolicyService
    api_fields = set(service.apis["get_action"].input_spec.model_fields)
    assert api_fields == set(ActionRequest.model_fields)
