"""Schemathesis against the service's own OpenAPI document (``GET /docs.json``), in process over ASGI.

Every operation the document lists (``POST /get_action``, ``GET /metadata``, BentoML's probes) is
called with schema-valid and schema-violating examples (Schemathesis's positive and negative modes,
a bounded number each). Every check runs: no 5xx, every status and content type documented,
every body valid against its documented schema, invalid bodies refused, valid bodies accepted.
"Accepted" includes 422: the document cannot say which node, service and pod names the served
model knows, so a schema-valid body that names others is well-formed but does not fit the model
(the document says so for 422). The hand-found cases behind issue 13 (``Infinity``, 1e308, a
multipart body without a boundary, a 10 MB body, a 10 MB node name) are tested by name in
``test_service_limits.py``.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

EXAMPLES = 150  # per generation mode, over all operations
CONFIG = SchemathesisConfig.from_dict(
    {"seed": 13, "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "422"]}}}
)


def without_lifespan(app: Any) -> Any:
    """``app`` for requests only: its lifespan belongs to the session's test client, which started it."""

    async def requests_only(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})

    return requests_only


@pytest.fixture(scope="module")
def api_schema(asgi_app: Any, asgi_client: Any) -> Any:
    return schemathesis.openapi.from_asgi("/docs.json", without_lifespan(asgi_app), config=CONFIG)


def test_the_document_lists_the_api_with_its_errors(api_schema: Any) -> None:
    operations = {op.ok().label for op in api_schema.get_all_operations()}
    assert {"POST /get_action", "GET /metadata"} <= operations
    responses = api_schema.raw_schema["paths"]["/get_action"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422"} <= responses.keys()
    assert list(api_schema.raw_schema["paths"]["/get_action"]["post"]["requestBody"]["content"]) == ["application/json"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_the_service_keeps_the_promises_of_its_openapi_document(api_schema: Any, mode: GenerationMode) -> None:
    @given(case=api_schema.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def the_answer_conforms(case: Any) -> None:
        case.call_and_validate()

    the_answer_conforms()
