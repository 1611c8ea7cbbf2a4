"""What ``reach demo experiment`` refuses before any arm runs: an event without samples on both sides, a QoS
threshold that Istio's histogram cannot count."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from flows.cli.demo import app
from flows.loop.settings import DemoSettings


def test_an_experiments_event_needs_latency_samples_before_and_after_it() -> None:
    DemoSettings(experiment="node-failure", event_at_s=2.0, duration_s=4.0)  # 2 samples (1 s apart) each side
    with pytest.raises(ValidationError, match=r"event_at_s \(--event-at\) 0.5 s is too early.*at least 2 s"):
        DemoSettings(experiment="node-failure", event_at_s=0.5)
    with pytest.raises(ValidationError, match=r"in a run of duration_s \(--duration\) 60 s: give an event between 2 "
                       r"and 58 s"):  # fmt: skip
        DemoSettings(experiment="surge", event_at_s=60.0, duration_s=60.0)
    with pytest.raises(ValidationError, match=r"duration_s \(--duration\) 3 s is too short.*at least 4 s"):
        DemoSettings(experiment="surge", event_at_s=2.0, duration_s=3.0)
    with pytest.raises(ValidationError, match="at least 1 s into the run"):  # the margin follows the sampling period
        DemoSettings(experiment="surge", event_at_s=0.5, sample_s=0.5)


def test_an_experiments_qos_threshold_must_be_a_bucket_bound_of_istios_histogram() -> None:
    DemoSettings(experiment="surge", qos_threshold_ms=50.0)
    with pytest.raises(ValidationError, match=r"--qos\) 60 ms is not a bucket bound.*50, 100, 250"):
        DemoSettings(experiment="surge", qos_threshold_ms=60.0)


def test_without_an_experiment_the_demo_takes_any_threshold_and_event_time() -> None:
    settings = DemoSettings(qos_threshold_ms=60.0, duration_s=20.0)  # the migrator's threshold; no event
    assert settings.event_at_s > settings.duration_s


def test_the_experiment_command_refuses_bad_options_with_the_reason_before_any_arm_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import flows.loop.experiments

    monkeypatch.setattr(flows.loop.experiments, "experiment", lambda *a: pytest.fail("an arm ran"))
    for args, reason in ((["--qos", "60"], "not a bucket bound"), (["--event-at", "60"], "no time after the event"),
                         (["--event-at", "0"], "too early")):  # fmt: skip
        result = CliRunner().invoke(app, ["experiment", "surge", "--duration", "60", *args])
        assert result.exit_code == 2 and reason in " ".join(result.output.replace("│", " ").split()), result.output
