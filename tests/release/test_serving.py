"""The endpoint file and the canary check of the blue/green switch (no BentoML needed here)."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from flows.release import serving


class _Policy(BaseHTTPRequestHandler):
    answer: Any = {"pod_name": "", "target_node": "", "is_stop": True}  # noqa: RUF012
    status = 200

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps(self.answer).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_switch_replaces_the_endpoint_atomically_and_ignores_dead_servers(reach_home: Path) -> None:
    endpoint = serving.Endpoint("http://127.0.0.1:1", "reach-policy-service:abc", "blue", 999_999_999, 0.0)
    try:
        serving.switch(endpoint)
        assert json.loads(serving.endpoint_file().read_text())["bento"] == "reach-policy-service:abc"
        assert serving.current_endpoint() is None  # its pid is not alive
        live = serving.Endpoint(
            "http://127.0.0.1:1", "reach-policy-service:def", "green", __import__("os").getpid(), 0.0
        )
        serving.switch(live)
        assert serving.current_endpoint() == live
        assert not list(serving.endpoint_file().parent.glob(".*.tmp"))
    finally:  # this process is no serving policy for the tests after this one, also when an assertion failed
        serving.endpoint_file().unlink(missing_ok=True)


def test_canary_accepts_well_formed_answers_and_counts_agreement() -> None:
    server, url = _serve(_Policy)
    try:
        result = serving.canary(url, url, [{"cluster_state": {}}] * 3)
    finally:
        server.shutdown()
    assert (result.requests, result.agreements, result.failures) == (3, 3, [])


@pytest.mark.parametrize(("status", "answer"), [(500, {"error": "boom"}), (200, {"pod_name": "x"}), (422, "bad")])
def test_canary_fails_on_errors_and_malformed_answers(status: int, answer: Any) -> None:
    handler = type("Broken", (_Policy,), {"status": status, "answer": answer})
    server, url = _serve(handler)
    try:
        result = serving.canary(url, None, [{"cluster_state": {}}])
    finally:
        server.shutdown()
    assert len(result.failures) == 1 and f"HTTP {status}" in result.failures[0]


def test_a_bento_that_never_gets_ready_is_stopped_and_reported(
    reach_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_bin = reach_home / "fakebin"
    fake_bin.mkdir(parents=True, exist_ok=True)
    fake = fake_bin / "bentoml"
    fake.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    fake.chmod(0o755)
    monkeypatch.setattr(serving, "bentoml_cli", lambda: str(fake))
    with pytest.raises(serving.RedeployError, match="did not become ready"):
        serving.start_bento("reach-policy-service:never", "blue", ready_timeout_s=1.5)
    assert serving.processes.find("bento-blue") is None


def test_a_general_bento_is_started_with_its_serve_time_arguments(
    reach_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake ``bentoml`` writes its argv and exits: the start fails, the command line is what is checked."""
    fake_bin = reach_home / "fakebin-args"
    fake_bin.mkdir(parents=True, exist_ok=True)
    seen = reach_home / "argv.json"
    fake = fake_bin / "bentoml"
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nopen({str(seen)!r}, 'w').write(json.dumps(sys.argv[1:]))\n")
    fake.chmod(0o755)
    monkeypatch.setattr(serving, "bentoml_cli", lambda: str(fake))
    with pytest.raises(serving.RedeployError, match="did not become ready"):
        serving.start_bento(
            "reach-policy-service:general", "green", 5.0, {"scenario": "/d/13-29", "workload": "/w.json"}
        )
    argv = json.loads(seen.read_text())
    assert argv[:2] == ["serve", "reach-policy-service:general"]
    assert argv[-4:] == ["--arg", "scenario=/d/13-29", "--arg", "workload=/w.json"]


def test_a_malformed_endpoint_file_is_an_error_that_names_it_and_the_fix(reach_home: Path) -> None:
    serving.endpoint_file().parent.mkdir(parents=True, exist_ok=True)
    serving.endpoint_file().write_text("{}")
    try:
        with pytest.raises(serving.EndpointFileError, match=r"endpoint\.json is not a reach endpoint record.*remove"):
            serving.current_endpoint()
        assert serving.undeploy() is False  # it names no server; undeploy removes it
        assert not serving.endpoint_file().exists()
    finally:
        serving.endpoint_file().unlink(missing_ok=True)


