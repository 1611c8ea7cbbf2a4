"""The HTTP edge of the policy service: body-size limit, JSON only, bounded errors, an honest OpenAPI document.

:class:`RequestGuard` is an ASGI middleware that :mod:`bento.service` adds to the BentoML service
(``add_asgi_middleware``). On the API routes (``POST /get_action``) it answers, before BentoML parses
anything, 415 to a body that is not ``application/json`` and 413 to a body larger than the limit
(from ``Content-Length`` without reading the body, or after reading at most ``limit + 1`` bytes of a
chunked body), so a worker holds at most one limit's worth of body per request. It rewrites every
4xx body of those routes into one documented shape, ``{"error": str, "detail": [...]?}``, where each
string is cut to :data:`MAX_QUOTED_CHARS` (BentoML answers 422 as a one-element list, and a 400's
``loc`` carries the request's own dictionary keys), and logs each 4xx as one INFO line of bounded
text; :class:`ClientErrorLogFilter` drops BentoML's ERROR tracebacks of the same client errors
(5xx keep theirs). ``GET /docs.json`` is BentoML's document with the API routes' request and error
responses as this middleware and the service really answer them (:func:`document_api_routes`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from bentoml.exceptions import BentoMLException
from pydantic import ValidationError
from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_QUOTED_CHARS = (
    1000  # the longest piece of text a 4xx body or log line quotes (a message with the model's node list fits)
)
MAX_LOGGED_CHARS = 300
JSON_MEDIA_TYPE = "application/json"
BENTOML_HTTP_LOGGER = "bentoml._internal.server.http_app"  # where BentoML's log_exception writes
logger = logging.getLogger("bentoml.service.reach.http")


def bounded(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """``text`` itself, or its first ``limit`` characters and how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def bound_strings(value: Any, limit: int = MAX_QUOTED_CHARS) -> Any:
    """A JSON value with every string (keys too) cut by :func:`bounded`."""
    if isinstance(value, str):
        return bounded(value, limit)
    if isinstance(value, list):
        return [bound_strings(v, limit) for v in value]
    if isinstance(value, dict):
        return {bounded(str(k), limit): bound_strings(v, limit) for k, v in value.items()}
    return value


def error_body(body: bytes, status: int) -> dict[str, Any]:
    """BentoML's 4xx body in the documented shape: an object with ``error`` (and ``detail`` on a 400)."""
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = {"error": body.decode("utf-8", errors="replace")}
    if isinstance(parsed, list) and len(parsed) == 1:
        parsed = parsed[0]  # BentoML 1.4.40 wraps non-validation 4xx bodies in a list (bentoml/BentoML#5709)
    if not isinstance(parsed, dict) or not isinstance(parsed.get("error"), str):
        parsed = {"error": f"HTTP {status}", "detail": parsed}
    return dict(bound_strings(parsed))


def summary(body: dict[str, Any]) -> str:
    """One line for the log: the error and the first validation error's place and message."""
    text = str(body.get("error", ""))
    detail = body.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        place = ".".join(bounded(str(p), 60) for p in first.get("loc", []))
        text += f": {place}: {first.get('msg', '')}"
    return bounded(" ".join(text.split()), MAX_LOGGED_CHARS)


