"""Size-grouped minibatches (flows.training.buffer): every sample once per epoch, one cluster size per minibatch."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from flows.training.buffer import SizeGroupedRolloutBuffer, count_used_rows, key_by_size, order_minibatches
from tests.conftest import scenario_dir, workload_file

ROOT = Path(__file__).resolve().parents[2]


def test_count_used_rows_is_one_past_the_last_present_row() -> None:
    present = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=float)
    assert count_used_rows(present).tolist() == [2, 3, 0, 4]


def test_the_size_key_orders_by_used_nodes_then_by_pods() -> None:
    """A 7-node state full of pods sorts before a 19-node state with few, although its pairs are more."""
    from ceenv.layout import NODE_FEATURES, SLOT_FEATURES

    obs = np.zeros((3, 40 * NODE_FEATURES + 80 * SLOT_FEATURES + 40 * 80 * 5), dtype=np.float32)
    for row, (nodes, pods) in enumerate(((7, 21), (19, 5), (7, 4))):
        obs[row, : nodes * NODE_FEATURES : NODE_FEATURES] = 1.0  # node rows present
        first_slot = 40 * NODE_FEATURES
        obs[row, first_slot : first_slot + pods * 2 * SLOT_FEATURES : 2 * SLOT_FEATURES] = 1.0  # every other slot
    keys = key_by_size(obs, 40, 80)
    assert keys.tolist() == [7 * 81 + 21, 19 * 81 + 5, 7 * 81 + 4]
    assert np.argsort(keys).tolist() == [2, 0, 1]


def test_every_sample_is_drawn_once_and_each_minibatch_holds_one_size() -> None:
    rng = np.random.default_rng(3)
    sizes = rng.permutation(np.repeat([147, 377, 703, 112], 64))  # four clusters, 64 samples each
    batches = order_minibatches(sizes, 32, rng)
    drawn = np.concatenate(batches)
    assert sorted(drawn.tolist()) == list(range(sizes.size))
    assert all(np.unique(sizes[batch]).size == 1 for batch in batches)
    assert len({int(sizes[batch][0]) for batch in batches[:4]}) > 1, "minibatch order is shuffled, not by size"


def test_a_mixed_rollout_trains_each_cluster_size_in_its_own_minibatches(tmp_path: Path) -> None:
    """Across 7-21 and 19-37, a minibatch holds one cluster's samples; a saved policy does not name the buffer."""
    from bento.artefact import TRAINING_STATE
    from flows.training.config import load_train_config
    from flows.training.envs import make_vec_env
    from flows.training.trainer import build_model

    clusters = [(scenario_dir("7-21"), workload_file("chain")), (scenario_dir("19-37"), workload_file("chain"))]
    config = load_train_config(
        ROOT / "data" / "train" / "general.json", n_envs=4, n_steps=64, batch_size=64, group_minibatches=True
    )
    model = build_model(config, make_vec_env(*clusters[0], config, clusters), None)
    assert isinstance(model.rollout_buffer, SizeGroupedRolloutBuffer) and not model.normalize_advantage
    model.learn(256)
    limits = (config.max_nodes, config.max_slots)
    advantages = model.rollout_buffer.advantages
    assert abs(advantages.mean()) < 1e-6 and abs(advantages.std() - 1) < 1e-3, "normalised once over the rollout"
    kinds = [
        {int(key) // (config.max_slots + 1) for key in key_by_size(batch.observations.numpy(), *limits)}
        for batch in model.rollout_buffer.get(config.batch_size)
    ]  # the used node rows of each minibatch's observations
    assert sorted(map(sorted, kinds)) == [[7], [7], [19], [19]], kinds

    model.save(str(tmp_path / "policy.zip"), exclude=list(TRAINING_STATE))
    with zipfile.ZipFile(tmp_path / "policy.zip") as archive:
        assert b"flows.training" not in archive.read("data"), "a bento could not unpickle a training-side class"


def test_minibatches_are_copies_of_the_rollout_and_a_slice_is_refused() -> None:
    """The buffer hands numpy's indexed copies to torch without copying again: no tensor may alias the rollout."""
    from flows.training.config import load_train_config
    from flows.training.envs import make_vec_env
    from flows.training.trainer import build_model

    clusters = [(scenario_dir("7-21"), workload_file("chain"))]
    config = load_train_config(
        ROOT / "data" / "train" / "general.json", n_envs=2, n_steps=32, batch_size=32, group_minibatches=True
    )
    model = build_model(config, make_vec_env(*clusters[0], config, clusters), None)
    model.learn(64)
    buffer = model.rollout_buffer
    kept = buffer.observations.copy(), buffer.action_masks.copy()
    for batch in buffer.get(config.batch_size):
        batch.observations.add_(1.0)
        batch.action_masks.add_(1)
    assert np.array_equal(buffer.observations, kept[0]) and np.array_equal(buffer.action_masks, kept[1])
    with pytest.raises(TypeError, match="index array"):
        buffer._get_samples(slice(0, 4))
