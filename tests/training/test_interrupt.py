"""Ctrl-C during the pipeline's training stops the run; it is not evaluated, gated, packaged or deployed.

The trainer itself stops cleanly and keeps the best weights (``reach train``'s behaviour,
tests/training/test_training.py); the pipeline's training task turns that into a stop of the run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from flows.pipeline import PipelineParams
from tests.conftest import scenario_dir, workload_file


def test_an_interrupted_training_stops_the_pipeline_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows import pipeline
    from flows.training import trainer

    def interrupted(config: object, scenario: Path, workload: Path, out: Path, **_: object) -> trainer.TrainResult:
        return trainer.TrainResult(out / "policy", 512, 3.0, 0.5, 256, True, False, [])

    monkeypatch.setattr(trainer, "train", interrupted)
    monkeypatch.setattr(pipeline, "get_run_logger", lambda: logging.getLogger("test"))
    with pytest.raises(KeyboardInterrupt, match=r"interrupted \(Ctrl-C\) after 512 steps"):
        pipeline.train_policy.fn(
            PipelineParams(), scenario_dir("7-21"), workload_file("aggregator_sequential"), tmp_path
        )


def test_a_training_that_ran_its_course_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows import pipeline
    from flows.training import trainer

    def finished(config: object, scenario: Path, workload: Path, out: Path, **_: object) -> trainer.TrainResult:
        return trainer.TrainResult(out / "policy", 512, 3.0, 0.5, 256, False, True, [])

    monkeypatch.setattr(trainer, "train", finished)
    monkeypatch.setattr(pipeline, "get_run_logger", lambda: logging.getLogger("test"))
    trained = pipeline.train_policy.fn(
        PipelineParams(), scenario_dir("7-21"), workload_file("aggregator_sequential"), tmp_path
    )
    assert trained["timesteps"] == 512