def media_type(scope: Scope) -> str | None:
    """The request's Content-Type without parameters, lower-cased; ``None`` when absent."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return str(value.decode("latin-1").split(";")[0].strip().lower())
    return None


def content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def answer(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", JSON_MEDIA_TYPE.encode()), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


async def read_body(receive: Receive, limit_bytes: int) -> bytes | None:
    """The whole request body, or ``None`` as soon as it is longer than ``limit_bytes``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit_bytes:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the already-read body once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class RequestGuard:
    """ASGI middleware: size and media-type checks, bounded 4xx bodies and logs, the OpenAPI document."""

    def __init__(self, app: ASGIApp, *, api_routes: tuple[str, ...], max_body_bytes: int) -> None:
        self.app = app
        self.api_routes = frozenset(api_routes)
        self.max_body_bytes = max_body_bytes
        install_log_filter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["path"] in self.api_routes and scope["method"] == "POST":
            await self.guard_api(scope, receive, send)
        elif scope["path"] == "/docs.json" and scope["method"] == "GET":
            await self.serve_document(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def refuse(self, scope: Scope, send: Send, status: int, error: str) -> None:
        logger.info("%s %s -> %d: %s", scope["method"], scope["path"], status, bounded(error, MAX_LOGGED_CHARS))
        await answer(send, status, {"error": bounded(error)})

    async def guard_api(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = media_type(scope)
        if kind not in (None, JSON_MEDIA_TYPE):
            error = (
                f"Content-Type {bounded(kind or '', 100)!r} is not accepted on {scope['path']}; send {JSON_MEDIA_TYPE}"
            )
            await self.refuse(scope, send, 415, error)
            return
        declared = content_length(scope)
        body = (
            None
            if declared is not None and declared > self.max_body_bytes
            else await read_body(receive, self.max_body_bytes)
        )
        if body is None:
            error = (
                f"the request body is larger than {self.max_body_bytes} bytes, the limit of {scope['path']}; "
                "send a smaller cluster state, or serve with a larger --arg max_request_bytes"
            )
            await self.refuse(scope, send, 413, error)
            return
        await self.app(scope, replaying(body, receive), self.bounding_client_errors(scope, send))

    def bounding_client_errors(self, scope: Scope, send: Send) -> Send:
        """A ``send`` that rewrites a 4xx answer (see :func:`error_body`) and logs it in one line."""
        held: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def send_bounded(message: Message) -> None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                held["start"] = message
                return
            if "start" not in held or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            status = int(held["start"]["status"])
            body = error_body(b"".join(chunks), status)
            logger.info("%s %s -> %d: %s", scope["method"], scope["path"], status, summary(body))
            data = json.dumps(body).encode()
            headers = [
                (k, v)
                for k, v in held["start"].get("headers", [])
                if k.lower() not in (b"content-length", b"content-type")
            ]
            headers += [(b"content-type", JSON_MEDIA_TYPE.encode()), (b"content-length", str(len(data)).encode())]
            await send({**held["start"], "headers": headers})
            await send({"type": "http.response.body", "body": data, "more_body": False})

        return send_bounded

    async def serve_document(self, scope: Scope, receive: Receive, send: Send) -> None:
        """BentoML's OpenAPI document, with the API routes documented as they are answered."""
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        if start.get("status") != 200:
            await answer(send, int(start.get("status", 500)), {"error": "the OpenAPI document could not be generated"})
            return
        document = document_api_routes(json.loads(b"".join(chunks)), self.api_routes, self.max_body_bytes)
        await answer(send, 200, document)


def is_client_error(error: BaseException | None) -> bool:
    """A bad request (validation, unfit payload, bad form…), as opposed to a fault of the service."""
    if isinstance(error, ValidationError):
        return True
    if isinstance(error, BentoMLException):
        return int(error.error_code) < 500
    return isinstance(error, HTTPException) and error.status_code < 500


class ClientErrorLogFilter(logging.Filter):
    """Drops BentoML's ERROR traceback of a client error; :class:`RequestGuard` logs it in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and is_client_error(record.exc_info[1]))


def install_log_filter() -> None:
    """Add :class:`ClientErrorLogFilter` to BentoML's HTTP logger once per process."""
    http_logger = logging.getLogger(BENTOML_HTTP_LOGGER)
    if not any(isinstance(f, ClientErrorLogFilter) for f in http_logger.filters):
        http_logger.addFilter(ClientErrorLogFilter())


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "ReachError",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "maxLength": MAX_QUOTED_CHARS + 40, "description": "What is wrong and the fix."},
        "detail": {
            "type": "array",
            "description": "Validation errors (400 only): loc is the JSON path of the offending item.",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}
ERROR_DESCRIPTIONS = {
    "400": "Malformed JSON or a body that does not match the schema; detail[].loc names the item.",
    "413": "The body is larger than the service's limit (bento argument max_request_bytes).",
    "415": "The body is not application/json.",
    "422": "Well-formed, but it does not fit the served model (unknown node, service or pod, more pods than "
    "slots, free resources above the node's capacity); error names the item.",
    "500": "A fault of the service; the server log has the traceback.",
}


def document_api_routes(document: dict[str, Any], api_routes: frozenset[str], max_body_bytes: int) -> dict[str, Any]:
    """The OpenAPI document with each API route's body (JSON only, required) and error responses."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["ReachError"] = ERROR_SCHEMA
    error_content = {JSON_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ReachError"}}}
    for route in api_routes:
        operation = document.get("paths", {}).get(route, {}).get("post")
        if operation is None:
            continue
        body = operation.setdefault("requestBody", {})
        body["required"] = True
        body["content"] = {JSON_MEDIA_TYPE: body.get("content", {}).get(JSON_MEDIA_TYPE, {"schema": {}})}
        body["description"] = f"REACH's request, at most {max_body_bytes} bytes."
        responses = {k: v for k, v in operation.get("responses", {}).items() if k.startswith("2")}
        responses.update(
            {code: {"description": text, "content": error_content} for code, text in ERROR_DESCRIPTIONS.items()}
        )
        operation["responses"] = responses
    return document
