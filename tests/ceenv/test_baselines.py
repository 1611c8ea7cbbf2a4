"""Baselines and the best-known search: they never change their input and behave as documented."""

from __future__ import annotations

import numpy as np
import pytest

from ceenv.baselines import node_utilization, run_balancer, run_greedy, run_noop, run_random
from ceenv.env import CloudEdgeEnv
from ceenv.search import TIE_DECIMALS, beam_search, best_first, best_known, random_placement
from ceenv.simulator import Simulator
from tests.conftest import scenario_dir, workload_file


def start(scenario: str = "13-29", seed: int = 0, workload: str = "aggregator_sequential") -> Simulator:
    env = CloudEdgeEnv(scenario_dir(scenario), workload_file(workload))
    env.reset(seed=seed)
    return env.simulator


def test_noop_keeps_the_start() -> None:
    sim = start()
    outcome = run_noop(sim)
    assert (outcome.moves, outcome.end_latency_ms) == (0, sim.latency_ms)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_stops_when_no_move_gains_more_than_the_step_cost(seed: int) -> None:
    sim = start(seed=seed)
    outcome = run_greedy(sim, step_cost_ms=1.25)
    assert outcome.end_latency_ms <= sim.latency_ms
    final = sim.copy()
    from ceenv.placement import slots_from_assignment

    final.reset_to(
        sim.conditions, slots_from_assignment(sim.model, sim.layout, sim.conditions, outcome.placement, "greedy")
    )
    assert final.latency_ms == pytest.approx(outcome.end_latency_ms)
    moves = final.distinct_moves()
    assert not moves or final.latency_ms - final.latency_after(moves).min() <= 1.25


@pytest.mark.parametrize("scenario", ["7-21", "13-29", "19-37"])
def test_best_known_is_at_least_as_good_as_greedy_and_leaves_the_input_alone(scenario: str) -> None:
    sim = start(scenario, seed=4)
    before = sim.slot_node.copy(), sim.latency_ms
    greedy = run_greedy(sim)
    best = best_known(sim, np.random.default_rng(0))
    assert best.end_latency_ms <= greedy.end_latency_ms + 1e-9
    np.testing.assert_array_equal(sim.slot_node, before[0])
    assert sim.latency_ms == before[1]


def test_random_makes_only_valid_moves_within_the_cap() -> None:
    sim = start()
    outcome = run_random(sim, np.random.default_rng(0), max_moves=30)
    assert 0 <= outcome.moves <= 30
    assert sum(len(nodes) for nodes in outcome.placement.values()) == int((sim.slot_node >= 0).sum())


def test_balancer_only_moves_pods_off_overutilised_nodes_onto_nodes_it_keeps_within_the_threshold() -> None:
    for seed in range(10):
        sim = start(seed=seed)
        outcome = run_balancer(sim, low_threshold=0.2, high_threshold=0.5)
        assert outcome.moves <= int((sim.slot_node >= 0).sum())
        cpu, memory = node_utilization(sim)
        if not ((cpu > 0.5) | (memory > 0.5)).any():
            assert outcome.moves == 0


def test_random_placement_keeps_replica_counts_and_pins() -> None:
    sim = start("7-21", seed=3)
    other = random_placement(sim, np.random.default_rng(1))
    assert other is not None
    np.testing.assert_array_equal(other.counts.sum(axis=1), sim.counts.sum(axis=1))
    assert other.slot_node[0] == sim.slot_node[0]  # the client never moves
    assert (other.free_cpu_millicores >= 0).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_a_beam_as_wide_as_the_move_set_finds_the_best_two_move_sequence(seed: int) -> None:
    sim = start("7-21", seed, "chain")
    before = sim.slot_node.copy()
    best = sim.latency_ms
    for first in sim.distinct_moves():
        after_first = sim.copy()
        after_first.move(*first)
        best = min(best, after_first.latency_ms, float(after_first.latency_after(after_first.distinct_moves()).min()))
    value, moves = beam_search(sim, depth=2, width=10_000)
    assert value == pytest.approx(best)
    assert (sim.slot_node == before).all(), "beam search changed its input"
    replay = sim.copy()
    for move in moves:
        assert replay.action_mask()[move[1] * replay.layout.slot_count + move[0]]
        replay.move(*move)
    assert replay.latency_ms == pytest.approx(value) and len(moves) <= 2


def test_beam_search_pays_the_step_cost_per_move() -> None:
    sim = start("13-29", 0)
    free_value, free_moves = beam_search(sim, depth=3, width=8)
    assert free_moves and free_value < sim.latency_ms
    # A step cost above the whole latency makes every sequence worse than staying put.
    value, moves = beam_search(sim, depth=3, width=8, step_cost_ms=sim.latency_ms)
    assert moves == [] and value == sim.latency_ms


@pytest.mark.parametrize("count", [1, 3, 12, 40])
def test_best_first_equals_the_head_of_a_stable_sort_ties_included(count: int) -> None:
    rng = np.random.default_rng(count)
    for size in (0, 5, 60, 400):
        # Few distinct values, each with sub-tolerance jitter: ties at the cut are the rule, not the exception.
        values = rng.integers(0, 6, size).astype(float) + rng.normal(0.0, 1e-11, size)
        expected = np.argsort(np.round(values, TIE_DECIMALS), kind="stable")[:count]
        np.testing.assert_array_equal(best_first(values, count), expected)
    with_nan = np.array([np.nan] * 50 + [2.0, 1.0])  # NaN sorts last, as in the stable sort
    np.testing.assert_array_equal(best_first(with_nan, count), np.argsort(with_nan, kind="stable")[:count])


@pytest.mark.parametrize("scenario", ["7-21", "19-37"])
def test_distinct_moves_of_the_own_mask_equal_those_of_the_same_mask_passed_in(scenario: str) -> None:
    """The own-mask shortcut (first slot per service and node) lists the moves the general rule lists, in order."""
    sim = start(scenario, 3, "aggregator_parallel")
    rng = np.random.default_rng(3)
    for _ in range(8):
        shortcut = sim.distinct_move_array()
        general = sim.distinct_move_array(sim.action_mask().copy())
        np.testing.assert_array_equal(shortcut, general)
        kinds = {(sim.layout.slot_service[slot], sim.slot_node[slot], node) for slot, node in shortcut}
        assert len(kinds) == len(shortcut), "a kind of move is listed twice"
        sim.move(*shortcut[rng.integers(len(shortcut))])


def test_a_move_given_its_latency_takes_it_and_changes_the_placement_alike() -> None:
    sim = start("13-29", 2)
    slot, node = sim.distinct_moves()[0]
    computed, given = sim.copy(), sim.copy()
    computed.move(slot, node)
    assert given.move(slot, node, latency_ms=123.0) == 123.0 == given.latency_ms
    np.testing.assert_array_equal(given.slot_node, computed.slot_node)
    np.testing.assert_array_equal(given.counts, computed.counts)
    np.testing.assert_array_equal(given.free_cpu_millicores, computed.free_cpu_millicores)
