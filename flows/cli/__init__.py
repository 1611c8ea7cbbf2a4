"""The ``reach`` command line: thin typer commands that each call one library function.

One module per command group: :mod:`flows.cli.sim` (``reach sim``), :mod:`flows.cli.train`
(``train``, ``evaluate``, ``gate``), :mod:`flows.cli.profiles`, :mod:`flows.cli.release`
(``pipeline``, ``retrain``, ``package``, ``deploy``, ``serve``), :mod:`flows.cli.local` (``up``,
``down``, ``status``, ``restart``), :mod:`flows.cli.migrate` (``migrate``, ``cluster``),
:mod:`flows.cli.demo`, :mod:`flows.cli.images` (``images build``) and :mod:`flows.cli.world` (``reach world``).
Heavy imports (torch, sb3, great_expectations, prefect, bentoml, matplotlib, kubernetes, simpy) happen
inside the commands, never at module level, so that ``reach --help`` answers at once. The package may
import only the other ``flows`` packages.
"""

from __future__ import annotations

import typer

from flows.cli import demo, images, local, migrate, profiles, release, sim, train, world

app = typer.Typer(
    name="reach",
    help="REACH: learn and apply microservice rescheduling across the cloud-edge continuum.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(sim.app, name="sim")
train.register(app)
app.add_typer(profiles.app, name="profiles")
app.add_typer(release.pipeline_app, name="pipeline")
app.add_typer(release.retrain_app, name="retrain")
for command in (release.package, release.deploy, release.serve, local.up, local.down, local.status, local.restart):
    app.command()(command)
app.command("migrate")(migrate.migrate)
app.add_typer(migrate.cluster_app, name="cluster")
app.add_typer(demo.app, name="demo")
app.add_typer(images.app, name="images")
app.add_typer(world.app, name="world")


def main() -> None:  # pragma: no cover - console entry point
    app()
