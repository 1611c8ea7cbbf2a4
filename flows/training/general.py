"""The general policy: one size-agnostic artefact trained across clusters and applications.

:func:`training_clusters` lists what the general policy trains on — REACH's three reference sizes
(7-21, 13-29, 19-37) x its three workloads from ``data/`` plus random clusters and applications
drawn by :func:`ceenv.generator.generate_scenario` within the training sizes (up to 20 nodes), no
more than the config has envs (:func:`check_general`);
:func:`validation_clusters` lists held-out generated clusters (other generator seeds) that select
the best model, and :func:`large_clusters` the generated clusters at least twice the largest
training size (38 nodes) used only for evaluation. :func:`train_general` runs
:func:`flows.training.train` on them. Used by ``reach train-general``, the benchmark
``benchmarks/bench_general.py`` and the learning test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ceenv.generator import GeneratedScenario, GeneratorLimits, generate_scenario
from ceenv.reference import SIZES, WORKLOADS
from ceenv.scenario import Scenario
from ceenv.workload import Workload

DATA = Path(__file__).resolve().parents[2] / "data"
REFERENCE_DEFAULT = ("13-29", "aggregator_sequential")
# Seed ranges of the generated clusters: training, validation and the large held-out ones never overlap.
TRAIN_GENERATOR_SEED = 1000
VALIDATION_GENERATOR_SEED = 2000
LARGE_GENERATOR_SEED = 3000
TRAIN_LIMITS = GeneratorLimits(nodes=(5, 20), services=(3, 8), max_replica=(1, 5))
LARGE_NODES = 38  # twice the largest reference size (19 nodes)
LARGE_LIMITS = GeneratorLimits(services=(6, 8), max_replica=(4, 8))

Cluster = tuple[Scenario, Workload]


def reference_files(size: str, workload: str) -> tuple[Path, Path]:
    """The scenario directory and call-pattern file of a reference cell under ``data/``."""
    return DATA / "scenarios" / size, DATA / "workloads" / f"{workload}_call_patterns.json"


def reference_clusters() -> list[tuple[Path, Path]]:
    """The 3 sizes x 3 workloads of REACH's testbed, as files."""
    return [reference_files(size, workload) for size in SIZES for workload in WORKLOADS]


def generated(seed: int, limits: GeneratorLimits, name: str, **sizes: Any) -> GeneratedScenario:
    """One generated cluster and application from generator seed ``seed``."""
    return generate_scenario(np.random.default_rng(seed), limits=limits, name=name, **sizes)


def generated_clusters(count: int, base_seed: int, prefix: str, **sizes: Any) -> list[Cluster]:
    """``count`` generated (scenario, workload) pairs from seeds ``base_seed + k``."""
    limits = sizes.pop("limits", TRAIN_LIMITS)
    return [generated(base_seed + k, limits, f"{prefix}-{base_seed + k}", **sizes).parse() for k in range(count)]


def training_clusters(generated_count: int) -> list[Any]:
    """Reference cells (files) followed by ``generated_count`` generated training clusters."""
    return [*reference_clusters(), *generated_clusters(generated_count, TRAIN_GENERATOR_SEED, "gen")]


def validation_clusters(generated_count: int) -> list[Any]:
    """Held-out states: every reference cell (validation seeds) and held-out generated clusters."""
    return [*reference_clusters(), *generated_clusters(generated_count, VALIDATION_GENERATOR_SEED, "val")]


def large_clusters(count: int) -> list[Cluster]:
    """Generated clusters of :data:`LARGE_NODES` nodes, never trained on (evaluation only)."""
    return generated_clusters(count, LARGE_GENERATOR_SEED, "large", nodes=LARGE_NODES, limits=LARGE_LIMITS)


def check_general(config: Any, generated_count: int) -> None:
    """Refuse, before any work, a config that cannot train the general policy on ``generated_count`` generated
    clusters: not observation version 4, or fewer envs than training clusters (a ``ValueError`` saying the fix)."""
    from flows.training.envs import check_cluster_count

    if config.observation_version != 4:
        raise ValueError("the general policy needs observation_version 4 and policy pod_node (data/train/general.json)")
    if generated_count < 0:
        raise ValueError(f"--generated {generated_count}: pass a count of generated clusters, 0 or more")
    reference = len(SIZES) * len(WORKLOADS)
    fewer = (
        f"pass --generated {config.n_envs - reference} or fewer"
        if config.n_envs >= reference
        else f"pass fewer --generated (the {reference} reference cells alone need {reference} envs)"
    )
    check_cluster_count(config.n_envs, reference + generated_count, fewer)


def train_general(
    config: Any,
    out_dir: str | Path,
    *,
    generated_count: int = 7,
    validation_count: int = 3,
    progress: bool = False,
    tensorboard: bool = False,
) -> Any:
    """Train the general policy (observation version 4) across clusters; the default cluster is 13-29."""
    from flows.training.trainer import train

    check_general(config, generated_count)
    scenario_dir, workload_file = reference_files(*REFERENCE_DEFAULT)
    return train(
        config,
        scenario_dir,
        workload_file,
        out_dir,
        progress=progress,
        tensorboard=tensorboard,
        clusters=training_clusters(generated_count),
        validation_clusters=validation_clusters(validation_count),
    )
