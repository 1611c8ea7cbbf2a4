"""The arms of REACH's experiments and what one seeded trial of them measured, kept as JSON.

Three arms run from the same start with the same event and world seed: ``default-scheduler``
(no migrator), ``learned`` (the newest gated bento that can serve the scenario and workload,
else the shipped general policy ``data/policies/general-v4`` gated with the quickstart rules — the
default gate's 0.9 of the best-known reduction refuses it (0.925 on its validation cells is not
reached on every cell) — and packaged: :func:`learned_policy`) and ``greedy`` (the twin's greedy stand-in,
:mod:`flows.loop.standin`). An :class:`ArmResult` holds the world's numbers after the event and
the arm's series; a :class:`Trial` the three arms of one seed, written by :func:`write_trial` as
``<experiment>-<scenario>-<workload>-s<seed>.json`` and read back by :func:`read_trials`, so that
cells run in separate chunks make one table (:mod:`flows.loop.cells`). Used by
:mod:`flows.loop.experiments` and ``benchmarks/bench_experiments.py``.

Protocol versions (``Trial.protocol``; seeds of different versions are never pooled into one cell):

1. every trial recorded before the version was kept (a file without ``protocol``): the
   measurement of an arm with a migrator could run past ``duration_s`` (a migration under way
   delayed the end's read), every arm's world and Prometheus series followed the previous arm's
   (its failed node or surge in the first rate windows), the arms always ran default, learned,
   greedy, and the QoS threshold, world rate and surge multiplier were not recorded.
2. the end is read exactly ``duration_s`` after the start in every arm (``ArmResult.window_s``),
   every arm gets a fresh world whose series carry its own ``run_id`` (the queries select it), the
   arms' order turns with the seed (``Trial.arm_order``), and the settings above are recorded.
3. protocol 2's measurement with a balanced order (:func:`flows.loop.experiments.arm_order`): seeds
   0 … 5 run the six orders of the three arms once each, so over six seeds every arm runs in every
   position twice and follows each other arm twice. Protocol 2's rotation ran each arm after the
   same arm every time (learned after default, greedy after learned, default after greedy), and an
   arm's cluster is what the arm before it left, so that inheritance was tied to the arm.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_args

from flows.local.paths import repo_root
from flows.loop.settings import DemoSettings, Experiment

# REACH's published latency reductions on its testbed, in the order the paper lists its three apps
# (MODEL.md §5 lists the call patterns in this order).
REACH_PUBLISHED_PCT = {"aggregator_parallel": 7.9, "aggregator_sequential": 10.0, "chain": 8.0}
WORKLOADS = tuple(REACH_PUBLISHED_PCT)
DEFAULT_ARM, LEARNED_ARM, GREEDY_ARM = "default-scheduler", "learned", "greedy"
ARMS = (DEFAULT_ARM, LEARNED_ARM, GREEDY_ARM)
GENERAL_POLICY = repo_root() / "data" / "policies" / "general-v4"
GATE_RULES = repo_root() / "data" / "gate" / "quickstart.json"  # as `reach package --rules quickstart` (docs/demo.md)
LEGACY_PROTOCOL = 1  # a trial file without "protocol" (see the module docstring)
PROTOCOL = 3  # what flows.loop.experiments records now
# the name trial_path gives, and only it: `reach demo` writes demo-<scenario>-<workload>-stages.json to the same folder
TRIAL_NAME = re.compile(rf"({'|'.join(re.escape(e) for e in get_args(Experiment) if e != 'none')})-.+-s-?\d+\.json")


@dataclass(frozen=True)
class ArmResult:
    """One arm of one trial, as the world measured it from the event to the end of the run."""

    arm: str
    policy: str
    mean_ms: float
    p95_ms: float | None
    moves: int
    recovery_s: float | None  # None: not recovered within the run (stats.recovery_time_s)
    requests: float
    over_qos: float  # requests that missed the QoS threshold: slower than it, or failed (stats.window_numbers)
    series: list[tuple[float, float]] = field(
        default_factory=list
    )  # (s since the start, successful requests' 5 s mean)
    events: list[tuple[float, str, str, str, str]] = field(default_factory=list)  # (s, event, pod, from, to)
    calibration: list[dict[str, float | str]] = field(default_factory=list)
    failed: float | None = None  # requests that failed (None: a trial recorded before failures were counted)
    failed_series: list[tuple[float, float]] = field(default_factory=list)  # (s since the start, 5 s share failed)
    moves_made: list[dict[str, Any]] = field(default_factory=list)  # pod, target, started_s, done_s, predicted_gain_ms
    # the successful requests' mean after the event (ms; None: none succeeded, or a trial recorded before it was kept)
    ok_mean_ms: float | None = None
    event_s: float | None = None  # when the event happened, s since the start (None: protocol 1, event_at_s)
    window_s: float | None = None  # s between the histogram's reads at the event and at the end (None: protocol 1)


@dataclass(frozen=True)
class Trial:
    """The three arms of one seed of one cell (experiment × workload)."""

    experiment: str
    scenario: str
    workload: str
    seed: int
    event_at_s: float
    duration_s: float
    start: dict[str, list[str]]  # the default scheduler's placement, re-applied in the other arms
    failed_nodes: list[str]
    arms: list[ArmResult]
    # How soon the cluster declared a failed node NotReady (LocalCluster.failure_detection: grace period
    # and lease, s); None in a trial recorded before it was kept.
    failure_detection: dict[str, float] | None = None
    protocol: int = LEGACY_PROTOCOL  # the measurement's version (module docstring); a file without it is 1
    qos_threshold_ms: float | None = None  # the threshold of over_qos (None: protocol 1, not recorded)
    world_rps: float | None = None  # the world's rate multiplier before any surge (None: not recorded)
    surge_multiplier: float | None = None  # surge: the rate's multiplier at the event (None: not recorded)
    arm_order: list[str] = field(default_factory=list)  # the order the arms ran in ([]: protocol 1, ARMS' order)

    def protocol_key(self) -> tuple[Any, ...]:
        """What must be equal for seeds to be pooled into one cell (:func:`flows.loop.cells.cells`): the measurement
        and the policy the learned arm served (a cell run in chunks under ``--policy auto`` may meet a newer bento)."""
        detection = tuple(sorted((self.failure_detection or {}).items()))
        return (self.protocol, self.scenario, self.duration_s, self.event_at_s, self.qos_threshold_ms,
                self.world_rps, self.surge_multiplier, detection, self.learned_policy())  # fmt: skip

    def learned_policy(self) -> str | None:
        """The policy the learned arm served (its bento tag), or None when the trial has no learned arm."""
        return next((a.policy for a in self.arms if a.arm == LEARNED_ARM), None)

    def protocol_text(self) -> str:
        def num(value: float | None, unit: str = "") -> str:
            return "unrecorded" if value is None else f"{value:g}{unit}"

        detection = self.failure_detection
        return (
            f"protocol {self.protocol}, scenario {self.scenario}, duration {self.duration_s:g} s, event at "
            f"{self.event_at_s:g} s, QoS {num(self.qos_threshold_ms, ' ms')}, world rps x{num(self.world_rps)}, "
            f"surge x{num(self.surge_multiplier)}, failure detection "
            + ("unrecorded" if detection is None else " ".join(f"{k} {v:g}" for k, v in sorted(detection.items())))
            + (f", learned policy {self.learned_policy()}" if self.learned_policy() else "")
        )

    def arm(self, name: str) -> ArmResult:
        for result in self.arms:
            if result.arm == name:
                return result
        raise KeyError(f"trial {self.experiment}/{self.workload}/seed {self.seed} has no arm {name!r}")


def trial_path(out: Path, experiment: str, scenario: str, workload: str, seed: int) -> Path:
    return out / f"{experiment}-{scenario}-{workload}-s{seed}.json"


def write_trial(trial: Trial, out: Path) -> Path:
    """Write the trial as JSON (replacing an earlier trial of the same cell and seed)."""
    path = trial_path(out, trial.experiment, trial.scenario, trial.workload, trial.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(trial), indent=1))
    tmp.replace(path)
    return path


def trial_from_json(data: dict[str, Any]) -> Trial:
    arms = []
    for a in data["arms"]:
        arms.append(ArmResult(**{**a, "series": [tuple(p) for p in a["series"]],
                                 "events": [tuple(e) for e in a["events"]],
                                 "failed_series": [tuple(p) for p in a.get("failed_series", [])]}))  # fmt: skip
    return Trial(**{**data, "arms": arms})


def read_trials(folder: Path) -> list[Trial]:
    """Every trial JSON in ``folder`` (named as :func:`trial_path` names them; sorted by experiment, workload, seed).

    Other files there (``reach demo``'s summaries share the default folder ``out/demo``) are not trials."""
    trials = []
    for path in sorted(p for p in folder.glob("*.json") if TRIAL_NAME.fullmatch(p.name)):
        try:
            trials.append(trial_from_json(json.loads(path.read_text())))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: not a trial of the experiments ({exc}); remove it or rerun its cell") from exc
    return sorted(trials, key=lambda t: (t.experiment, t.workload, t.seed))


def package_general_policy() -> str:
    """Gate the shipped general policy with the quickstart rules and package it; its bento tag."""
    from flows.release.packaging import release_artefact

    verdict, bento = release_artefact(GENERAL_POLICY, GATE_RULES)
    if bento is None:
        raise RuntimeError(
            f"the gate refused {GENERAL_POLICY} ({verdict.summary()}): the learned arm has no policy; "
            "package one with `reach package --artefact DIR` or pass a bento tag as the policy"
        )
    return bento


def learned_policy(settings: DemoSettings, workload: str) -> tuple[str, str]:
    """(URL, bento tag) of the learned arm, served blue/green: the tag asked for, else the newest gated
    bento that can serve the scenario and workload, else the shipped general policy, gated and packaged."""
    from flows.loop.policy import gated_bento_for, serve_bento
    from flows.loop.settings import STANDIN_LABEL

    if settings.policy == STANDIN_LABEL:
        raise ValueError("the learned arm needs a learned policy: pass auto or a bento tag, not greedy-standin")
    tag = settings.policy if settings.policy != "auto" else gated_bento_for(settings.scenario, workload)
    return serve_bento(settings, workload, tag or package_general_policy())
