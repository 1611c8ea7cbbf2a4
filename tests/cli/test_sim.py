"""``reach sim`` as a user runs it: JSON output, clear errors with exit code 2, validation, the demo PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import scenario_dir

runner = CliRunner()
GOOD = {
    "client": ["tb-client-vm-2-1"],
    "aggregator": ["tb-cloud-vm-8-1"],
    "machine-learning": ["tb-cloud-vm-8-1"],
    "detection": ["tb-cloud-vm-8-1"],
    "db": ["tb-cloud-vm-8-1"],
}


def _placement(tmp_path: Path, content: object) -> Path:
    file = tmp_path / "placement.json"
    file.write_text(content if isinstance(content, str) else json.dumps(content))
    return file


def test_latency_json_prints_the_model_md_example(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "sim",
            "latency",
            "--scenario",
            str(scenario_dir("7-21")),
            "--workload",
            "aggregator_sequential",
            "--placement",
            str(_placement(tmp_path, GOOD)),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "latency_ms": pytest.approx(121.6),
        "endpoints": {"aggregator_sequential": pytest.approx(121.6)},
    }


def test_latency_accepts_a_workload_file_path(tmp_path: Path, data_dir: Path) -> None:
    file = data_dir / "workloads" / "chain_call_patterns.json"
    result = runner.invoke(
        app, ["sim", "latency", "-s", "7-21", "-w", str(file), "-p", str(_placement(tmp_path, GOOD)), "--json"]
    )
    assert result.exit_code == 0 and json.loads(result.stdout)["endpoints"] == {"chain": pytest.approx(121.6)}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({**GOOD, "machine-learning": ["tb-edge-vm-2-1", "tb-edge-vm-2-1"]}, "over capacity"),
        ({**GOOD, "db": ["tb-client-vm-2-1"]}, "layer rule violated"),
        ("{oops", "not valid JSON"),
        ({**GOOD, "db": "tb-cloud-vm-8-1"}, "wrong type"),
    ],
)
def test_bad_placements_exit_2_with_a_clear_message(tmp_path: Path, content: object, message: str) -> None:
    result = runner.invoke(
        app, ["sim", "latency", "-s", "7-21", "-w", "chain", "-p", str(_placement(tmp_path, content))]
    )
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


def test_unknown_workload_name_lists_the_known_ones(tmp_path: Path) -> None:
    result = runner.invoke(app, ["sim", "latency", "-s", "7-21", "-w", "fanout", "-p", str(_placement(tmp_path, GOOD))])
    assert result.exit_code == 2 and "aggregator_parallel" in result.stderr


def test_validate_passes_reference_files_and_fails_broken_ones(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["sim", "validate", "-s", "13-29", "-w", "chain"])
    assert ok.exit_code == 0 and "13 nodes" in ok.stdout
    broken = tmp_path / "broken"
    broken.mkdir()
    nodes = json.loads((scenario_dir("7-21") / "nodes.json").read_text())
    del nodes["latency"]["client"]
    (broken / "nodes.json").write_text(json.dumps(nodes))
    (broken / "services.json").write_text("[]")
    bad = runner.invoke(app, ["sim", "validate", "-s", str(broken)])
    assert bad.exit_code == 1
    text = " ".join(bad.stderr.split())
    assert "missing delay from layer 'client'" in text and "services.json: $: wrong type" in text


def test_demo_prints_the_table_and_writes_a_png(tmp_path: Path) -> None:
    target = tmp_path / "demo.png"
    result = runner.invoke(app, ["sim", "demo", "-s", "7-21", "-w", "chain", "--seed", "3", "--out", str(target)])
    assert result.exit_code == 0, result.output
    assert "best_known" in result.stdout and "greedy" in result.stdout
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_help_does_not_import_heavy_libraries() -> None:
    code = "import sys, flows.cli; heavy = {'torch', 'gymnasium', 'matplotlib', 'pandas', 'prefect', 'bentoml', 'great_expectations'}; print(sorted(heavy & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


REFERENCE_TIMES = {
    "aggregator": {"0": "7ms", "1": "10.5ms", "2": "14ms"},
    "machine-learning": {"0": "46ms", "1": "69ms", "2": "92ms"},
    "detection": {"0": "12.5ms", "1": "18.75ms", "2": "25ms"},
    "db": {"0": "2.1ms", "1": "3.15ms", "2": "4.2ms"},
}


def test_imported_mubench_work_model_simulates_like_the_reach_workload(tmp_path: Path) -> None:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "mubench"
    times = tmp_path / "times.json"
    times.write_text(json.dumps(REFERENCE_TIMES))
    out = tmp_path / "mubench_call_patterns.json"
    made = runner.invoke(
        app,
        [
            "sim",
            "import-mubench",
            "--workmodel",
            str(fixtures / "reference_sequential_loader.json"),
            "--times",
            str(times),
            "--out",
            str(out),
        ],
    )
    assert made.exit_code == 0, made.output
    result = runner.invoke(
        app, ["sim", "latency", "-s", "7-21", "-w", str(out), "-p", str(_placement(tmp_path, GOOD)), "--json"]
    )
    assert json.loads(result.stdout)["latency_ms"] == pytest.approx(121.6)
    again = runner.invoke(
        app,
        [
            "sim",
            "import-mubench",
            "--workmodel",
            str(fixtures / "reference_sequential_loader.json"),
            "--times",
            str(times),
            "--out",
            str(out),
        ],
    )
    assert again.exit_code == 2 and "never overwrites" in again.stderr


def test_import_mubench_reports_a_bad_time_with_its_path(tmp_path: Path) -> None:
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "mubench"
    times = tmp_path / "times.json"
    times.write_text(json.dumps({**REFERENCE_TIMES, "db": {"0": "fast"}}))
    result = runner.invoke(
        app,
        [
            "sim",
            "import-mubench",
            "--workmodel",
            str(fixtures / "reference_sequential_loader.json"),
            "--times",
            str(times),
            "--out",
            str(tmp_path / "x_call_patterns.json"),
        ],
    )
    assert result.exit_code == 2 and "$.db.0" in result.stderr
    assert not (tmp_path / "x_call_patterns.json").exists()


def test_generate_writes_reach_files_that_validate_and_the_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    first, second = tmp_path / "gen-a", tmp_path / "gen-b"
    for out in (first, second):
        result = runner.invoke(
            app, ["sim", "generate", "--out", str(out), "--seed", "7", "--nodes", "11", "--services", "4"]
        )
        assert result.exit_code == 0, result.output
    names = sorted(p.name for p in first.iterdir())
    workload = next(n for n in names if n.endswith("_call_patterns.json"))
    assert names == sorted(["nodes.json", "services.json", workload])
    for name in ("nodes.json", "services.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    nodes = json.loads((first / "nodes.json").read_text())
    assert sum(spec["count"] for layer in nodes["cluster_setup"].values() for spec in layer.values()) == 11
    assert len(json.loads((first / "services.json").read_text())) == 5
    check = runner.invoke(app, ["sim", "validate", "--scenario", str(first), "--workload", str(first / workload)])
    assert check.exit_code == 0, check.output


def test_generate_refuses_to_overwrite_without_force_and_rejects_impossible_sizes(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    assert runner.invoke(app, ["sim", "generate", "--out", str(out)]).exit_code == 0
    before = (out / "nodes.json").read_bytes()
    again = runner.invoke(app, ["sim", "generate", "--out", str(out), "--seed", "1"])
    assert again.exit_code == 2 and "--force" in again.output
    assert (out / "nodes.json").read_bytes() == before
    assert runner.invoke(app, ["sim", "generate", "--out", str(out), "--seed", "1", "--force"]).exit_code == 0
    bad = runner.invoke(app, ["sim", "generate", "--out", str(tmp_path / "bad"), "--nodes", "1"])
    assert bad.exit_code == 2 and "nodes" in bad.output
    assert not (tmp_path / "bad").exists()
