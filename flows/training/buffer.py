"""A MaskablePPO rollout buffer whose minibatches hold observations of similar cluster size.

Observation version 4 pads every cluster to the same limits, and :class:`bento.pod_node.PodNodeNet`
computes only on the node and slot rows that some observation of its batch uses. SB3 draws
minibatches uniformly from the whole rollout, so across clusters every minibatch holds at least one
large cluster and pays the largest cluster's N x P pair tensor for every sample in it.
:class:`SizeGroupedRolloutBuffer` keeps each epoch a random permutation of the rollout (every
sample once, as SB3 does) but orders it by the sample's used size (pairs of the nodes and slots in
use, ties in random order) before cutting it into minibatches, then shuffles the minibatches: a
minibatch of 7-node observations costs a 7-node forward and backward pass. Used by
:func:`flows.training.trainer.build_model` for ``policy: pod_node`` when ``TrainConfig.group_minibatches``
is on (``data/train/general.json``); ``benchmarks/bench_training.py --throughput`` measures both.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
from sb3_contrib.common.maskable.buffers import MaskableRolloutBuffer, MaskableRolloutBufferSamples

from ceenv.layout import NODE_FEATURES, SLOT_FEATURES


def used_rows(present: np.ndarray) -> np.ndarray:
    """Per row of ``present`` ``(S, R)``: 1 + the last index whose flag is set (0 when none is)."""
    flags = present != 0
    last = present.shape[1] - np.argmax(flags[:, ::-1], axis=1)
    return np.where(flags.any(axis=1), last, 0)


def used_pairs(observations: np.ndarray, max_nodes: int, max_slots: int) -> np.ndarray:
    """Per version-4 observation ``(S, D)``: the pair count its used node and slot rows span."""
    count = observations.shape[0]
    node_end = max_nodes * NODE_FEATURES
    nodes = observations[:, :node_end].reshape(count, max_nodes, NODE_FEATURES)[..., 0]
    slots = observations[:, node_end : node_end + max_slots * SLOT_FEATURES].reshape(count, max_slots, SLOT_FEATURES)
    pairs: np.ndarray = used_rows(nodes) * used_rows(slots[..., 0])
    return pairs


def grouped_order(sizes: np.ndarray, batch_size: int, generator: Any = np.random) -> list[np.ndarray]:
    """Minibatch index arrays: a random permutation sorted by ``sizes`` (stable), cut, then shuffled."""
    permutation = generator.permutation(sizes.shape[0])
    ordered = permutation[np.argsort(sizes[permutation], kind="stable")]
    batches = [ordered[start : start + batch_size] for start in range(0, ordered.shape[0], batch_size)]
    return [batches[i] for i in generator.permutation(len(batches))]


class SizeGroupedRolloutBuffer(MaskableRolloutBuffer):
    """``MaskableRolloutBuffer`` with minibatches grouped by the observations' used size (version 4)."""

    def __init__(self, *args: Any, max_nodes: int, max_slots: int, **kwargs: Any) -> None:
        self.max_nodes, self.max_slots = max_nodes, max_slots
        super().__init__(*args, **kwargs)

    def get(self, batch_size: int | None = None) -> Generator[MaskableRolloutBufferSamples, None, None]:  # type: ignore[override]
        assert self.full, "the rollout buffer is read only once it is full"
        if not self.generator_ready:
            for name in ("observations", "actions", "values", "log_probs", "advantages", "returns", "action_masks"):
                self.__dict__[name] = self.swap_and_flatten(self.__dict__[name])
            self.generator_ready = True
        total = self.buffer_size * self.n_envs
        sizes = used_pairs(self.observations.reshape(total, -1), self.max_nodes, self.max_slots)
        for indices in grouped_order(sizes, total if batch_size is None else batch_size):
            yield self._get_samples(indices)
