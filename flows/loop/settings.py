"""What ``reach demo`` and the experiments take: :class:`DemoSettings`, and the names of the processes they start.

Pydantic settings with a description per field (every port on 127.0.0.1); with an experiment, the
event's time and the QoS threshold are checked when the settings are built, before any arm runs; used by
:mod:`flows.loop.demo`, :mod:`flows.loop.run`, :mod:`flows.loop.policy`, the experiments and the
``reach demo`` commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flows.local.paths import out_dir
from flows.loop.placement import DEFAULT_REPLICAS
from flows.loop.world.metrics import ISTIO_DURATION_BUCKETS_MS

EXPORTER, PROMETHEUS, STANDIN = "reach-exporter", "reach-prometheus", "reach-policy-standin"
MIGRATOR = "reach-migrator"
STANDIN_LABEL = "greedy-standin"
EVENT_MARGIN_SAMPLES = 2  # latency samples the experiments need before the event and after it (sample_s apart)
Experiment = Literal["none", "node-failure", "surge"]


class DemoSettings(BaseModel):
    """Everything ``reach demo`` and the experiments take; every port is on 127.0.0.1."""

    model_config = ConfigDict(extra="forbid")

    scenario: str = Field("7-21", description="Scenario directory or name under data/scenarios.")
    workload: str = Field(
        "aggregator_sequential", description="Workload the app runs (and the latency source emulates)."
    )
    latency_source: Literal["world", "twin"] = Field(
        "world",
        description="world (the request-level emulation, flows.loop.world_live, measured through Istio-shaped "
        "metrics and Istio's PromQL) or twin (the exporter: the CEEnv formula on the live placement).",
    )
    world_rps: float = Field(
        2.0, gt=0, description="world: multiplies every endpoint's rps (more requests per window)."
    )
    latency_window: str = Field("15s", description="world: the rate window of the latency PromQL.")
    run_id: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="world: the label run_id that the world puts on every mesh series, and that every query of "
        "the run selects, so a run never reads the samples of the world before it (flows.loop.run.prepare_run "
        "draws a fresh one per run of the experiments); empty: no such label.",
    )
    policy: str = Field(
        "auto",
        description="auto (the serving or newest gated bento of the scenario and workload, else train one with the "
        "quickstart pipeline when train_missing, else the greedy stand-in), greedy-standin (the simulator's "
        "greedy move, not the learned policy), or a bento tag.",
    )
    train_missing: bool = Field(
        True,
        description="auto without a gated bento for the scenario and workload: train one with the quickstart "
        "pipeline (reach demo) instead of falling back to the greedy stand-in (reach demo with it off; the "
        "experiments' learned arm never falls back: it packages the shipped general policy, flows.loop.arms).",
    )
    duration_s: float = Field(90.0, gt=0, description="How long the migrator runs (bounded run).")
    interval_s: float = Field(2.0, gt=0, description="Seconds between two migrator cycles.")
    sample_s: float = Field(1.0, gt=0, description="Seconds between two latency samples read from Prometheus.")
    qos_threshold_ms: float = Field(
        100.0,
        gt=0,
        description="Monitoring mode acts only above this latency; with an experiment also the QoS threshold of "
        "its table, so one of Istio's histogram bucket bounds (ISTIO_DURATION_BUCKETS_MS, e.g. 50, 100, 250).",
    )
    pod_cooldown_s: float = Field(60.0, ge=0, description="A moved pod is not moved again within this.")
    noise_pct: float = Field(2.0, ge=0, description="twin: exporter noise, standard deviation in % of the latency.")
    seed: int = Field(0, description="Seed of the start placement and of the world (or the exporter's noise).")
    replicas: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_REPLICAS), description="Pods per service.")
    start: Literal["poor", "scheduler"] = Field(
        "poor",
        description="poor (the worst of many seeded random placements) or scheduler (the default scheduler places "
        "the app, as in a run without rescheduling).",
    )
    experiment: Experiment = Field(
        "none", description="none, node-failure (a hollow node's process killed) or surge (more traffic, scale up)."
    )
    event_at_s: float = Field(
        30.0,
        ge=0,
        description="When the experiment's event happens, seconds into the run; with an experiment at least "
        "2 × sample_s after the start and 2 × sample_s before the end (latency samples on both sides).",
    )
    fail_count: int = Field(1, ge=1, description="node-failure: how many of the busiest cloud/edge nodes fail.")
    fail_nodes: list[str] = Field(
        default_factory=list, description="node-failure: these nodes fail instead of the busiest (same in every arm)."
    )
    surge_multiplier: float = Field(
        2.0,
        gt=0,
        description="surge: the world's request rate is multiplied by this at the event (on top of world_rps).",
    )
    surge_service: str = Field("aggregator", description="surge: the Deployment that is scaled up (an autoscaler).")
    surge_extra: int = Field(2, ge=0, description="surge: replicas added (placed by the default scheduler).")
    out: Path = Field(default_factory=lambda: out_dir() / "demo", description="Output folder (CSV, PNG, JSON).")
    namespace: str = Field("default", description="Namespace of the app.")
    cluster_state: Path | None = Field(None, description="State folder of the local cluster (default: reach's).")
    prometheus_port: int = Field(9090, description="Prometheus on 127.0.0.1.")
    exporter_port: int = Field(9464, description="The latency source (world or exporter) on 127.0.0.1.")
    migrator_metrics_port: int = Field(9465, description="The migrator's own metrics on 127.0.0.1.")
    prefect: bool = Field(True, description="Also start the Prefect server and dashboard (`reach up`).")
    keep_migrating: bool = Field(True, description="After the bounded run, keep a migrator running until reach down.")

    @model_validator(mode="after")
    def _check_experiment(self) -> Self:
        """An experiment's numbers need samples on both sides of the event and a QoS threshold that is a bucket
        bound: refuse other settings here, before any arm runs, rather than after the runs."""
        if self.experiment == "none":
            return self
        margin = EVENT_MARGIN_SAMPLES * self.sample_s
        if self.event_at_s < margin:
            raise ValueError(
                f"event_at_s (--event-at) {self.event_at_s:g} s is too early: the latency is sampled every "
                f"sample_s = {self.sample_s:g} s, and the time to recover compares the samples after the event with "
                f"those before it, so the event must come at least {margin:g} s into the run"
            )
        if self.duration_s < 2 * margin:
            raise ValueError(
                f"duration_s (--duration) {self.duration_s:g} s is too short for an experiment: the latency is "
                f"sampled every {self.sample_s:g} s, {margin:g} s before the event and {margin:g} s after it at least, "
                f"so give a run of at least {2 * margin:g} s"
            )
        if self.event_at_s > self.duration_s - margin:
            raise ValueError(
                f"event_at_s (--event-at) {self.event_at_s:g} s leaves no time after the event in a run of "
                f"duration_s (--duration) {self.duration_s:g} s: give an event between {margin:g} and "
                f"{self.duration_s - margin:g} s, or a longer run"
            )
        if self.qos_threshold_ms not in ISTIO_DURATION_BUCKETS_MS:
            bounds = ", ".join(f"{b:g}" for b in ISTIO_DURATION_BUCKETS_MS)
            raise ValueError(
                f"qos_threshold_ms (--qos) {self.qos_threshold_ms:g} ms is not a bucket bound of Istio's request "
                f"duration histogram, so the requests over it cannot be counted: choose one of {bounds} ms"
            )
        return self
