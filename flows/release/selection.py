"""Which bento may serve which cluster: eligibility by (scenario, workload), and the choice among gated bentos.

A bento's labels say what it can serve (written by :func:`release_labels` when it is packaged):

- a **specific** bento (``scenario=7-21``, ``workload=chain``) serves exactly the scenario and the
  workload it was trained for;
- a **general** bento (``scenario=*``) serves any scenario whose node count and pod slots are within
  its declared limits (labels ``max_nodes`` and ``max_slots``, from the padded layout of its policy
  card), and any workload when labelled ``workload=*`` (else only the one named). Packaging labels a
  policy general (``scenario=*``, ``workload=*``: both become serve-time arguments) when its model
  says so (model label ``scenario=*``) or its card's layout declares limits (``max_nodes > 0``:
  observation version 4, one artefact for every cluster within them).

Among the eligible gated bentos, those whose policy was trained (fine-tuned, or adopted and gated)
on exactly this cluster come first — a specific bento of it, or a general one whose
``trained_scenario``/``trained_workload`` are it — then general bentos trained elsewhere; the
newest wins within each group (the gate already compared each with the incumbent of its cluster).
A general bento is started with the served cluster's files as its serve-time arguments
(:func:`serve_arguments`: ``bentoml serve … --arg scenario=DIR --arg workload=FILE``).
:class:`Cluster` is the target: names as the labels spell them, the sizes the limits are
checked against, and the hashes of its files, which tell two clusters of the same names apart
(the endpoint file records them: :meth:`flows.release.serving.Endpoint.serves`). Used by
:mod:`.packaging`, :mod:`.redeploy`, ``reach deploy``/``reach serve``, the pipeline's incumbent
lookup and the demo's ``auto`` policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ANY = "*"


class NotServable(ValueError):
    """The bento cannot serve the cluster asked for (another scenario or workload, or beyond its limits)."""


@dataclass(frozen=True)
class Cluster:
    """The cluster a policy is deployed for: scenario and workload names, its size, and what its files hold."""

    scenario: str
    workload: str
    node_count: int | None = None  # None: the scenario's files are unknown here (general bentos not eligible)
    slot_count: int | None = None
    scenario_dir: str = ""  # absolute paths, for a general bento's serve-time arguments ("" when unknown)
    workload_file: str = ""
    scenario_sha256: str = ""  # of nodes.json + services.json: a folder of the same name may hold another cluster
    workload_sha256: str = ""  # of the call-pattern file's bytes ("" when unknown): so may a workload of that name

    def __str__(self) -> str:
        return f"{self.scenario} / {self.workload}"


def cluster_of(scenario: str, workload: str, strict: bool = True) -> Cluster:
    """The cluster of a scenario and workload, each a name under data/ or a path; sizes from the scenario files.

    ``strict`` (deploying): both must exist (:class:`ceenv.validation.ScenarioError` names the known ones).
    Not strict (looking up an incumbent by the names a policy card records): an unknown scenario or
    workload is kept as a name, and the scenario's size stays unknown.
    """
    from pathlib import Path

    from ceenv.layout import layout_from_scenario
    from ceenv.scenario import load_scenario
    from ceenv.validation import ScenarioError
    from ceenv.workload import workload_name
    from flows.local.paths import resolve_scenario, resolve_workload

    try:
        scenario_dir = resolve_scenario(scenario)
    except ScenarioError:
        if strict:
            raise
        return Cluster(Path(scenario).name, workload_name(Path(workload)))
    try:
        workload_file = resolve_workload(workload, scenario_dir)
    except ScenarioError:
        if strict:
            raise
        workload_file = Path(workload)
    import hashlib

    from bento.artefact import joined_sha256, scenario_sources

    layout = layout_from_scenario(load_scenario(scenario_dir))
    known_workload = workload_file.is_file()
    return Cluster(
        scenario_dir.name,
        workload_name(workload_file),
        layout.node_count,
        layout.slot_count,
        str(scenario_dir.resolve()),
        str(workload_file.resolve()) if known_workload else "",
        joined_sha256(scenario_sources(scenario_dir)),
        # as bento.artefact.source_file hashes it for a policy card
        hashlib.sha256(workload_file.read_bytes()).hexdigest() if known_workload else "",
    )


def _limit(labels: Mapping[str, str], key: str) -> int | None:
    try:
        return int(labels[key])
    except (KeyError, ValueError):
        return None


def why_not(labels: Mapping[str, str], cluster: Cluster) -> str | None:
    """None when a bento with these labels can serve ``cluster``; else the reason, in one line."""
    scenario, workload = labels.get("scenario", ""), labels.get("workload", "")
    if workload not in (ANY, cluster.workload):
        return f"trained for workload {workload or '(unlabelled)'}, not {cluster.workload}"
    if scenario == ANY:
        max_nodes, max_slots = _limit(labels, "max_nodes"), _limit(labels, "max_slots")
        if max_nodes is None or max_slots is None:
            return "labelled scenario=* but without max_nodes/max_slots limits; re-package it"
        if cluster.node_count is None or cluster.slot_count is None:
            return f"the size of scenario {cluster.scenario} is unknown here, so its limits cannot be checked"
        if cluster.node_count > max_nodes or cluster.slot_count > max_slots:
            return (
                f"scenario {cluster.scenario} has {cluster.node_count} nodes and {cluster.slot_count} pod slots, "
                f"beyond the policy's limits ({max_nodes} nodes, {max_slots} slots)"
            )
        return None
    if scenario != cluster.scenario:
        return f"trained for scenario {scenario or '(unlabelled)'}, not {cluster.scenario}"
    trained_files = labels.get("scenario_sha256", "")
    if trained_files and cluster.scenario_sha256 and trained_files != cluster.scenario_sha256:
        return (
            f"trained on other files named {scenario}: {cluster.scenario_dir or 'these'} nodes.json and services.json "
            "differ from the ones it was trained on"
        )
    return None


def check_servable(tag: str, labels: Mapping[str, str], cluster: Cluster) -> None:
    """Raise :class:`NotServable` naming the bento, the cluster and the fix when the bento cannot serve it.

    A bento its gate refused serves nothing, even when asked for by name (``--bento``).
    """
    if labels.get("gate") == "refused":
        raise NotServable(
            f"bento {tag} was refused by its evaluation gate, so it may not serve; package a policy that passes "
            f"(`reach package`), or deploy the newest gated bento (`reach deploy --scenario {cluster.scenario} "
            f"--workload {cluster.workload}`)"
        )
    reason = why_not(labels, cluster)
    if reason is None:
        return
    own = (labels.get("scenario", ""), labels.get("workload", ""))
    switch = (
        f", or serve the cluster it was trained for (--scenario {own[0]} --workload {own[1]})"
        if all(own) and ANY not in own
        else ""
    )
    raise NotServable(
        f"bento {tag} cannot serve {cluster}: {reason}; deploy a gated bento for this cluster "
        f"(`reach deploy --scenario {cluster.scenario} --workload {cluster.workload}` chooses one){switch}"
    )


def trained_for(labels: Mapping[str, str], cluster: Cluster) -> bool:
    """Whether the bento's policy was trained (or fine-tuned, or adopted and gated) on exactly this cluster."""
    scenario = labels.get("trained_scenario") or labels.get("scenario")
    workload = labels.get("trained_workload") or labels.get("workload")
    return (scenario, workload) == (cluster.scenario, cluster.workload)


