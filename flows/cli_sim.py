"""``reach sim``: the simulator commands (latency of a placement, demo, file validation)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Simulate end-to-end latency on REACH-format scenarios.", no_args_is_help=True)
