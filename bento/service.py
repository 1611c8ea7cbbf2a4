"""The reach policy service: BentoML serving ``POST /get_action`` and ``GET /metadata`` (MODEL.md §4).

One small ``@bentoml.service`` class in the style of BentoML's quickstart. The model reference
sits at class level (so ``bentoml build`` packs the model's tag into the bento); the model itself
is loaded and checked in ``__init__``, once per worker, and the worker refuses to start with
:class:`bento.policy.PolicyError` when the model does not fit this code. The model tag
is the bento argument ``model_tag`` (``bentoml serve … --arg model_tag=reach-policy:VERSION``;
default ``reach-policy:latest``); a size-agnostic policy (observation version 4) serves any
cluster within its limits, named by the arguments ``scenario`` (a directory) and ``workload`` (a
call-pattern file), which also arrive in ``$REACH_SERVE_ARGUMENTS`` because BentoML drops serve-time
arguments of a built bento (:mod:`bento.arguments`). Request bodies are the REACH payload (:mod:`ceenv.schema`);
schema errors answer 400, payloads that do not fit the model's layout 422, each naming the item.
:class:`bento.guard.RequestGuard` sits in front: 413 above ``max_request_bytes``, 415 for a body that
is not JSON, bounded 4xx bodies and one-line 4xx logs, the OpenAPI document as answered. BentoML adds ``/readyz``, ``/livez`` and ``/metrics``. Run with ``bentoml serve bento.service:PolicyService``.
"""

from __future__ import annotations

import logging
import os
import time
from http import HTTPStatus
from typing import Any

import bentoml
from bentoml.exceptions import BentoMLException
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from bento.arguments import overlay
from bento.guard import MAX_QUOTED_CHARS, RequestGuard, bounded
from bento.planning_settings import PlanningSettings, pydantic_field
from bento.policy import Policy
from bento.served import describe
from bento.store import MODEL_NAME, load_policy
from ceenv.payload import PayloadError
from ceenv.schema import ActionRequest, ActionResponse, ClusterState, MeasuredConditions, Name
from ceenv.selected_kernel import warm_up

logger = logging.getLogger("bentoml.service.reach")


MAX_REQUEST_BYTES = 1 << 20  # 1 MiB: a 37-node, 100-pod request is about 20 KB


class ServiceArguments(BaseModel):
    """Bento arguments (``--arg key=value`` on ``bentoml build`` and ``bentoml serve``); a misspelled one is refused."""

    model_config = ConfigDict(extra="forbid")

    model_tag: str = Field(default=f"{MODEL_NAME}:latest", description="Model store tag of the policy to serve.")
    scenario: str | None = Field(
        default=None,
        description="Scenario directory (nodes.json, services.json) to serve; only for a size-agnostic "
        "(observation version 4) policy; default: the scenario it was trained on.",
    )
    workload: str | None = Field(
        default=None,
        description="Call-pattern file of the application to serve (with scenario); default: the training one.",
    )
    # Decision-time planning: defaults, bounds and descriptions from bento.planning_settings (one source).
    plan_k: int = pydantic_field("plan_k")
    plan_horizon: int = pydantic_field("plan_horizon")
    plan_width: int = pydantic_field("plan_width")
    plan_margin: float = pydantic_field("plan_margin")
    plan_noise: float = pydantic_field("plan_noise")
    plan_confidence: float = pydantic_field("plan_confidence")
    plan_slack: int = pydantic_field("plan_slack")  # plan_action's greedy_slack (PlanningSettings.move_cap_slack)

    def planning(self) -> PlanningSettings:
        """The planning these arguments serve with (``plan_k == 0``: the raw policy)."""
        return PlanningSettings.of(self)

    torch_threads: int = Field(
        default=1, ge=1, description="Torch intra-op threads per worker; 1 is fastest for this MLP."
    )
    max_request_bytes: int = Field(
        default=MAX_REQUEST_BYTES,
        ge=1024,
        description="Largest /get_action body accepted; larger ones get 413 before they are read whole.",
    )


