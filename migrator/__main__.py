"""``python -m migrator``: run the migrator with settings from the environment (``REACH_MIGRATOR_*``, ``.env``).

This is the command of the in-cluster Deployment (deploy/k8s/migrator.yaml); on a workstation use
``reach migrate`` instead, which takes the same settings as flags.
"""

from __future__ import annotations

import sys

from migrator.app import run_migrator
from migrator.settings import MigratorSettings

if __name__ == "__main__":
    sys.exit(run_migrator(MigratorSettings()))
