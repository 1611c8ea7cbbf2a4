"""The scenario generator: deterministic by seed, always valid and feasible, sizes honoured."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ceenv.generator import CLIENT_SERVICE, GeneratorLimits, generate_scenario
from ceenv.latency import LatencyModel
from ceenv.layout import layout_from_scenario
from ceenv.placement import draw_start
from ceenv.scenario import load_scenario
from ceenv.workload import load_workload


def _docs(seed: int, **sizes: int) -> str:
    return json.dumps(generate_scenario(np.random.default_rng(seed), **sizes).documents(), sort_keys=True)


def test_same_seed_gives_the_same_documents_and_other_seeds_differ() -> None:
    assert _docs(7) == _docs(7)
    assert _docs(7, nodes=9, services=4) == _docs(7, nodes=9, services=4)
    assert len({_docs(seed) for seed in range(10)}) == 10


@pytest.mark.parametrize("seed", range(200))
def test_every_seed_parses_and_draws_a_start_placement_at_the_first_try(seed: int) -> None:
    scenario, workload = generate_scenario(np.random.default_rng(seed)).parse()
    model = LatencyModel(scenario, workload)
    layout = layout_from_scenario(scenario)
    rng = np.random.default_rng(seed)
    for dynamic in (True, True, True, False):
        # attempts=1: feasibility holds by construction for every draw, not only after retries
        _, slot_node = draw_start(model, layout, rng, dynamic, attempts=1)
        assert scenario.services[0].name == CLIENT_SERVICE and slot_node[0] >= 0
    assert model.called_services[1:].all(), "every non-client service is called by some endpoint"


def test_the_worst_case_draw_holds_every_service_at_max_replica() -> None:
    for seed in range(50):
        scenario, _ = generate_scenario(np.random.default_rng(seed)).parse()
        compute = [n for n in scenario.nodes if n.layer != "client"]
        movable = [s for s in scenario.services if s.movable]
        largest_cpu = max(s.cpu_cores for s in movable)
        largest_memory = max(s.memory_bytes for s in movable)
        room = sum(
            min(
                int(min(n.cpu_choices_cores) / largest_cpu + 1e-9),
                int(min(n.memory_choices_bytes) / largest_memory + 1e-9),
            )
            for n in compute
        )
        assert room >= sum(s.max_replica for s in movable)


@pytest.mark.parametrize(("nodes", "services", "cpu_types", "endpoints"), [(2, 1, 1, 1), (13, 5, 3, 2), (40, 12, 4, 5)])
def test_size_arguments_are_honoured(nodes: int, services: int, cpu_types: int, endpoints: int) -> None:
    for seed in range(5):
        generated = generate_scenario(
            np.random.default_rng(seed), nodes=nodes, services=services, cpu_types=cpu_types, endpoints=endpoints
        )
        scenario, workload = generated.parse()
        assert len(scenario.nodes) == nodes
        assert sum(n.layer == "client" for n in scenario.nodes) == 1
        assert len(scenario.services) == services + 1
        assert len(workload.endpoints) == endpoints
        assert set(scenario.cpu_types) <= set(range(cpu_types))
        if nodes - 1 >= cpu_types + 1:
            assert scenario.cpu_types == tuple(range(cpu_types))
        for call in (c for e in workload.endpoints for c in e.calls()):
            assert set(call.execution_ms) == set(range(cpu_types))


def test_limits_bound_the_drawn_sizes() -> None:
    limits = GeneratorLimits(nodes=(6, 8), services=(2, 3), max_replica=(2, 2))
    for seed in range(20):
        scenario, _ = generate_scenario(np.random.default_rng(seed), limits=limits).parse()
        assert 6 <= len(scenario.nodes) <= 8
        assert 3 <= len(scenario.services) <= 4


@pytest.mark.parametrize("bad", [{"nodes": 1}, {"services": 0}, {"cpu_types": 0}, {"endpoints": 100}])
def test_impossible_sizes_are_refused_with_the_name_of_the_size(bad: dict[str, int]) -> None:
    (name,) = bad
    with pytest.raises(ValueError, match=name):
        generate_scenario(np.random.default_rng(0), **bad)


def test_written_documents_load_as_files(tmp_path) -> None:  # type: ignore[no-untyped-def]
    generated = generate_scenario(np.random.default_rng(3), name="gen-3")
    folder = tmp_path / "gen-3"
    folder.mkdir()
    (folder / "nodes.json").write_text(json.dumps(generated.nodes_doc))
    (folder / "services.json").write_text(json.dumps(generated.services_doc))
    (folder / generated.workload_file).write_text(json.dumps(generated.workload_doc))
    scenario = load_scenario(folder)
    workload = load_workload(folder / generated.workload_file, scenario)
    assert scenario.node_names == generated.parse()[0].node_names
    assert workload.name == generated.workload_name


def test_the_v4_observation_stays_in_its_space_when_execution_times_pass_the_log_caps() -> None:
    """Eight CPU types draw execution times up to about 2 s, past the 1000 ms cap of the log scale (seed 0)."""
    from ceenv.env import CloudEdgeEnv

    scenario, workload = generate_scenario(np.random.default_rng(0), cpu_types=8, nodes=12).parse()
    env = CloudEdgeEnv(scenario, workload, observation_version=4)
    assert env.model.call_exec_ms.max() > 1000.0  # the case this test is about
    for seed in range(5):
        observation, _ = env.reset(seed=seed)
        assert env.observation_space.contains(observation)
