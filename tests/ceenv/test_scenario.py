"""Loading REACH files unchanged, and a precise error (file, JSON path, value, expectation) for each defect."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ceenv.scenario import load_scenario
from ceenv.validation import ScenarioError
from ceenv.workload import load_workload, parse_workload, workload_to_json
from tests.ceenv.helpers import reference_docs, workload_doc, write_scenario
from tests.conftest import scenario_dir, workload_file


@pytest.mark.parametrize(("name", "nodes", "slots"), [("7-21", 7, 21), ("13-29", 13, 29), ("19-37", 19, 37)])
def test_reference_scenarios_have_the_documented_sizes(name: str, nodes: int, slots: int) -> None:
    scenario = load_scenario(scenario_dir(name))
    assert len(scenario.nodes) == nodes
    assert scenario.slot_count == slots
    assert scenario.cpu_types == (0, 1, 2)


def test_node_order_is_layers_then_types_then_index() -> None:
    scenario = load_scenario(scenario_dir("7-21"))
    assert scenario.node_names == (
        "tb-cloud-vm-8-1",
        "tb-cloud-vm-8-2",
        "tb-edge-vm-4-1",
        "tb-edge-vm-4-2",
        "tb-edge-vm-2-1",
        "tb-edge-vm-2-2",
        "tb-client-vm-2-1",
    )
    cloud = scenario.nodes[0]
    assert cloud.nominal_cpu_cores == 7.0 and cloud.nominal_memory_bytes == 27.68e9
    assert scenario.delay_range_ms[("cloud", "edge")] == (50.0, 500.0)


def test_unknown_keys_are_ignored_like_reach_extra_metadata(tmp_path: Path) -> None:
    nodes, services = reference_docs()
    services["aggregator"]["external_services"] = ["something"]
    nodes["comment"] = "extra"
    scenario = load_scenario(write_scenario(tmp_path, nodes, services))
    assert scenario.service("aggregator").max_replica == 5


def test_pinned_service_only_allowed_in_its_layer_and_others_never_on_client() -> None:
    scenario = load_scenario(scenario_dir("7-21"))
    client, aggregator = scenario.service("client"), scenario.service("aggregator")
    assert [client.allowed_on(n) for n in scenario.nodes] == [False] * 6 + [True]
    assert [aggregator.allowed_on(n) for n in scenario.nodes] == [True] * 6 + [False]
    assert not client.movable and aggregator.movable


def _break(edit: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    nodes, services = reference_docs()
    edit(nodes, services)
    return nodes, services


SCENARIO_DEFECTS = [
    (
        "unknown node type",
        lambda n, s: n["cluster_setup"]["edge"].update(
            {"tb-edge-vm-9": {"count": 1, "cpu_availability": ["1"], "memory_availability": ["1G"]}}
        ),
        "nodes.json",
        "$.cluster_setup.edge.tb-edge-vm-9",
        "unknown node type",
    ),
    (
        "duplicate node name",
        lambda n, s: n["cluster_setup"]["cloud"].update(
            {"tb-edge-vm-4": {"count": 1, "cpu_availability": ["1"], "memory_availability": ["1G"]}}
        ),
        "nodes.json",
        "$.cluster_setup.edge.tb-edge-vm-4.count",
        "duplicate node name 'tb-edge-vm-4-1'",
    ),
    (
        "missing layer pair",
        lambda n, s: n["latency"]["edge"].pop("client"),
        "nodes.json",
        "$.latency.edge.client",
        "missing delay from layer 'edge' to layer 'client'",
    ),
    (
        "unparsable unit",
        lambda n, s: n["cluster_setup"]["cloud"]["tb-cloud-vm-8"].update({"memory_availability": ["2G", "lots"]}),
        "nodes.json",
        "$.cluster_setup.cloud.tb-cloud-vm-8.memory_availability[1]",
        "unparsable quantity",
    ),
    (
        "negative delay",
        lambda n, s: n["latency"]["cloud"].update({"edge": ["-5ms", "10ms"]}),
        "nodes.json",
        "$.latency.cloud.edge[0]",
        "non-negative",
    ),
    (
        "reversed range",
        lambda n, s: n["latency"]["cloud"].update({"edge": ["500ms", "50ms"]}),
        "nodes.json",
        "$.latency.cloud.edge",
        "range is reversed",
    ),
    (
        "missing count",
        lambda n, s: n["cluster_setup"]["cloud"]["tb-cloud-vm-8"].pop("count"),
        "nodes.json",
        "$.cluster_setup.cloud.tb-cloud-vm-8.count",
        "missing field",
    ),
    (
        "cpu type not an integer",
        lambda n, s: n["node_type"]["tb-cloud-vm-8"].update({"cpu_type": "zero"}),
        "nodes.json",
        "$.node_type.tb-cloud-vm-8.cpu_type",
        "wrong value",
    ),
    (
        "zero replicas",
        lambda n, s: s["db"].update({"max-replica": 0}),
        "services.json",
        "$.db.max-replica",
        "wrong value",
    ),
    (
        "unknown pinned layer",
        lambda n, s: s["db"].update({"layer": "fog"}),
        "services.json",
        "$.db.layer",
        "unknown layer",
    ),
    (
        "a node type with nothing to offer",  # no pod could run there; its observation scale would be 0
        lambda n, s: n["cluster_setup"]["cloud"]["tb-cloud-vm-8"].update({"cpu_availability": ["0", "0m"]}),
        "nodes.json",
        "$.cluster_setup.cloud.tb-cloud-vm-8.cpu_availability",
        "at least one positive quantity",
    ),
    (
        "a service without requests",  # it would fit on a failed node (no capacity left)
        lambda n, s: s["db"].update({"cpu-requests": "0", "memory-requests": "0"}),
        "services.json",
        "$.db.cpu-requests",
        "a positive CPU or memory request",
    ),
    (
        "unparsable request",
        lambda n, s: s["db"].update({"cpu-requests": "half"}),
        "services.json",
        "$.db.cpu-requests",
        "unparsable quantity",
    ),
]


@pytest.mark.parametrize(
    ("case", "edit", "file", "path", "problem"), SCENARIO_DEFECTS, ids=[c[0] for c in SCENARIO_DEFECTS]
)
def test_each_scenario_defect_names_file_path_and_problem(
    tmp_path: Path, case: str, edit: Any, file: str, path: str, problem: str
) -> None:
    directory = write_scenario(tmp_path, *_break(edit))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(directory)
    err = caught.value
    assert err.file.endswith(file)
    assert err.path == path
    assert problem in str(err)


def test_non_json_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    nodes, services = reference_docs()
    directory = write_scenario(tmp_path, nodes, services)
    (directory / "services.json").write_text("{not json")
    with pytest.raises(ScenarioError, match=r"services.json: \$: not valid JSON"):
        load_scenario(directory)
    (directory / "services.json").unlink()
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(directory)


WORKLOAD_DEFECTS = [
    (
        "unknown service",
        lambda w: w["aggregator_sequential"]["call-path"][0]["aggregator"]["call-path"][0].update(
            {"cache": {"execution-time": {"0": "1ms", "1": "1ms", "2": "1ms"}}}
        ),
        "$.aggregator_sequential.call-path[0].aggregator.call-path[0].cache",
        "unknown service in call path",
    ),
    (
        "missing CPU type",
        lambda w: w["aggregator_sequential"]["call-path"][0]["aggregator"]["execution-time"].pop("2"),
        "$.aggregator_sequential.call-path[0].aggregator.execution-time",
        "missing CPU type(s) [2]",
    ),
    (
        "negative time",
        lambda w: w["aggregator_sequential"]["call-path"][0]["aggregator"]["execution-time"].update({"1": "-3ms"}),
        "$.aggregator_sequential.call-path[0].aggregator.execution-time.1",
        "non-negative",
    ),
    (
        "unknown client",
        lambda w: w["aggregator_sequential"].update({"client": "browser"}),
        "$.aggregator_sequential.client",
        "unknown client service",
    ),
    ("zero rps", lambda w: w["aggregator_sequential"].update({"rps": 0}), "$.aggregator_sequential.rps", "wrong value"),
    (
        "group not an object",
        lambda w: w["aggregator_sequential"]["call-path"].append(["aggregator"]),
        "$.aggregator_sequential.call-path[1]",
        "wrong type",
    ),
    (
        "cpu key not integer",
        lambda w: w["aggregator_sequential"]["call-path"][0]["aggregator"]["execution-time"].update({"fast": "1ms"}),
        "$.aggregator_sequential.call-path[0].aggregator.execution-time.fast",
        "not an integer",
    ),
]


@pytest.mark.parametrize(("case", "edit", "path", "problem"), WORKLOAD_DEFECTS, ids=[c[0] for c in WORKLOAD_DEFECTS])
def test_each_workload_defect_names_the_json_path(
    tmp_path: Path, case: str, edit: Any, path: str, problem: str
) -> None:
    doc = workload_doc()
    edit(doc)
    file = tmp_path / "broken_call_patterns.json"
    file.write_text(json.dumps(doc))
    with pytest.raises(ScenarioError) as caught:
        load_workload(file, load_scenario(scenario_dir("7-21")))
    assert caught.value.path == path
    assert problem in str(caught.value)
    assert caught.value.file == str(file)


@pytest.mark.parametrize("name", ["aggregator_parallel", "aggregator_sequential", "chain"])
def test_workload_round_trips_through_its_json_form(name: str) -> None:
    workload = load_workload(workload_file(name))
    again = parse_workload(workload_to_json(workload), "memory", name)
    assert [c.service for c in again.endpoints[0].calls()] == [c.service for c in workload.endpoints[0].calls()]
    assert [dict(c.execution_ms) for c in again.endpoints[0].calls()] == [
        dict(c.execution_ms) for c in workload.endpoints[0].calls()
    ]


def test_reference_workload_shapes_match_the_paper() -> None:
    parallel = load_workload(workload_file("aggregator_parallel")).endpoints[0]
    sequential = load_workload(workload_file("aggregator_sequential")).endpoints[0]
    chain = load_workload(workload_file("chain")).endpoints[0]
    assert [len(g) for g in parallel.groups[0][0].groups] == [1, 1, 1]
    assert [c.service for c in sequential.groups[0][0].groups[0]] == ["machine-learning", "db", "detection"]
    assert [c.service for c in chain.calls()] == ["aggregator", "machine-learning", "detection", "db"]
