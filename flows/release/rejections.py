"""Bentos a deploy rejected, which the automatic choice skips: ``$REACH_HOME/rejected-bentos.json``.

A bento that answered a canary request wrongly (:func:`flows.release.serving.redeploy`; no answer at all rejects nothing) or that the analysis period
rolled back (:func:`flows.release.redeploy.analyse_release`) keeps its ``gate=passed`` label and may
still be the newest for its cluster. Recorded here with the reason and the time, it is no longer
chosen automatically (:func:`flows.release.packaging.gated_bento_for`: ``reach deploy``, the
``reach-redeploy`` and ``reach-retrain`` flows, ``reach serve`` and the demo's ``auto``). An explicit
``reach deploy --bento TAG`` still deploys it, and a switch that puts it in service re-admits it
(:func:`readmit`). The file is replaced atomically, read and written under one inter-process lock.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from flows.local import locks
from flows.local.paths import write_text_atomic
from flows.local.processes import reach_home

LOCK_WAIT_S = 30.0  # a read-modify-write of a small file: anything longer is a stuck holder


@dataclass(frozen=True)
class Rejection:
    """Why and when a deploy rejected a bento."""

    reason: str
    since: float  # seconds since the epoch

    def describe(self) -> str:
        return f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.since))}: {self.reason}"


def rejected_file() -> Path:
    return reach_home() / "rejected-bentos.json"


def _lock() -> Path:
    return reach_home() / "locks" / "rejected-bentos.lock"


def rejected() -> dict[str, Rejection]:
    """The rejected bentos by tag ({} without the file); ``ValueError`` naming the file and the fix when unreadable."""
    path = rejected_file()
    if not path.exists():
        return {}
    try:
        return {tag: Rejection(str(r["reason"]), float(r["since"])) for tag, r in json.loads(path.read_text()).items()}
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ValueError(
            f"{path} is not a record of rejected bentos ({type(exc).__name__}: {exc}); remove it (`rm {path}`): "
            "every bento is then eligible again"
        ) from exc


def _write(entries: dict[str, Rejection]) -> None:
    write_text_atomic(rejected_file(), json.dumps({tag: asdict(r) for tag, r in entries.items()}, indent=2))


def reject(tag: str, reason: str) -> None:
    """Record that a deploy rejected ``tag`` (the latest reason wins)."""
    with locks.held(_lock(), f"rejecting {tag}", LOCK_WAIT_S):
        _write({**rejected(), tag: Rejection(reason, time.time())})


def readmit(tag: str) -> bool:
    """Make ``tag`` eligible for the automatic choice again; whether it was rejected."""
    with locks.held(_lock(), f"re-admitting {tag}", LOCK_WAIT_S):
        entries = rejected()
        if tag not in entries:
            return False
        del entries[tag]
        _write(entries)
    return True
