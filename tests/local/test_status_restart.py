"""``reach status`` lists a process that died as dead; ``reach restart NAME`` starts it again as it was."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from flows.cli import app
from flows.local import processes


def test_status_marks_a_dead_process_and_restart_brings_it_back(reach_home: Path) -> None:
    port = processes.free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    record = processes.start("test-server", argv, port)
    processes.wait_http(f"{record.url}/", 20, record.pid)
    os.killpg(record.pid, signal.SIGKILL)
    for _ in range(100):
        if not processes.is_alive(record.pid):
            break
        time.sleep(0.05)
    runner = CliRunner()
    status = runner.invoke(app, ["status"])
    assert status.exit_code == 0, status.output
    assert "test-server: dead" in status.output and "reach restart test-server" in status.output
    restarted = runner.invoke(app, ["restart", "test-server"])
    try:
        assert restarted.exit_code == 0, restarted.output
        again = processes.find("test-server")
        assert again is not None and again.pid != record.pid and again.argv == argv
        processes.wait_http(f"{again.url}/", 20, again.pid)
        assert "test-server: pid" in runner.invoke(app, ["status"]).output
    finally:
        processes.stop("test-server")


def test_restart_of_an_unknown_name_says_what_is_recorded(reach_home: Path) -> None:
    result = CliRunner().invoke(app, ["restart", "nothing-like-this"])
    assert result.exit_code == 1
    assert "no process recorded as 'nothing-like-this'" in result.output
