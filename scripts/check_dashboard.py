"""Look at the Prefect dashboard the way a person would: headless Chromium screenshots and DOM checks.

Run after ``reach up`` (and a pipeline run, so there is something to see):

    .venv/bin/python scripts/check_dashboard.py [--url http://127.0.0.1:4200] [--out out/dashboard]

It loads the deployments page and the flow-runs page in Debian's ``chromium`` (install it with
``apt-get install -y chromium``), saves a PNG of each, and fails unless the rendered pages name the
three reach deployments, at least one reach flow run, and the evaluation and gate artifacts. Loopback only; the
browser runs with networking features that would call out switched off.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1400,900",
    "--virtual-time-budget=15000",
]
PAGES = {
    "deployments": ["reach-pipeline", "reach-retrain", "reach-redeploy"],
    "runs": ["reach-"],
    "artifacts": ["evaluation-table", "gate-verdict"],
}


def chromium(args: list[str], profile: str) -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        sys.exit("chromium is not installed: apt-get install -y --no-install-recommends chromium")
    result = subprocess.run(
        [binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120
    )
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:4200")
    parser.add_argument("--out", type=Path, default=Path("out/dashboard"))
    args = parser.parse_args()
    if not args.url.startswith(("http://127.0.0.1", "http://localhost")):
        sys.exit("the dashboard check only visits loopback addresses")
    args.out.mkdir(parents=True, exist_ok=True)
    missing = []
    for page, names in PAGES.items():
        with tempfile.TemporaryDirectory() as profile:
            png = args.out / f"{page}.png"
            chromium([f"--screenshot={png}", f"{args.url}/{page}"], profile)
            dom = chromium(["--dump-dom", f"{args.url}/{page}"], profile)
        found = [n for n in names if n in dom]
        print(f"{page}: screenshot {png} ({png.stat().st_size if png.exists() else 0} bytes); shows {found}")
        missing += [f"{page}: {n}" for n in names if n not in dom]
    if missing:
        sys.exit(f"the dashboard does not show: {missing}")


if __name__ == "__main__":
    main()
