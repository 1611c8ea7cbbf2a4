"""Image builds: cold and warm build times and the sizes of the base, migrator and policy service images.

Protocol: the policy image is built from a bento of a briefly trained 7-21 policy (256 steps, a
private BentoML home under a temporary folder). "Cold" removes the migrator and policy images and
every cached intermediate layer (``buildah rmi --prune``) first, so every step runs (the host's pip
cache stays warm, as on a CI machine that keeps its caches); with ``--cold-base`` the local Debian
base is made again by mmdebstrap too. "Warm" builds the same again: every step comes from buildah's
layer cache. Writes ``benchmarks/results/images.md``. Run it under the heavy-job lock:

    flock /tmp/reach-heavy.lock .venv/bin/python benchmarks/bench_images.py [--cold-base]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "images.md"


def make_bento(home: Path) -> str:
    """A bento of a briefly trained 7-21 policy in the BentoML home ``home``; returns its tag."""
    os.environ["BENTOML_HOME"] = str(home)
    from bento.policy import GateVerdict
    from bento.store import save_policy
    from tests.bento.conftest import SCENARIO_DIR, WORKLOAD_FILE, train_briefly

    artefact = train_briefly(SCENARIO_DIR, WORKLOAD_FILE, home / "artefact" / "policy-7-21")
    model = save_policy(artefact, gate=GateVerdict(passed=True, reason="image benchmark"))
    command = [str(Path(sys.executable).with_name("bentoml")), "build", "-f", "bento/bentofile.yaml"]
    command += ["--arg", f"model_tag={model.tag}", "-o", "tag", "."]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")


def forget(*tags: str) -> None:
    """Remove the images (every tag of each) and all cached intermediate layers."""
    for tag in tags:
        found = subprocess.run(
            ["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", tag],
            capture_output=True,
            text=True,
        )
        if found.returncode == 0:
            subprocess.run(["buildah", "rmi", "-f", found.stdout.strip()], capture_output=True, text=True, check=True)
    subprocess.run(["buildah", "rmi", "--prune"], capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold-base", action="store_true", help="also make the Debian base again (mmdebstrap)")
    parser.add_argument("--note", default="", help="how the machine was loaded during the run, for the table")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # tests.bento.conftest makes the briefly trained policy
    from flows.release import images

    rows: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        bento = make_bento(Path(tmp))
        base = images.build_base_image(rebuild=args.cold_base)
        rows.append((base.tag, "cold" if args.cold_base else "reused", base.build_s, base.size_mb))
        wheel = images.local_torch_wheel()
        forget(images.MIGRATOR_IMAGE, images.POLICY_SERVICE_IMAGE)
        for state in ("cold", "warm"):
            started = time.monotonic()
            migrator = images.build_migrator_image(images.LOCAL_BASE_IMAGE)
            rows.append((migrator.tag, state, time.monotonic() - started, migrator.size_mb))
            started = time.monotonic()
            service = images.build_policy_service_image(bento, images.LOCAL_BASE_IMAGE, torch_wheel=wheel)
            rows.append((service.tag, state, time.monotonic() - started, service.size_mb))
    lines = [
        "# Image builds (buildah, chroot isolation, 2 shared cores)",
        "",
        f"`{' '.join(['benchmarks/bench_images.py', *sys.argv[1:]])}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f"{' — ' + args.note if args.note else ''}. Build time includes staging the context and making the"
        " wheels with the host's pip (its cache warm). Target: migrator ≤ 250 MB.",
        "",
        "| image | build | time (s) | size (MB) |",
        "|---|---|---:|---:|",
        *(f"| `{tag}` | {state} | {seconds:.0f} | {size_mb:.0f} |" for tag, state, seconds, size_mb in rows),
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
