"""The process registry: start by argv, find from another process, stop by PID, keep dead ones listed, restart."""

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


def _wait_dead(pid: int) -> None:
    for _ in range(200):
        if not processes.is_alive(pid):
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} still alive")


def test_a_dead_process_stays_listed_as_dead_until_down_forgets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.local import ops

    monkeypatch.setenv("REACH_HOME", str(tmp_path))  # its own registry: `down` must not touch other tests' processes
    port = processes.free_port()
    record = processes.start("test-short", [sys.executable, "-c", "pass"], port)
    _wait_dead(record.pid)
    assert processes.find("test-short") is None
    assert [(r.name, alive) for r, alive in processes.records()] == [("test-short", False)]
    assert ops.down() == []
    assert processes.records() == []


def test_restart_starts_a_dead_process_again_with_its_argv_port_and_environment(reach_home: Path) -> None:
    port = processes.free_port()
    script = "import os, sys; open(sys.argv[1], 'a').write(os.environ['REACH_TEST_MARK'] + '\\n')"
    out = reach_home / "marks.txt"
    record = processes.start("test-mark", [sys.executable, "-c", script, str(out)], port, {"REACH_TEST_MARK": "m1"})
    _wait_dead(record.pid)
    again = processes.restart("test-mark")
    _wait_dead(again.pid)
    assert again.pid != record.pid and again.port == port and again.argv == record.argv
    assert again.env == {"REACH_TEST_MARK": "m1"}
    assert out.read_text().splitlines() == ["m1", "m1"]
    with pytest.raises(KeyError, match="test-mark"):
        processes.restart("no-such-process")


def test_restart_of_a_live_process_stops_it_first(reach_home: Path) -> None:
    port = processes.free_port()
    record = processes.start("test-http", _http_server(port), port)
    try:
        processes.wait_http(f"{record.url}/", 20, record.pid)
        again = processes.restart("test-http")
        assert not processes.is_alive(record.pid)
        processes.wait_http(f"{again.url}/", 20, again.pid)
    finally:
        processes.stop("test-http")


def test_wait_http_reports_a_process_that_died(reach_home: Path) -> None:
    port = processes.free_port()
    record = processes.start("test-dies", [sys.executable, "-c", "raise SystemExit(3)"], port)
    with pytest.raises(RuntimeError, match="exited before"):
        processes.wait_http(f"{record.url}/", 20, record.pid)
    log = Path(record.log)
    assert log.exists()
    assert json.loads(json.dumps(record.argv))[0] == sys.executable


def test_a_record_whose_pid_now_belongs_to_another_process_is_dead_and_never_signalled(reach_home: Path) -> None:
    """PID reuse (a reboot, or a long time): the record names a live PID that is not the process reach started."""
    import os
    import subprocess

    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        started = processes.process_start(bystander.pid)
        assert started is not None
        reused = processes.ProcessRecord("ghost", bystander.pid, 1, ["gone"], "ghost.log", 0.0, {}, started + 1)
        processes._write(reused)
        assert processes.find("ghost") is None
        assert [alive for r, alive in processes.records() if r.name == "ghost"] == [False]
        assert not processes.stop("ghost") and processes.recorded("ghost") is None, "a dead record is dropped"
        assert bystander.poll() is None, "the bystander holding the reused PID was signalled"
        same = processes.ProcessRecord("same", bystander.pid, 1, ["x"], "x.log", 0.0, {}, started)
        assert processes.is_alive(same.pid, same.pid_start) and processes.alive(same)
    finally:
        os.killpg(bystander.pid, 9)
        bystander.wait()


def test_a_process_that_may_not_be_signalled_keeps_its_record(
    reach_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = processes.free_port()
    record = processes.start("test-kept", _http_server(port), port)
    try:

        def refused(pid: int, sig: int) -> None:
            raise PermissionError("not yours")

        monkeypatch.setattr(processes.os, "killpg", refused)
        assert not processes.stop("test-kept")
        assert processes.find("test-kept") == record, "a process that still runs must stay recorded"
        monkeypatch.undo()
    finally:
        assert processes.stop("test-kept")
    assert processes.recorded("test-kept") is None


def test_stop_also_ends_the_children_a_process_leaves_in_its_group(reach_home: Path) -> None:
    """A child that ignores SIGTERM outlives its leader; stop must not drop the record while it still runs."""
    port = processes.free_port()
    script = '(trap "" TERM; exec sleep 30) & exec sleep 30'
    record = processes.start("test-children", ["bash", "-c", script], port)
    for _ in range(100):
        if len(processes.group_members(record.pid, record.pid_start)) == 2:
            break
        time.sleep(0.05)
    assert len(processes.group_members(record.pid, record.pid_start)) == 2
    assert processes.stop("test-children", grace_s=2.0)
    assert processes.group_members(record.pid, record.pid_start) == []
    assert processes.recorded("test-children") is None


def test_an_unreadable_record_is_named_and_does_not_keep_down_from_stopping_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.local import ops

    monkeypatch.setenv("REACH_HOME", str(tmp_path))
    port = processes.free_port()
    record = processes.start("test-live", [sys.executable, "-c", "import time; time.sleep(30)"], port)
    broken = next(Path(tmp_path).rglob("test-live.json")).with_name("bento-blue.json")  # beside the live record
    broken.write_text("")  # what a crash between open and write leaves
    assert [r.name for r, _ in processes.records()] == ["test-live"]
    with pytest.raises(RuntimeError, match=r"stopped test-live, but .*bento-blue.json: not a process record.*rm "):
        ops.down()
    assert not processes.is_alive(record.pid, record.pid_start)
