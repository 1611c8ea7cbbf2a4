"""The policy artefact: round trip, deterministic prediction, and clear errors on mismatch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bento.artefact import METADATA_FILE, POLICY_FILE, PolicyError, load_artefact, read_metadata, write_evaluation
from ceenv.env import CloudEdgeEnv
from ceenv.layout import OBSERVATION_VERSION, SUPPORTED_OBSERVATION_VERSIONS, layout_from_scenario
from ceenv.scenario import load_scenario
from flows.training import TrainResult
from tests.conftest import scenario_dir, workload_file

pytestmark = pytest.mark.slow


def _copy(run: TrainResult, tmp_path: Path) -> Path:
    target = tmp_path / "policy"
    shutil.copytree(run.artefact_dir, target)
    return target


def _edit(directory: Path, **fields: object) -> None:
    file = directory / METADATA_FILE
    data = json.loads(file.read_text())
    data.update(fields)
    file.write_text(json.dumps(data))


def test_artefact_round_trip_keeps_layout_sources_and_config(tiny_run: TrainResult) -> None:
    loaded = load_artefact(tiny_run.artefact_dir, layout_from_scenario(load_scenario(scenario_dir("7-21"))))
    meta = loaded.metadata
    assert (tiny_run.artefact_dir / POLICY_FILE).is_file()
    assert meta.observation_version == OBSERVATION_VERSION
    assert meta.layout_fingerprint == layout_from_scenario(load_scenario(scenario_dir("7-21"))).fingerprint()
    assert {f.name for f in meta.scenario_files} == {"nodes.json", "services.json"}
    assert meta.workload_file.content == json.loads(workload_file("aggregator_sequential").read_text())
    assert len(meta.workload_file.sha256) == 64
    assert meta.training_config["total_timesteps"] == 12_288
    assert meta.training_summary["timesteps"] >= 12_288


def test_prediction_is_deterministic_and_valid(tiny_run: TrainResult) -> None:
    loaded = load_artefact(tiny_run.artefact_dir)
    env = CloudEdgeEnv(scenario_dir("7-21"), workload_file("aggregator_sequential"))
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        mask = env.action_masks()
        actions = {loaded.decide(obs, mask) for _ in range(3)}
        assert len(actions) == 1 and mask[actions.pop()]


def test_loading_for_another_scenario_names_both_layouts(tiny_run: TrainResult) -> None:
    other = layout_from_scenario(load_scenario(scenario_dir("13-29")))
    with pytest.raises(PolicyError, match=r"trained for layout .* scenario '7-21'.*train a policy for this scenario"):
        load_artefact(tiny_run.artefact_dir, other)


def test_observation_version_mismatch_is_refused(tiny_run: TrainResult, tmp_path: Path) -> None:
    target = _copy(tiny_run, tmp_path)
    _edit(target, observation_version=max(SUPPORTED_OBSERVATION_VERSIONS) + 1)
    with pytest.raises(PolicyError, match=r"observation_version is .*retrain"):
        load_artefact(target)


def test_tampered_layout_fingerprint_is_refused(tiny_run: TrainResult, tmp_path: Path) -> None:
    target = _copy(tiny_run, tmp_path)
    _edit(target, layout_fingerprint="0000000000000000")
    with pytest.raises(PolicyError, match="layout_fingerprint is 0000000000000000"):
        load_artefact(target)


def test_missing_files_are_named(tiny_run: TrainResult, tmp_path: Path) -> None:
    target = _copy(tiny_run, tmp_path)
    (target / POLICY_FILE).unlink()
    with pytest.raises(PolicyError, match=r"policy\.zip: missing"):
        load_artefact(target)
    with pytest.raises(PolicyError, match=r"metadata\.json: missing"):
        load_artefact(tmp_path / "nowhere")


def test_evaluation_report_is_stored_in_the_metadata(tiny_run: TrainResult, tmp_path: Path) -> None:
    target = _copy(tiny_run, tmp_path)
    write_evaluation(target, {"groups": [], "note": "x"})
    assert read_metadata(target).evaluation_report == {"groups": [], "note": "x"}
    assert (
        load_artefact(target).decide(
            np.zeros(load_artefact(target).layout.observation_size, np.float32),
            np.ones(load_artefact(target).layout.action_count, bool),
        )
        >= 0
    )


def test_a_version_1_artefact_still_loads_evaluates_and_serves_with_version_1_observations(tmp_path: Path) -> None:
    from sb3_contrib import MaskablePPO

    from bento.artefact import describe, save_artefact
    from bento.policy import GateVerdict, PolicyCard, check_card
    from flows.evaluation.units import EvalUnit, evaluate_unit

    scenario = load_scenario(scenario_dir("7-21"))
    env = CloudEdgeEnv(scenario, workload_file("aggregator_sequential"), observation_version=1)
    model = MaskablePPO("MlpPolicy", env, n_steps=64, batch_size=64, device="cpu")  # untrained is enough
    layout = layout_from_scenario(scenario, version=1)
    metadata = describe(layout, scenario_dir("7-21"), workload_file("aggregator_sequential"), step_cost_ms=1.25,
                        max_steps=100)  # fmt: skip
    target = save_artefact(tmp_path / "v1", model, metadata)

    loaded = load_artefact(target, layout_from_scenario(scenario))  # the default layout is a later version
    assert loaded.metadata.observation_version == loaded.layout.version == 1
    records = evaluate_unit(
        EvalUnit(
            str(scenario_dir("7-21")),
            str(workload_file("aggregator_sequential")),
            "steady",
            0,
            1,
            model_dir=str(target),
            baselines=("noop",),
        )
    )
    policy = [r for r in records if r.method == "policy"]
    assert len(policy) == 1 and policy[0].invalid_actions == 0
    card = PolicyCard.from_artefact(loaded.metadata, GateVerdict(passed=True, reason="test"))
    _, served_layout = check_card(card.model_dump(mode="json"), "reach-policy:v1")
    assert served_layout.version == 1 and served_layout.observation_size == env.observation_space.shape[0]
