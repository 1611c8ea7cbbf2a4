"""Markdown tables written by the benchmarks, for the README to include (``scripts/readme_tables.py``).

Every benchmark writes its figures as ``benchmarks/results/<name>/<file>.md``: a first line that
names the script, the command and the UTC date, then a Markdown table. The README embeds such a
file between ``<!-- bench:benchmarks/results/<name>/<file>.md -->`` and ``<!-- /bench -->``;
``scripts/readme_tables.py`` copies the files in and ``tests/benchmarks/test_readme_tables.py``
fails when the README and the files differ, so a figure cannot outlive the code that made it.
Imported by the benchmark scripts (run as ``python benchmarks/<script>.py``).
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

PROVENANCE_PREFIX = "_Written by `benchmarks/"


def provenance(script: str, argv: Sequence[str] | None = None, note: str = "") -> str:
    """The first line of a table file: which script, with which command, on which date (UTC)."""
    args = " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    command = f"python benchmarks/{script}" + (f" {args}" if args else "")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return f"{PROVENANCE_PREFIX}{script}` on {stamp}: `{command}`{note}._"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A Markdown table; ``align`` is one character per column: l (left) or r (right); left by default."""
    marks = ["---:" if a == "r" else "---" for a in (align or "l" * len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_tables(
    path: Path, script: str, blocks: Sequence[str], argv: Sequence[str] | None = None, note: str = ""
) -> Path:
    """Write the provenance line and the blocks (tables or short lines), separated by blank lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join([provenance(script, argv, note), *blocks]) + "\n")
    return path
