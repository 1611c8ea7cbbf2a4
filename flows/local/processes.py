"""Background processes that reach starts and stops by PID: the Prefect server, the deployment
runner, and the BentoML servers of the blue/green switch.

Each process is recorded as a small JSON file under ``$REACH_HOME/run`` (default
``~/.local/share/reach/run``) with its PID, the kernel's start time of that PID, port, command and
log file, so that ``reach down``, ``reach status`` and the redeploy flow find it again from another
process, and never take another process that got the same PID for it. Processes are never
stopped by name. Checking that a name is free, starting its process and writing its record happen
under one inter-process lock (:func:`registry_lock`, :mod:`flows.local.locks`), so two reach
commands that start the same name at once start it once: the other sees it running. Used by
:mod:`flows.cli.release` and :mod:`flows.release.redeploy`.
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
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from flows.local import locks, logpipe

REGISTRY_LOCK_WAIT_S = 30.0  # the registry's critical sections are short: a fork and exec, a small file


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
    env: dict[str, str] = field(default_factory=dict)  # the environment given on top of reach's own
    pid_start: int | None = None  # the kernel's start time of ``pid`` (process_start): tells a reused PID apart

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def registry_lock() -> Path:
    """The lock file of the process registry: held while a name is checked, started and recorded."""
    return reach_home() / "locks" / "processes.lock"


def _registry(task: str) -> AbstractContextManager[None]:
    return locks.held(registry_lock(), task, REGISTRY_LOCK_WAIT_S)


def _records_dir() -> Path:
    path = reach_home() / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_STATE, _PGRP, _STARTTIME = 0, 2, 19  # /proc/<pid>/stat fields 3, 5 and 22, counted after the command name


def _stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (which may hold spaces); None if unreadable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields_after = stat[stat.rindex(")") + 2 :].split()
    return fields_after if len(fields_after) > _STARTTIME else None


def process_start(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``, field 22); None if unknown.

    A PID is reused once its process is gone; the start time is not, so a record that holds both
    never mistakes another process for the one it started.
    """
    stat = _stat(pid)
    return int(stat[_STARTTIME]) if stat is not None else None


def group_members(pgid: int, since: int | None = None) -> list[int]:
    """The processes of process group ``pgid`` (``/proc/<pid>/stat``, field 5) started at or after ``since``.

    A stopped process's children may outlive it in its group; a group ID is not reused while any
    member lives, and ``since`` (the leader's start) keeps out a later group that took the number.
    """
    members = []
    for entry in Path("/proc").iterdir():
        stat = _stat(entry.name) if entry.name.isdigit() else None
        if stat is None or int(stat[_PGRP]) != pgid or stat[_STATE] == "Z":
            continue
        if since is None or int(stat[_STARTTIME]) >= since:
            members.append(int(entry.name))
    return members


def is_alive(pid: int, started: int | None = None) -> bool:
    """Whether process ``pid`` runs; with ``started`` (:func:`process_start`), whether it is *that* process."""
    if started is not None:
        now = process_start(pid)
        if now is not None and now != started:
            return False  # the PID was reused by another process
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


def start(
    name: str,
    argv: list[str],
    port: int,
    env: dict[str, str] | None = None,
    log_max_bytes: int = logpipe.DEFAULT_MAX_BYTES,
    log_keep: int = logpipe.DEFAULT_KEEP,
    reuse_running: bool = False,
) -> ProcessRecord:
    """Start ``argv`` in its own session with output to ``<name>.log`` (rotated by size); record it as ``name``.

    A live process already recorded as ``name`` raises RuntimeError, or with ``reuse_running`` is
    returned as it is. The check, the start and the record are one critical section (the registry
    lock): of two callers that start ``name`` at once, one starts it and the other finds it running.
    """
    with _registry(f"starting {name}"):
        existing = find(name)
        if existing is not None and reuse_running:
            return existing
        if existing is not None:
            raise RuntimeError(f"{name} is already running (pid {existing.pid}, {existing.url}); stop it first")
        log = _records_dir() / f"{name}.log"
        writer = logpipe.spawn(log, log_max_bytes, log_keep)
        try:
            proc = subprocess.Popen(
                argv,
                stdout=writer.stdin,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )  # close_fds (the default) keeps the lock's descriptor out of the child: it never holds the lock
        finally:
            if writer.stdin is not None:
                writer.stdin.close()  # the process holds the pipe now; the writer ends when it closes
        started = process_start(proc.pid)
        return _write(ProcessRecord(name, proc.pid, port, argv, str(log), time.time(), dict(env or {}), started))


