"""Inter-process locks on reach's local state: an exclusive ``flock(2)`` on a lock file under ``$REACH_HOME``.

Two reach commands may run at once against one ``$REACH_HOME`` (two ``reach up``, a scheduled
redeploy and a manual ``reach deploy``); what one checks and then writes — a free process name, a
free blue/green slot, then its record — must not interleave with the other. :func:`held` takes the
lock for one such critical section. The kernel releases a ``flock`` when its holder closes the file
or dies, even by SIGKILL, so a crashed holder never leaves a stale lock and no PID file is trusted;
the PID and task the holder writes into the file only say who it is when another caller gives up.
A second caller waits, up to a bound, then gets :class:`LockTimeout` naming the lock file, its
holder and what to do. The lock belongs to the open file, not the process: two threads of one
process exclude each other too, and a holder that takes the same lock again waits for itself.
Used by :mod:`flows.local.processes` (the process registry) and :mod:`flows.release.serving` (the
blue/green switch).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POLL_S = 0.05  # how often a waiting caller tries again
QUIET_WAIT_S = 1.0  # a caller that waited this long says on stderr what it waits for


class LockTimeout(RuntimeError):
    """The lock stayed held for longer than the caller may wait; the message names the file, its holder and the fix.

    A RuntimeError, not a TimeoutError: that is an OSError, which code around file and network calls catches.
    """


def holder(path: Path) -> str:
    """Who holds ``path`` as its holder wrote it (PID, task, since when), or a note that it did not say."""
    try:
        note = json.loads(path.read_text())
        since = time.strftime("%H:%M:%S", time.localtime(float(note["since"])))
        return f"pid {int(note['pid'])} ({note['task']}, since {since})"
    except (OSError, ValueError, TypeError, KeyError):
        return "a process that has not said who it is yet"


@contextmanager
def held(path: Path, task: str, wait_s: float, error: type[LockTimeout] = LockTimeout) -> Iterator[None]:
    """Hold the exclusive lock on ``path`` for the ``with`` block (released on any exit, exception included).

    ``task`` says what the holder does (``starting prefect-server``), for a caller that gives up
    waiting. Waits up to ``wait_s`` seconds for another holder, then raises ``error`` (a
    :class:`LockTimeout`, or a subclass that also says what the caller's failure means).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # never replaced or unlinked: the lock is on this inode
    try:
        _acquire(fd, path, task, wait_s, error)
        note = json.dumps({"pid": os.getpid(), "task": task, "since": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, note, 0)
        yield
    finally:
        os.close(fd)  # closing the last descriptor of this open file releases the lock


def _acquire(fd: int, path: Path, task: str, wait_s: float, error: type[LockTimeout]) -> None:
    started = time.monotonic()
    said = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        waited_s = time.monotonic() - started
        if waited_s >= wait_s:
            raise error(
                f"{path} is held by {holder(path)}: another reach command is at the same step; waited "
                f"{waited_s:.0f} s to go on with {task}. Let it finish (or stop that PID) and run this again; "
                "the lock frees itself when its holder exits, so never delete the file"
            )
        if not said and waited_s >= QUIET_WAIT_S:
            print(f"waiting up to {wait_s:.0f} s for {path}, held by {holder(path)}", file=sys.stderr)
            said = True
        time.sleep(POLL_S)
