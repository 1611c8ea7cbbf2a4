"""Background processes that reach starts and stops by PID: the Prefect server, the deployment
runner, and the BentoML servers of the blue/green switch.

Each process is recorded as a small JSON file under ``$REACH_HOME/run`` (default
``~/.local/share/reach/run``) with its PID, port, command and log file, so that ``reach down``,
``reach status`` and the redeploy flow find it again from another process. Processes are never
stopped by name. Used by :mod:`flows.cli.release` and :mod:`flows.release.redeploy`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path


def reach_home() -> Path:
    """Where reach keeps its state: ``$REACH_HOME`` or ``~/.local/share/reach`` (never the repository)."""
    override = os.environ.get("REACH_HOME")
    return Path(override) if override else Path.home() / ".local" / "share" / "reach"


@dataclass(frozen=True)
class ProcessRecord:
    """A process reach started: enough to find it, reach it and stop it."""

    name: str
    pid: int
    port: int
    argv: list[str]
    log: str
    started_at: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _records_dir() -> Path:
    path = reach_home() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def start(name: str, argv: list[str], port: int, env: dict[str, str] | None = None) -> ProcessRecord:
    """Start ``argv`` in its own session with output to ``<name>.log``; record it as ``name``."""
    existing = find(name)
    if existing is not None:
        raise RuntimeError(f"{name} is already running (pid {existing.pid}, {existing.url}); stop it first")
    log = _records_dir() / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    record = ProcessRecord(name, proc.pid, port, argv, str(log), time.time())
    tmp = _records_dir() / f".{name}.json.tmp"
    tmp.write_text(json.dumps(asdict(record)))
    tmp.replace(_records_dir() / f"{name}.json")
    return record


def adopt(name: str, pid: int, port: int, argv: list[str], log: str) -> ProcessRecord:
    """Record a process that something else started (the local cluster's components), so that
    ``reach down`` stops it by PID like the ones :func:`start` records."""
    record = ProcessRecord(name, pid, port, argv, log, time.time())
    tmp = _records_dir() / f".{name}.json.tmp"
    tmp.write_text(json.dumps(asdict(record)))
    tmp.replace(_records_dir() / f"{name}.json")
    return record


def find(name: str) -> ProcessRecord | None:
    """The live process recorded as ``name``, or None (stale records are removed)."""
    path = _records_dir() / f"{name}.json"
    if not path.exists():
        return None
    record = ProcessRecord(**json.loads(path.read_text()))
    if not is_alive(record.pid):
        path.unlink(missing_ok=True)
        return None
    return record


def running() -> list[ProcessRecord]:
    """Every live recorded process."""
    names = sorted(p.stem for p in _records_dir().glob("*.json"))
    return [r for r in (find(n) for n in names) if r is not None]


def stop(name: str, grace_s: float = 10.0) -> bool:
    """Stop the process recorded as ``name`` (its whole session) by PID: SIGTERM, then SIGKILL."""
    record = find(name)
    (_records_dir() / f"{name}.json").unlink(missing_ok=True)
    if record is None:
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(record.pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not is_alive(record.pid):
                return True
            time.sleep(0.1)
    return not is_alive(record.pid)


def wait_http(url: str, timeout_s: float, pid: int | None = None) -> None:
    """Wait until ``url`` answers 200; raise TimeoutError (or RuntimeError if ``pid`` died)."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if pid is not None and not is_alive(pid):
            raise RuntimeError(f"the process (pid {pid}) exited before {url} became ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
                last = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as err:
            last = str(err)
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s ({last})")
