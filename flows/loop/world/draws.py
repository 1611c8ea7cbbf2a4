"""The world's randomness: one seeded numpy Generator, drawn in blocks for speed.

Drawing numbers one at a time from numpy costs microseconds each; the emulator needs several per
call. :class:`Draws` refills a block of 4096 values per kind (uniform, unit exponential, unit-mean
gamma of a given CV) from the single generator, in the order the simulation asks for them, so a
seed fixes every draw. Used by :mod:`flows.loop.world.emulator`.
"""

from __future__ import annotations

import numpy as np

BLOCK = 4096


class _Block:
    def __init__(self, refill: object) -> None:
        self.refill = refill
        self.values: list[float] = []
        self.i = 0

    def next(self) -> float:
        if self.i >= len(self.values):
            self.values = self.refill().tolist()  # type: ignore[operator]
            self.i = 0
        value = self.values[self.i]
        self.i += 1
        return value


class Draws:
    """Uniforms, exponentials and unit-mean gammas from one ``numpy.random.Generator``."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self._uniform = _Block(lambda: self.rng.random(BLOCK))
        self._exponential = _Block(lambda: self.rng.standard_exponential(BLOCK))
        self._gamma: dict[float, _Block] = {}

    def uniform(self) -> float:
        """U[0, 1)."""
        return self._uniform.next()

    def exponential(self) -> float:
        """Exponential with mean 1."""
        return self._exponential.next()

    def choice(self, n: int) -> int:
        """An index uniform in 0..n-1 (as kube-proxy picks an endpoint)."""
        return min(int(self.uniform() * n), n - 1)

    def unit_gamma(self, cv: float) -> float:
        """Gamma with mean 1 and coefficient of variation ``cv``; exactly 1 when ``cv`` is 0."""
        if cv <= 0:
            return 1.0
        block = self._gamma.get(cv)
        if block is None:
            shape = 1.0 / (cv * cv)
            block = self._gamma[cv] = _Block(lambda: self.rng.gamma(shape, 1.0 / shape, BLOCK))
        return block.next()
