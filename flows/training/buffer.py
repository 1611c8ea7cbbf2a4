"""A MaskablePPO rollout buffer whose minibatches hold observations of similar cluster size.

Observation version 4 pads every cluster to the same limits. :class:`bento.pod_node.PodNodeNet`
scores only each observation's moves, but its node and pod rows run up to the last one some
observation of the batch uses, and the masked distribution spans the moves up to the batch's last
valid one (node-major). SB3 draws minibatches uniformly from the whole rollout, so across clusters
every minibatch holds at least one large cluster and pays the largest cluster's rows and action
range for every sample in it.
:class:`SizeGroupedRolloutBuffer` keeps each epoch a random permutation of the rollout (every
sample once, as SB3 does) but orders it by the sample's used size (used node rows, then pods; ties
in random order) before cutting it into minibatches, then shuffles the minibatches: a
minibatch of 7-node observations costs a 7-node forward and backward pass.

A minibatch now holds one or two clusters, so PPO's per-minibatch advantage normalisation would
become a per-cluster one (a cluster whose moves matter little would weigh as much as one whose
moves matter a lot). The buffer therefore normalises the advantages once over the whole rollout,
and :func:`flows.training.trainer.build_model` turns MaskablePPO's own normalisation off
(``normalize_advantage=False``) when it uses this buffer (``TrainConfig.group_minibatches``, on in
``data/train/general.json``). ``benchmarks/bench_training.py --throughput`` measures both buffers.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
from sb3_contrib.common.maskable.buffers import MaskableRolloutBuffer, MaskableRolloutBufferSamples

from ceenv.layout import NODE_FEATURES, SLOT_FEATURES

_FLATTENED = ("observations", "actions", "values", "log_probs", "advantages", "returns", "action_masks")


def count_used_rows(present: np.ndarray) -> np.ndarray:
    """Per row of ``present`` ``(S, R)``: 1 + the last index whose flag is set (0 when none is)."""
    flags = present != 0
    last = present.shape[1] - np.argmax(flags[:, ::-1], axis=1)
    counts: np.ndarray = np.where(flags.any(axis=1), last, 0)
    return counts


def key_by_size(observations: np.ndarray, max_nodes: int, max_slots: int) -> np.ndarray:
    """Per version-4 observation ``(S, D)``: a sort key, its used node rows first, then its pods.

    A minibatch costs its most used node rows times its most pods; ordering by nodes first keeps
    one cluster's samples together rather than mixing a small cluster full of pods with a large one.
    """
    count = observations.shape[0]
    node_end = max_nodes * NODE_FEATURES
    nodes = observations[:, :node_end].reshape(count, max_nodes, NODE_FEATURES)[..., 0]
    slots = observations[:, node_end : node_end + max_slots * SLOT_FEATURES].reshape(count, max_slots, SLOT_FEATURES)
    keys: np.ndarray = count_used_rows(nodes) * (max_slots + 1) + np.count_nonzero(slots[..., 0], axis=1)
    return keys


def _flatten(array: np.ndarray) -> np.ndarray:
    """``(n_steps, n_envs, ...)`` → ``(n_steps * n_envs, ...)``, step-major, as a view.

    SB3's ``swap_and_flatten`` copies instead (140 MB of observations per rollout of ``general.json``).
    The minibatches are drawn from a permutation, so the order of the flat index does not matter.
    """
    shape = array.shape if array.ndim >= 3 else (*array.shape, 1)
    return array.reshape(shape[0] * shape[1], *shape[2:])


def order_minibatches(sizes: np.ndarray, batch_size: int, generator: Any = np.random) -> list[np.ndarray]:
    """Minibatch index arrays: a random permutation sorted by ``sizes`` (stable), cut, then shuffled."""
    permutation = generator.permutation(sizes.shape[0])
    ordered = permutation[np.argsort(sizes[permutation], kind="stable")]
    batches = [ordered[start : start + batch_size] for start in range(0, ordered.shape[0], batch_size)]
    return [batches[i] for i in generator.permutation(len(batches))]


class SizeGroupedRolloutBuffer(MaskableRolloutBuffer):
    """``MaskableRolloutBuffer`` with minibatches grouped by used size and advantages normalised per rollout."""

    def __init__(self, *args: Any, max_nodes: int, max_slots: int, **kwargs: Any) -> None:
        self.max_nodes, self.max_slots = max_nodes, max_slots
        self.sizes = np.zeros(0, dtype=np.int64)
        super().__init__(*args, **kwargs)

    def get(self, batch_size: int | None = None) -> Generator[MaskableRolloutBufferSamples, None, None]:  # type: ignore[override]
        assert self.full, "the rollout buffer is read only once it is full"
        if not self.generator_ready:  # once per rollout (PPO calls get() once per epoch)
            for name in _FLATTENED:
                self.__dict__[name] = _flatten(self.__dict__[name])
            self.sizes = key_by_size(self.observations, self.max_nodes, self.max_slots)
            self.advantages = (self.advantages - self.advantages.mean()) / (self.advantages.std() + 1e-8)
            self.generator_ready = True
        total = self.buffer_size * self.n_envs
        for indices in order_minibatches(self.sizes, total if batch_size is None else batch_size):
            yield self._get_samples(indices)

    def _get_samples(self, batch_inds: np.ndarray, env: Any = None) -> MaskableRolloutBufferSamples:  # type: ignore[override]
        """The minibatch ``batch_inds`` as tensors that share the memory of the arrays indexing made.

        Indexing with an index array copies already; SB3's ``to_torch`` copied each array again
        (a minibatch of 256 version-4 observations is about 17 MB). A slice would index views of
        the buffer, so only index arrays are taken.
        """
        if not isinstance(batch_inds, np.ndarray):
            raise TypeError(
                f"SizeGroupedRolloutBuffer draws minibatches by index array, not {type(batch_inds).__name__}"
            )
        data = (
            self.observations[batch_inds],
            self.actions[batch_inds],
            self.values[batch_inds].flatten(),
            self.log_probs[batch_inds].flatten(),
            self.advantages[batch_inds].flatten(),
            self.returns[batch_inds].flatten(),
            self.action_masks[batch_inds].reshape(-1, self.mask_dims),
        )
        return MaskableRolloutBufferSamples(*(self.to_torch(array, copy=False) for array in data))
