"""The wall time of ``make run`` (REACH's three stages on the world), run after run, and what each run measured.

Runs ``make run`` ``--runs`` times (default 2: the first after whatever state the machine is in, the
next with every cache warm), each followed by ``reach down`` under the heavy-job lock. ``make run``
takes the lock itself, so this script must not run under it. Each run records its summary
(``reach demo --record``); the table gives the wall time of ``make run`` (which includes waiting for
the lock when another job holds it), ``reach demo``'s own total, every stage, the gate's verdict and
the world's mean and p95 before and after, with the twin beside them. Writes
``benchmarks/results/demo/run.md``.

    .venv/bin/python benchmarks/bench_demo.py [--runs 2] [--make-args "-o setup VENV=/path/to/venv/bin"]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "demo"
STAGES = ("up", "poor start", "1 profile", "2 train", "3 deploy", "3 act")


def one_run(make_args: list[str], record: Path, venv_bin: Path) -> tuple[float, int, dict[str, Any] | None]:
    """``make run`` once, then ``reach down`` under the lock; (wall s, exit code, the recorded summary)."""
    argv = ["make", *make_args, "run", f"REACH_DEMO_ARGS=--record {record}"]
    print("$", shlex.join(argv), flush=True)
    started = time.perf_counter()
    code = subprocess.run(argv, cwd=ROOT, check=False).returncode
    wall_s = time.perf_counter() - started
    subprocess.run(["flock", "/tmp/reach-heavy.lock", str(venv_bin / "reach"), "down"], cwd=ROOT, check=False)
    summary = record.with_suffix(".json")
    return wall_s, code, json.loads(summary.read_text()) if summary.is_file() else None


def pair(values: Any) -> str:
    if not values or values[0] is None or values[1] is None:
        return "-"
    return f"{values[0]:.1f} → {values[1]:.1f}"


def row(index: int, wall_s: float, code: int, result: dict[str, Any] | None) -> str:
    if result is None:
        return f"| {index} | {wall_s:.0f} | {code} | no summary recorded |" + " |" * (len(STAGES) + 6)
    stages = result.get("stage_seconds", {})
    summary = result["summary"]
    pipeline = result.get("pipeline") or {}
    cells = [
        str(index), f"{wall_s:.0f}", str(code), f"{result['total_s']:.0f}",
        *(f"{stages[s]:.0f}" if s in stages else "-" for s in STAGES),
        str(pipeline.get("gate", "skipped")), summary["policy"],
        pair((summary["before_ms"], summary["after_ms"])), pair(result.get("p95_ms")), pair(result.get("twin_ms")),
        str(summary["moves"]),
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def table(rows: list[str], command: str) -> str:
    head = ("| run | `make run` wall s | exit | `reach demo` total s | " + " | ".join(f"{s} s" for s in STAGES)
            + " | gate (default rules) | policy | world mean ms | world p95 ms | twin ms | moves |")  # fmt: skip
    rule = "|" + "---|" * (head.count("|") - 1)
    return "\n".join([
        "# `make run`: REACH's three stages on the world, wall time per run", "",
        f"Command: `{command}` (2-core machine; Kubernetes build and virtual environment cached). "
        "`make run` wall includes waiting for the shared heavy-job lock; `reach demo` total starts once it "
        "holds it. Latencies: the world's emulated requests read from Prometheus (mean and p95, before → "
        "after), the twin's formula on the same placements.", "", head, rule, *rows, "",
    ])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--make-args", default="", help="extra make arguments, e.g. '-o setup VENV=/x/.venv/bin'")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    make_args = shlex.split(args.make_args)
    venv_bin = next((Path(a.split("=", 1)[1]) for a in make_args if a.startswith("VENV=")), ROOT / ".venv" / "bin")
    command = shlex.join(["python", "benchmarks/bench_demo.py", "--runs", str(args.runs)]
                         + (["--make-args", args.make_args] if args.make_args else []))  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        for index in range(1, args.runs + 1):
            wall_s, code, result = one_run(make_args, Path(tmp) / f"run{index}.md", venv_bin)
            rows.append(row(index, wall_s, code, result))
            print(rows[-1], flush=True)
            (args.out / "run.md").write_text(table(rows, command))  # after every run: a long queue may stop it
    print(f"wrote {args.out / 'run.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
