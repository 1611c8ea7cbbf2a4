"""``python -m migrator``: run the migrator with settings from the environment (``REACH_MIGRATOR_*``, ``.env``).

This is the command of the in-cluster Deployment (deploy/k8s/migrator.yaml) and the entrypoint of
the migrator image (deploy/images/migrator.Containerfile); on a workstation use ``reach migrate``
instead, which takes the same settings as flags. ``--help`` lists every setting's variable.
"""

from __future__ import annotations

import sys

from migrator.app import run_migrator
from migrator.settings import MigratorSettings

ENV_PREFIX = "REACH_MIGRATOR_"


def usage() -> str:
    """The help text: what the command does and every ``REACH_MIGRATOR_*`` variable with its default."""
    lines = [
        "usage: python -m migrator [--help]",
        "",
        "Run reach's migrator: observe the pods, ask the policy service, guard, migrate make-before-break.",
        "It takes no arguments; every setting is an environment variable (or a line of ./.env):",
        "",
    ]
    for name, field in MigratorSettings.model_fields.items():
        default = "" if field.default is None else f" [default: {field.default}]"
        lines.append(f"  {ENV_PREFIX}{name.upper()}{default}")
        lines.append(f"      {field.description}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if any(arg in ("-h", "--help") for arg in argv):
        print(usage())
        return 0
    if argv:
        print(
            f"python -m migrator takes no arguments (got {' '.join(argv)}): set {ENV_PREFIX}* variables; --help lists them",
            file=sys.stderr,
        )
        return 2
    return run_migrator(MigratorSettings())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
