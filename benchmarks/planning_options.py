"""The planning settings as benchmark command-line options, with the defaults and help of their one source.

:func:`add_planning_options` adds ``--plan-width``, ``--plan-margin``, … for the named settings of
:mod:`bento.planning_settings`, defaulting to the chosen planning (what ``reach serve --plan-k 4``
serves). Imported by ``benchmarks/bench_general.py`` and ``benchmarks/bench_service.py`` (run as
scripts, so this module sits on their path).
"""

from __future__ import annotations

import argparse


def add_planning_options(parser: argparse.ArgumentParser, keys: tuple[str, ...], prefix: str) -> None:
    """``--plan-…`` options for ``keys`` (e.g. ``plan_margin``); help is ``prefix`` plus the setting's description."""
    from bento.planning_settings import PlanningSettings, description

    chosen = PlanningSettings.chosen()
    for key in keys:
        default = getattr(chosen, key)
        parser.add_argument(
            "--" + key.replace("_", "-"), type=type(default), default=default, help=f"{prefix}{description(key)}"
        )
