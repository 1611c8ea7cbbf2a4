"""The seed split: which seeds draw training, validation and test start states.

Every start state comes from ``CloudEdgeEnv.reset(seed=s)`` (or a generator seeded with ``s``),
so keeping the seed ranges disjoint keeps the states apart. Training envs use
``config.seed + i`` for env ``i``, all below :data:`TRAIN_SEED_LIMIT`; the validation episodes
that pick the best model during training use :func:`validation_seed` (from 1 000 000); the
held-out evaluation uses :func:`evaluation_seed` (from 2 000 000), ``EPISODE_STRIDE`` seeds per
evaluation seed. Documented in ``docs/training.md``; used by training and evaluation.
"""

from __future__ import annotations

TRAIN_SEED_LIMIT = 1_000_000
VALIDATION_SEED_BASE = 1_000_000
TEST_SEED_BASE = 2_000_000
EPISODE_STRIDE = 10_000
MAX_TEST_SEED = 99


def validation_seed(episode: int) -> int:
    """The reset seed of validation episode ``episode`` (used during training only)."""
    if not 0 <= episode < TEST_SEED_BASE - VALIDATION_SEED_BASE:
        raise ValueError(f"validation episode {episode} is outside 0..{TEST_SEED_BASE - VALIDATION_SEED_BASE - 1}")
    return VALIDATION_SEED_BASE + episode


def evaluation_seed(seed: int, episode: int) -> int:
    """The reset seed of episode ``episode`` of evaluation seed ``seed`` (never used in training)."""
    if not 0 <= seed <= MAX_TEST_SEED:
        raise ValueError(f"evaluation seed {seed} is outside 0..{MAX_TEST_SEED}; pick seeds in that range")
    if not 0 <= episode < EPISODE_STRIDE:
        raise ValueError(f"episode {episode} is outside 0..{EPISODE_STRIDE - 1}; evaluate fewer episodes per seed")
    return TEST_SEED_BASE + seed * EPISODE_STRIDE + episode
