"""HTTP client of the policy service: ``POST <policy_url>/get_action`` with timeouts, retries and backoff.

The policy only advises. Anything but a well-formed answer (service down, too slow, HTTP error,
not JSON, not an ``ActionResponse``, a move with an empty pod or node name, a predicted latency
that is not a finite number) becomes
``NoAdvice(reason)``: the controller logs the reason and makes no migration this cycle; it never
guesses a move. Temporary failures (connection refused, timeout, 5xx, 429) are retried with
exponential backoff; permanent ones (4xx, nonsense, a URL that cannot be used) are not; an answer cut
off mid-body or not HTTP at all is temporary. Standard library only; the transport
is injectable so that the unit tests never open a socket. The service's optional extra fields
``predicted_latency_before_ms``/``predicted_latency_after_ms`` (bento/policy.py) travel with the
``Move`` for the minimum-gain guard.
"""

from __future__ import annotations

import http.client
import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ceenv.schema import ActionRequest, ActionResponse
from migrator.guards import Move


@dataclass(frozen=True)
class Stop:
    """The policy says: keep the placement."""


@dataclass(frozen=True)
class NoAdvice:
    """No usable answer; ``temporary`` tells whether asking again later may help; ``malformed`` that the
    service did answer, but with something the migrator cannot check (a blind cycle, counted as such)."""

    reason: str
    temporary: bool
    malformed: bool = False


Advice = Move | Stop | NoAdvice


class TransportError(Exception):
    """A failed HTTP exchange; ``temporary`` means a retry may succeed."""

    def __init__(self, message: str, temporary: bool):
        super().__init__(message)
        self.temporary = temporary


# (url, body bytes, timeout seconds) -> response body bytes; raises TransportError.
Transport = Callable[[str, bytes, float], bytes]


def urllib_transport(url: str, body: bytes, timeout_s: float) -> bytes:
    """POST JSON with the standard library; classifies failures as temporary or permanent."""
    try:
        request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        try:  # the error body is read on a connection that may break too: the status alone still says enough
            detail = exc.read()[:300].decode(errors="replace")
        except (OSError, http.client.HTTPException) as unreadable:
            detail = f"(body unreadable: {type(unreadable).__name__})"
        raise TransportError(f"HTTP {exc.code} from {url}: {detail}", exc.code >= 500 or exc.code == 429) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransportError(f"cannot reach {url}: {reason}", temporary=True) from exc
    except http.client.HTTPException as exc:  # cut off mid-body (IncompleteRead) or not HTTP at all (BadStatusLine)
        raise TransportError(f"broken answer from {url}: {type(exc).__name__}: {exc}", temporary=True) from exc
    except ValueError as exc:  # a URL urllib cannot use (no scheme, bad port): fix the policy URL or endpoint file
        raise TransportError(f"cannot use the policy URL {url!r}: {exc}", temporary=False) from exc


PREDICTED_BEFORE = "predicted_latency_before_ms"
PREDICTED_AFTER = "predicted_latency_after_ms"


def _prediction(extra: dict[str, object], key: str) -> float | None:
    """An optional predicted latency (the service's extra field); raises ValueError when it is not a finite number ≥ 0."""
    value = extra.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{key} is {value!r}, not a finite number of ms")
    return float(value)


def parse_advice(body: bytes) -> Advice:
    """Validate the policy's answer; anything odd is NoAdvice, never a guessed move."""
    try:
        response = ActionResponse.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:
        reason = f"policy answered nonsense ({type(exc).__name__}): {body[:200]!r}"
        return NoAdvice(reason, temporary=False, malformed=True)
    if response.is_stop:
        return Stop()
    if not response.pod_name or not response.target_node:
        return NoAdvice(f"policy answered a move without pod or node: {body[:200]!r}", temporary=False, malformed=True)
    extra = dict(response.model_extra or {})
    try:
        before, after = _prediction(extra, PREDICTED_BEFORE), _prediction(extra, PREDICTED_AFTER)
    except ValueError as exc:
        return NoAdvice(f"policy answered a malformed prediction: {exc}", temporary=False, malformed=True)
    return Move(response.pod_name, response.target_node, before, after)


@dataclass
class PolicyClient:
    """Asks the policy service for one action; see the module docstring for the failure rules."""

    base_url: str
    timeout_s: float = 5.0
    retries: int = 2
    backoff_s: float = 0.5
    transport: Transport = urllib_transport
    sleep: Callable[[float], None] = time.sleep
    endpoint_file: Path | None = None

    @property
    def url(self) -> str:
        """``<base>/get_action``; with ``endpoint_file`` the base is re-read before every request, so a
        blue/green switch (reach's ``endpoint.json``) is followed without a restart."""
        base = self.base_url
        if self.endpoint_file is not None:
            try:
                base = str(json.loads(self.endpoint_file.read_text())["url"])
            except (OSError, ValueError, KeyError, TypeError):
                base = self.base_url  # no deployment recorded yet: the configured URL
        return f"{base.rstrip('/')}/get_action"

    def ask(self, request: ActionRequest) -> Advice:
        # No "measured": null when nothing was measured: REACH's own service knows no such key.
        body = request.model_dump_json(exclude_none=True).encode()
        delay_s = self.backoff_s
        last = NoAdvice("policy not asked", temporary=True)
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(delay_s)
                delay_s *= 2
            try:
                return parse_advice(self.transport(self.url, body, self.timeout_s))
            except TransportError as exc:
                last = NoAdvice(f"{exc} (attempt {attempt + 1} of {self.retries + 1})", exc.temporary)
                if not exc.temporary:
                    return last
        return last
