"""``reach sim import-mubench`` writes the call-pattern file whole or not at all and never overwrites."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import ceenv.workload
from flows.cli import app

runner = CliRunner()
WORKMODEL = {"s0": {"external_services": [{"services": ["s1"]}]}, "s1": {"external_services": []}}
TIMES = {"s0": {"0": "1ms"}, "s1": {"0": "2ms"}}


def _inputs(tmp_path: Path) -> list[str]:
    workmodel, times = tmp_path / "workmodel.json", tmp_path / "times.json"
    workmodel.write_text(json.dumps(WORKMODEL))
    times.write_text(json.dumps(TIMES))
    return ["sim", "import-mubench", "--workmodel", str(workmodel), "--times", str(times)]


def _no_traceback(result: Any) -> bool:
    return result.exception is None or isinstance(result.exception, SystemExit)


def test_import_writes_the_call_patterns_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "out" / "x_call_patterns.json"
    result = runner.invoke(app, [*_inputs(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "s0" in json.loads(out.read_text())
    assert [p.name for p in out.parent.iterdir()] == ["x_call_patterns.json"]


def test_an_out_file_that_appears_while_importing_is_not_overwritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "x_call_patterns.json"
    original = ceenv.workload.workload_to_json

    def someone_else_writes_out_first(workload: Any) -> Any:  # runs after the existence check
        out.write_text("theirs")
        return original(workload)

    monkeypatch.setattr(ceenv.workload, "workload_to_json", someone_else_writes_out_first)
    result = runner.invoke(app, [*_inputs(tmp_path), "--out", str(out)])
    assert result.exit_code == 2 and _no_traceback(result)
    assert "never overwrites" in result.output
    assert out.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["times.json", "workmodel.json", "x_call_patterns.json"]


def test_a_failed_final_step_exits_2_naming_out_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "link", disk_full)
    monkeypatch.setattr(os, "replace", disk_full)  # the rename a plain atomic write would use
    out = tmp_path / "x_call_patterns.json"
    result = runner.invoke(app, [*_inputs(tmp_path), "--out", str(out)])
    assert result.exit_code == 2 and _no_traceback(result)
    assert f"cannot write {out}: No space left on device" in " ".join(result.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["times.json", "workmodel.json"]


def test_an_out_under_a_file_exits_2_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("a file, not a folder")
    out = tmp_path / "plain" / "sub" / "x_call_patterns.json"
    result = runner.invoke(app, [*_inputs(tmp_path), "--out", str(out)])
    assert result.exit_code == 2 and _no_traceback(result)
    assert f"cannot write {out}" in " ".join(result.output.split())