def ranked(bentos: Iterable[tuple[str, Mapping[str, str]]], cluster: Cluster) -> list[str]:
    """The tags eligible for ``cluster``: those trained on it first, then general ones trained elsewhere;
    each group in the given order (newest first when ``bentos`` is)."""
    eligible = [(tag, labels) for tag, labels in bentos if why_not(labels, cluster) is None]
    own = [tag for tag, labels in eligible if trained_for(labels, cluster)]
    return own + [tag for tag, labels in eligible if not trained_for(labels, cluster)]


def choose(bentos: Iterable[tuple[str, Mapping[str, str]]], cluster: Cluster, exclude: str | None = None) -> str | None:
    """The first of :func:`ranked` other than ``exclude``, or None."""
    return next((tag for tag in ranked(bentos, cluster) if tag != exclude), None)


def serve_arguments(tag: str, labels: Mapping[str, str], cluster: Cluster) -> dict[str, str]:
    """The bento arguments that make a bento serve ``cluster``: none for a specific bento (it serves its own);
    ``scenario`` (directory) and ``workload`` (call-pattern file) for a general one (``bentoml serve --arg``)."""
    if labels.get("scenario") != ANY:
        return {}
    if not cluster.scenario_dir or not cluster.workload_file:
        raise NotServable(f"bento {tag} is general but the files of {cluster} are unknown here; name them by path")
    return {"scenario": cluster.scenario_dir, "workload": cluster.workload_file}


def is_general(model_labels: Mapping[str, str], card: Mapping[str, Any]) -> bool:
    """A policy is general when its model is labelled ``scenario=*`` or its card's layout declares limits."""
    layout = card.get("layout") or {}
    return model_labels.get("scenario") == ANY or int(layout.get("max_nodes", 0) or 0) > 0


def release_labels(
    passed: bool, model_tag: str, model_labels: Mapping[str, str], card: Mapping[str, Any]
) -> dict[str, str]:
    """The labels of a bento: gate verdict, model, and what it can serve (see the module docstring)."""
    labels = {"gate": "passed" if passed else "refused", "model": model_tag}
    if not is_general(model_labels, card):
        labels.update(scenario=model_labels.get("scenario", ""), workload=model_labels.get("workload", ""))
        trained_files = str((card.get("scenario") or {}).get("sha256", ""))
        if trained_files:  # a specific policy serves exactly these files, not any folder of that name
            labels["scenario_sha256"] = trained_files
        return labels
    layout = card.get("layout") or {}
    max_nodes = int(model_labels.get("max_nodes") or layout.get("max_nodes") or 0)
    max_slots = int(model_labels.get("max_slots") or layout.get("max_slots") or 0)
    if max_nodes <= 0 or max_slots <= 0:
        raise ValueError(
            f"model {model_tag} is general (scenario=*) but declares no max_nodes/max_slots limits in its labels "
            "or its card's layout; save it with those limits"
        )
    labels.update(
        scenario=ANY,
        workload=ANY,
        max_nodes=str(max_nodes),
        max_slots=str(max_slots),
        trained_scenario=str((card.get("scenario") or {}).get("name", "")),
        trained_workload=str((card.get("workload") or {}).get("name", "")),
    )
    return labels
