"""What a policy server serves, as one block and one line: the cluster, the planning in force, the gate's planning.

A general bento serves whatever cluster it is given at serve time and may plan or play the raw
policy, so "which model" no longer says what answers. :func:`served_block` is the ``served``
block of ``GET /metadata`` (:meth:`bento.policy.Policy.summary`): the served scenario and
workload (name, SHA-256), the served cluster's node and pod-slot counts, the planning in force
(``plan_*`` values or ``"raw"``), the planning the gate's evaluation played, and warnings
(:data:`PLANNING_DIFFERS` when the two differ: those decisions were never gated).
:func:`describe` turns a ``/metadata`` body into the one line that the service logs at start,
``reach serve`` prints before it starts the server and ``reach status`` prints for the serving
bento. No torch, no BentoML.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bento.planning_settings import PlanningSettings

PLANNING_DIFFERS = "planning differs from the gated evaluation"


def cluster_identity(
    scenario_name: str, scenario_dir: str | Path, workload_name: str, workload_file: str | Path
) -> tuple[dict[str, str], dict[str, str]]:
    """``{"name", "sha256"}`` of a served scenario directory and call-pattern file, hashed as the policy card
    hashes the files it was trained on (:func:`bento.artefact.joined_sha256`)."""
    from bento.artefact import joined_sha256, scenario_sources, source_file

    scenario = {"name": scenario_name, "sha256": joined_sha256(scenario_sources(scenario_dir))}
    return scenario, {"name": workload_name, "sha256": source_file(workload_file).sha256}


def planning_warning(planning: PlanningSettings, gated: PlanningSettings | None) -> str | None:
    """The warning when the server decides otherwise than the evaluation its gate judged; None when alike or ungated."""
    if gated is None or planning.same_decisions(gated):
        return None
    return (
        f"{PLANNING_DIFFERS}: the gate judged {gated.describe()}, this server decides with {planning.describe()}, "
        "so its decisions were not gated; serve the bento as packaged, or evaluate this planning "
        "(reach evaluate --plan-k) and package that report (reach package --report)"
    )


def _planning_value(settings: PlanningSettings | None) -> dict[str, Any] | str | None:
    if settings is None:
        return None
    return settings.to_dict() or "raw"


def served_block(
    scenario: Mapping[str, Any],
    workload: Mapping[str, Any],
    node_count: int,
    slot_count: int,
    planning: PlanningSettings,
    gated: PlanningSettings | None,
    gated_error: str | None = None,
) -> dict[str, Any]:
    """The ``served`` block of ``/metadata``: ``scenario``/``workload`` are ``{"name", "sha256"}`` of the served files.

    ``gated_error`` (:func:`bento.planning_settings.gated_planning_error`): why the stored evaluation report's
    planning cannot be read; the block then carries it as ``gated_planning_error`` and a warning.
    """
    warning = planning_warning(planning, gated)
    warnings = [warning] if warning else []
    block: dict[str, Any] = {
        "scenario": dict(scenario),
        "workload": dict(workload),
        "node_count": node_count,
        "slot_count": slot_count,
        "planning": _planning_value(planning),
        "gated_planning": _planning_value(gated),
        "warnings": warnings,
    }
    if gated_error:
        block["gated_planning_error"] = gated_error
        warnings.append(
            f"the stored evaluation report's planning cannot be read ({gated_error}), so it is unknown what the "
            "gate judged; re-package the policy with a report written by reach evaluate (reach package --report)"
        )
    return block


def _planning_phrase(value: Any) -> str:
    if value == "raw" or not value:
        return "the raw policy"
    try:
        return PlanningSettings.from_recorded(value).describe()
    except ValueError as err:  # a server's /metadata this version cannot read: say so, do not fail the line
        return f"planning {dict(value)} ({err})"


def _gated_phrase(served: Mapping[str, Any]) -> str:
    if served.get("gated_planning_error"):
        return f"on an evaluation report whose planning cannot be read ({served['gated_planning_error']})"
    if served.get("gated_planning") is None:
        return "without a stored evaluation"
    return f"on {_planning_phrase(served.get('gated_planning'))}"


def describe(metadata: Mapping[str, Any], warnings: bool = True) -> str:
    """One line from a ``/metadata`` body: what serves, on which cluster, how it decides, what it was trained on.

    E.g. ``reach-policy:abc serves 19-37 / chain (19 nodes, 37 pod slots) with planning (plan_k=4, …);
    trained on 13-29 / aggregator_sequential; gate passed on the raw policy``, then (``warnings``) each
    warning prefixed by ``WARNING:``.
    """
    served = metadata.get("served")
    gate = metadata.get("gate") or {}
    if not served:  # a bento built before /metadata said what it serves: report its top-level keys as they are
        return (
            f"{metadata.get('model_tag', '?')} (built before /metadata named what it serves): scenario "
            f"{metadata.get('scenario', '?')}, workload {metadata.get('workload', '?')}, planning "
            f"{metadata.get('planning') or 'not reported'}; gate {'passed' if gate.get('passed') else 'refused'}"
        )
    trained = metadata.get("trained") or {}

    def name(block: Mapping[str, Any], key: str) -> str:
        return str((block.get(key) or {}).get("name", "?"))

    line = (
        f"{metadata.get('model_tag', '?')} serves {name(served, 'scenario')} / {name(served, 'workload')} "
        f"({served.get('node_count', '?')} nodes, {served.get('slot_count', '?')} pod slots) with "
        f"{_planning_phrase(served.get('planning'))}; trained on {name(trained, 'scenario')} / "
        f"{name(trained, 'workload')}; gate {'passed' if gate.get('passed') else 'refused'} " + _gated_phrase(served)
    )
    return "; ".join([line, *(f"WARNING: {w}" for w in (served.get("warnings") or []) if warnings)])