class InvalidPayload(BentoMLException):
    """A well-formed request that does not fit the model's layout (unknown node, too many pods…)."""

    error_code = HTTPStatus.UNPROCESSABLE_ENTITY


def payload_message(err: PayloadError, general: bool) -> str:
    """The 422 message: the payload error, cut so that the fix after it always fits in :data:`MAX_QUOTED_CHARS`.

    ``general``: the policy is size-agnostic (observation version 4), so the fix may be another served scenario.
    """
    if general:  # a general policy serves any cluster named at serve time
        fix = "serve the scenario this cluster runs (--scenario DIR --workload FILE; max-replica bounds the pods)"
    else:
        fix = "serve a model trained for this cluster"
    tail = f"; fix the request or {fix}"
    room = MAX_QUOTED_CHARS - len(tail) - len("… (100000 characters)")
    return bounded(str(err), room) + tail


# BentoML drops `bentoml serve <built bento> --arg …`; the serve-time ones also come in the environment.
ARGUMENTS = ServiceArguments.model_validate(
    overlay(bentoml.use_arguments(ServiceArguments).model_dump(), os.environ, ServiceArguments.model_fields)
)
metadata_app = FastAPI(title="reach policy metadata", docs_url=None, redoc_url=None, openapi_url=None)


# threads=1: requests run one at a time per worker (Policy.decide serialises them too: the networks keep per-call state).
@bentoml.service(name="reach_policy", workers=1, threads=1, traffic={"timeout": 10})
@bentoml.asgi_app(metadata_app, path="/")
class PolicyService:
    """Answers REACH's pod-migrator: which pod to move where, or stop."""

    model_ref = bentoml.models.BentoModel(ARGUMENTS.model_tag)

    def __init__(self) -> None:
        import torch

        torch.set_num_threads(ARGUMENTS.torch_threads)
        self.policy: Policy = load_policy(self.model_ref, ARGUMENTS.scenario, ARGUMENTS.workload, ARGUMENTS.planning())
        began = time.perf_counter()
        warm_up()  # the compiled loops (planning's beam and noise charge, large clusters' gains): no request waits for numba
        logger.info("compiled planning loops ready in %.1f s", time.perf_counter() - began)
        if not self.policy.card.gate.passed:
            logger.warning("serving %s although its gate refused it: %s", self.policy.tag, self.policy.card.gate.reason)
        summary = self.policy.summary()
        for warning in summary["served"]["warnings"]:
            logger.warning("%s: %s", self.policy.tag, warning)
        logger.info(
            "reach policy service: model %s, code %s; %s", self.policy.tag, __file__, describe(summary, warnings=False)
        )

    @bentoml.api(route="/get_action")  # type: ignore[untyped-decorator]  # bentoml's lazy module has no stubs
    def get_action(
        self,
        cluster_state: ClusterState,
        pod_deployable: dict[Name, list[Name]] = Field(default_factory=dict),  # noqa: B008 - BentoML's way to give an API field a default
        measured: MeasuredConditions | None = None,
    ) -> ActionResponse:
        """The REACH request (``cluster_state``, ``pod_deployable``, optional ``measured``) → ``pod_name``, ``target_node``, ``is_stop``.

        Every top-level field of :class:`ceenv.schema.ActionRequest` must be a parameter here:
        BentoML builds the API's input model from this signature and drops any other key. An absent
        or ``null`` ``measured`` block means that nothing was measured: the nominal network.
        """
        request = ActionRequest(cluster_state=cluster_state, pod_deployable=pod_deployable, measured=measured)
        try:
            return self.policy.decide(request)
        except PayloadError as err:
            raise InvalidPayload(payload_message(err, self.policy.layout.padded)) from None

    @metadata_app.get("/metadata")
    def metadata(self) -> dict[str, Any]:
        """Model tag, what is served (cluster, planning in force, the gate's planning) and what was trained on,
        layout fingerprint, evaluation summary, gate."""
        return self.policy.summary()


PolicyService.add_asgi_middleware(  # type: ignore[attr-defined]  # a bentoml.Service once decorated
    RequestGuard, api_routes=("/get_action",), max_body_bytes=ARGUMENTS.max_request_bytes
)
