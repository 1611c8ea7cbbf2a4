"""Size-capped logs for the background processes reach starts: a pipe reader that rotates the file by size.

:func:`flows.local.processes.start` (a ``bentoml serve``, the Prefect server, the migrator…) sends the
process's stdout and stderr into a pipe read by this module run as a small process of its own
(:func:`spawn`): it appends to ``<name>.log`` and, before the file would pass ``max_bytes``, renames
``<name>.log`` to ``<name>.log.1`` (``.1`` to ``.2``…, the oldest beyond ``keep`` deleted), so a log
never takes more than ``(keep + 1) * max_bytes`` of disk however long the process runs. The reader
exits when the process and everything it started have closed the pipe; a failing disk drops output
rather than blocking the process. Run as a script (``python -I logpipe.py LOG``), it needs only the
standard library, so it starts quickly and whatever the started process's environment.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

DEFAULT_MAX_BYTES = 10 * 2**20  # per file: a day of a busy bentoml serve's access log at INFO
DEFAULT_KEEP = 3  # rotated generations kept: <name>.log.1 .. <name>.log.3
CHUNK_BYTES = 64 * 2**10


class RotatingLog:
    """An append-only file that rotates to ``.1 … .keep`` before it would exceed ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP) -> None:
        if max_bytes < 1 or keep < 0:
            raise ValueError(f"max_bytes must be >= 1 and keep >= 0, got {max_bytes} and {keep}")
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self.file = path.open("ab")
        self.size = self.file.tell()

    def write(self, data: bytes) -> None:
        """Append ``data``, rotating first (at its last line break that fits, if any) when it would not fit."""
        while data:
            room = self.max_bytes - self.size
            if len(data) <= room:
                self._append(data)
                return
            cut = data.rfind(b"\n", 0, room) + 1 if room > 0 else 0
            if cut == 0 and self.size == 0:
                cut = room  # a line longer than a whole file: split it
            self._append(data[:cut])
            data = data[cut:]
            self.rotate()

    def _append(self, data: bytes) -> None:
        if not data:
            return
        try:
            self.file.write(data)
            self.file.flush()
        except OSError:
            return  # disk full or gone: drop the output, never block the process
        self.size += len(data)

    def rotate(self) -> None:
        """``<log>.{k}`` → ``<log>.{k+1}`` from the oldest kept down, ``<log>`` → ``<log>.1``, a new ``<log>``."""
        self.file.close()
        try:
            Path(f"{self.path}.{self.keep}").unlink(missing_ok=True)
            for k in range(self.keep - 1, 0, -1):
                older = Path(f"{self.path}.{k}")
                if older.exists():
                    older.replace(f"{self.path}.{k + 1}")
            if self.keep:
                self.path.replace(f"{self.path}.1")
            else:
                self.path.unlink(missing_ok=True)
        except OSError:
            pass  # rotation failed: start over in the same file rather than stop logging
        self.file = self.path.open("wb")
        self.size = 0

    def close(self) -> None:
        self.file.close()


def copy(source_fd: int, log: RotatingLog) -> None:
    """Copy everything from ``source_fd`` into ``log`` until end of file."""
    while chunk := os.read(source_fd, CHUNK_BYTES):
        log.write(chunk)


def spawn(log: Path, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP) -> subprocess.Popen[bytes]:
    """Start the reader for ``log`` in its own session; give its ``stdin`` to the process to log, then close it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-I", str(Path(__file__).resolve()), str(log), "--max-bytes", str(max_bytes)]
    return subprocess.Popen(
        [*argv, "--keep", str(keep)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Copy stdin into LOG, rotating it by size.")
    parser.add_argument("log", type=Path)
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--keep", type=int, default=DEFAULT_KEEP)
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # outlive the logged process's last words; exit at end of file
    log = RotatingLog(args.log, args.max_bytes, args.keep)
    try:
        copy(sys.stdin.fileno(), log)
    finally:
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
