"""The ``reach`` command line: thin typer commands that each call one library function.

Sub-commands live in their own modules (``flows/cli_sim.py`` …) and are attached here. Heavy
imports (torch, sb3, great_expectations, prefect, bentoml, matplotlib) happen inside the
commands, never at module level, so that ``reach --help`` answers at once.
"""

from __future__ import annotations

import typer

from flows import cli_profiles, cli_sim

app = typer.Typer(
    name="reach",
    help="REACH: learn and apply microservice rescheduling across the cloud-edge continuum.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(cli_sim.app, name="sim")
app.add_typer(cli_profiles.app, name="profiles")


def main() -> None:  # pragma: no cover - console entry point
    app()
