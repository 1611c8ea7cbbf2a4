"""The logs of the processes reach starts are rotated by size: disk use stays bounded, the newest output is kept."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from flows.local import processes
from flows.local.logpipe import RotatingLog


def log_files(log: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(log.parent.glob(f"{log.name}*"))}


def test_a_rotating_log_keeps_the_newest_lines_in_at_most_keep_plus_one_files(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    writer = RotatingLog(log, max_bytes=1000, keep=2)
    lines = [f"line {i:05d} {'x' * 40}\n".encode() for i in range(500)]  # 26 kB in 52-byte lines
    for start in range(0, len(lines), 7):
        writer.write(b"".join(lines[start : start + 7]))
    writer.close()
    sizes = log_files(log)
    assert list(sizes) == ["server.log", "server.log.1", "server.log.2"]
    assert all(0 < size <= 1000 for size in sizes.values())
    kept = b"".join((tmp_path / name).read_bytes() for name in ["server.log.2", "server.log.1", "server.log"])
    assert kept.endswith(lines[-1]) and kept.startswith(b"line ")  # whole lines, newest last, in order
    assert kept in b"".join(lines)


def test_a_line_longer_than_a_file_is_split_and_nothing_is_lost_within_the_cap(tmp_path: Path) -> None:
    log = tmp_path / "one.log"
    writer = RotatingLog(log, max_bytes=100, keep=5)
    writer.write(b"y" * 250 + b"\n")
    writer.close()
    assert sorted(log_files(log).values()) == [51, 100, 100]


def test_a_restarted_writer_continues_the_size_count_of_the_existing_file(tmp_path: Path) -> None:
    log = tmp_path / "again.log"
    log.write_bytes(b"a" * 90 + b"\n")
    writer = RotatingLog(log, max_bytes=100, keep=1)
    writer.write(b"b" * 20 + b"\n")
    writer.close()
    assert (tmp_path / "again.log.1").read_bytes() == b"a" * 90 + b"\n"
    assert log.read_bytes() == b"b" * 20 + b"\n"


def test_a_started_process_that_prints_megabytes_leaves_at_most_the_capped_logs(reach_home: Path) -> None:
    script = "import sys\nfor i in range(60000): sys.stdout.write(f'{i:08d} ' + 'z' * 40 + '\\n')\nprint('the end')"
    record = processes.start("chatty", [sys.executable, "-c", script], 0, log_max_bytes=256 * 2**10, log_keep=2)
    log = Path(record.log)
    deadline = time.monotonic() + 60
    while (processes.is_alive(record.pid) or b"the end" not in log.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    sizes = log_files(log)
    assert set(sizes) == {"chatty.log", "chatty.log.1", "chatty.log.2"}, sizes  # 3 MB printed
    assert all(size <= 256 * 2**10 for size in sizes.values())
    assert log.read_bytes().endswith(b"the end\n")
