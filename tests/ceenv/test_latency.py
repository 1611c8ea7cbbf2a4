"""The latency formula of MODEL.md §2 against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from ceenv.generator import generate_scenario
from ceenv.latency import LatencyModel, build_network, draw_conditions, nominal_conditions
from ceenv.scenario import Scenario, load_scenario
from ceenv.workload import load_workload
from tests.conftest import scenario_dir, workload_file

# 7-21 node order: cloud-1, cloud-2, edge4-1, edge4-2, edge2-1, edge2-2, client
CLOUD1, CLOUD2, EDGE4_1, EDGE4_2, EDGE2_1, EDGE2_2, CLIENT = range(7)
SERVICES = ("client", "aggregator", "machine-learning", "detection", "db")
TX_MS = 8 * 1e5 / 200e6 * 1e3  # 0.1 MB over a 200 Mbit/s link = 4 ms
TX_CLOUD_MS = 8 * 1e5 / 500e6 * 1e3  # between two cloud nodes (500 Mbit/s) = 1.6 ms


def _model(workload: str, scenario: Scenario | None = None) -> tuple[LatencyModel, Scenario]:
    scenario = scenario or load_scenario(scenario_dir("7-21"))
    return LatencyModel(scenario, load_workload(workload_file(workload), scenario)), scenario


def _counts(placement: dict[str, list[int]]) -> np.ndarray:
    counts = np.zeros((len(SERVICES), 7))
    for service, nodes in placement.items():
        for node in nodes:
            counts[SERVICES.index(service), node] += 1
    return counts


def _latency(workload: str, placement: dict[str, list[int]]) -> float:
    model, scenario = _model(workload)
    costs = model.prepare(build_network(scenario, nominal_conditions(scenario)))
    return model.latency(_counts(placement), costs)


ALL_ON_CLOUD1 = {
    "client": [CLIENT],
    "aggregator": [CLOUD1],
    "machine-learning": [CLOUD1],
    "detection": [CLOUD1],
    "db": [CLOUD1],
}


def test_model_md_example_all_services_on_one_cloud_node() -> None:
    assert _latency("aggregator_sequential", ALL_ON_CLOUD1) == pytest.approx(121.6)


def test_parallel_groups_take_the_slowest_branch_and_sequential_groups_add_up() -> None:
    # client→aggregator: 50 + 4 = 54; aggregator 7; ml 46, db 2.1, detection 12.5 all local.
    assert _latency("aggregator_parallel", ALL_ON_CLOUD1) == pytest.approx(54 + 7 + 46)
    assert _latency("aggregator_sequential", ALL_ON_CLOUD1) == pytest.approx(54 + 7 + 46 + 2.1 + 12.5)
    assert _latency("chain", ALL_ON_CLOUD1) == pytest.approx(54 + 7 + 46 + 12.5 + 2.1)


def test_cross_layer_move_adds_delay_transmission_and_slower_cpu() -> None:
    placement = dict(ALL_ON_CLOUD1, db=[EDGE2_1])
    # db on an edge-2 node (cpu type 2: 4.2 ms), reached from the cloud: 50 ms + 4 ms transmission.
    expected = 54 + 7 + 46 + (50 + TX_MS + 4.2) + 12.5
    assert _latency("aggregator_sequential", placement) == pytest.approx(expected)


def test_replicas_enter_through_means() -> None:
    placement = dict(ALL_ON_CLOUD1, **{"machine-learning": [CLOUD1, CLOUD2]})
    # ml: mean exec 46; network: half the calls stay local (0), half go cloud→cloud (0.1 ms + 1.6 ms).
    expected = 54 + 7 + (46 + 0.5 * (0.1 + TX_CLOUD_MS)) + 2.1 + 12.5
    assert _latency("aggregator_sequential", placement) == pytest.approx(expected)


def test_replicas_on_mixed_cpu_types_average_execution_time() -> None:
    placement = dict(ALL_ON_CLOUD1, **{"machine-learning": [CLOUD1, EDGE4_1, EDGE2_1]})
    network = (0 + 2 * (50 + TX_MS)) / 3
    expected = 54 + 7 + ((46 + 69 + 92) / 3 + network) + 2.1 + 12.5
    assert _latency("aggregator_sequential", placement) == pytest.approx(expected)


def test_everything_at_the_edge_next_to_the_client_avoids_the_cloud_delay() -> None:
    placement = {
        "client": [CLIENT],
        "aggregator": [EDGE4_1],
        "machine-learning": [EDGE4_1],
        "detection": [EDGE4_1],
        "db": [EDGE4_1],
    }
    expected = (0.1 + TX_MS) + 10.5 + 69 + 3.15 + 18.75
    assert _latency("aggregator_sequential", placement) == pytest.approx(expected)


def test_background_utilisation_slows_transmission() -> None:
    model, scenario = _model("aggregator_sequential")
    conditions = nominal_conditions(scenario)
    busy = type(conditions)(conditions.cpu_millicores, conditions.memory_bytes, np.full(7, 0.5), conditions.delay_ms)
    costs = model.prepare(build_network(scenario, busy))
    assert model.latency(_counts(ALL_ON_CLOUD1), costs) == pytest.approx(121.6 + TX_MS)


def test_batch_evaluation_equals_single_evaluations() -> None:
    model, scenario = _model("chain")
    rng = np.random.default_rng(3)
    costs = model.prepare(build_network(scenario, draw_conditions(scenario, rng)))
    batch = np.stack(
        [
            _counts(ALL_ON_CLOUD1),
            _counts(dict(ALL_ON_CLOUD1, db=[EDGE2_1, EDGE4_2])),
            _counts(dict(ALL_ON_CLOUD1, aggregator=[CLOUD2])),
        ]
    )
    singles = [model.latency(c, costs) for c in batch]
    np.testing.assert_allclose(model.latency_batch(batch, costs), singles)


def test_latency_under_several_networks_equals_one_batch_per_network() -> None:
    model, scenario = _model("aggregator_parallel")  # parallel groups: the max in the tree
    rng = np.random.default_rng(4)
    batch = np.stack([_counts(ALL_ON_CLOUD1), _counts(dict(ALL_ON_CLOUD1, db=[EDGE2_1, EDGE4_2]))])
    networks = [model.prepare(build_network(scenario, draw_conditions(scenario, rng))) for _ in range(3)]
    together = model.latency_per_network(batch, networks)
    assert together.shape == (3, 2)
    for row, costs in zip(together, networks, strict=True):  # summed over the pods' nodes only: equal to rounding
        np.testing.assert_allclose(row, model.latency_batch(batch, costs), rtol=1e-13, atol=0)
    assert len({tuple(row) for row in together}) == 3, "the networks should give different latencies"
    stacked = model.latency_per_network(batch, np.stack([costs.matrices for costs in networks]))
    np.testing.assert_array_equal(stacked, together)


def test_latency_under_several_networks_on_a_large_generated_cluster_equals_the_matrix_products() -> None:
    """Many services with pods on several nodes, parallel groups: the sparse sums equal latency_batch to rounding."""
    from ceenv.env import CloudEdgeEnv
    from ceenv.generator import generate_scenario

    env = CloudEdgeEnv(*generate_scenario(np.random.default_rng(21), nodes=30, services=20).parse())
    rng = np.random.default_rng(5)
    batch = []
    for seed in range(6):
        env.reset(seed=seed)
        batch.append(env.simulator.counts)
    counts = np.stack(batch)
    assert (np.count_nonzero(counts, axis=-1) > 1).any(), "some service should have pods on several nodes"
    networks = [env.model.prepare(build_network(env.scenario, draw_conditions(env.scenario, rng))) for _ in range(4)]
    together = env.model.latency_per_network(counts, networks)
    for row, costs in zip(together, networks, strict=True):
        np.testing.assert_allclose(row, env.model.latency_batch(counts, costs), rtol=1e-13, atol=0)


def test_dynamic_conditions_stay_within_the_file_ranges() -> None:
    scenario = load_scenario(scenario_dir("13-29"))
    rng = np.random.default_rng(0)
    for _ in range(50):
        drawn = draw_conditions(scenario, rng)
        for i, node in enumerate(scenario.nodes):
            assert drawn.cpu_millicores[i] / 1000 in node.cpu_choices_cores
            assert drawn.memory_bytes[i] in node.memory_choices_bytes
        cross = drawn.delay_ms[scenario.layers.index("cloud"), scenario.layers.index("edge")]
        assert 50.0 <= cross <= 500.0


def test_endpoint_latencies_are_weighted_by_rps() -> None:
    model, scenario = _model("aggregator_sequential")
    costs = model.prepare(build_network(scenario, nominal_conditions(scenario)))
    assert model.endpoint_latencies(_counts(ALL_ON_CLOUD1), costs) == {"aggregator_sequential": pytest.approx(121.6)}


def _numpy_build_network(scenario: Scenario, conditions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference: build_network as written until 2026-12-03 (layer table, ix_, fill_diagonal, every call)."""
    layer_index = {layer: i for i, layer in enumerate(scenario.layers)}
    node_layer = np.array([layer_index[n.layer] for n in scenario.nodes])
    delay = np.array(conditions.delay_ms[np.ix_(node_layer, node_layer)], dtype=np.float64)
    bits = np.array([n.bandwidth_mbps * 1e6 for n in scenario.nodes]) * (1.0 - conditions.utilization)
    ms_per_byte = 8.0 * 1e3 / np.minimum.outer(bits, bits)
    np.fill_diagonal(delay, 0.0)
    np.fill_diagonal(ms_per_byte, 0.0)
    return delay, ms_per_byte, bits


def test_the_network_is_what_the_numpy_reference_builds_for_every_draw() -> None:
    """build_network caches each node's layer and NIC speed per scenario: the same matrices bit for bit."""
    scenarios = [load_scenario(scenario_dir(name)) for name in ("7-21", "13-29", "19-37")]
    scenarios += [generate_scenario(np.random.default_rng(seed)).parse()[0] for seed in (2, 9)]
    rng = np.random.default_rng(4)
    for scenario in scenarios:
        for conditions in [nominal_conditions(scenario)] + [draw_conditions(scenario, rng) for _ in range(20)]:
            network = build_network(scenario, conditions)
            delay, ms_per_byte, bits = _numpy_build_network(scenario, conditions)
            np.testing.assert_array_equal(network.delay_ms, delay)
            np.testing.assert_array_equal(network.ms_per_byte, ms_per_byte)
            np.testing.assert_array_equal(network.bits_per_s, bits)
            network.delay_ms[0, 1] = -1.0  # each network owns its arrays: the cached tables stay as they were
            assert build_network(scenario, conditions).delay_ms[0, 1] == delay[0, 1]
