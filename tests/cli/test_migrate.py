"""``flows/cli_migrate.py``: the migrate command and the cluster sub-app, attached as flows/cli.py will attach them."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from flows.cli import migrate as cli_migrate


def app() -> typer.Typer:
    root = typer.Typer()
    root.command("migrate")(cli_migrate.migrate)
    root.add_typer(cli_migrate.cluster_app, name="cluster")
    return root


def test_migrate_help_lists_the_flags_of_the_issue() -> None:
    result = CliRunner().invoke(app(), ["migrate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in ("--kubeconfig", "--policy-url", "--dry-run", "--once", "--interval", "--mode"):
        assert flag in result.output


def test_a_bad_setting_is_a_usage_error_that_names_the_field(tmp_path: object) -> None:
    result = CliRunner().invoke(app(), ["migrate", "--policy-url", "127.0.0.1:3000", "--once"])
    assert result.exit_code == 2
    assert "policy_url" in result.output


def test_cluster_has_up_and_down() -> None:
    result = CliRunner().invoke(app(), ["cluster", "--help"])
    assert result.exit_code == 0 and "up" in result.output and "down" in result.output


def test_the_safety_flags_become_settings(monkeypatch: object) -> None:
    import migrator.app

    seen = {}

    def fake_run(settings: object) -> int:
        seen["settings"] = settings
        return 0

    monkeypatch.setattr(migrator.app, "run_migrator", fake_run)  # type: ignore[attr-defined]
    flags = ["--min-gain", "2.5", "--return-hold-down", "300", "--latency-max-age", "45", "--require-predicted-gain"]
    result = CliRunner().invoke(app(), ["migrate", "--once", *flags])
    assert result.exit_code == 0, result.output
    s = seen["settings"]
    assert (s.min_predicted_gain_ms, s.return_hold_down_s, s.latency_max_age_s, s.require_predicted_gain) == (
        2.5, 300.0, 45.0, True,
    )  # fmt: skip


def test_the_defaults_the_help_states_are_the_settings_defaults() -> None:
    """The options' own default is None (the settings decide): the help names the real values; they must not drift."""
    import re

    from flows.cli.migrate import migrate
    from migrator.settings import MigratorSettings

    stated = dict(re.findall(r"--([a-z-]+) (\d+)", migrate.__doc__ or ""))
    fields = {"qos": "qos_threshold_ms", "interval": "interval_s", "deadline": "migration_deadline_s",
              "min-gain": "min_predicted_gain_ms", "return-hold-down": "return_hold_down_s",
              "latency-max-age": "latency_max_age_s"}  # fmt: skip
    assert set(stated) == set(fields)
    for option, name in fields.items():
        assert float(stated[option]) == MigratorSettings.model_fields[name].default, option
