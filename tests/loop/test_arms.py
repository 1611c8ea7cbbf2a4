"""The trial files of the experiments: only they are read back, whatever else shares their folder."""

from __future__ import annotations

import json
from pathlib import Path

from flows.loop.arms import DEFAULT_ARM, ArmResult, Trial, read_trials, trial_path, write_trial


def a_trial(seed: int) -> Trial:
    arm = ArmResult(DEFAULT_ARM, "none", 200.0, 300.0, 0, 5.0, 1000.0, 10.0)
    return Trial("node-failure", "7-21", "chain", seed, 15.0, 60.0, {"db": ["cloud-1"]}, ["edge-1"], [arm])


def test_reach_demos_summaries_beside_the_trials_are_not_read_as_trials(tmp_path: Path) -> None:
    write_trial(a_trial(0), tmp_path)
    write_trial(a_trial(-1), tmp_path)
    # what `reach demo` writes to the same default folder (out/demo): stages.report and stages.write_summary
    for name in ("demo-7-21-chain-stages.json", "demo-7-21-chain.json", "demo-7-21-chain-world-traces.json",
                 "demo-13-29-aggregator_sequential-stages.json"):  # fmt: skip
        (tmp_path / name).write_text(json.dumps({"summary": {}}))
    assert [t.seed for t in read_trials(tmp_path)] == [-1, 0]
    assert trial_path(tmp_path, "surge", "7-21", "chain", 3).name == "surge-7-21-chain-s3.json"
