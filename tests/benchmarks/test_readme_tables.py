"""The README's benchmark tables are the files the benchmarks wrote, copied verbatim between markers."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def _script(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


readme_tables = _script("readme_tables", ROOT / "scripts" / "readme_tables.py")
bench_tables = _script("bench_tables", ROOT / "benchmarks" / "bench_tables.py")
BLOCKS = readme_tables.blocks(README.read_text())


def test_the_readme_includes_benchmark_tables() -> None:
    assert {"benchmarks/results/service/bench.md", "benchmarks/results/training-13-29/bench.md"} <= {
        path for path, _ in BLOCKS
    }


@pytest.mark.parametrize(("path", "body"), BLOCKS, ids=[path for path, _ in BLOCKS])
def test_each_included_table_is_a_shipped_file_written_by_its_benchmark(path: str, body: str) -> None:
    file = ROOT / path
    assert file.is_file(), f"{path} is included by the README but missing: run its benchmark"
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT, check=False)
    assert ignored.returncode == 1, f"{path} is git-ignored: a fresh clone would not have it"
    content = file.read_text()
    paragraphs = [p for p in content.split("\n\n") if p.strip() and not p.lstrip().startswith("# ")]
    first = paragraphs[0] if paragraphs else ""  # the first paragraph after any title
    found = re.search(r"benchmarks/(?P<script>\w+\.py)", first)
    assert found, f"{path} does not name the benchmark script that wrote it in its first paragraph: {first!r}"
    script = ROOT / "benchmarks" / found.group("script")
    assert script.is_file() and file.name in script.read_text(), f"{script.name} does not write {file.name}"
    assert "|---" in content.replace(" ", ""), f"{path} holds no Markdown table"
    assert body == content, f"the README's copy of {path} differs from the file: run scripts/readme_tables.py"


def test_the_script_refreshes_a_stale_table_and_check_reports_it(tmp_path: Path) -> None:
    table = tmp_path / "benchmarks" / "results" / "x" / "bench.md"
    table.parent.mkdir(parents=True)
    table.write_text("| a |\n| --- |\n| 2 |\n")
    readme = "intro\n<!-- bench:benchmarks/results/x/bench.md -->\n| a |\n| --- |\n| 1 |\n<!-- /bench -->\nend\n"
    filled = readme_tables.fill(readme, tmp_path)
    assert (
        filled == "intro\n<!-- bench:benchmarks/results/x/bench.md -->\n| a |\n| --- |\n| 2 |\n<!-- /bench -->\nend\n"
    )
    assert readme_tables.blocks(filled) != readme_tables.blocks(readme)
    with pytest.raises(FileNotFoundError):
        readme_tables.fill(readme.replace("results/x", "results/y"), tmp_path)


def test_a_written_table_names_the_script_the_command_and_the_date(tmp_path: Path) -> None:
    path = bench_tables.write_tables(
        tmp_path / "t.md", "bench_x.py", [bench_tables.table(["a", "b"], [[1, 2]], "lr")], ["--fast"]
    )
    lines = path.read_text().splitlines()
    assert re.fullmatch(
        r"_Written by `benchmarks/bench_x.py` on \d{4}-\d\d-\d\d \d\d:\d\d UTC: `python benchmarks/bench_x.py --fast`._",
        lines[0],
    )
    assert lines[2:] == ["| a | b |", "| --- | ---: |", "| 1 | 2 |"]
