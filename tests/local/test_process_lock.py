"""Two reach commands at once: the registry starts a name once, and the lock never outlives its holder.

The concurrent starts run in two real processes released together; each widens the window
between "is the name free?" and "record it" by half a second, which without the lock lets both
start a process and leaves one unrecorded (``reach down`` could not stop it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from flows.local import locks, processes
from flows.local.paths import repo_root

# One contender: import the registry, say ready, wait for the go file, then start the contested name.
CONTENDER = """
import json, sys, time
from pathlib import Path
from flows.local import logpipe, processes

ready, go, tag = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
spawn = logpipe.spawn
def slow_spawn(*args, **kwargs):  # inside the critical section: the other contender runs meanwhile
    time.sleep(0.5)
    return spawn(*args, **kwargs)
logpipe.spawn = slow_spawn
ready.touch()
while not go.exists():
    time.sleep(0.005)
try:
    record = processes.start("contested", [sys.executable, "-c", "import time; time.sleep(30)", tag], 1)
    print(json.dumps({"pid": record.pid}))
except RuntimeError as err:
    print(json.dumps({"error": str(err)}))
"""

HOLDER = """
import sys, time
from pathlib import Path
from flows.local import locks

with locks.held(Path(sys.argv[1]), "holding it until killed", 5.0):
    print("held", flush=True)
    time.sleep(60)
"""


def _env(home: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(repo_root())]))
    return {**os.environ, "REACH_HOME": str(home), "PYTHONPATH": path}


def _tagged(tag: str) -> list[int]:
    """The live processes whose command line holds ``tag`` (only the ones this test started carry it)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if tag.encode() in argv and processes.is_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def test_two_concurrent_starts_of_one_name_start_one_process_and_record_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REACH_HOME", str(tmp_path))
    tag = f"reach-test-{uuid.uuid4().hex}"
    go = tmp_path / "go"
    contenders = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(tmp_path / f"ready-{i}"), str(go), tag],
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"ready-{i}").exists() for i in range(2)):
            assert time.monotonic() < deadline, "the contenders did not get ready"
            time.sleep(0.01)
        go.touch()
        answers = [json.loads(c.communicate(timeout=30)[0]) for c in contenders]
        started = [a["pid"] for a in answers if "pid" in a]
        refused = [a["error"] for a in answers if "error" in a]
        assert len(started) == 1, f"both contenders started a process: {answers}"
        assert len(refused) == 1 and "contested is already running" in refused[0]
        record = processes.find("contested")
        assert record is not None and record.pid == started[0]
        assert _tagged(tag) == started, "a process runs that no record names"
    finally:
        processes.stop("contested", grace_s=2)
        for pid in _tagged(tag):  # only after a failure: a started process the registry lost
            os.killpg(pid, signal.SIGKILL)


def test_a_caller_that_waits_too_long_gets_an_error_naming_the_lock_file_and_its_holder(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "test.lock"
    with locks.held(path, "switching to bento:a", 5.0):  # another open file: this process waits for itself
        started = time.monotonic()
        with pytest.raises(locks.LockTimeout) as caught, locks.held(path, "switching to bento:b", 0.3):
            pass
    assert time.monotonic() - started >= 0.3  # it waited its timeout; how much longer depends on the machine's load
    message = str(caught.value)
    assert str(path) in message and f"pid {os.getpid()} (switching to bento:a" in message
    assert "switching to bento:b" in message and "never delete the file" in message


def test_the_lock_is_released_when_its_block_raises(tmp_path: Path) -> None:
    path = tmp_path / "test.lock"
    with pytest.raises(ValueError, match="boom"), locks.held(path, "failing", 1.0):
        raise ValueError("boom")
    with locks.held(path, "next", 0.0):  # no wait: free at once
        pass


def test_a_lock_whose_holder_was_killed_is_free_at_once(tmp_path: Path) -> None:
    path = tmp_path / "test.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)], env=_env(tmp_path), stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(locks.LockTimeout, match="holding it until killed"), locks.held(path, "meanwhile", 0.1):
            pass
    finally:
        holder.kill()  # SIGKILL: no cleanup code of the holder runs
        holder.wait(timeout=10)
    with locks.held(path, "after the crash", 0.0):
        pass


def test_stopping_a_process_keeps_the_record_of_one_started_under_its_name_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop that ends pid A must not drop the record another command wrote for pid B meanwhile."""
    monkeypatch.setenv("REACH_HOME", str(tmp_path))
    stopped = processes.ProcessRecord("shared", 999_999_999, 1, ["x"], "x.log", 0.0)
    processes.adopt("shared", os.getpid(), 1, ["y"], "y.log")  # the newer process, recorded after the stop began
    processes._forget_stopped(stopped)
    record = processes.recorded("shared")
    assert record is not None and record.pid == os.getpid()
    processes._forget_stopped(record)
    assert processes.recorded("shared") is None


def test_a_start_that_may_reuse_a_running_process_returns_it_instead_of_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `reach up` does, so that the second of two at once finds the first's server and goes on."""
    monkeypatch.setenv("REACH_HOME", str(tmp_path))
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    first = processes.start("reused", sleeper, 1)
    try:
        assert processes.start("reused", sleeper, 2, reuse_running=True) == first
        with pytest.raises(RuntimeError, match="reused is already running"):
            processes.start("reused", sleeper, 2)
    finally:
        processes.stop("reused", grace_s=2)
