"""The ``reach`` command line: thin typer commands that each call one library function.

Sub-commands live in their own modules (``flows/cli_sim.py`` …) and are attached here. Heavy
imports (torch, sb3, great_expectations, prefect, bentoml, matplotlib) happen inside the
commands, never at module level, so that ``reach --help`` answers at once.
"""

from __future__ import annotations

import typer

from flows import cli_demo, cli_migrate, cli_ops, cli_profiles, cli_sim, cli_train, cli_world

app = typer.Typer(
    name="reach",
    help="REACH: learn and apply microservice rescheduling across the cloud-edge continuum.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(cli_sim.app, name="sim")
cli_train.register(app)
app.add_typer(cli_profiles.app, name="profiles")
app.add_typer(cli_ops.pipeline_app, name="pipeline")
app.add_typer(cli_ops.retrain_app, name="retrain")
for command in (cli_ops.package, cli_ops.deploy, cli_ops.serve, cli_ops.up, cli_ops.down, cli_ops.status):
    app.command()(command)
app.command("migrate")(cli_migrate.migrate)
app.add_typer(cli_migrate.cluster_app, name="cluster")
app.add_typer(cli_demo.app, name="demo")
app.add_typer(cli_world.app, name="world")


def main() -> None:  # pragma: no cover - console entry point
    app()
