"""The trial files of the experiments: only they are read back, whatever else shares their folder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from flows.local.paths import repo_root
from flows.loop.arms import (
    DEFAULT_ARM,
    LEGACY_PROTOCOL,
    PROTOCOL,
    ArmResult,
    Trial,
    learned_policy,
    read_trials,
    trial_path,
    write_trial,
)
from flows.loop.settings import DemoSettings

STORED = repo_root() / "benchmarks" / "results" / "experiments" / "trials"


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


def test_the_stored_trials_load_as_the_old_protocol_with_their_settings_unknown() -> None:
    trials = read_trials(STORED)
    assert trials, f"no stored trial under {STORED}"
    assert {t.protocol for t in trials} == {LEGACY_PROTOCOL} and PROTOCOL != LEGACY_PROTOCOL
    assert all(t.qos_threshold_ms is None and t.world_rps is None and t.arm_order == [] for t in trials)
    assert all(a.window_s is None and a.event_s is None for t in trials for a in t.arms)


def test_a_new_trial_keeps_its_protocol_settings_and_arm_order_through_json(tmp_path: Path) -> None:
    recorded = replace(
        a_trial(0), protocol=PROTOCOL, qos_threshold_ms=250.0, world_rps=2.0, surge_multiplier=2.0,
        arm_order=["greedy", "default-scheduler", "learned"],
        arms=[replace(a_trial(0).arms[0], event_s=15.4, window_s=44.6)],
    )  # fmt: skip
    write_trial(recorded, tmp_path)
    assert read_trials(tmp_path) == [recorded]


def test_the_learned_arm_serves_the_tag_asked_for_else_the_newest_gated_bento_else_the_packaged_general_policy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.loop import arms, policy

    served: list[str] = []
    newest: list[str | None] = [None]
    monkeypatch.setattr(policy, "gated_bento_for", lambda scenario, workload: newest[0])
    monkeypatch.setattr(policy, "serve_bento", lambda s, w, tag: served.append(tag) or (f"http://x/{w}", tag))
    monkeypatch.setattr(policy, "start_standin", lambda s, w: pytest.fail("the learned arm never falls back"))
    monkeypatch.setattr(arms, "package_general_policy", lambda: "reach-policy-service:general")
    assert learned_policy(DemoSettings(train_missing=False), "chain") == (
        "http://x/chain",
        "reach-policy-service:general",
    )
    newest[0] = "reach-policy-service:gated"
    assert learned_policy(DemoSettings(train_missing=False), "chain")[1] == "reach-policy-service:gated"
    assert learned_policy(DemoSettings(policy="b:1"), "chain")[1] == "b:1"
    assert served == ["reach-policy-service:general", "reach-policy-service:gated", "b:1"]
    with pytest.raises(ValueError, match="needs a learned policy"):
        learned_policy(DemoSettings(policy="greedy-standin"), "chain")
