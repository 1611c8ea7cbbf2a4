"""Which bento may serve which cluster: specific bentos match exactly, general ones within their limits."""

from __future__ import annotations

import pytest

from flows.release.selection import (
    ANY,
    Cluster,
    NotServable,
    check_servable,
    choose,
    cluster_of,
    release_labels,
    why_not,
)

SMALL = Cluster("7-21", "chain", node_count=7, slot_count=21)
LARGE = Cluster("19-37", "chain", node_count=19, slot_count=37)


def specific(scenario: str, workload: str) -> dict[str, str]:
    return {"gate": "passed", "scenario": scenario, "workload": workload}


GENERAL_20 = {"gate": "passed", "scenario": ANY, "workload": ANY, "max_nodes": "10", "max_slots": "30"}


@pytest.mark.parametrize(
    ("labels", "cluster", "reason"),
    [
        (specific("7-21", "chain"), SMALL, None),
        (specific("7-21", "aggregator_sequential"), SMALL, "trained for workload aggregator_sequential, not chain"),
        (specific("13-29", "chain"), SMALL, "trained for scenario 13-29, not 7-21"),
        ({"gate": "passed"}, SMALL, "trained for workload (unlabelled)"),
        (GENERAL_20, SMALL, None),
        (GENERAL_20, LARGE, "19 nodes and 37 pod slots, beyond the policy's limits (10 nodes, 30 slots)"),
        ({**GENERAL_20, "workload": "chain"}, SMALL, None),
        ({**GENERAL_20, "workload": "aggregator_parallel"}, SMALL, "trained for workload aggregator_parallel"),
        ({"scenario": ANY, "workload": ANY}, SMALL, "without max_nodes/max_slots limits"),
        (GENERAL_20, Cluster("custom", "chain"), "the size of scenario custom is unknown"),
    ],
)
def test_eligibility(labels: dict[str, str], cluster: Cluster, reason: str | None) -> None:
    found = why_not(labels, cluster)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


def test_a_bento_trained_on_the_cluster_wins_then_the_newest_general_one() -> None:
    newest_first = [
        ("b4", specific("13-29", "chain")),
        ("b3", specific("7-21", "aggregator_sequential")),
        ("b2", GENERAL_20),
        ("b1", specific("7-21", "chain")),
    ]
    assert choose(newest_first, SMALL) == "b1"  # trained on 7-21/chain: before the newer general b2
    assert choose(newest_first, SMALL, exclude="b1") == "b2"
    assert choose(newest_first, Cluster("7-21", "aggregator_parallel", 7, 21)) == "b2"
    assert choose(newest_first, LARGE) is None
    assert choose(newest_first, Cluster("13-29", "chain", 13, 29)) == "b4"


def test_a_bento_that_cannot_serve_the_cluster_is_refused_with_the_fix() -> None:
    with pytest.raises(
        NotServable, match=r"bento b3 cannot serve 7-21 / chain: trained for workload .*reach deploy"
    ) as err:
        check_servable("b3", specific("7-21", "aggregator_sequential"), SMALL)
    assert "serve the cluster it was trained for (--scenario 7-21 --workload aggregator_sequential)" in str(err.value)
    check_servable("b1", specific("7-21", "chain"), SMALL)  # no error


def test_cluster_of_reads_names_and_sizes_from_the_shipped_files() -> None:
    cluster = cluster_of("7-21", "chain")
    assert (cluster.scenario, cluster.workload, cluster.node_count) == ("7-21", "chain", 7)
    assert cluster.slot_count is not None and cluster.slot_count >= 6


def test_cluster_of_refuses_an_unknown_scenario_when_deploying_but_not_when_looking_up() -> None:
    with pytest.raises(ValueError, match="no such scenario"):
        cluster_of("99-99", "chain")
    assert cluster_of("99-99", "my_workload", strict=False) == Cluster("99-99", "my_workload")


