"""Incremental move gains agree with the full latency evaluation on random states and moves."""

from __future__ import annotations

import numpy as np
import pytest

from ceenv.env import CloudEdgeEnv
from ceenv.gains import latency_after_moves, linear_tree
from ceenv.generator import generate_scenario
from ceenv.latency import LatencyModel, build_network, draw_conditions
from ceenv.layout import layout_from_scenario
from ceenv.observation import move_gain_features, move_gain_features_batch
from ceenv.reference import nodes_document, reference_scenario, services_document
from ceenv.scenario import scenario_from_documents
from ceenv.simulator import Simulator
from ceenv.workload import parse_workload

TOLERANCE_MS = 1e-9


def _call(times: str, children: list[dict] | None = None) -> dict:
    call: dict = {"data-size": "0.3M", "execution-time": {"0": times, "1": times, "2": times}}
    if children:
        call["call-path"] = children
    return call


def _self_calling_env() -> CloudEdgeEnv:
    """A workload where the aggregator calls itself and db is called from two places."""
    scenario = scenario_from_documents("7-21", nodes_document("7-21"), services_document("7-21"))
    doc = {
        "a": {
            "client": "client",
            "rps": 3,
            "call-path": [
                {
                    "aggregator": _call(
                        "5ms",
                        [
                            {"aggregator": _call("2ms", [{"db": _call("1ms")}])},
                            {"db": _call("3ms"), "detection": _call("4ms")},
                        ],
                    )
                }
            ],
        },
        "b": {"client": "client", "rps": 1, "call-path": [{"machine-learning": _call("9ms")}]},
    }
    return CloudEdgeEnv(scenario, parse_workload(doc, "self.json", "self"))


def _envs() -> list[CloudEdgeEnv]:
    envs = [CloudEdgeEnv(reference_scenario(size)) for size in ("7-21", "13-29")]
    envs += [CloudEdgeEnv(*generate_scenario(np.random.default_rng(seed)).parse()) for seed in range(8)]
    return [*envs, _self_calling_env()]


