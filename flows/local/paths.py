"""Where reach finds its data and writes its outputs; resolves workload names to files.

Used by every CLI command. :func:`repo_root` is the one definition of the source checkout the
packages run from (``data/``, ``deploy/`` and ``bento/bentofile.yaml`` live there).
``REACH_DATA_DIR`` overrides the repository's ``data/`` folder and ``REACH_OUT_DIR`` the default
output folder (``./out``). :func:`write_text_atomic` is how outputs that someone may be reading
(reports, a learning curve that a running job rewrites) are written: whole or not at all.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ceenv.validation import ScenarioError
from ceenv.workload import WORKLOAD_SUFFIX


def repo_root() -> Path:
    """The checkout that holds the packages, ``data/`` and ``deploy/``."""
    return Path(__file__).resolve().parents[2]


def repo_path(value: str | Path) -> Path:
    """``value`` as given when it is absolute or exists here, else relative to the checkout: a repository
    path such as ``data/policies/general-v4`` works from any folder."""
    path = Path(value)
    return path if path.is_absolute() or path.exists() else repo_root() / path


def data_dir() -> Path:
    """The data folder: ``$REACH_DATA_DIR`` or the ``data/`` folder next to the packages."""
    override = os.environ.get("REACH_DATA_DIR")
    return Path(override) if override else repo_root() / "data"


def out_dir() -> Path:
    """The default output folder: ``$REACH_OUT_DIR`` or ``./out``."""
    return Path(os.environ.get("REACH_OUT_DIR", "out"))


def resolve_scenario(value: str) -> Path:
    """A scenario directory, or a scenario name under ``data/scenarios`` (``7-21``)."""
    path = Path(value)
    if path.is_dir():
        return path
    named = data_dir() / "scenarios" / value
    if named.is_dir():
        return named
    known = sorted(p.name for p in (data_dir() / "scenarios").glob("*") if p.is_dir())
    raise ScenarioError(
        value,
        "$",
        "no such scenario directory",
        expected=f"a directory with nodes.json and services.json, or one of {known}",
    )


def resolve_workload(value: str, scenario_dir: Path | None = None) -> Path:
    """A ``*_call_patterns.json`` path, or a workload name looked up beside the scenario, then in ``data/workloads``."""
    path = Path(value)
    if path.is_file():
        return path
    candidates = [
        d / f"{value}{WORKLOAD_SUFFIX}" for d in ([scenario_dir] if scenario_dir else []) + [data_dir() / "workloads"]
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    known = sorted(p.name[: -len(WORKLOAD_SUFFIX)] for p in (data_dir() / "workloads").glob(f"*{WORKLOAD_SUFFIX}"))
    raise ScenarioError(
        value, "$", "no such workload file or name", expected=f"a path to a *{WORKLOAD_SUFFIX} file or one of {known}"
    )


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
