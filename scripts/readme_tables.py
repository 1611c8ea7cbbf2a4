"""Copy the benchmarks' Markdown tables into the README between their markers, or check that they are there.

The README embeds a table file as::

    <!-- bench:benchmarks/results/service/bench.md -->
    (the file's content, copied here)
    <!-- /bench -->

``python scripts/readme_tables.py`` rewrites every such block from its file;
``python scripts/readme_tables.py --check`` changes nothing and exits 1 naming each block that
differs from its file (a figure edited by hand, or a benchmark rerun without updating the README).
The files are written by the benchmark scripts (``benchmarks/bench_tables.py``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- bench:(?P<path>[^ >]+) -->\n)(?P<body>.*?)(<!-- /bench -->)", re.DOTALL)


def blocks(readme: str) -> list[tuple[str, str]]:
    """(file path, embedded text) of every marked block, in order."""
    return [(m.group("path"), m.group("body")) for m in BLOCK.finditer(readme)]


def fill(readme: str, root: Path = ROOT) -> str:
    """The README with every marked block replaced by its file's content (FileNotFoundError names a missing one)."""

    def replace(match: re.Match[str]) -> str:
        content = (root / match.group("path")).read_text()
        return match.group(1) + content + match.group(4)

    return BLOCK.sub(replace, readme)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="Only check; exit 1 when a block differs from its file.")
    args = parser.parse_args()
    readme = args.readme.read_text()
    try:
        filled = fill(readme)
    except FileNotFoundError as err:
        print(f"{args.readme}: a marked table's file is missing: {err.filename}; run its benchmark", file=sys.stderr)
        return 1
    if not args.check:
        args.readme.write_text(filled)
        print(f"{args.readme}: {len(blocks(readme))} tables copied in")
        return 0
    stale = [path for (path, body), (_, new) in zip(blocks(readme), blocks(filled), strict=True) if body != new]
    for path in stale:
        print(
            f"{args.readme}: the table from {path} differs from the file; run scripts/readme_tables.py", file=sys.stderr
        )
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