def test_a_specific_card_labels_its_own_cluster() -> None:
    labels = release_labels(True, "reach-policy:a", {"scenario": "7-21", "workload": "chain"}, {"layout": {}})
    assert labels == {"gate": "passed", "model": "reach-policy:a", "scenario": "7-21", "workload": "chain"}


def test_a_card_with_padding_limits_is_labelled_general() -> None:
    card = {"layout": {"max_nodes": 40, "max_slots": 80}, "scenario": {"name": "13-29"}, "workload": {"name": "chain"}}
    labels = release_labels(False, "reach-policy:b", {"scenario": "13-29", "workload": "chain"}, card)
    assert labels["gate"] == "refused"
    assert (labels["scenario"], labels["workload"], labels["max_nodes"], labels["max_slots"]) == (ANY, ANY, "40", "80")
    assert (labels["trained_scenario"], labels["trained_workload"]) == ("13-29", "chain")
    assert why_not(labels, LARGE) is None


def test_a_general_model_without_limits_is_refused() -> None:
    with pytest.raises(ValueError, match="declares no max_nodes/max_slots"):
        release_labels(True, "reach-policy:c", {"scenario": ANY, "workload": ANY}, {"layout": {}})


def test_a_general_bento_is_served_with_the_clusters_files_and_a_specific_one_with_none() -> None:
    from flows.release.selection import serve_arguments

    cluster = cluster_of("13-29", "chain")
    assert serve_arguments("b1", {"scenario": "13-29", "workload": "chain"}, cluster) == {}
    arguments = serve_arguments("b2", GENERAL_20, cluster)
    assert arguments["scenario"].endswith("data/scenarios/13-29")
    assert arguments["workload"].endswith("data/workloads/chain_call_patterns.json")
    with pytest.raises(NotServable, match="files of custom / chain are unknown"):
        serve_arguments("b2", GENERAL_20, Cluster("custom", "chain", 5, 10))


def test_a_general_bento_fine_tuned_on_the_cluster_ranks_with_the_specific_ones() -> None:
    from flows.release.selection import ranked

    tuned_here = {**GENERAL_20, "trained_scenario": "7-21", "trained_workload": "chain"}
    tuned_elsewhere = {**GENERAL_20, "trained_scenario": "13-29", "trained_workload": "chain"}
    newest_first = [("g-else", tuned_elsewhere), ("g-here", tuned_here), ("s-here", specific("7-21", "chain"))]
    assert ranked(newest_first, SMALL) == ["g-here", "s-here", "g-else"]


def test_a_bento_its_gate_refused_cannot_be_served_even_by_name() -> None:
    refused = {**specific("7-21", "chain"), "gate": "refused"}
    with pytest.raises(NotServable, match=r"b9 was refused by its evaluation gate.*reach package"):
        check_servable("b9", refused, SMALL)
    check_servable("b9", {**refused, "gate": "passed"}, SMALL)  # no error


def test_a_specific_bento_serves_its_own_files_not_any_folder_of_that_name(tmp_path: object) -> None:
    """A copy of 13-29 in a folder named 7-21 has 7-21's name and 13 nodes: the 7-node bento may not serve it."""
    import shutil
    from pathlib import Path

    from tests.conftest import scenario_dir, workload_file

    real = cluster_of(str(scenario_dir("7-21")), str(workload_file("chain")))
    labels = release_labels(True, "reach-policy:a", {"scenario": "7-21", "workload": "chain"},
                            {"scenario": {"name": "7-21", "sha256": real.scenario_sha256}})  # fmt: skip
    assert labels["scenario_sha256"] == real.scenario_sha256 and why_not(labels, real) is None
    impostor = Path(str(tmp_path)) / "7-21"
    shutil.copytree(scenario_dir("13-29"), impostor)
    other = cluster_of(str(impostor), str(workload_file("chain")))
    assert (other.scenario, other.node_count) == ("7-21", 13)
    reason = why_not(labels, other)
    assert reason is not None and "trained on other files named 7-21" in reason
    assert why_not(specific("7-21", "chain"), other) is None  # a bento packaged before the label: names only
