"""``reach profiles`` as a user runs it: exit codes, messages without tracebacks, fast imports."""

from __future__ import annotations

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
    assert "Traceback" not in result.output
    assert not out.exists()


def test_unknown_scenario_exits_2_naming_the_known_ones(tmp_path: Path) -> None:
    args = ["profiles", "validate", "-s", "no-such", "-w", "chain", *_csv_args(EXAMPLE_CSVS)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "7-21" in result.output
