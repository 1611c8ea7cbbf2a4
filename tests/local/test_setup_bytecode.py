"""scripts/setup.sh leaves the venv byte-compiled: uv installs without bytecode, and with
PYTHONDONTWRITEBYTECODE set Python never caches it, so every process would recompile what it imports."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

# Packages whose import dominates a process's start (great_expectations 16 s without bytecode, 6 s with).
HEAVY = ("torch", "prefect", "great_expectations", "sb3_contrib", "bentoml")


def _in_repo_venv() -> bool:
    return Path(sys.prefix).resolve() == (Path(__file__).resolve().parents[2] / ".venv").resolve()


@pytest.mark.skipif(not _in_repo_venv(), reason="checks the venv scripts/setup.sh makes (.venv of this checkout)")
@pytest.mark.parametrize("package", HEAVY)
def test_setup_left_the_heavy_packages_compiled(package: str) -> None:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.origin is not None, f"{package} is not installed in {sys.prefix}"
    cached = Path(importlib.util.cache_from_source(spec.origin))
    assert cached.is_file(), (
        f"{package} has no bytecode ({cached} is missing): every import recompiles it; "
        "run scripts/setup.sh (it byte-compiles the venv once per install)"
    )
    # A timestamp pyc is used only when its header records the source's mtime and size (PEP 552).
    header, source = cached.read_bytes()[:16], os.stat(spec.origin)
    flags = int.from_bytes(header[4:8], "little")
    assert header[:4] == importlib.util.MAGIC_NUMBER, f"{cached} was compiled by another Python"
    if flags == 0:
        recorded = int.from_bytes(header[8:12], "little"), int.from_bytes(header[12:16], "little")
        assert recorded == (int(source.st_mtime) & 0xFFFFFFFF, source.st_size & 0xFFFFFFFF), f"{cached} is stale"


def test_setup_records_the_compiled_install() -> None:
    stamp = Path(__file__).resolve().parents[2] / ".venv" / ".reach-bytecode"
    if not _in_repo_venv():
        pytest.skip("checks the venv scripts/setup.sh makes (.venv of this checkout)")
    installed = stamp.with_name(".reach-installed")
    assert stamp.is_file(), f"{stamp} is missing: scripts/setup.sh did not byte-compile this venv"
    assert stamp.read_text() == installed.read_text(), "the venv was reinstalled after it was last byte-compiled"
