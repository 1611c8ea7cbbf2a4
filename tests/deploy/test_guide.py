"""deploy/README.md, the guide to a real cluster, names only settings, flags and files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from typer.testing import CliRunner

from flows.cli import app
from migrator.settings import MigratorSettings

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "deploy" / "README.md"
PREFIX = "REACH_MIGRATOR_"


def setting_names(text: str) -> set[str]:
    return {name.removeprefix(PREFIX).lower() for name in re.findall(rf"\b{PREFIX}[A-Z_]*[A-Z]\b", text)}


def test_every_migrator_variable_the_guide_names_is_a_setting() -> None:
    named = setting_names(GUIDE.read_text())
    assert {
        "prometheus_url",
        "latency_query",
        "qos_threshold_ms",
        "metrics_host",
        "dry_run",
        "node_name_label",
    } <= named
    assert named <= set(MigratorSettings.model_fields), named - set(MigratorSettings.model_fields)


def test_every_variable_of_the_manifests_is_a_setting() -> None:
    named: set[str] = set()
    for manifest in ("configmap.yaml", "migrator.yaml"):
        for doc in yaml.safe_load_all((ROOT / "deploy" / "k8s" / manifest).read_text()):
            named |= setting_names(yaml.safe_dump(doc))
    assert {"latency_query", "metrics_port", "metrics_host", "node_name_label"} <= named
    assert named <= set(MigratorSettings.model_fields), named - set(MigratorSettings.model_fields)


def test_every_reach_migrate_flag_in_the_guide_exists() -> None:
    commands = re.findall(r"reach migrate ((?:\\\n|[^\n])+)", GUIDE.read_text())
    flags = {f for command in commands for f in re.findall(r"(--[a-z][a-z-]+)", command)}
    assert {"--latency-query", "--prometheus-url", "--qos", "--dry-run", "--node-name-label"} <= flags
    result = CliRunner().invoke(app, ["migrate", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    assert {f for f in flags if f not in result.output} == set()


def test_every_file_the_guide_lists_exists() -> None:
    paths = re.findall(r"^\| `([a-z0-9/._-]+\.(?:yaml|yml|json))`", GUIDE.read_text(), flags=re.MULTILINE)
    assert len(paths) >= 8
    for listed in paths:
        assert (ROOT / "deploy" / listed).is_file(), listed


def test_the_latency_flags_reach_the_settings(monkeypatch: object) -> None:
    import migrator.app

    seen: list[MigratorSettings] = []
    monkeypatch.setattr(migrator.app, "run_migrator", lambda settings: seen.append(settings) or 0)  # type: ignore[attr-defined]
    query = "histogram_quantile(0.5, sum by (le) (rate(response_latency_ms_bucket[1m])))"
    result = CliRunner().invoke(app, [
        "migrate", "--policy-url", "http://127.0.0.1:3000", "--prometheus-url", "http://127.0.0.1:9090",
        "--latency-query", query, "--qos", "80", "--metrics-port", "19465", "--metrics-host", "127.0.0.2", "--once",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    (settings,) = seen
    assert settings.latency_query == query and settings.qos_threshold_ms == 80
    assert (settings.metrics_port, settings.metrics_host) == (19465, "127.0.0.2")
