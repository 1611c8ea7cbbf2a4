"""Support for the image smoke tests: build (or reuse) the local base, wait for a server in a container.

The smoke tests build the real images with buildah (chroot isolation, no daemon), reusing buildah's
layer cache, so a warm run rebuilds only what changed. Without buildah and mmdebstrap they are
skipped with the install command, unless ``REACH_REQUIRE_IMAGES`` is set (CI, ``make test``), in
which case they fail. ``REACH_IMAGES_BASE`` names a registry base image instead of the local one.
"""

from __future__ import annotations

import os
import shutil
import time

import httpx
import pytest

from flows.release.images import INSTALL_SCRIPT, LOCAL_BASE_IMAGE, RunningContainer, build_base_image


def require_image_tools() -> None:
    missing = [tool for tool in ("buildah", "mmdebstrap") if shutil.which(tool) is None]
    if not missing:
        return
    why = f"{missing} not installed: run {INSTALL_SCRIPT}"
    if os.environ.get("REACH_REQUIRE_IMAGES"):
        raise RuntimeError(f"REACH_REQUIRE_IMAGES is set but {why}")
    pytest.skip(why)


def base_image() -> str:
    """The base the smoke tests build on: ``$REACH_IMAGES_BASE``, else the local base (built once)."""
    require_image_tools()
    chosen = os.environ.get("REACH_IMAGES_BASE")
    if chosen:
        return chosen
    build_base_image()
    return LOCAL_BASE_IMAGE


def wait_ready(running: RunningContainer, url: str, timeout_s: float = 180.0) -> None:
    """Return once ``url`` answers 200; fail with the container's output when it exits or times out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise AssertionError(f"the container exited with {running.process.returncode}:\n{running.output()[-4000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 in {timeout_s} s:\n{running.output()[-4000:]}")
