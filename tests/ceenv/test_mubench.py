"""Tests of the muBench work-model importer (ceenv.mubench): both function schemas, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ceenv.mubench import load_workmodel, parse_workmodel, workmodel_to_workload
from ceenv.scenario import load_scenario
from ceenv.validation import ScenarioError
from ceenv.workload import Call, check_workload, load_workload, workload_to_json

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "mubench"
TIMES_MS = {name: {0: 1.0, 1: 2.0} for name in ("s0", "s1", "s2", "s3")}
REFERENCE_TIMES_MS = {
    "aggregator": {0: 7.0, 1: 10.5, 2: 14.0},
    "machine-learning": {0: 46.0, 1: 69.0, 2: 92.0},
    "detection": {0: 12.5, 1: 18.75, 2: 25.0},
    "db": {0: 2.1, 1: 3.15, 2: 4.2},
}


def _shape(call_groups: tuple[tuple[Call, ...], ...]) -> list[list[tuple[str, object]]]:
    return [[(c.service, _shape(c.groups)) for c in group] for group in call_groups]


def test_compute_pi_schema_keeps_parallel_groups_and_sequential_calls() -> None:
    workload = load_workmodel(FIXTURES / "workmodel_compute_pi.json", TIMES_MS)
    (endpoint,) = workload.endpoints
    assert endpoint.client == "client"
    assert _shape(endpoint.groups) == [[("s0", [[("s1", [])], [("s2", []), ("s3", [])]])]]


def test_compute_pi_mean_bandwidth_sets_the_data_size_and_default_fills_the_gap() -> None:
    workload = load_workmodel(FIXTURES / "workmodel_compute_pi.json", TIMES_MS, default_data_bytes=123.0)
    sizes = {c.service: c.data_bytes for c in workload.endpoints[0].calls()}
    assert sizes == {"s0": 10_000.0, "s1": 100_000.0, "s2": 1_000.0, "s3": 123.0}


def test_loader_schema_reads_mean_response_size_and_repeats_shared_callees() -> None:
    workload = load_workmodel(FIXTURES / "workmodel_loader.json", TIMES_MS, rps=2.0)
    calls = list(workload.endpoints[0].calls())
    assert [c.service for c in calls] == ["s0", "s1", "s3", "s2", "s3"]
    assert calls[0].data_bytes == 11_000.0
    assert workload.endpoints[0].rps == 2.0


def test_probability_threshold_drops_unlikely_callees_without_scaling_times() -> None:
    workload = load_workmodel(FIXTURES / "workmodel_compute_pi.json", TIMES_MS, min_probability=0.5)
    calls = {c.service: c for c in workload.endpoints[0].calls()}
    assert set(calls) == {"s0", "s1", "s2"}
    assert calls["s2"].execution_ms == {0: 1.0, 1: 2.0}


def test_seq_len_keeps_only_the_first_callees_of_a_group() -> None:
    raw = json.loads((FIXTURES / "workmodel_compute_pi.json").read_text())
    raw["s0"]["external_services"][1]["seq_len"] = 1
    workload = workmodel_to_workload(parse_workmodel(raw, "wm.json"), "wm.json", TIMES_MS, entry="s0")
    assert {c.service for c in workload.endpoints[0].calls()} == {"s0", "s1", "s2"}


def test_reference_app_in_loader_form_equals_the_shipped_sequential_workload() -> None:
    imported = load_workmodel(
        FIXTURES / "reference_sequential_loader.json",
        REFERENCE_TIMES_MS,
        endpoint="aggregator_sequential",
        qos_ms=100.0,
    )
    shipped = load_workload(ROOT / "data" / "workloads" / "aggregator_sequential_call_patterns.json")
    assert workload_to_json(imported) == workload_to_json(shipped)
    check_workload(imported, load_scenario(ROOT / "data" / "scenarios" / "7-21"), "imported")


def test_cycle_is_rejected_with_the_cycle_and_json_path() -> None:
    with pytest.raises(ScenarioError) as err:
        load_workmodel(FIXTURES / "workmodel_cycle.json", {n: {0: 1.0} for n in ("front", "a", "b")})
    assert "a -> b -> a" in str(err.value)
    assert "workmodel_cycle.json" in str(err.value)
    assert err.value.path == "$.b.external_services[0].services[0]"


def test_unknown_callee_is_rejected_with_its_path() -> None:
    with pytest.raises(ScenarioError) as err:
        load_workmodel(FIXTURES / "workmodel_unknown_service.json", {"s0": {0: 1.0}})
    assert err.value.path == "$.s0.external_services[0].services[0]"
    assert err.value.value == "s9"


def test_missing_execution_times_name_the_service_and_the_source() -> None:
    times = {k: v for k, v in TIMES_MS.items() if k != "s3"}
    with pytest.raises(ScenarioError) as err:
        load_workmodel(FIXTURES / "workmodel_compute_pi.json", times, execution_source="times.csv")
    assert err.value.file == "times.csv"
    assert "s3" in str(err.value)


def test_non_positive_execution_time_is_rejected() -> None:
    with pytest.raises(ScenarioError, match="finite execution time"):
        load_workmodel(FIXTURES / "workmodel_compute_pi.json", {**TIMES_MS, "s1": {0: -1.0}})


def test_ambiguous_entry_asks_for_an_explicit_entry_service() -> None:
    raw: dict[str, dict[str, list[str]]] = {"a": {"external_services": []}, "b": {"external_services": []}}
    with pytest.raises(ScenarioError, match="several services are uncalled"):
        workmodel_to_workload(parse_workmodel(raw, "wm.json"), "wm.json", {"a": {0: 1.0}, "b": {0: 1.0}})
    workload = workmodel_to_workload(parse_workmodel(raw, "wm.json"), "wm.json", {"a": {0: 1.0}}, entry="a")
    assert [c.service for c in workload.endpoints[0].calls()] == ["a"]


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ([], "$"),
        ({"s0": {"external_services": {"services": []}}}, "$.s0.external_services"),
        ({"s0": {"external_services": [{"services": "s1"}]}}, "$.s0.external_services[0].services"),
        (
            {"s0": {"external_services": [{"services": ["s0"], "probabilities": {"s0": 2}}]}},
            "$.s0.external_services[0].probabilities.s0",
        ),
        ({"s0": {"internal_service": {"a": {}, "b": {}}}}, "$.s0.internal_service"),
        (
            {"s0": {"internal_service": {"loader": {"mean_response_size": "big"}}}},
            "$.s0.internal_service.loader.mean_response_size",
        ),
    ],
)
def test_malformed_work_model_names_the_json_path(raw: object, path: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_workmodel(raw, "wm.json")
    assert err.value.path == path


def test_non_json_work_model_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "workmodel.json"
    bad.write_text("s0: {not json")
    with pytest.raises(ScenarioError, match="not valid JSON"):
        load_workmodel(bad, TIMES_MS)


def test_probabilities_of_services_outside_the_group_are_ignored_as_mubench_does() -> None:
    # as in muBench's examples/workmodelC-multi.json: s0's group lists s1 and s3 but has a probability for s2 too
    raw = {
        "s0": {
            "external_services": [
                {"seq_len": 100, "services": ["s1", "s3"], "probabilities": {"s1": 0.5, "s2": 0.5, "s3": 1}}
            ]
        },
        "s1": {"external_services": [{"seq_len": 100, "services": ["s2"], "probabilities": {"s2": 0.5}}]},
        "s2": {"external_services": []},
        "s3": {"external_services": []},
    }
    models = parse_workmodel(raw, "wm.json")
    assert [(c.service, c.probability) for c in models["s0"].groups[0]] == [("s1", 0.5), ("s3", 1.0)]
    workload = workmodel_to_workload(models, "wm.json", TIMES_MS)
    assert _shape(workload.endpoints[0].groups) == [[("s0", [[("s1", [[("s2", [])]]), ("s3", [])]])]]
