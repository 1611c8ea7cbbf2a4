"""The validated training configuration: PPO hyperparameters, parallelism, budget, seed, evaluation.

:class:`TrainConfig` is what ``data/train/*.json`` holds and what :func:`flows.training.train`
takes. Its defaults are Stable-Baselines3's PPO defaults, the settings REACH trained with;
``data/train/fast.json`` holds the settings tuned for the 2-core benchmark. :func:`load_train_config`
reads a file and turns every validation problem into a :class:`ConfigError` naming the file, the
field, the value and the fix. Used by the trainer, ``reach train`` and the benchmark.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ceenv.simulator import DEFAULT_STEP_COST_MS
from flows.evaluation.seeds import TRAIN_SEED_LIMIT

ModelT = TypeVar("ModelT", bound=BaseModel)
GOT_CHARS = 80  # a wrong value is quoted up to this many characters in a config error


class ConfigError(ValueError):
    """A configuration file is missing, unreadable or invalid; the message says where and how to fix it."""


class TrainConfig(BaseModel):
    """Everything that decides a training run, besides the scenario and workload files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    total_timesteps: int = Field(200_000, ge=1, description="Environment steps to train for (all envs together).")
    max_wall_seconds: float | None = Field(
        None, gt=0, description="Stop (keeping the best model) after this many seconds of training; null = no limit."
    )
    seed: int = Field(0, ge=0, description=f"Training seed; env i uses seed + i, which must stay < {TRAIN_SEED_LIMIT}.")
    n_envs: int = Field(8, ge=1, le=256, description="Parallel environments collecting experience.")
    vec_env: Literal["dummy", "subproc", "batched"] = Field(
        "dummy",
        description="dummy = envs in this process, one at a time; subproc = one process each; batched = all envs "
        "stepped as one numpy batch (ceenv.vector, fastest: one mask, move-gain and observation pass per step).",
    )
    torch_threads: int = Field(
        1,
        ge=1,
        le=64,
        description="torch.set_num_threads for training (on 2 cores 1 is fastest for the small networks, 2 for "
        "the general pod_node config: benchmarks/results/training-13-29/throughput.md).",
    )
    learning_rate: float = Field(3e-4, gt=0, le=1, description="Adam learning rate (SB3 PPO default 3e-4).")
    n_steps: int = Field(2048, ge=2, description="Steps per env per rollout (SB3 default 2048).")
    batch_size: int = Field(64, ge=2, description="Minibatch size (SB3 default 64).")
    n_epochs: int = Field(10, ge=1, description="Optimisation epochs per rollout (SB3 default 10).")
    gamma: float = Field(0.99, gt=0, le=1, description="Discount factor (SB3 default 0.99).")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda (SB3 default 0.95).")
    clip_range: float = Field(0.2, gt=0, le=1, description="PPO clip range (SB3 default 0.2).")
    ent_coef: float = Field(0.0, ge=0, description="Entropy bonus (SB3 default 0.0).")
    vf_coef: float = Field(0.5, ge=0, description="Value loss weight (SB3 default 0.5).")
    max_grad_norm: float = Field(0.5, gt=0, description="Gradient clipping (SB3 default 0.5).")
    net_arch: list[int] = Field(
        default_factory=lambda: [64, 64], description="Hidden layer sizes of policy and value nets."
    )
    reward_scale: Literal["none", "start_latency", "running_std"] = Field(
        "none",
        description="none = the env's reward in ms (REACH); start_latency = reward / episode start latency, so "
        "every episode's return is its fractional latency reduction; running_std = reward / running std of the "
        "discounted return (SB3 VecNormalize, observations untouched), the same objective on a steadier scale.",
    )
    policy: Literal["mlp", "gain_biased", "pod_node"] = Field(
        "gain_biased",
        description="mlp = MaskablePPO's MlpPolicy; gain_biased = bento.network.GainBiasedPolicy, whose move logits "
        "start from the observation's move gains (needs observation_version 3); pod_node = "
        "bento.pod_node.PodNodePolicy, one shared scorer for every (pod, node) move (needs observation_version 4).",
    )
    max_nodes: int = Field(40, ge=1, le=1024, description="Observation version 4: nodes the policy is padded to.")
    max_slots: int = Field(80, ge=1, le=4096, description="Observation version 4: pod slots the policy is padded to.")
    hidden: int = Field(32, ge=4, le=512, description="pod_node policy: width of the embeddings and pair scorer.")
    group_minibatches: bool = Field(
        False,
        description="pod_node policy: cut each epoch's minibatches from the rollout ordered by cluster size "
        "(flows.training.buffer), so a small cluster's samples are not padded to the largest one's in the batch; "
        "advantages are then normalised once per rollout instead of per minibatch.",
    )
    gain_scale: float = Field(
        2000.0,
        gt=0,
        le=1e5,
        description="pod_node policy: initial logits per unit of move gain (trained); lower = a softer, more "
        "exploring prior (the STOP threshold, (stop_logit - move_bias) / gain_scale, grows as it drops). Unused "
        "with init_from: training starts from the artefact's learned scale (the run records initial_gain_scale).",
    )
    measured_conditions: bool = Field(
        False,
        description="Show the policy the drawn network through measurement noise (the payload's measured block), "
        "not the nominal one; read by observation version 4 only (versions 1-3 always see the nominal network).",
    )
    measurement_noise: float = Field(
        0.1, ge=0, le=2, description="Relative (log-normal sigma) noise of the measured delays and bandwidths."
    )
    init_from: str | None = Field(
        None,
        description="An artefact directory (e.g. data/policies/general-v4) whose weights training starts from "
        "(fine-tuning); null = a fresh network. Its recorded policy and observation_version, and what shapes its "
        "network (pod_node: hidden, max_nodes, max_slots; the others: net_arch), must equal this config's (refused "
        "before training otherwise). Its learned gain scale replaces gain_scale; the optimizer starts fresh.",
    )
    learning_rate_schedule: Literal["constant", "linear"] = Field(
        "constant", description="constant (SB3 default) or linear decay to 0 over total_timesteps."
    )
    step_cost_ms: float = Field(
        DEFAULT_STEP_COST_MS, ge=0, description="Rescheduling cost per migration, ms (MODEL.md §3)."
    )
    max_steps: int = Field(100, ge=1, description="Episode truncation length.")
    eval_freq_steps: int = Field(20_000, ge=1, description="Evaluate the policy every this many env steps (all envs).")
    observation_version: Literal[1, 2, 3, 4] = Field(
        3,
        description="Observation encoding (ceenv.observation): 1 = REACH's; 2 adds per-service placement fractions; "
        "3 adds each move's nominal latency gain; 4 = size-agnostic node, pod and (node, pod) rows padded to "
        "max_nodes x max_slots (one policy for every cluster within them).",
    )
    eval_episodes: int = Field(32, ge=1, description="Held-out validation start states per evaluation.")
    select_moves_over_greedy: float | None = Field(
        None,
        ge=0,
        description="Best-model selection: when set, a checkpoint is 'within moves' when its validation moves per "
        "episode are at most greedy's on the same states plus this many, and the best model is the highest-scoring "
        "checkpoint within moves (while none is, the one with the fewest moves); null = the score alone.",
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> TrainConfig:
        if self.seed + self.n_envs > TRAIN_SEED_LIMIT:
            raise ValueError(f"seed + n_envs must be <= {TRAIN_SEED_LIMIT} (seeds above are held out for evaluation)")
        if self.batch_size > self.n_steps * self.n_envs:
            raise ValueError(
                f"batch_size {self.batch_size} exceeds the rollout size n_steps * n_envs = {self.n_steps * self.n_envs}"
            )
        if self.policy == "gain_biased" and self.observation_version != 3:
            raise ValueError("policy gain_biased needs observation_version 3 (the move gains); use policy mlp")
        if (self.policy == "pod_node") != (self.observation_version == 4):
            raise ValueError("observation_version 4 goes with policy pod_node (and pod_node needs version 4)")
        if self.group_minibatches and self.policy != "pod_node":
            raise ValueError("group_minibatches needs policy pod_node (other policies compute on every row anyway)")
        if not self.net_arch or any(width < 1 for width in self.net_arch):
            raise ValueError(f"net_arch must list positive layer widths, got {self.net_arch}")
        return self


def validate_file(model: type[ModelT], data: Any, file: str) -> ModelT:
    """``model.model_validate(data)``, with errors rewritten to name the file, field, value and fix."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = []
        for e in err.errors():
            field = ".".join(str(p) for p in e["loc"]) or "$"
            got = repr(e.get("input"))  # cut: the value of a wrong file's field can be a whole document
            got = got if len(got) <= GOT_CHARS else got[:GOT_CHARS] + "…"
            problems.append(f"{file}: field {field!r}: {e['msg']} (got {got})")
        fields = ", ".join(f"{name} ({info.description})" for name, info in model.model_fields.items())
        raise ConfigError("; ".join(problems) + f". Fix the file; valid fields: {fields}") from None


def read_config(model: type[ModelT], path: str | Path) -> ModelT:
    """Read a JSON config file into ``model``; raise :class:`ConfigError` with file, field, value and fix."""
    file = Path(path)
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file; pass an existing JSON config file") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{file}: not valid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a JSON object of fields, got {type(data).__name__}")
    return validate_file(model, data, str(file))


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """A :class:`TrainConfig` from a JSON file, with optional field overrides (e.g. from the CLI)."""
    config = read_config(TrainConfig, path)
    if not overrides:
        return config
    return validate_file(TrainConfig, {**config.model_dump(), **overrides}, f"{path} (with overrides {overrides})")
