"""The ceiling's memo: the same numbers as the search, computed once per state, keyed by content."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from ceenv.env import CloudEdgeEnv
from ceenv.scenario import load_scenario
from ceenv.search import best_known
from ceenv.simulator import Simulator
from ceenv.workload import load_workload
from flows.evaluation import ceilings, evaluate
from flows.evaluation.episodes import start_state

DATA = Path(__file__).resolve().parents[2] / "data"
SCENARIO = DATA / "scenarios" / "7-21"
WORKLOAD = DATA / "workloads" / "aggregator_sequential_call_patterns.json"


@pytest.fixture(autouse=True)
def _empty_memo() -> Iterator[None]:
    ceilings.clear_memo()
    yield
    ceilings.clear_memo()


def _sim(seed: int, family: str = "steady") -> Simulator:
    scenario = load_scenario(SCENARIO)  # loaded anew each time, as every evaluation unit does
    env = CloudEdgeEnv(scenario, load_workload(WORKLOAD, scenario), dynamic=True)
    return Simulator(env.model, env.layout, *start_state(env, family, seed))  # type: ignore[arg-type]


def test_memo_returns_the_searchs_outcome_and_searches_once() -> None:
    seed = 1_000_123
    first = ceilings.cached_best_known(_sim(seed), seed)
    again = ceilings.cached_best_known(_sim(seed), seed)  # another load of the same files
    direct = best_known(_sim(seed), np.random.default_rng(seed))
    assert first.end_latency_ms == direct.end_latency_ms and first.moves == direct.moves
    assert first.placement == direct.placement
    assert again == first and again.placement is not first.placement  # the caller's own copy
    assert ceilings.memo_counts() == {"hits": 1, "misses": 1, "entries": 1}


def test_another_state_seed_or_condition_is_another_key() -> None:
    sim = _sim(1_000_007)
    model = ceilings.model_digest(sim)
    keys = {ceilings.state_key(model, sim, 1_000_007)}
    keys.add(ceilings.state_key(model, sim, 1_000_008))  # same state, another search seed
    keys.add(ceilings.state_key(model, _sim(1_000_009), 1_000_007))  # another state
    moved = sim.copy()
    moved.move(*moved.distinct_moves()[0])
    keys.add(ceilings.state_key(model, moved, 1_000_007))  # one pod elsewhere
    delay = sim.conditions.delay_ms.copy()
    delay[0, -1] += 1.0  # a condition the latency reads
    slower = Simulator(sim.model, sim.layout, dataclasses.replace(sim.conditions, delay_ms=delay), sim.slot_node)
    keys.add(ceilings.state_key(model, slower, 1_000_007))
    assert len(keys) == 5


def test_another_workload_is_another_model() -> None:
    scenario = load_scenario(SCENARIO)
    other = load_workload(DATA / "workloads" / "chain_call_patterns.json", scenario)
    env = CloudEdgeEnv(scenario, other, dynamic=True)
    sim = Simulator(env.model, env.layout, *start_state(env, "steady", 1_000_001))
    assert ceilings.model_digest(sim) != ceilings.model_digest(_sim(1_000_001))
    assert ceilings.model_digest(_sim(1_000_001)) == ceilings.model_digest(_sim(1_000_002))  # the state is not in it


def test_a_second_evaluation_of_the_same_states_reuses_every_ceiling() -> None:
    settings = {"baselines": ("noop", "greedy", "best_known")}
    report1, records1 = evaluate(SCENARIO, [WORKLOAD], None, [0, 1], 2, ["steady", "node_failure"], **settings)
    searched = ceilings.memo_counts()
    report2, records2 = evaluate(SCENARIO, [WORKLOAD], None, [0, 1], 2, ["steady", "node_failure"], **settings)
    after = ceilings.memo_counts()
    assert searched["misses"] == 8 and searched["hits"] == 0  # 2 seeds x 2 episodes x 2 families
    assert after["misses"] == 8 and after["hits"] == 8
    best1 = [(r.end_latency_ms, r.moves) for r in records1 if r.method == "best_known"]
    best2 = [(r.end_latency_ms, r.moves) for r in records2 if r.method == "best_known"]
    assert best1 == best2 and len(best1) == 8

    def fractions(report: object) -> list[float]:  # decision times differ between runs; the scores may not
        return [s.fraction_of_best_known.mean for g in report.groups for s in g.methods.values()]  # type: ignore[attr-defined]

    assert fractions(report1) == fractions(report2)


def test_memo_is_bounded_and_keeps_the_recently_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ceilings, "MAX_ENTRIES", 2)
    for seed in (1_000_001, 1_000_002, 1_000_001, 1_000_003):  # 1_000_001 used again before the third
        ceilings.cached_best_known(_sim(seed), seed)
    assert ceilings.memo_counts() == {"hits": 1, "misses": 3, "entries": 2}
    ceilings.cached_best_known(_sim(1_000_001), 1_000_001)  # kept: the least recently used (…002) went
    assert ceilings.memo_counts()["hits"] == 2
    ceilings.cached_best_known(_sim(1_000_002), 1_000_002)
    assert ceilings.memo_counts()["misses"] == 4


class _Slotted:
    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value


@pytest.mark.parametrize(
    "opaque",
    [_Slotted(1), lambda: 1, np.array([object()], dtype=object), _Slotted],
    ids=["slots", "callable", "object-array", "class"],
)
def test_what_has_no_readable_content_is_refused_not_hashed_by_identity(opaque: object) -> None:
    with pytest.raises(TypeError, match="cannot fingerprint"):
        ceilings._feed(hashlib.sha256(), opaque)


def test_the_family_the_padding_and_the_costs_are_in_the_key() -> None:
    seed = 1_000_011
    steady, failed = _sim(seed), _sim(seed, "node_failure")
    model = ceilings.model_digest(steady)
    assert ceilings.state_key(model, steady, seed) != ceilings.state_key(model, failed, seed)
    # the general policy's padded layout (observation v4) orders the search's moves otherwise
    scenario = load_scenario(SCENARIO)
    padded = CloudEdgeEnv(
        scenario, load_workload(WORKLOAD, scenario), dynamic=True, observation_version=4, max_nodes=40, max_slots=80
    )
    padded_sim = Simulator(padded.model, padded.layout, steady.conditions, steady.slot_node)
    assert ceilings.model_digest(padded_sim) != model
    # the same conditions on known (nominal) costs, as bento.planning's twin: another problem
    twin = steady.copy()
    twin.costs = steady.known_costs
    assert ceilings.state_key(model, twin, seed) != ceilings.state_key(model, steady, seed)


def test_the_memo_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ceilings.MEMO_ENV, "0")
    seed = 1_000_005
    first = ceilings.cached_best_known(_sim(seed), seed)
    again = ceilings.cached_best_known(_sim(seed), seed)
    assert again is not first and again.end_latency_ms == first.end_latency_ms
    assert ceilings.memo_counts() == {"hits": 0, "misses": 0, "entries": 0}
