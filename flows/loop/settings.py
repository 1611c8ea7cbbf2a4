"""What ``reach demo`` and the experiments take: :class:`DemoSettings`, and the names of the processes they start.

Pydantic settings with a description per field (every port on 127.0.0.1); used by
:mod:`flows.loop.demo`, :mod:`flows.loop.run`, :mod:`flows.loop.policy`, the experiments and the
``reach demo`` commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from flows.local.paths import out_dir
from flows.loop.placement import DEFAULT_REPLICAS

EXPORTER, PROMETHEUS, STANDIN = "reach-exporter", "reach-prometheus", "reach-policy-standin"
MIGRATOR = "reach-migrator"
STANDIN_LABEL = "greedy-standin"
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
    policy: str = Field(
        "auto",
        description="auto (the serving or newest gated bento of the scenario and workload, else train one with the "
        "quickstart pipeline when train_missing, else the greedy stand-in), greedy-standin (the simulator's "
        "greedy move, not the learned policy), or a bento tag.",
    )
    train_missing: bool = Field(
        True,
        description="auto without a gated bento for the scenario and workload: train one with the quickstart "
        "pipeline (reach demo) instead of falling back to the greedy stand-in (the experiments).",
    )
    duration_s: float = Field(90.0, gt=0, description="How long the migrator runs (bounded run).")
    interval_s: float = Field(2.0, gt=0, description="Seconds between two migrator cycles.")
    sample_s: float = Field(1.0, gt=0, description="Seconds between two latency samples read from Prometheus.")
    qos_threshold_ms: float = Field(100.0, gt=0, description="Monitoring mode acts only above this latency.")
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
    event_at_s: float = Field(30.0, ge=0, description="When the experiment's event happens, seconds into the run.")
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
