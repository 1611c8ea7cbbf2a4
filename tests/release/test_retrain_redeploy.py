"""Unattended redeploys read the analysis and the live cluster from the settings, as ``reach deploy`` does; the
deployments that switch the service run one at a time; the schedule says it is UTC."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_local_prometheus(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.local import processes

    found = processes.find
    monkeypatch.setattr(processes, "find", lambda name: None if name == "reach-prometheus" else found(name))


def test_settings_give_an_unattended_redeploy_the_analysis_and_kubeconfig_of_reach_deploy(
    monkeypatch: pytest.MonkeyPatch, no_local_prometheus: None
) -> None:
    from flows.cli.release import _analysis_params
    from flows.release.redeploy import settings_release

    monkeypatch.setenv("REACH_MIGRATOR_PROMETHEUS_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("REACH_MIGRATOR_LATENCY_QUERY", "my_latency_ms")
    monkeypatch.setenv("REACH_MIGRATOR_KUBECONFIG", "/etc/reach/kubeconfig")
    analysis, kubeconfig = settings_release(None, None)
    assert analysis == _analysis_params(None, None, 60.0, 5.0)  # one helper, the same analysis
    assert analysis is not None and (analysis.prometheus_url, analysis.latency_query) == (
        "http://127.0.0.1:9999",
        "my_latency_ms",
    )
    assert kubeconfig == "/etc/reach/kubeconfig"


def test_no_prometheus_configured_means_no_analysis_and_the_log_says_so(
    monkeypatch: pytest.MonkeyPatch, no_local_prometheus: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from flows.release.redeploy import settings_release

    monkeypatch.delenv("REACH_MIGRATOR_PROMETHEUS_URL", raising=False)
    monkeypatch.delenv("REACH_MIGRATOR_KUBECONFIG", raising=False)
    assert settings_release(None, None) == (None, None)
    assert "no Prometheus configured" in capsys.readouterr().out


def test_the_redeploy_flow_from_settings_switches_with_the_live_cluster_and_analyses(
    monkeypatch: pytest.MonkeyPatch, no_local_prometheus: None
) -> None:
    """The flow's body with its tasks replaced by recorders: the settings reach the switch and the analysis."""
    from flows.release import redeploy

    monkeypatch.setenv("REACH_MIGRATOR_PROMETHEUS_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("REACH_MIGRATOR_KUBECONFIG", "/etc/reach/kubeconfig")
    seen: dict[str, Any] = {}
    endpoint = SimpleNamespace(bento="b:new", scenario="7-21", workload="chain", url="u", slot="blue")
    previous = SimpleNamespace(bento="b:old")
    result = SimpleNamespace(endpoint=endpoint, previous=previous, canary=SimpleNamespace(requests=1, agreements=1))

    def switch(bento: str, cluster: Any, size: int, timeout: float, keep: bool, kubeconfig: str | None) -> Any:
        seen.update(keep_previous=keep, kubeconfig=kubeconfig)
        return result

    def analyse(switched: Any, analysis: Any, timeout: float) -> Any:
        seen["analysis"] = analysis
        return SimpleNamespace(summary=lambda: "analysis passed")

    monkeypatch.setattr(redeploy, "target_cluster", lambda bento, scenario, workload: "7-21 / chain")
    monkeypatch.setattr(redeploy, "choose_bento", lambda requested, cluster: "b:new")
    monkeypatch.setattr(redeploy, "switch_service", switch)
    monkeypatch.setattr(redeploy, "analyse_release", analyse)
    summary = redeploy.reach_redeploy.fn(from_settings=True)
    assert summary["analysis"] == "analysis passed"
    assert seen["keep_previous"] and seen["kubeconfig"] == "/etc/reach/kubeconfig"
    assert seen["analysis"].prometheus_url == "http://127.0.0.1:9999"
    seen.clear()
    redeploy.reach_redeploy.fn()  # called as `reach deploy` calls it: exactly what it is given
    assert seen == {"keep_previous": False, "kubeconfig": None}


def test_the_deployments_that_switch_the_service_run_one_at_a_time_unattended_and_in_utc(reach_home: Path) -> None:
    from flows.release.deployments import deployments

    found = {d.flow_name: d for d in deployments()}
    for name in ("reach-retrain", "reach-redeploy"):
        assert found[name].concurrency_limit == 1, name
    assert found["reach-redeploy"].parameters == {"from_settings": True}
    (schedule,) = found["reach-retrain"].schedules
    assert schedule.schedule.timezone == "UTC"


def test_the_work_pool_files_limit_the_switching_deployments_too() -> None:
    process = yaml.safe_load((ROOT / "deploy" / "prefect" / "prefect.yaml").read_text())["deployments"]
    switching = [d for d in process if "redeploy.py" in d["entrypoint"]]
    assert len(switching) == 2 and all(d["concurrency_limit"] == 1 for d in switching)
    redeploy = next(d for d in switching if d["entrypoint"].endswith(":reach_redeploy"))
    assert redeploy["parameters"] == {"from_settings": True}


def test_the_schedule_says_it_is_utc() -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    result = CliRunner().invoke(app, ["retrain", "schedule", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0 and "UTC" in result.output
