"""The migrator's settings: one typed object, read from flags, environment variables or a ``.env`` file.

Every knob of the controller lives here with its unit in its name and a description, in the spirit
of kubernetes-sigs/descheduler's policy file: dry-run and the per-cycle and per-window limits are
first-class settings, not afterthoughts. Environment variables carry the ``REACH_MIGRATOR_`` prefix
(``REACH_MIGRATOR_POLICY_URL``, ``REACH_MIGRATOR_DRY_RUN`` …); flags given to ``reach migrate``
override them. Used by the controller, the CLI and the tests.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_RFC1123_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


class Mode(StrEnum):
    """What the controller does each cycle."""

    MONITORING = "monitoring"
    EPISODE = "episode"
    POD_DISTRIBUTION = "pod-distribution"


class MigratorSettings(BaseSettings):
    """All settings of ``reach migrate``; see docs/migrator.md for the mechanism they steer."""

    model_config = SettingsConfigDict(env_prefix="REACH_MIGRATOR_", env_file=".env", extra="ignore", frozen=True)

    kubeconfig: str | None = Field(
        default=None, description="Path of the kubeconfig; empty means in-cluster service-account credentials."
    )
    policy_url: str = Field(
        default="http://127.0.0.1:3000",
        description="Base URL of the policy service; the migrator POSTs the REACH request to <url>/get_action.",
    )
    policy_endpoint_file: str | None = Field(
        default=None,
        description="reach's endpoint file ($REACH_HOME/endpoint.json); when set, the policy URL is read from it "
        "before every request, so a blue/green redeploy is followed; policy_url is the fallback.",
    )
    namespace: str = Field(default="default", description="Namespace of the application's pods.")
    pod_selector: str = Field(
        default="reach.io/app=demo", description="Label selector of the application's pods (kubectl syntax)."
    )
    service_label: str = Field(default="app", description="Pod label whose value is the REACH service name of the pod.")
    layer_label: str = Field(default="reach.io/layer", description="Node label that holds the node's layer.")
    node_name_label: str | None = Field(
        default=None,
        description="Node label holding the node's name in the policy's scenario (e.g. reach.io/node-name) when "
        "the Kubernetes names differ; empty means the Kubernetes node names are the scenario's.",
    )
    client_layer: str = Field(
        default="client",
        description="Layer that only services pinned to it may use (MODEL.md §1: unpinned services avoid it).",
    )
    mode: Mode = Field(default=Mode.MONITORING, description="monitoring, episode or pod-distribution.")
    dry_run: bool = Field(default=False, description="Decide and guard, log what would happen, change nothing.")
    once: bool = Field(default=False, description="Run one cycle (or one episode) and exit.")
    interval_s: float = Field(default=30.0, gt=0, description="Seconds between two cycles.")
    max_migrations_per_cycle: int = Field(default=1, ge=0, description="Most migrations started in one cycle.")
    max_migrations_per_window: int = Field(
        default=10, ge=0, description="Most migrations within any sliding window of window_s seconds."
    )
    window_s: float = Field(default=600.0, gt=0, description="Length of the sliding window for the limit above.")
    pod_cooldown_s: float = Field(
        default=120.0, ge=0, description="A pod (or its replacement) is not moved again within this many seconds."
    )
    min_predicted_gain_ms: float = Field(
        default=1.0,
        description="A move is refused (gain-too-small) when the policy's predicted latency before minus after "
        "(predicted_latency_before_ms/after_ms, sent by the reach service) is below this many ms.",
    )
    require_predicted_gain: bool = Field(
        default=False,
        description="Refuse (no-prediction) moves from a policy that sends no predicted latencies; off by "
        "default so that REACH-compatible policies without them still work (the hold-down still applies).",
    )
    return_hold_down_s: float = Field(
        default=600.0,
        ge=0,
        description="A pod (or its replacement) does not go back to a node it left within this many seconds.",
    )
    migration_deadline_s: float = Field(
        default=60.0, gt=0, description="Time for the replacement to become Ready before the migration rolls back."
    )
    cordon_cap_s: float = Field(
        default=10.0,
        gt=0,
        description="Most seconds a migration keeps the other nodes cordoned: the cordons are lifted as soon as "
        "the replacement is bound to the target; not bound within this cap, the migration rolls back.",
    )
    api_timeout_s: float = Field(
        default=15.0,
        gt=0,
        description="Timeout of every Kubernetes API call (connect and read): a call that hangs on a half-open "
        "connection fails after this and the cycle is blind (or the migration rolls back) instead of waiting forever.",
    )
    policy_timeout_s: float = Field(default=5.0, gt=0, description="Timeout of one HTTP call to the policy service.")
    policy_retries: int = Field(default=2, ge=0, description="Retries after a failed policy call (so 1 + retries).")
    policy_backoff_s: float = Field(
        default=0.5, ge=0, description="First retry delay; it doubles after each failed attempt."
    )
    episode_max_steps: int = Field(
        default=20, ge=1, description="Episode mode: most migrations before stopping when the policy never says stop."
    )
    episode_csv: str = Field(
        default="migration_episode.csv", description="Episode mode: CSV of the step, move and latency before/after."
    )
    distribution_csv: str = Field(
        default="pod_distribution.csv", description="Pod-distribution mode: CSV of pods per node per service."
    )
    qos_threshold_ms: float = Field(
        default=250.0, gt=0, description="Monitoring mode: act only when the measured latency exceeds this (REACH)."
    )
    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus base URL; empty means no latency gate: monitoring asks the policy every cycle. "
        "When set, a latency that cannot be read (Prometheus down, empty, stale, not a number) means no action.",
    )
    latency_max_age_s: float = Field(
        default=90.0,
        gt=0,
        description="Monitoring: a latency whose newest sample is older than this many seconds is stale, "
        "i.e. unknown: the cycle makes no move (Prometheus' timestamp() of the latency query).",
    )
    latency_query: str = Field(
        default="reach_app_latency_ms",
        description="PromQL that returns the application's end-to-end latency in milliseconds (one sample).",
    )
    node_usage_query: str = Field(
        default="reach_node_cpu_usage_millicores",
        description="PromQL returning per-node CPU usage in millicores, label `node`; recorded only, never required.",
    )
    measured_delay_query: str | None = Field(
        default=None,
        description="PromQL returning the measured one-way delay in ms between node pairs, labels `source_node` "
        "and `target_node`; when set (with prometheus_url), the request carries it in its optional `measured` "
        "block (MODEL.md §4). Empty means the policy assumes the nominal delays.",
    )
    node_utilization_query: str | None = Field(
        default=None,
        description="PromQL returning each node's NIC bandwidth utilisation by background traffic as a fraction "
        "in [0, 1], label `node`; sent in the request's `measured` block like measured_delay_query.",
    )
    leader_election: bool = Field(
        default=True,
        description="Write only while holding the cluster's migrator Lease (lease_namespace/lease_name), so that "
        "a second live migrator stands by instead of lifting this one's cordons; dry_run never takes it. Off only "
        "where no other migrator can run against the cluster.",
    )
    lease_namespace: str = Field(
        default="kube-system",
        description="Namespace of the migrators' Lease: one per cluster (every migrator of a cluster must name the "
        "same one), whatever namespace the application is in.",
    )
    lease_name: str = Field(default="reach-migrator", description="Name of the migrators' Lease.")
    lease_duration_s: float = Field(
        default=60.0,
        description="Seconds the Lease stays this migrator's without a renewal (renewed every third of it, "
        "migrations included): a standby takes over this long after the holder stops renewing (at once when it "
        "stops cleanly). At least 15 and 4 x api_timeout_s, so a renewal that times out can be tried again.",
    )
    lease_identity: str | None = Field(
        default=None,
        description="This migrator's name in the Lease; empty means <hostname>/<pid> (in a pod: its name and PID, "
        "so a container restarted in place takes its Lease back at once).",
    )
    event_component: str = Field(default="reach-migrator", description="Source component of Kubernetes Events.")
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port where the migrator publishes its own Prometheus metrics "
        "(migrations, refusals, decision and loop time) on metrics_host; empty means none.",
    )
    metrics_host: str = Field(
        default="127.0.0.1",
        description="Address the metrics port binds to: loopback by default; in a cluster the pod's IP "
        "(deploy/k8s/migrator.yaml sets it from status.podIP) so that Prometheus can scrape it.",
    )

    @field_validator("policy_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"policy_url {value!r} must start with http:// or https://, e.g. http://127.0.0.1:3000")
        return value.rstrip("/")

    @field_validator("lease_name", "lease_namespace")
    @classmethod
    def _kubernetes_name(cls, value: str) -> str:
        """A Lease's name and namespace as the API server accepts them (RFC 1123), checked before anything runs."""
        if not _RFC1123_NAME.fullmatch(value) or len(value) > 63:
            raise ValueError(
                f"{value!r} is not a Kubernetes name: at most 63 lower-case letters, digits, '-' and '.', starting and "
                "ending with a letter or digit (e.g. reach-migrator)"
            )
        return value

    @model_validator(mode="after")
    def _lease_survives_a_failed_renewal(self) -> MigratorSettings:
        """The holder renews every third of the Lease; a renewal that times out must leave time for the next ones."""
        needed = self.lease_minimum_s()
        if self.leader_election and not self.dry_run and self.lease_duration_s < needed:
            raise ValueError(
                f"lease_duration_s {self.lease_duration_s:g} is too short: the Lease is renewed every third of it and "
                f"one renewal may take api_timeout_s {self.api_timeout_s:g}, so it must be at least {needed:g} s "
                f"(15 s and 4 x api_timeout_s); set REACH_MIGRATOR_LEASE_DURATION_S to at least {needed:g}"
            )
        return self

    def lease_minimum_s(self) -> float:
        """The shortest Lease the settings accept: 15 s, and 4 × ``api_timeout_s``."""
        return max(15.0, 4 * self.api_timeout_s)

    @model_validator(mode="after")
    def _measurements_need_prometheus(self) -> MigratorSettings:
        """A measurement query without a Prometheus to ask would be silently unread: refuse it before anything runs."""
        queries = [n for n in ("measured_delay_query", "node_utilization_query") if getattr(self, n)]
        if queries and not self.prometheus_url:
            names = " and ".join(queries)
            variables = " and ".join(f"REACH_MIGRATOR_{n.upper()}" for n in queries)
            raise ValueError(
                f"{names} {'are' if len(queries) > 1 else 'is'} set but prometheus_url is not: set "
                "REACH_MIGRATOR_PROMETHEUS_URL (or --prometheus-url) to the Prometheus that answers it, e.g. "
                f"http://127.0.0.1:9090, or unset {variables}"
            )
        return self
