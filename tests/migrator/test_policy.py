"""Policy client: a down, slow or nonsensical policy means no advice (with a reason), never a guess."""

from __future__ import annotations

import json
from pathlib import Path

from ceenv.schema import ActionRequest, ClusterState
from migrator.guards import Move
from migrator.policy import NoAdvice, PolicyClient, Stop, TransportError, parse_advice

REQUEST = ActionRequest(cluster_state=ClusterState(nodes={}, services={}))


def client_with(*answers: bytes | TransportError) -> tuple[PolicyClient, list[float], list[str]]:
    queue, sleeps, calls = list(answers), [], []

    def transport(url: str, body: bytes, timeout_s: float) -> bytes:
        calls.append(url)
        assert json.loads(body)["cluster_state"] == {"nodes": {}, "services": {}}
        assert "measured" not in json.loads(body)  # nothing measured: no key, as REACH's clients send it
        answer = queue.pop(0)
        if isinstance(answer, TransportError):
            raise answer
        return answer

    return PolicyClient("http://127.0.0.1:9", 1.0, 2, 0.5, transport, sleeps.append), sleeps, calls


def test_a_move_and_a_stop_are_parsed() -> None:
    client, _, calls = client_with(b'{"pod_name": "p", "target_node": "n", "is_stop": false, "extra": 1}')
    assert client.ask(REQUEST) == Move("p", "n")
    assert calls == ["http://127.0.0.1:9/get_action"]
    assert parse_advice(b'{"pod_name": "", "target_node": "", "is_stop": true}') == Stop()


def test_temporary_failures_are_retried_with_doubling_backoff() -> None:
    down = TransportError("connection refused", temporary=True)
    client, sleeps, _ = client_with(down, down, b'{"is_stop": true}')
    assert client.ask(REQUEST) == Stop()
    assert sleeps == [0.5, 1.0]


def test_a_policy_that_stays_down_gives_no_advice_with_the_reason() -> None:
    down = TransportError("cannot reach http://127.0.0.1:9/get_action: timed out", temporary=True)
    client, sleeps, _ = client_with(down, down, down)
    advice = client.ask(REQUEST)
    assert isinstance(advice, NoAdvice) and advice.temporary
    assert "timed out" in advice.reason and "attempt 3 of 3" in advice.reason
    assert len(sleeps) == 2


def test_a_permanent_http_error_is_not_retried() -> None:
    client, sleeps, _ = client_with(TransportError("HTTP 422: unknown node", temporary=False))
    advice = client.ask(REQUEST)
    assert isinstance(advice, NoAdvice) and not advice.temporary and sleeps == []


def test_nonsense_answers_give_no_advice() -> None:
    for body in (b"<html>oops</html>", b'{"pod_name": 3}', b'{"pod_name": "p", "is_stop": false}', b"[]"):
        advice = parse_advice(body)
        assert isinstance(advice, NoAdvice), body
        assert not advice.temporary


def test_client_follows_the_blue_green_endpoint_file(tmp_path: Path) -> None:
    seen: list[str] = []

    def transport(url: str, body: bytes, timeout_s: float) -> bytes:
        seen.append(url)
        return b'{"pod_name": "", "target_node": "", "is_stop": true}'

    endpoint = tmp_path / "endpoint.json"
    client = PolicyClient("http://127.0.0.1:3000", transport=transport, endpoint_file=endpoint)
    request = ActionRequest.model_validate({"cluster_state": {"nodes": {}, "services": {}}, "pod_deployable": {}})
    client.ask(request)
    endpoint.write_text('{"url": "http://127.0.0.1:41001", "bento": "b:1"}')
    client.ask(request)
    endpoint.write_text('{"url": "http://127.0.0.1:41002", "bento": "b:2"}')
    client.ask(request)
    assert seen == [
        "http://127.0.0.1:3000/get_action",
        "http://127.0.0.1:41001/get_action",
        "http://127.0.0.1:41002/get_action",
    ]


def test_an_unusable_policy_url_is_no_advice_not_a_crash(tmp_path: Path) -> None:
    """An endpoint file naming a URL without a scheme: urllib raises ValueError, the client answers NoAdvice."""
    endpoint = tmp_path / "endpoint.json"
    endpoint.write_text(json.dumps({"url": "reach-policy"}))
    client = PolicyClient("http://127.0.0.1:9", 1.0, 2, 0.0, endpoint_file=endpoint, sleep=lambda _s: None)
    advice = client.ask(REQUEST)
    assert isinstance(advice, NoAdvice) and not advice.temporary
    assert "reach-policy" in advice.reason


def test_an_answer_cut_off_mid_body_is_a_temporary_failure(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A policy pod that closes the connection mid-answer (a blue/green switch): retried, then NoAdvice."""
    import http.client

    from migrator import policy

    def cut_off(*_args: object, **_kwargs: object) -> object:
        raise http.client.IncompleteRead(b'{"is_st', 40)

    monkeypatch.setattr(policy.urllib.request, "urlopen", cut_off)
    sleeps: list[float] = []
    client = PolicyClient("http://127.0.0.1:9", 1.0, 2, 0.5, sleep=sleeps.append)
    advice = client.ask(REQUEST)
    assert isinstance(advice, NoAdvice) and advice.temporary and "IncompleteRead" in advice.reason
    assert sleeps == [0.5, 1.0], "a cut-off answer is worth retrying"


def test_an_error_answer_whose_body_breaks_is_still_a_classified_failure(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A 503 whose body cannot be read (the connection reset meanwhile) used to escape ``ask``: a cycle-failed."""
    import io
    import urllib.error

    from migrator import policy

    class Broken(io.BytesIO):
        def read(self, *_args: object) -> bytes:
            raise ConnectionResetError("reset by peer")

    def unavailable(*_args: object, **_kwargs: object) -> object:
        raise urllib.error.HTTPError("http://127.0.0.1:9/get_action", 503, "Service Unavailable", {}, Broken())  # type: ignore[arg-type]

    monkeypatch.setattr(policy.urllib.request, "urlopen", unavailable)
    sleeps: list[float] = []
    advice = PolicyClient("http://127.0.0.1:9", 1.0, 2, 0.5, sleep=sleeps.append).ask(REQUEST)
    assert isinstance(advice, NoAdvice) and advice.temporary
    assert "HTTP 503" in advice.reason and "body unreadable: ConnectionResetError" in advice.reason
