"""``reach images build``: the OCI images of the policy service and the migrator, built with buildah.

A thin typer command over :func:`flows.release.images.build_images`; it prints each image's tag, size and
build time (staging the context and making the wheels included). BentoML is imported inside the command only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()
errors = Console(stderr=True)

app = typer.Typer(help="OCI images of the policy service and the migrator (buildah, no daemon).", no_args_is_help=True)


@app.command("build")
def build(
    bento: Annotated[
        str | None, typer.Option(help="Bento to containerize (name:version); default: the newest gated bento.")
    ] = None,
    base_image: Annotated[
        str | None,
        typer.Option(
            help="Base image from a registry instead of the local Debian base, e.g. "
            "docker.io/library/python:3.11-slim-bookworm."
        ),
    ] = None,
    torch_wheel: Annotated[
        Path | None,
        typer.Option(
            help="torch CPU wheel to install; default: the one in pip's find-links, else the PyTorch CPU index."
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print every buildah and mmdebstrap command.")
    ] = False,
) -> None:
    """Build (or reuse from buildah's layer cache) the base, migrator and policy service images.

    Exit codes: 0 built, 2 no bento to containerize, 1 a build failed (the message names the step).
    """
    from flows.release.images import ImageBuildError, build_images

    if bento is None:
        from flows.release.packaging import newest_gated_bento

        bento = newest_gated_bento()
        if bento is None:
            errors.print(
                "[bold red]error:[/] no gated bento in the BentoML store: run `reach pipeline run` or "
                "`reach package` first, or name one with --bento",
                highlight=False,
            )
            raise typer.Exit(2)
    else:
        from flows.release.packaging import bento_labels

        try:
            bento_labels(bento)  # an unknown tag is refused before the base and migrator images are built
        except ValueError as err:
            errors.print(
                f"[bold red]error:[/] --bento {bento}: {err}; or leave --bento out for the newest gated one",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(2) from None
    log = console.print if verbose else (lambda message: None)
    console.print(f"building the images of {bento} (buildah, chroot isolation; cached layers are reused)")
    try:
        built = build_images(bento, base_image=base_image, torch_wheel=torch_wheel, log=log)
    except ImageBuildError as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(1) from None
    table = Table("image", "size (MB)", "build (s)")
    for image in built:
        table.add_row(image.tag, f"{image.size_mb:.0f}", "reused" if image.build_s == 0 else f"{image.build_s:.0f}")
    console.print(table)