def _random_states(env: CloudEdgeEnv, seed: int, count: int) -> list[Simulator]:
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    states = []
    for _ in range(count):
        sim = env.simulator
        valid = np.flatnonzero(sim.action_mask()[:-1])
        if valid.size:
            action = int(valid[rng.integers(valid.size)])
            sim.move(action % env.layout.slot_count, action // env.layout.slot_count)
        states.append(sim.copy())
    return states


@pytest.mark.parametrize("env", _envs(), ids=lambda e: f"{e.scenario.name}-{e.workload.name}")
def test_incremental_latency_after_every_move_equals_the_full_evaluation(env: CloudEdgeEnv) -> None:
    layout = env.layout
    for sim in _random_states(env, seed=3, count=12):
        now, after = latency_after_moves(
            env.model,
            sim.counts[None],
            sim.costs.matrices,
            layout.slot_service,
            sim.slot_node[None],
            layout.slot_movable,
        )
        assert abs(now[0] - sim.latency_ms) < TOLERANCE_MS
        valid = np.flatnonzero(sim.action_mask()[:-1])
        moves = [(int(a % layout.slot_count), int(a // layout.slot_count)) for a in valid]
        full = sim.latency_after(moves)
        incremental = np.array([after[0, slot, node] for slot, node in moves])
        assert np.abs(full - incremental).max(initial=0.0) < TOLERANCE_MS


def test_a_batch_with_one_network_per_state_equals_each_state_alone() -> None:
    env = _self_calling_env()
    sims = _random_states(env, seed=5, count=6)
    rng = np.random.default_rng(9)
    matrices = np.stack(
        [env.model.prepare(build_network(env.scenario, draw_conditions(env.scenario, rng))).matrices for _ in sims]
    )
    counts = np.stack([s.counts for s in sims])
    slot_node = np.stack([s.slot_node for s in sims])
    layout = env.layout
    now, after = latency_after_moves(env.model, counts, matrices, layout.slot_service, slot_node, layout.slot_movable)
    for i in range(len(sims)):
        one_now, one_after = latency_after_moves(
            env.model, counts[i : i + 1], matrices[i], layout.slot_service, slot_node[i : i + 1], layout.slot_movable
        )
        assert abs(now[i] - one_now[0]) < TOLERANCE_MS
        assert np.abs(after[i] - one_after[0]).max() < TOLERANCE_MS


@pytest.mark.parametrize("env", _envs(), ids=lambda e: f"{e.scenario.name}-{e.workload.name}")
def test_selected_moves_of_a_beam_equal_the_full_evaluation(env: CloudEdgeEnv) -> None:
    """latency_after_selected / search.latencies_after: several states at once, only the listed moves."""
    from ceenv.search import latencies_after

    beam = _random_states(env, seed=7, count=5)
    moves = [sim.distinct_move_array() for sim in beam]
    together = latencies_after(beam, moves)
    for sim, rows, after in zip(beam, moves, together, strict=True):
        full = sim.latency_after([(int(a), int(b)) for a, b in rows])
        assert after.shape == full.shape and np.abs(full - after).max(initial=0.0) < TOLERANCE_MS


def test_selected_moves_with_one_network_per_state_equal_each_state_alone() -> None:
    from ceenv.gains import latency_after_selected

    env = _self_calling_env()  # a self-call and parallel groups: every term of the formula
    sims = _random_states(env, seed=11, count=4)
    rng = np.random.default_rng(2)
    costs = [env.model.prepare(build_network(env.scenario, draw_conditions(env.scenario, rng))) for _ in sims]
    rows = [sim.distinct_move_array() for sim in sims]
    state = np.repeat(np.arange(len(sims)), [len(r) for r in rows])
    every = np.concatenate(rows)
    source = np.concatenate([sim.slot_node[r[:, 0]] for sim, r in zip(sims, rows, strict=True)])
    after = latency_after_selected(
        env.model, np.stack([s.counts for s in sims]), np.stack([c.matrices for c in costs]), state,
        env.layout.slot_service[every[:, 0]], source, every[:, 1],
    )  # fmt: skip
    for i, sim in enumerate(sims):
        alone = sim.copy()
        alone.costs = costs[i]
        full = alone.latency_after([(int(a), int(b)) for a, b in rows[i]])
        assert np.abs(full - after[state == i]).max(initial=0.0) < TOLERANCE_MS


def test_moves_of_a_service_no_call_reaches_leave_the_latency_unchanged() -> None:
    """db (the last service) holds pods but nothing calls it: its moves change nothing, and raise nothing."""
    scenario = scenario_from_documents("7-21", nodes_document("7-21"), services_document("7-21"))
    doc = {
        "a": {"client": "client", "rps": 2, "call-path": [{"aggregator": _call("4ms", [{"detection": _call("2ms")}])}]}
    }
    env = CloudEdgeEnv(scenario, parse_workload(doc, "uncalled.json", "uncalled"))
    from ceenv.search import latencies_after

    (sim,) = _random_states(env, seed=3, count=1)
    moves = sim.distinct_move_array()
    db = scenario.service_names.index("db")
    assert db == len(scenario.services) - 1 and (env.layout.slot_service[moves[:, 0]] == db).any()
    (after,) = latencies_after([sim], [moves])
    full = sim.latency_after([(int(a), int(b)) for a, b in moves])
    assert np.abs(full - after).max() < TOLERANCE_MS
    np.testing.assert_allclose(after[env.layout.slot_service[moves[:, 0]] == db], sim.latency_ms, atol=TOLERANCE_MS)


def _gains_by_full_evaluation(env: CloudEdgeEnv, sim: Simulator) -> np.ndarray:
    """The move-gain feature as first written: every valid move evaluated by the full formula."""
    layout, model = env.layout, env.model
    costs = model.nominal_costs()
    mask = sim.action_mask()
    gains = np.zeros(layout.node_count * layout.slot_count, dtype=np.float32)
    actions = np.flatnonzero(mask[:-1])
    if actions.size == 0:
        return gains
    batch = np.repeat(sim.counts[None], actions.size, axis=0)
    index = np.arange(actions.size)
    slots, targets = actions % layout.slot_count, actions // layout.slot_count
    services = layout.slot_service[slots]
    batch[index, services, sim.slot_node[slots]] -= 1.0
    batch[index, services, targets] += 1.0
    now = model.latency(sim.counts, costs)
    gains[actions] = np.clip((now - model.latency_batch(batch, costs)) / max(now, 1e-9), -1.0, 1.0)
    return gains


@pytest.mark.parametrize("env", _envs()[:4], ids=lambda e: f"{e.scenario.name}-{e.workload.name}")
def test_move_gain_features_equal_the_full_evaluation_and_the_batch_form(env: CloudEdgeEnv) -> None:
    layout, model = env.layout, env.model
    sims = _random_states(env, seed=11, count=8)
    for sim in sims:
        features = move_gain_features(layout, model, model.nominal_costs(), sim.slot_node, sim.action_mask())
        assert np.abs(features - _gains_by_full_evaluation(env, sim)).max() < 1e-6
        assert (features[~sim.action_mask()[:-1]] == 0).all()
    batch = move_gain_features_batch(
        layout,
        model,
        model.nominal_costs().matrices,
        np.stack([s.slot_node for s in sims]),
        np.stack([s.action_mask() for s in sims]),
    )
    for row, sim in zip(batch, sims, strict=True):
        assert np.array_equal(
            row, move_gain_features(layout, model, model.nominal_costs(), sim.slot_node, sim.action_mask())
        )


def test_a_state_missing_a_called_service_gets_zero_gains() -> None:
    scenario = reference_scenario("7-21")
    env = CloudEdgeEnv(scenario)
    env.reset(seed=0)
    sim = env.simulator
    slot_node = sim.slot_node.copy()
    slot_node[env.layout.slot_service == 1] = -1  # no aggregator pod
    layout = layout_from_scenario(scenario)
    mask = sim.action_mask()
    gains = move_gain_features(layout, LatencyModel(scenario, env.workload), env.model.nominal_costs(), slot_node, mask)
    assert not gains.any()


def _by_table_and_by_moves(
    monkeypatch: pytest.MonkeyPatch, env: CloudEdgeEnv, matrices: np.ndarray, slot_node: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """move_gain_features_batch of the same states by the full table, then by the valid moves only."""
    from ceenv import observation

    monkeypatch.setattr(observation, "SELECTED_GAINS_FROM", 10**12)
    table = move_gain_features_batch(env.layout, env.model, matrices, slot_node, mask)
    monkeypatch.setattr(observation, "SELECTED_GAINS_FROM", 0)
    selected = move_gain_features_batch(env.layout, env.model, matrices, slot_node, mask)
    return table, selected


@pytest.mark.parametrize(
    "env",
    [e for e in _envs() if not linear_tree(e.model)],
    ids=lambda e: f"{e.scenario.name}-{e.workload.name}",
)
def test_gains_of_the_valid_moves_only_equal_the_full_table_bit_for_bit(
    env: CloudEdgeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trees with parallel groups: above SELECTED_GAINS_FROM only the valid moves are evaluated, with the table's arithmetic.

    Per-state networks (the batched env's measured ones) and masks narrower than the simulator's (a
    served request's ``pod_deployable``) included: the result must not depend on which path ran.
    """
    model = env.model
    sims = _random_states(env, seed=5, count=6)
    rng = np.random.default_rng(4)
    slot_node = np.stack([s.slot_node for s in sims])
    mask = np.stack([s.action_mask() for s in sims])
    mask[:, :-1] &= rng.random(mask[:, :-1].shape) < 0.7
    shared = model.nominal_costs().matrices
    per_state = np.stack(
        [model.prepare(build_network(env.scenario, draw_conditions(env.scenario, rng))).matrices for _ in sims]
    )
    for matrices in (shared, per_state):
        table, selected = _by_table_and_by_moves(monkeypatch, env, matrices, slot_node, mask)
        assert table.any() and np.array_equal(table, selected)
        assert not selected[~mask[:, :-1]].any()


def test_gains_of_the_valid_moves_only_sum_a_self_call_in_the_tables_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """A service calling itself changes its call's own cost by G, H and the round trip: summed in one order, the
    last bit agrees on every state (found in review: 8 of 400 batches differed when the round trip came first)."""
    env = _self_calling_env()
    matrices = env.model.nominal_costs().matrices
    for seed in range(120):
        sims = _random_states(env, seed=seed, count=8)
        slot_node = np.stack([s.slot_node for s in sims])
        mask = np.stack([s.action_mask() for s in sims])
        table, selected = _by_table_and_by_moves(monkeypatch, env, matrices, slot_node, mask)
        assert table.tobytes() == selected.tobytes(), f"seed {seed}"


def test_a_mask_allowing_an_empty_slots_moves_gets_the_tables_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mask not built by move_mask may allow moves of an empty slot: both paths value them from node 0."""
    env = next(e for e in _envs() if not linear_tree(e.model) and e.scenario.name != "7-21")
    layout, model = env.layout, env.model
    (sim,) = _random_states(env, seed=2, count=1)
    slot_node = sim.slot_node.copy()
    services = layout.slot_service
    emptied = next(
        p for p in np.flatnonzero(slot_node >= 0) if ((services == services[p]) & (slot_node >= 0)).sum() > 1
    )  # a service that keeps a pod elsewhere, so the state stays ready
    slot_node[emptied] = -1
    mask = np.ones((1, layout.action_count), dtype=bool)
    matrices = model.nominal_costs().matrices
    table, selected = _by_table_and_by_moves(monkeypatch, env, matrices, slot_node[None], mask)
    assert table.tobytes() == selected.tobytes()


class _NoNodeZero(Simulator):
    """A simulator whose own rules also keep every pod off node 0 (as a served twin keeps them off a failed node)."""

    def target_ok(self) -> np.ndarray:
        result: np.ndarray = super().target_ok()
        result[:, 0] = False
        return result


@pytest.mark.parametrize("env", _envs(), ids=lambda e: f"{e.scenario.name}-{e.workload.name}")
def test_a_beams_distinct_moves_from_one_batched_pass_equal_each_states_own(env: CloudEdgeEnv) -> None:
    """distinct_move_arrays: the same moves, in the same order, as each simulator's distinct_move_array."""
    from ceenv.simulator import distinct_move_arrays

    beam = _random_states(env, seed=13, count=6)
    restricted = beam[1].copy()
    restricted.__class__ = _NoNodeZero
    restricted._mask = None
    beam = [*beam, restricted]
    beam[0].action_mask()  # one mask cached already: the compiled pass neither uses nor changes it

    def fresh(sim: Simulator) -> Simulator:
        clone = sim.copy()
        clone._mask = None
        return clone

    expected = [fresh(sim).distinct_move_array() for sim in beam]
    got = distinct_move_arrays(beam)
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs)
    assert not (got[-1][:, 1] == 0).any() and (got[1][:, 1] == 0).any() == bool((expected[1][:, 1] == 0).any())
    for sim in beam:  # the pass left every simulator's mask (cached or not) its own
        np.testing.assert_array_equal(sim.action_mask(), fresh(sim).action_mask())


@pytest.mark.parametrize("env", _envs(), ids=lambda e: f"{e.scenario.name}-{e.workload.name}")
def test_the_batched_move_rules_are_each_simulators_target_ok(env: CloudEdgeEnv) -> None:
    """Simulator.move_rules of a beam, spread back to slots, is each state's own target_ok (full nodes included)."""
    beam = _random_states(env, seed=17, count=6)
    services, slots = Simulator.move_rules(beam)
    assert slots.all()
    for b, sim in enumerate(beam):
        np.testing.assert_array_equal(services[b][sim.layout.slot_service], sim.target_ok())
    assert not services.all(), "some service fits nowhere on some node: the rule has something to say"
