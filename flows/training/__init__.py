"""Policy training: the validated config and the MaskablePPO trainer.

:func:`load_train_config` reads ``data/train/*.json``; :func:`train` trains and writes the policy
artefact. torch and sb3 are imported inside :func:`train` only, so importing this package is cheap
(the CLI imports it at command time). Used by ``reach train``, the benchmark and the pipeline's
training task. It imports ceenv, bento and flows.evaluation (validation during training).
"""

from __future__ import annotations

from flows.training.config import ConfigError, TrainConfig, load_train_config
from flows.training.trainer import TrainResult, train

__all__ = ["ConfigError", "TrainConfig", "TrainResult", "load_train_config", "train"]
