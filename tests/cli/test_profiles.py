"""``reach profiles`` as a user runs it: exit codes, messages without tracebacks, fast imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.cli import profiles as cli_profiles
from tests.profiles.conftest import EXAMPLE_CSVS, EXAMPLES, FIXTURES, ROOT

runner = CliRunner()
app = typer.Typer()
app.add_typer(cli_profiles.app, name="profiles")


@app.callback()
def _root() -> None:
    """Stand-in for the ``reach`` app, which mounts ``cli_profiles.app`` as ``profiles``."""


def _csv_args(paths: tuple[Path, ...]) -> list[str]:
    return [arg for p in paths for arg in ("--csv", str(p))]


def test_importing_the_command_module_loads_neither_pandas_nor_gx() -> None:
    code = "import sys, flows.cli.profiles; print(sorted({'pandas', 'great_expectations'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_ingest_writes_the_dataset_and_prints_its_version(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    args = [
        "profiles",
        "ingest",
        "-s",
        "7-21",
        "-w",
        "aggregator_sequential",
        "--out",
        str(out),
        *_csv_args(EXAMPLE_CSVS),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "dataset version" in " ".join(result.output.split()) and (out / "manifest.json").is_file()


@pytest.mark.slow
def test_validate_accepts_the_shipped_jaeger_example(tmp_path: Path) -> None:
    args = [
        "profiles",
        "validate",
        "-s",
        "7-21",
        "-w",
        "aggregator_sequential",
        "--jaeger",
        str(EXAMPLES / "jaeger_traces.json"),
        "--node-types",
        str(EXAMPLES / "node_types.json"),
        "--reports",
        str(tmp_path / "reports"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "252 used" in " ".join(result.output.split()) and len(list((tmp_path / "reports").iterdir())) == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (_csv_args((FIXTURES / "empty.csv",)), "file is empty"),
        (_csv_args((FIXTURES / "wrong_columns.csv",)), "lacks the column(s)"),
        (_csv_args((*EXAMPLE_CSVS, FIXTURES / "negative_and_absurd.csv")), "execution times are > 0 ms"),
        (_csv_args(EXAMPLE_CSVS[:2]), "aggregator@cpu_type=2: no measurements"),
        (["--jaeger", str(FIXTURES / "not_json.json")], "not valid JSON"),
        (
            ["--jaeger", str(FIXTURES / "jaeger_cycle.json"), "--node-types", str(FIXTURES / "node_types.json")],
            "form a cycle",
        ),
        ([], "no profile input"),
        ([*_csv_args(EXAMPLE_CSVS), "--cpu-speed-order", "fast"], "comma-separated list of CPU types"),
    ],
    ids=["empty", "wrong-columns", "bad-times", "cpu-type-missing", "non-json", "cycle", "no-input", "bad-order"],
)
def test_bad_input_exits_2_with_a_message_and_writes_nothing(tmp_path: Path, extra: list[str], message: str) -> None:
    out = tmp_path / "ds"
    args = [
        "profiles",
        "ingest",
        "-s",
        "7-21",
        "-w",
        "aggregator_sequential",
        "--out",
        str(out),
        "--reports",
        str(tmp_path / "reports"),
        *extra,
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback
    assert not out.exists()


def test_unknown_scenario_exits_2_naming_the_known_ones(tmp_path: Path) -> None:
    args = ["profiles", "validate", "-s", "no-such", "-w", "chain", *_csv_args(EXAMPLE_CSVS)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "7-21" in result.output


def _ingest(tmp_path: Path, *extra: str) -> list[str]:
    out = tmp_path / "ds"
    return ["profiles", "ingest", "-s", "7-21", "-w", "aggregator_sequential", "--out", str(out), *extra]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("aggregator,nan,5", "p.csv:2: column 'cpu_type': not a finite number: 'nan'"),
        ("aggregator,inf,5", "p.csv:2: column 'cpu_type': not a finite number: 'inf'"),
        ("aggregator,1e400,5", "p.csv:2: column 'cpu_type': not a finite number: '1e400'"),
        ("aggregator,0,1e400", "p.csv:2: column 'execution_time_ms': not a finite number: '1e400'"),
        ("aggregator,0,nan", "p.csv:2: column 'execution_time_ms': not a finite number: 'nan'"),
        ("aggregator,0,5,inf", "p.csv:2: column 'count': not a finite number: 'inf'"),
        ("aggregator,0,5,1e400", "p.csv:2: column 'count': not a finite number: '1e400'"),
    ],
    ids=["cpu-nan", "cpu-inf", "cpu-1e400", "time-1e400", "time-nan", "count-inf", "count-1e400"],
)
def test_non_finite_numbers_exit_2_naming_file_line_and_column(tmp_path: Path, row: str, message: str) -> None:
    header = "service,cpu_type,execution_time_ms" + (",count" if row.count(",") == 3 else "")
    csv_file = tmp_path / "p.csv"
    csv_file.write_text(f"{header}\n{row}\n")
    result = runner.invoke(app, _ingest(tmp_path, "--csv", str(csv_file)))
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert message in " ".join(result.output.split()) and "write a plain number" in result.output
    assert not (tmp_path / "ds").exists()


def test_a_trailing_comma_on_each_row_exits_2_naming_the_line(tmp_path: Path) -> None:
    csv_file = tmp_path / "p.csv"
    csv_file.write_text("service,cpu_type,execution_time_ms\naggregator,0,5,\n")
    result = runner.invoke(app, _ingest(tmp_path, "--csv", str(csv_file)))
    assert result.exit_code == 2
    assert "p.csv:2: 4 fields but the header names 3 columns" in " ".join(result.output.split())


def test_traces_without_host_tags_exit_2_suggesting_host_tag_and_node_types(tmp_path: Path) -> None:
    traces = tmp_path / "traces.json"
    span = {"traceID": "t", "spanID": "s", "references": [], "startTime": 1, "duration": 5000, "processID": "p1"}
    traces.write_text(
        json.dumps(
            {"data": [{"traceID": "t", "spans": [span], "processes": {"p1": {"serviceName": "db", "tags": []}}}]}
        )
    )
    result = runner.invoke(app, _ingest(tmp_path, "--jaeger", str(traces)))
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "none of the 1 Jaeger spans gave a measurement" in output and "no host tag" in output
    assert "--host-tag KEY" in output and "--node-types" in output
