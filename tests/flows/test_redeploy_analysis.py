"""The redeploy's analysis rule on the real stack: a bad policy is rolled back, a good one is kept.

Real parts: ``bentoml serve`` of gated bentos (blue/green, :mod:`flows.release.serving`), a real
Prometheus on 127.0.0.1 scraping every second, the ``reach-redeploy`` flow under the session's
Prefect test server. The application's latency is stood in for by a tiny metrics endpoint that this
test controls, so that the verdict is deterministic: it reports ``reach_app_latency_ms`` for
whichever bento the endpoint file says is serving — 100 ms for the good policies, 200 ms for the
one marked bad (the same artefact, packaged as another bento: what makes it bad is what the
stand-in measures under it, exactly as a worse placement would show in the app's latency).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.bento.conftest import train_briefly
from tests.conftest import scenario_dir, workload_file
from tests.migrator.e2e_support import prometheus_binary, running_prometheus, serving_metrics
from tests.release.conftest import remove_bentos, stored_models

SCENARIO, WORKLOAD = "7-21", "aggregator_sequential"
GOOD_MS, BAD_MS = 100.0, 200.0


@pytest.fixture(scope="module")
def bentos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Three gated bentos of one briefly trained 7-21 policy: first, bad, better; deleted with their models when the
    module ends (also when Prometheus is missing and the tests skip), so that no later gate or redeploy finds them."""
    from flows.release.packaging import package

    models_before = stored_models()
    artefact = train_briefly(
        scenario_dir(SCENARIO), workload_file(WORKLOAD), tmp_path_factory.mktemp("analysis") / "policy", 64
    )
    packaged: dict[str, str] = {}
    try:
        for name in ("first", "bad", "better"):
            packaged[name] = package(artefact, True, f"analysis test: {name}")
        yield packaged
    finally:
        remove_bentos(packaged.values(), models_before)


@pytest.fixture(scope="module")
def latency_standin(bentos: dict[str, str]) -> Iterator[str]:
    """``/metrics`` with the latency under the serving bento (none while nothing serves); yields host:port."""
    from flows.release.serving import current_endpoint

    def lines() -> list[str]:
        endpoint = current_endpoint()
        if endpoint is None:
            return ["# TYPE reach_app_latency_ms gauge"]
        latency_ms = BAD_MS if endpoint.bento == bentos["bad"] else GOOD_MS
        return ["# TYPE reach_app_latency_ms gauge", f"reach_app_latency_ms {latency_ms}"]

    with serving_metrics(lines) as target:
        yield target


@pytest.fixture(scope="module")
def prometheus(latency_standin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1 scraping the stand-in every second; stopped by its PID."""
    binary = prometheus_binary()
    folder = tmp_path_factory.mktemp("prometheus")
    with running_prometheus(binary, folder, "reach-app-standin", latency_standin) as url:
        yield url


def _artifacts(flow_run_id: Any) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: str(a.data) for a in found if a.key}


FAKE_BENTOML = """#!{python}
# Stands in for `bentoml serve TAG --host H --port P`: /readyz and a well-formed STOP on /get_action.
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def _send(self, body):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())
    def do_GET(self):
        self._send("ok")
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send({{"pod_name": "", "target_node": "", "is_stop": True}})
    def log_message(self, *args):
        pass

port = int(sys.argv[sys.argv.index("--port") + 1])
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


def _roll_back_the_bad_keep_the_better(bentos: dict[str, str], prometheus: str) -> None:
    """First deploy (no analysis possible), a bad bento (rolled back), a better one (kept)."""
    from flows.local import processes
    from flows.release.analysis import AnalysisParams
    from flows.release.redeploy import reach_redeploy
    from flows.release.serving import current_endpoint, endpoint_file, undeploy

    endpoint_file().unlink(missing_ok=True)  # earlier tests of the session may have left one
    analysis = AnalysisParams(prometheus_url=prometheus, period_s=6, warmup_s=2, step_s=1, min_samples=4)
    try:
        first = reach_redeploy(bentos["first"], SCENARIO, WORKLOAD, canary_size=4, analysis=analysis)
        assert first["analysis"].startswith("skipped: the first deployment")
        serving = current_endpoint()
        assert serving is not None and serving.bento == bentos["first"]
        time.sleep(analysis.period_s + 2)  # the incumbent's last period is measured before the next switch

        state = reach_redeploy(bentos["bad"], SCENARIO, WORKLOAD, canary_size=4, analysis=analysis, return_state=True)
        assert state.is_failed()
        assert "analysis failed" in str(state.message) and "blue/green back" in str(state.message), state.message
        restored = current_endpoint()
        assert restored is not None and restored.bento == bentos["first"] and restored.pid == serving.pid
        bad_slot = "green" if serving.slot == "blue" else "blue"
        assert processes.find(f"bento-{bad_slot}") is None, "the bad policy's server still runs"
        report = _artifacts(state.state_details.flow_run_id)["redeploy-analysis"]
        assert "FAILED — rolled back" in report and f"{BAD_MS:.2f}" in report and f"{GOOD_MS:.2f}" in report

        kept = reach_redeploy(bentos["better"], SCENARIO, WORKLOAD, canary_size=4, analysis=analysis)
        assert kept["analysis"].startswith("analysis passed"), kept
        now = current_endpoint()
        assert now is not None and now.bento == bentos["better"]
        assert processes.find(f"bento-{serving.slot}") is None, "the retired server still runs"
    finally:
        undeploy()


@pytest.mark.slow
def test_the_analysis_rolls_back_with_stand_in_policy_servers(
    prefect_harness: None,
    bentos: dict[str, str],
    prometheus: str,
    reach_home: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The flow, Prometheus and the processes are real; each policy server is a tiny stand-in (no torch)."""
    import sys

    from flows.release import serving

    fake_bin = reach_home / "fake-bentoml"
    fake_bin.mkdir(parents=True, exist_ok=True)
    (fake_bin / "bentoml").write_text(FAKE_BENTOML.format(python=sys.executable))
    (fake_bin / "bentoml").chmod(0o755)
    monkeypatch.setattr(serving, "bentoml_cli", lambda: str(fake_bin / "bentoml"))
    _roll_back_the_bad_keep_the_better(bentos, prometheus)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_worse_policy_is_rolled_back_and_a_good_one_kept(
    prefect_harness: None, bentos: dict[str, str], prometheus: str
) -> None:
    """The same with real ``bentoml serve`` processes of the bentos."""
    _roll_back_the_bad_keep_the_better(bentos, prometheus)
