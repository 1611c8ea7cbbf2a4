"""When may an evaluation replace the report stored in a policy artefact (the one ``reach package`` gates on)?

:func:`store_refusal` answers with the reason not to, or ``None``. The stored report is the
policy's certificate: the gate reads it when the artefact is packaged. So a new report replaces it
only when it judges the same thing at least as thoroughly: the raw policy (no planning), on the
artefact's own cluster and application (the same file contents, not only the same names), with at
least the stored report's families, seeds and episodes. A one-episode smoke run, a run on another
workload, or a planning run therefore never overwrites it (a thorough raw run does replace a planning
report stored by a pipeline run with ``plan_k``; the bento then serves raw, as its report says).
Used by ``reach evaluate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _thoroughness(settings: dict[str, Any]) -> tuple[set[str], int, int]:
    return (
        set(settings.get("families") or ["steady"]),
        len(settings.get("seeds") or []),
        int(settings.get("episodes") or 0),
    )


def store_refusal(
    model_dir: str | Path, scenario_dir: str | Path, workload_files: list[Path], settings: dict[str, Any]
) -> str | None:
    """Why this evaluation (``settings``: the report's seeds, episodes, families, planning) must not be stored, or None."""
    from bento.artefact import joined_sha256, read_metadata, scenario_sources, source_file

    metadata = read_metadata(model_dir)
    if settings.get("plan_k"):
        return (
            f"it evaluates planning (plan_k={settings['plan_k']}); package it with `reach package --report`, "
            "which builds a bento that serves that planning"
        )
    if joined_sha256(scenario_sources(scenario_dir)) != joined_sha256(metadata.scenario_files):
        return f"it is for the cluster in {scenario_dir}, not the artefact's own ({metadata.scenario_name})"
    if len(workload_files) != 1 or source_file(workload_files[0]).sha256 != metadata.workload_file.sha256:
        names = ", ".join(str(w) for w in workload_files)
        return f"it is for workload {names}, not the artefact's own ({metadata.workload_name})"
    if metadata.evaluation_report is None:
        return None
    stored_families, stored_seeds, stored_episodes = _thoroughness(metadata.evaluation_report.get("settings", {}))
    families, seeds, episodes = _thoroughness(settings)
    if not (families >= stored_families and seeds >= stored_seeds and episodes >= stored_episodes):
        return (
            f"the stored report is more thorough ({stored_seeds} seeds x {stored_episodes} episodes, families "
            f"{sorted(stored_families)}) than this one ({seeds} x {episodes}, {sorted(families)}); "
            "evaluate at least as many to replace it"
        )
    return None
