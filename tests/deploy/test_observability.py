"""deploy/observability: the alert rules pass promtool's check and unit tests; the dashboard queries real metrics.

promtool comes with Debian's ``prometheus`` package (``deploy/local/install.sh`` installs it). Without
it the promtool tests skip, except under ``REACH_REQUIRE_CLUSTER`` (CI, ``make test``), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY = ROOT / "deploy" / "observability"
KNOWN_METRICS = {
    "reach_app_latency_ms", "reach_endpoint_latency_ms", "reach_service_latency_ms", "reach_service_ready_pods",
    "reach_node_cpu_usage_millicores", "reach_node_memory_usage_bytes", "reach_exporter_unknown_pods",
    "reach_migrator_migrations_total", "reach_migrator_refusals_total", "reach_migrator_decisions_total",
    "reach_migrator_decision_seconds_bucket", "reach_migrator_loop_seconds_bucket",
    "reach_migrator_last_cycle_timestamp_seconds", "reach_migrator_blind_cycles_total",
    "reach_migrator_lease_held", "reach_migrator_standby_turns_total",
}  # fmt: skip


PROMTOOL_MISSING = (
    "promtool is not on PATH: install it with `sudo apt-get install prometheus` (deploy/local/install.sh does)"
)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        if os.environ.get("REACH_REQUIRE_CLUSTER"):
            pytest.fail(f"REACH_REQUIRE_CLUSTER is set but {PROMTOOL_MISSING}")
        pytest.skip(PROMTOOL_MISSING)
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    "rules",
    ["alerts.yml", "real-latency.rules.yml", "real-latency-linkerd.rules.yml", "real-latency-mubench.rules.yml"],
)
def test_the_rule_files_pass_promtool_check_rules(rules: str) -> None:
    result = promtool("check", "rules", str(OBSERVABILITY / rules))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_rules_pass_their_promtool_unit_tests() -> None:
    result = promtool("test", "rules", str(OBSERVABILITY / "alerts.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_istio_linkerd_and_mubench_latency_become_the_metric_the_migrator_reads() -> None:
    result = promtool("test", "rules", str(OBSERVABILITY / "real-latency.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_missing_promtool_fails_instead_of_skipping_when_the_cluster_is_required(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no promtool
    monkeypatch.setenv("REACH_REQUIRE_CLUSTER", "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install prometheus"):
        promtool("--version")
    monkeypatch.delenv("REACH_REQUIRE_CLUSTER")
    with pytest.raises(pytest.skip.Exception, match="apt-get install prometheus"):
        promtool("--version")


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\breach_[a-z_]+\b", expr))


def test_every_dashboard_and_alert_query_uses_a_metric_the_exporter_or_migrator_publishes() -> None:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    exprs += re.findall(r"expr: (.+)", (OBSERVABILITY / "alerts.yml").read_text())
    used = set().union(*(metric_names(e) for e in exprs))
    assert used and used <= KNOWN_METRICS, used - KNOWN_METRICS


def test_the_dashboard_says_the_latency_is_simulated() -> None:
    dashboard = json.loads((OBSERVABILITY / "grafana-dashboard.json").read_text())
    latency_panels = [p for p in dashboard["panels"] if "latency_ms" in p["targets"][0]["expr"]]
    assert latency_panels and all("imulated" in p["title"] + p["description"] for p in latency_panels)


def test_the_published_metric_names_match_the_exporter_and_the_migrator() -> None:
    from prometheus_client import generate_latest

    from migrator.telemetry import MigratorTelemetry

    telemetry = MigratorTelemetry()
    telemetry.migrations.labels(result="migrated").inc()
    telemetry.refusals.labels(reason="dry-run").inc()
    telemetry.decisions.labels(kind="stop").inc()
    telemetry.blind_cycles.labels(reason="latency-stale").inc()
    text = generate_latest(telemetry.registry).decode()
    published = set(re.findall(r"^(reach_[a-z_]+)", text, flags=re.MULTILINE))
    assert {m for m in KNOWN_METRICS if m.startswith("reach_migrator")} <= published