def _write(record: ProcessRecord) -> ProcessRecord:
    """Write ``record`` atomically; callers hold the registry lock."""
    tmp = _records_dir() / f".{record.name}.json.tmp"
    tmp.write_text(json.dumps(asdict(record)))
    tmp.replace(_records_dir() / f"{record.name}.json")
    return record


def adopt(name: str, pid: int, port: int, argv: list[str], log: str) -> ProcessRecord:
    """Record a process that something else started (the local cluster's components), so that
    ``reach down`` stops it by PID like the ones :func:`start` records."""
    with _registry(f"recording {name}"):
        return _write(ProcessRecord(name, pid, port, argv, log, time.time(), pid_start=process_start(pid)))


class RecordError(ValueError):
    """A process record that cannot be read (e.g. left empty by a crash); the message names the file and the fix."""


def recorded(name: str) -> ProcessRecord | None:
    """The process recorded as ``name``, alive or dead, or None when there is no record; :class:`RecordError`
    when the record cannot be read."""
    path = _records_dir() / f"{name}.json"
    if not path.exists():
        return None
    known = {f.name for f in fields(ProcessRecord)}
    try:
        return ProcessRecord(**{k: v for k, v in json.loads(path.read_text()).items() if k in known})
    except (ValueError, TypeError, AttributeError) as err:
        raise RecordError(
            f"{path}: not a process record ({type(err).__name__}: {err}); if its process still runs, stop it by "
            f"its PID, then remove the file (rm {path})"
        ) from None


def _scan() -> tuple[list[ProcessRecord], list[RecordError]]:
    """Every record file read once: the records, and the errors of those that cannot be read."""
    found: list[ProcessRecord] = []
    unreadable: list[RecordError] = []
    for path in sorted(_records_dir().glob("*.json")):
        try:
            record = recorded(path.stem)
        except RecordError as err:
            unreadable.append(err)
            continue
        if record is not None:
            found.append(record)
    return found, unreadable


def unreadable_records() -> list[RecordError]:
    """The records :func:`records` leaves out because they cannot be read."""
    return _scan()[1]


def find(name: str) -> ProcessRecord | None:
    """The live process recorded as ``name``, or None (a dead one keeps its record: see :func:`records`)."""
    record = recorded(name)
    return record if record is not None and alive(record) else None


def alive(record: ProcessRecord) -> bool:
    """Whether the process a record names still runs (and is that process, not a reused PID)."""
    return is_alive(record.pid, record.pid_start)


def records() -> list[tuple[ProcessRecord, bool]]:
    """Every readable recorded process, with whether it is alive (a process that died stays listed; an
    unreadable record is left out: :func:`unreadable_records`)."""
    return [(r, alive(r)) for r in _scan()[0]]


def running() -> list[ProcessRecord]:
    """Every live recorded process."""
    return [record for record, alive in records() if alive]


def forget(name: str) -> None:
    """Drop the record of a process (after it was stopped or died for good)."""
    (_records_dir() / f"{name}.json").unlink(missing_ok=True)


def _forget_stopped(record: ProcessRecord) -> None:
    """Drop ``record`` unless the name was recorded again meanwhile (another command started a new process
    under it once this one was gone: its record must stay, or ``reach down`` could not stop it)."""
    with _registry(f"forgetting {record.name}"):
        try:
            now = recorded(record.name)
        except RecordError:
            return  # unreadable now: not the record stopped here; `reach down` names it
        if now is not None and (now.pid, now.pid_start) == (record.pid, record.pid_start):
            forget(record.name)


def restart(name: str) -> ProcessRecord:
    """Start the process recorded as ``name`` again with its recorded command, port and environment
    (stopped first if it still runs); nothing else is touched. Raises KeyError for an unknown name."""
    record = recorded(name)
    if record is None:
        known = [r.name for r, _ in records()]
        raise KeyError(f"no process recorded as {name!r}; recorded: {known or 'none'} (see `reach status`)")
    stop(name)
    return start(name, record.argv, record.port, record.env)


def stop(name: str, grace_s: float = 10.0) -> bool:
    """Stop the process recorded as ``name`` (its whole session) by PID: SIGTERM, then SIGKILL.

    Returns whether it stopped. The record is dropped once the process is gone (or was gone
    already, or its PID now belongs to another process, which is never signalled); a process that
    survives or may not be signalled keeps its record, so that ``reach down`` can report it.
    """
    record = recorded(name)
    if record is None:
        return False
    was_alive = alive(record)

    def running() -> bool:  # the leader, or any child it left in its group
        return alive(record) or bool(group_members(record.pid, record.pid_start))

    if not running():
        _forget_stopped(record)
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(record.pid, sig)
        except ProcessLookupError:
            break
        except PermissionError:
            return False
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and running():
            time.sleep(0.1)
        if not running():
            break
    if running():
        return False
    _forget_stopped(record)
    return was_alive


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
