"""Baselines and the best-known search: they never change their input and behave as documented.

Padded layouts (observation version 4) re-sort the slots after every move, so the balancer's "each
pod moves at most once" and best-known's migration count are checked against the unpadded layout
of the same state: they must not depend on which slot holds which pod.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from ceenv.baselines import Outcome, node_utilization, run_balancer, run_greedy, run_noop, run_random
from ceenv.env import CloudEdgeEnv
from ceenv.layout import layout_from_scenario
from ceenv.search import TIE_DECIMALS, beam_search, best_first, best_known, migrations_needed, random_placement
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


@pytest.fixture
def utilisation_at_moves(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Every ``Simulator.move`` made while the test runs: its source and target node and the nodes' CPU and
    memory utilisation (:func:`node_utilization`) just before and just after it."""
    seen: list[dict[str, Any]] = []
    move = Simulator.move

    def recording(sim: Simulator, slot: int, node: int, latency_ms: float | None = None) -> float:
        cpu_before, memory_before = node_utilization(sim)
        source = int(sim.slot_node[slot])
        result = move(sim, slot, node, latency_ms)
        cpu_after, memory_after = node_utilization(sim)
        seen.append(
            {"source": source, "target": int(node), "cpu_before": cpu_before, "memory_before": memory_before,
             "cpu_after": cpu_after, "memory_after": memory_after}
        )  # fmt: skip
        return result

    monkeypatch.setattr(Simulator, "move", recording)
    yield seen


def test_balancer_only_moves_pods_off_overutilised_nodes_onto_nodes_it_keeps_within_the_threshold(
    utilisation_at_moves: list[dict[str, Any]],
) -> None:
    low, high = 0.2, 0.5
    for seed in range(10):
        run_balancer(start(seed=seed), low_threshold=low, high_threshold=high)
    assert utilisation_at_moves, "the balancer moved nothing on 10 starts: the per-move checks below never ran"
    for number, seen in enumerate(utilisation_at_moves):
        source, target = seen["source"], seen["target"]
        where = f"move {number} (node {source} → node {target})"
        assert seen["cpu_before"][source] > high or seen["memory_before"][source] > high, (
            f"{where}: its source was not over-utilised: cpu {seen['cpu_before'][source]:.3f}, "
            f"memory {seen['memory_before'][source]:.3f} (high {high})"
        )
        assert seen["cpu_before"][target] < low and seen["memory_before"][target] < low, (
            f"{where}: its target was not under-utilised: cpu {seen['cpu_before'][target]:.3f}, "
            f"memory {seen['memory_before'][target]:.3f} (low {low})"
        )
        assert seen["cpu_after"][target] <= high + 1e-9 and seen["memory_after"][target] <= high + 1e-9, (
            f"{where}: its target ended over the threshold: cpu {seen['cpu_after'][target]:.3f}, "
            f"memory {seen['memory_after'][target]:.3f} (high {high})"
        )


def padded(sim: Simulator) -> Simulator:
    """The same state (conditions, pods on nodes) on the padded layout of observation version 4."""
    return Simulator(sim.model, layout_from_scenario(sim.model.scenario, 4), sim.conditions, sim.slot_node)


@pytest.fixture
def recorded_moves(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int, int]]]:
    """Every ``Simulator.move`` made while the test runs, as (service, source node, target node)."""
    moves: list[tuple[int, int, int]] = []
    move = Simulator.move

    def recording(sim: Simulator, slot: int, node: int, latency_ms: float | None = None) -> float:
        moves.append((int(sim.layout.slot_service[slot]), int(sim.slot_node[slot]), int(node)))
        return move(sim, slot, node, latency_ms)

    monkeypatch.setattr(Simulator, "move", recording)
    yield moves


def slot_tracking_balancer(start: Simulator, low: float = 0.2, high: float = 0.5, max_moves: int = 100) -> Outcome:
    """The balancer as it was, remembering moved pods by slot index: right only while slots keep their pods
    (unpadded layouts), the oracle for those."""
    sim = start.copy()
    moved: set[int] = set()
    while len(moved) < max_moves:
        cpu, memory = node_utilization(sim)
        load = np.maximum(cpu, memory)
        under = (cpu < low) & (memory < low)
        over = [int(n) for n in np.argsort(-load) if cpu[n] > high or memory[n] > high]
        mask = sim.action_mask()[:-1].reshape(sim.layout.node_count, sim.layout.slot_count)
        cpu_total = np.maximum(sim.conditions.cpu_millicores, 1.0)
        memory_total = np.maximum(sim.conditions.memory_bytes, 1.0)
        move = None
        for source in over:
            for slot in np.flatnonzero(sim.slot_node == source):
                if move is not None or int(slot) in moved:
                    continue
                service = sim.layout.slot_service[slot]
                cpu_after = cpu + sim.request_cpu_millicores[service] / cpu_total
                memory_after = memory + sim.request_memory_bytes[service] / memory_total
                targets = np.flatnonzero(mask[:, slot] & under & (cpu_after <= high) & (memory_after <= high))
                if targets.size:
                    move = int(slot), int(targets[np.argmin(load[targets])])
        if move is None:
            break
        sim.move(*move)
        moved.add(move[0])
    return Outcome("balancer", start.latency_ms, sim.latency_ms, len(moved), 0.0, 0, sim.placement())


