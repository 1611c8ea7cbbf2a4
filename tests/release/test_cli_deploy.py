"""``reach deploy``'s analysis settings: the option, else the migrator's settings, else none (and it says so)."""

from __future__ import annotations

import pytest

from flows.cli.release import _analysis_params


def test_the_prometheus_option_wins_and_the_query_defaults_to_the_migrators(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACH_MIGRATOR_PROMETHEUS_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("REACH_MIGRATOR_LATENCY_QUERY", "histogram_quantile(0.5, rate(x_bucket[1m]))")
    params = _analysis_params("http://127.0.0.1:9090", None, 30.0, 10.0)
    assert params.prometheus_url == "http://127.0.0.1:9090"
    assert params.latency_query == "histogram_quantile(0.5, rate(x_bucket[1m]))"
    assert (params.period_s, params.tolerance_pct) == (30.0, 10.0)


def test_the_migrators_prometheus_is_used_without_the_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REACH_MIGRATOR_PROMETHEUS_URL", "http://127.0.0.1:9999")
    params = _analysis_params(None, "reach_app_latency_ms", 60.0, 5.0)
    assert params.prometheus_url == "http://127.0.0.1:9999" and params.latency_query == "reach_app_latency_ms"


def test_no_prometheus_means_no_analysis(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REACH_MIGRATOR_PROMETHEUS_URL", raising=False)
    assert _analysis_params(None, None, 60.0, 5.0) is None


def test_a_deploy_that_names_no_cluster_when_nothing_serves_is_bad_input_exit_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing was started, so not "deploy failed, the previous service keeps serving" (exit 1): name the cluster."""
    from typer.testing import CliRunner

    import flows.release.serving
    from flows.cli import app

    monkeypatch.setattr(flows.release.serving, "current_endpoint", lambda: None)
    result = CliRunner().invoke(app, ["deploy", "--no-analysis"])
    assert result.exit_code == 2, result.output
    assert "which cluster is this deployment for?" in result.output and "keeps serving" not in result.output
