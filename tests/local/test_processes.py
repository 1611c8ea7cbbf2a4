"""The process registry: start by argv, find from another process, stop by PID, clean stale records."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from flows.local import processes


def _http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


def test_started_process_is_found_reachable_and_stopped_by_pid(reach_home: Path) -> None:
    port = processes.free_port()
    record = processes.start("test-http", _http_server(port), port)
    try:
        processes.wait_http(f"{record.url}/", 20, record.pid)
        assert processes.find("test-http") == record
        assert "test-http" in [r.name for r in processes.running()]
        with pytest.raises(RuntimeError, match="already running"):
            processes.start("test-http", _http_server(port), port)
    finally:
        assert processes.stop("test-http")
    assert not processes.is_alive(record.pid)
    assert processes.find("test-http") is None
    assert not processes.stop("test-http")


def test_a_record_of_a_dead_process_is_dropped(reach_home: Path) -> None:
    port = processes.free_port()
    record = processes.start("test-short", [sys.executable, "-c", "pass"], port)
    for _ in range(100):
        if not processes.is_alive(record.pid):
            break
        time.sleep(0.05)
    assert processes.find("test-short") is None
    assert not (reach_home / "run" / "test-short.json").exists()


def test_wait_http_reports_a_process_that_died(reach_home: Path) -> None:
    port = processes.free_port()
    record = processes.start("test-dies", [sys.executable, "-c", "raise SystemExit(3)"], port)
    with pytest.raises(RuntimeError, match="exited before"):
        processes.wait_http(f"{record.url}/", 20, record.pid)
    log = Path(record.log)
    assert log.exists()
    assert json.loads(json.dumps(record.argv))[0] == sys.executable