def sorted_placement(outcome: Outcome) -> dict[str, list[str]]:
    return {service: sorted(nodes) for service, nodes in outcome.placement.items()}


BALANCED_STATES = [(scenario, seed) for scenario in ("7-21", "13-29", "19-37") for seed in range(12)]


@pytest.mark.parametrize(("scenario", "seed"), BALANCED_STATES)
def test_the_balancer_on_an_unpadded_layout_moves_as_the_slot_tracking_balancer_did(
    scenario: str, seed: int, recorded_moves: list[tuple[int, int, int]]
) -> None:
    sim = start(scenario, seed)
    expected = slot_tracking_balancer(sim)
    expected_moves = list(recorded_moves)
    recorded_moves.clear()
    outcome = run_balancer(sim)
    assert recorded_moves == expected_moves  # the same (service, source, target) sequence
    assert (outcome.moves, outcome.end_latency_ms) == (expected.moves, expected.end_latency_ms)
    assert sorted_placement(outcome) == sorted_placement(expected)


@pytest.mark.parametrize(("scenario", "seed"), BALANCED_STATES)
def test_the_balancer_moves_no_pod_twice_on_a_padded_layout_and_ends_as_on_the_unpadded_one(
    scenario: str, seed: int, recorded_moves: list[tuple[int, int, int]]
) -> None:
    sim = start(scenario, seed)
    unpadded = run_balancer(sim)
    recorded_moves.clear()
    wide = padded(sim)
    outcome = run_balancer(wide)
    # A pod that arrived by a move never leaves again, so the pods leaving a node are at most those that
    # started there (per service); more would mean some pod moved twice.
    left = np.zeros_like(wide.counts)
    for service, source, _ in recorded_moves:
        left[service, source] += 1
        assert left[service, source] <= wide.counts[service, source], f"a pod of service {service} moved twice"
    assert outcome.moves == len(recorded_moves) == unpadded.moves
    assert outcome.end_latency_ms == pytest.approx(unpadded.end_latency_ms)
    assert sorted_placement(outcome) == sorted_placement(unpadded)


def slot_wise_changes(start: Simulator, end: Simulator) -> int:
    """The old count: pods whose slot holds another node at the end."""
    return int(((end.slot_node != start.slot_node) & (start.slot_node >= 0)).sum())


def test_two_pods_of_one_service_that_swap_nodes_need_no_migration() -> None:
    for seed in range(20):
        sim = start("13-29", seed)
        for service in range(len(sim.layout.service_names)):
            slots = np.flatnonzero((sim.layout.slot_service == service) & (sim.slot_node >= 0))
            pair = [(a, b) for a in slots for b in slots if a < b and sim.slot_node[a] != sim.slot_node[b]]
            if pair:
                a, b = pair[0]
                slot_node = sim.slot_node.copy()
                slot_node[[a, b]] = slot_node[[b, a]]
                swapped = sim.copy()
                swapped.reset_to(sim.conditions, slot_node)
                assert slot_wise_changes(sim, swapped) == 2
                assert migrations_needed(sim.counts, swapped.counts) == 0
                return
    pytest.fail("no start state of 13-29 has two pods of one service on different nodes")


@pytest.mark.parametrize("scenario", ["7-21", "13-29", "19-37"])
def test_migrations_needed_ignore_the_layout_and_never_exceed_the_slot_wise_count(scenario: str) -> None:
    for seed in range(6):
        sim = start(scenario, seed)
        other = random_placement(sim, np.random.default_rng(seed))
        assert other is not None
        needed = migrations_needed(sim.counts, other.counts)
        assert needed == migrations_needed(padded(sim).counts, padded(other).counts)
        assert needed <= slot_wise_changes(sim, other)
        # Each service leaves as many nodes short as it fills: the count is the same read either way.
        assert needed == migrations_needed(other.counts, sim.counts)


def counts_of(sim: Simulator, placement: dict[str, list[str]]) -> np.ndarray:
    counts = np.zeros_like(sim.counts)
    for service, nodes in placement.items():
        for node in nodes:
            counts[sim.layout.service_names.index(service), sim.layout.node_names.index(node)] += 1
    return counts


@pytest.mark.parametrize("layout", ["unpadded", "padded"])
def test_best_known_reports_the_migrations_its_placement_needs_counted_per_service_and_node(layout: str) -> None:
    for seed in range(3):
        sim = start("19-37", seed)
        sim = padded(sim) if layout == "padded" else sim
        outcome = best_known(sim, np.random.default_rng(seed), restarts=1, kicks=1)
        assert outcome.moves == migrations_needed(sim.counts, counts_of(sim, outcome.placement))


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
