"""The best-known ceiling of each held-out evaluation state, computed once per process and reused.

:func:`ceenv.search.best_known` is deterministic: the same model, start state and seed give the same
placement. It is also the evaluation's slowest baseline (0.1-0.3 s per state on 13-29 and 19-37),
and sweeps evaluate the same states again and again: the raw policy, planning and REACH's setting in
``bench_general``, eight planner settings in ``bench_planning``, the candidate and (when it is
evaluated again with the same observation layout) the incumbent in one pipeline run.
:func:`cached_best_known`, which the evaluation units use, computes each (model, state, seed) once;
the trainer's validation set-up, ``placements.py`` and ``bench_bound`` call the search directly.

The key is a digest of everything the search reads, built from content rather than identity (every
unit loads its scenario anew): the scenario, the workload and the layout (:func:`model_digest`, once
per unit), the state's conditions, the costs its latency is computed with, its placement, the seed,
and :data:`ceenv.search.CEILING` (which names the search's settings). The layout includes its padding
and observation version: a padded layout orders the search's random moves differently, so policies of
other layouts do not share ceilings (the values may then differ within the search's spread). A changed file, state, seed or search setting is another key. The
memo is per process (a Dask worker keeps its own), bounded (least recently used entries go first)
and safe to share between the threads of Prefect's default task runner. ``REACH_CEILING_MEMO=0`` in
the environment turns it off (``benchmarks/bench_evaluation.py`` does, so that every task runner it
compares does the same work).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from ceenv.baselines import Outcome
from ceenv.search import CEILING, best_known
from ceenv.simulator import Simulator

MEMO_ENV = "REACH_CEILING_MEMO"  # "0": search every time
MAX_ENTRIES = 16_384  # about 1 KiB each (a placement of a few dozen pods)

_lock = threading.Lock()
_memo: OrderedDict[bytes, Outcome] = OrderedDict()
_counts = {"hits": 0, "misses": 0}


def _feed(h: Any, value: Any) -> None:
    """Hash ``value``'s content in a canonical form (types, shapes and order included).

    Anything whose content this cannot read (a callable, a class, an object array, an object with
    ``__slots__``) raises: hashing it by identity or not at all could give two problems one key.
    """
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        h.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("cannot fingerprint an object array for the ceiling's memo (its bytes are addresses)")
        h.update(f"nd:{value.dtype.str}:{value.shape};".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (tuple, list)):
        h.update(f"{type(value).__name__}:{len(value)}[".encode())
        for item in value:
            _feed(h, item)
        h.update(b"]")
    elif isinstance(value, dict):
        h.update(f"dict:{len(value)}{{".encode())
        for key, item in value.items():
            _feed(h, key)
            _feed(h, item)
        h.update(b"}")
    elif isinstance(value, (set, frozenset)):
        h.update(f"set:{len(value)}".encode())
        _feed(h, sorted(repr(item) for item in value))
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(f"dc:{type(value).__qualname__}(".encode())
        for f in dataclasses.fields(value):
            h.update(f"{f.name}=".encode())
            _feed(h, getattr(value, f.name))
        h.update(b")")
    elif (
        hasattr(value, "__dict__")
        and not callable(value)
        and not any("__slots__" in vars(k) for k in type(value).__mro__[:-1])
    ):
        h.update(f"obj:{type(value).__qualname__}(".encode())
        for name in sorted(vars(value)):
            h.update(f"{name}=".encode())
            _feed(h, vars(value)[name])
        h.update(b")")
    else:
        raise TypeError(f"cannot fingerprint a {type(value).__name__} for the ceiling's memo")


def model_digest(sim: Simulator) -> bytes:
    """What the search reads besides the state: the scenario, the workload and the layout."""
    h = hashlib.sha256()
    _feed(h, (sim.model.scenario, sim.model.workload, sim.layout))
    return h.digest()


def state_key(model: bytes, sim: Simulator, seed: int) -> bytes:
    """The state as the search reads it: conditions (capacities), the costs the latency is computed with
    (a twin on known costs is another problem than the true network of the same conditions), the
    placement, the seed and the search's settings."""
    h = hashlib.sha256(model)
    h.update(type(sim).__qualname__.encode())
    _feed(h, (sim.conditions, sim.costs, sim.slot_node, int(seed), CEILING))
    return h.digest()


def cached_best_known(sim: Simulator, seed: int, model: bytes | None = None) -> Outcome:
    """``best_known(sim, default_rng(seed))``, computed once per (model, state, seed) in this process.

    A hit returns the first search's outcome, its ``decision_seconds`` (what the search cost) included.

        ``model`` is :func:`model_digest` of ``sim`` (pass it when many states share one model).
    """
    if os.environ.get(MEMO_ENV, "1").strip() == "0":
        return best_known(sim, np.random.default_rng(seed))
    key = state_key(model_digest(sim) if model is None else model, sim, seed)
    with _lock:
        found = _memo.get(key)
        if found is not None:
            _memo.move_to_end(key)
            _counts["hits"] += 1
            return _own_copy(found)
        _counts["misses"] += 1
    outcome = best_known(sim, np.random.default_rng(seed))  # outside the lock: units run in parallel
    with _lock:
        _memo[key] = outcome
        while len(_memo) > MAX_ENTRIES:
            _memo.popitem(last=False)
    return _own_copy(outcome)


def _own_copy(outcome: Outcome) -> Outcome:
    """The caller's own placement (the memo's stays as the search left it, whatever the caller does)."""
    placement = {service: list(nodes) for service, nodes in outcome.placement.items()}
    return dataclasses.replace(outcome, placement=placement)


def memo_counts() -> dict[str, int]:
    """Hits, misses and entries of this process's memo (benchmarks print it)."""
    with _lock:
        return {**_counts, "entries": len(_memo)}


def clear_memo() -> None:
    with _lock:
        _memo.clear()
        _counts.update(hits=0, misses=0)
