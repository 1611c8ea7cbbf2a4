"""The embedded reference testbed equals the files in data/: one set of facts, two forms."""

from __future__ import annotations

import json

import pytest

from ceenv.reference import SIZES, WORKLOADS, nodes_document, services_document, workload_document
from tests.conftest import scenario_dir, workload_file


@pytest.mark.parametrize("size", sorted(SIZES))
def test_reference_cluster_documents_equal_the_shipped_files(size: str) -> None:
    assert nodes_document(size) == json.loads((scenario_dir(size) / "nodes.json").read_text())
    assert services_document(size) == json.loads((scenario_dir(size) / "services.json").read_text())


@pytest.mark.parametrize("pattern", WORKLOADS)
def test_reference_workload_documents_equal_the_shipped_files(pattern: str) -> None:
    assert workload_document(pattern) == json.loads(workload_file(pattern).read_text())


def test_an_unknown_reference_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="one of"):
        nodes_document("3-9")
    with pytest.raises(ValueError, match="one of"):
        workload_document("fan-out")
