"""Blue/green serving of policy bentos on loopback, and the endpoint file the migrator reads.

The serving endpoint is one small JSON file, ``$REACH_HOME/endpoint.json`` (URL, bento tag, slot,
PID), replaced atomically. :func:`redeploy` starts the new bento in the free slot (``blue`` or
``green``) on another 127.0.0.1 port, waits for ``/readyz``, replays a canary batch of recorded
requests against both servers, switches the endpoint file, lets in-flight requests drain and only
then stops the old server. Any failure stops the new server and leaves the old one serving and
the endpoint file untouched. Used by the ``reach-redeploy`` flow and ``reach deploy``/``reach serve``.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from flows.local import processes

SLOTS = ("blue", "green")


class RedeployError(RuntimeError):
    """The new bento could not take over; the old one (if any) is still serving."""


@dataclass(frozen=True)
class Endpoint:
    """What is serving now: read by the migrator, written only by :func:`switch`."""

    url: str
    bento: str
    slot: str
    pid: int
    since: float


def endpoint_file() -> Path:
    return processes.reach_home() / "endpoint.json"


def current_endpoint() -> Endpoint | None:
    """The serving endpoint, or None when nothing is deployed (or its server is gone)."""
    path = endpoint_file()
    if not path.exists():
        return None
    endpoint = Endpoint(**json.loads(path.read_text()))
    return endpoint if processes.is_alive(endpoint.pid) else None


def switch(endpoint: Endpoint) -> None:
    """Point the endpoint file at ``endpoint`` (atomic replace: readers see the old or the new file)."""
    path = endpoint_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(asdict(endpoint)))
    tmp.replace(path)


def post_json(url: str, body: Any, timeout_s: float = 10.0) -> tuple[int, Any]:
    """POST JSON and return (status, parsed body); HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def bentoml_home() -> str:
    """The BentoML home this process uses, so that a server we start reads the same bento store."""
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.bentoml_home.get())


def bentoml_cli() -> str:
    """The ``bentoml`` command of this interpreter's environment."""
    return os.path.join(os.path.dirname(sys.executable), "bentoml")


def start_bento(bento: str, slot: str, ready_timeout_s: float = 120.0) -> processes.ProcessRecord:
    """``bentoml serve <bento>`` on a free loopback port as process ``bento-<slot>``; wait until ready."""
    port = processes.free_port()
    argv = [bentoml_cli(), "serve", bento, "--host", "127.0.0.1", "--port", str(port)]
    record = processes.start(
        f"bento-{slot}", argv, port, {"BENTOML_DO_NOT_TRACK": "true", "BENTOML_HOME": bentoml_home()}
    )
    try:
        processes.wait_http(f"{record.url}/readyz", ready_timeout_s, record.pid)
    except (TimeoutError, RuntimeError) as err:
        processes.stop(record.name)
        raise RedeployError(f"bento {bento} did not become ready: {err}; see {record.log}") from None
    return record


@dataclass(frozen=True)
class CanaryResult:
    requests: int
    agreements: int
    failures: list[str]


def canary(new_url: str, old_url: str | None, requests: list[dict[str, Any]]) -> CanaryResult:
    """Replay recorded requests: the new server must answer every one with a well-formed action."""
    failures: list[str] = []
    agreements = 0
    for i, body in enumerate(requests):
        status, answer = post_json(f"{new_url}/get_action", body)
        if status != 200 or not isinstance(answer, dict) or not {"pod_name", "target_node", "is_stop"} <= answer.keys():
            failures.append(f"request {i}: HTTP {status}: {str(answer)[:200]}")
            continue
        if old_url is not None:
            old_status, old_answer = post_json(f"{old_url}/get_action", body)
            if old_status == 200 and isinstance(old_answer, dict):
                keys = ("pod_name", "target_node", "is_stop")
                agreements += all(old_answer.get(k) == answer.get(k) for k in keys)
    return CanaryResult(len(requests), agreements, failures)


@dataclass(frozen=True)
class RedeployResult:
    endpoint: Endpoint
    previous: Endpoint | None
    canary: CanaryResult


def redeploy(
    bento: str, canary_requests: list[dict[str, Any]], ready_timeout_s: float = 120.0, drain_s: float = 3.0
) -> RedeployResult:
    """Blue/green switch to ``bento``; on any failure the old server keeps serving (see module doc)."""
    previous = current_endpoint()
    if previous is not None and previous.bento == bento:
        raise RedeployError(f"bento {bento} is already serving at {previous.url}")
    slot = SLOTS[1] if previous is not None and previous.slot == SLOTS[0] else SLOTS[0]
    processes.stop(f"bento-{slot}")  # a leftover of an earlier failed switch
    record = start_bento(bento, slot, ready_timeout_s)
    result = canary(record.url, previous.url if previous else None, canary_requests)
    if result.failures:
        processes.stop(record.name)
        raise RedeployError(
            f"bento {bento} failed {len(result.failures)} of {result.requests} canary requests: {result.failures[0]}"
        )
    endpoint = Endpoint(record.url, bento, slot, record.pid, time.time())
    switch(endpoint)
    if previous is not None:
        time.sleep(drain_s)  # clients that read the old endpoint finish their requests
        processes.stop(f"bento-{previous.slot}")
    return RedeployResult(endpoint, previous, result)


def undeploy() -> bool:
    """Stop the serving bento and remove the endpoint file."""
    endpoint = current_endpoint()
    endpoint_file().unlink(missing_ok=True)
    return endpoint is not None and processes.stop(f"bento-{endpoint.slot}")
