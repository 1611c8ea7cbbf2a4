"""``reach demo``'s commands: settings are validated before anything starts."""

from __future__ import annotations

from typer.testing import CliRunner

from flows.cli.demo import app


def test_an_unknown_experiment_is_refused_before_anything_starts() -> None:
    result = CliRunner().invoke(app, ["experiment", "earthquake"])
    assert result.exit_code != 0
    assert "node-failure or surge" in result.output


def test_bad_settings_are_refused_with_the_field_named() -> None:
    result = CliRunner().invoke(app, ["--duration", "-5", "--no-prefect"])
    assert result.exit_code != 0
    assert "duration_s" in result.output


def test_help_lists_the_experiment_command() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "experiment" in result.output


def test_a_refused_gate_exits_3_and_says_what_happened(monkeypatch: object) -> None:
    import flows.loop.stages
    from flows.loop.stages import StagesGateRefused

    def refuse(settings: object, options: object, say: object) -> None:
        raise StagesGateRefused(
            "13-29", "aggregator_sequential", "refused: 1 of 5 checks failed", "out/runs/x", "default"
        )

    monkeypatch.setattr(flows.loop.stages, "demo", refuse)  # type: ignore[attr-defined]
    result = CliRunner().invoke(app, ["--no-prefect"])
    assert result.exit_code == 3
    assert "the gate (default rules) refused" in result.output and "--policy greedy-standin" in result.output
    assert "reach down" in result.output


def test_the_pipeline_stages_on_the_twin_are_refused_before_anything_starts() -> None:
    result = CliRunner().invoke(app, ["--no-prefect", "--latency-source", "twin"])
    assert result.exit_code == 2
    assert "--latency-source world" in result.output