def test_an_endpoint_whose_pid_was_reused_is_not_serving(reach_home: Path) -> None:
    import os

    started = serving.processes.process_start(os.getpid())
    assert started is not None
    reused = serving.Endpoint(
        "http://127.0.0.1:1", "reach-policy-service:x", "blue", os.getpid(), 0.0, pid_start=started + 1
    )
    serving.switch(reused)
    try:
        assert serving.current_endpoint() is None
    finally:
        serving.endpoint_file().unlink()


def test_a_new_server_that_does_not_answer_fails_the_canary_and_a_dead_incumbent_does_not() -> None:
    from flows.local.processes import free_port

    dead = f"http://127.0.0.1:{free_port()}"  # nobody listens there
    result = serving.canary(dead, None, [{"cluster_state": {}}])
    assert len(result.failures) == 1 and "no usable answer" in result.failures[0]
    server, url = _serve(_Policy)
    try:
        result = serving.canary(url, dead, [{"cluster_state": {}}] * 2)
    finally:
        server.shutdown()
    assert (result.requests, result.agreements, result.failures) == (2, 0, [])


def test_a_redeploy_interrupted_before_the_switch_stops_the_new_server(
    reach_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any failure between start and switch (here an interrupt in the canary) leaves no second server running."""
    record = serving.processes.ProcessRecord("bento-blue", 1, 1, ["x"], "x.log", 0.0)
    stopped: list[str] = []
    monkeypatch.setattr(serving, "start_bento", lambda *args, **kwargs: record)
    monkeypatch.setattr(serving.processes, "stop", lambda name, *a, **k: stopped.append(name) or True)

    def interrupted(*args: object) -> serving.CanaryResult:
        raise KeyboardInterrupt

    monkeypatch.setattr(serving, "canary", interrupted)
    with pytest.raises(KeyboardInterrupt):
        serving.redeploy("reach-policy-service:new", [{"cluster_state": {}}], drain_s=0.0)
    assert stopped == ["bento-blue", "bento-blue"], "the slot is cleared first, then the unswitched server stopped"
    assert not serving.endpoint_file().exists()


def test_a_rollback_that_fails_says_the_new_bento_still_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not 'the previous service keeps serving': after a switch, a failed rollback leaves the new one."""
    from flows.release import redeploy
    from flows.release.analysis import AnalysisParams

    new = serving.Endpoint("http://127.0.0.1:2", "reach-policy-service:new", "green", 2, 0.0)
    old = serving.Endpoint("http://127.0.0.1:1", "reach-policy-service:old", "blue", 1, 0.0)
    result = serving.RedeployResult(new, old, serving.CanaryResult(1, 1, []))

    def prometheus_gone(*args: object) -> None:
        raise ConnectionError("Prometheus gone")

    def restart_fails(*args: object, **kwargs: object) -> None:
        raise serving.RedeployError("bento reach-policy-service:old did not become ready")

    monkeypatch.setattr(redeploy, "measure_periods", prometheus_gone)
    monkeypatch.setattr(serving, "roll_back", restart_fails)
    serving.switch(new)  # the switch recorded the new bento: the message reports what the endpoint file names
    try:
        with pytest.raises(
            redeploy.RollbackFailed, match=r"reach-policy-service:new still serves at http://127.0.0.1:2"
        ):
            redeploy.analyse_release(result, AnalysisParams(prometheus_url="http://127.0.0.1:9"), 1.0)
    finally:
        serving.endpoint_file().unlink(missing_ok=True)


def test_a_broken_schedule_file_names_itself_and_the_fix(reach_home: Path) -> None:
    from flows.release import deployments

    assert deployments.retrain_cron() == deployments.DEFAULT_RETRAIN_CRON  # no file: the default
    deployments.save_retrain_cron("0 4 * * 1")
    assert deployments.retrain_cron() == "0 4 * * 1"
    try:
        for broken in ('{"every": "sunday"}', '{"cron": "61 3 * * 0"}', '{"cron": null}', '{"cron": "0 3 * *"}'):
            deployments.schedule_file().write_text(broken)  # the runner would die at start on the last three
            with pytest.raises(
                ValueError, match=r"schedule\.json holds no retraining schedule.*reach retrain schedule"
            ):
                deployments.retrain_cron()
    finally:
        deployments.schedule_file().unlink()
