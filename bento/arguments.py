"""Serve-time bento arguments that survive ``bentoml serve <built bento>``: the environment variable carrying them.

BentoML 1.4 replaces the ``--arg`` values of ``bentoml serve`` with the bento's build-time arguments
when it serves a *built* bento (``bentoml._internal.service.loader._load_bento`` calls
``set_arguments(bento.info.args)``), so a general policy's cluster (``scenario``, ``workload``) and
serve-time planning (``plan_*``) would be dropped silently and the bento would serve the cluster it
was packaged for. Whoever starts a bento with serve-time arguments also passes them, as one JSON
object, in ``REACH_SERVE_ARGUMENTS`` (:func:`environment`); :mod:`bento.service` lays them over the
arguments BentoML gives it (:func:`overlay`). Used by :mod:`bento.service`,
:func:`flows.release.serving.start_bento` and ``reach serve``. No BentoML import here.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

SERVE_ARGUMENTS_ENV = "REACH_SERVE_ARGUMENTS"


def environment(arguments: Mapping[str, str] | None) -> dict[str, str]:
    """The environment entry that carries ``arguments`` to the service ({} when there are none)."""
    return {SERVE_ARGUMENTS_ENV: json.dumps(dict(arguments))} if arguments else {}


def overlay(
    arguments: Mapping[str, Any], environ: Mapping[str, str], known: Collection[str] | None = None
) -> dict[str, Any]:
    """``arguments`` with the serve-time ones of ``environ[REACH_SERVE_ARGUMENTS]`` over them.

    ``known``: the valid argument names; a key of the variable outside them raises ``ValueError`` naming the
    variable, the key and the valid names (a misspelled key must not be ignored, nor blamed on ``--arg``).
    """
    raw = environ.get(SERVE_ARGUMENTS_ENV, "").strip()
    if not raw:
        return dict(arguments)
    try:
        extra = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"${SERVE_ARGUMENTS_ENV} is not JSON ({err}); set it to an object such as "
                         '{"scenario": "DIR", "workload": "FILE"} or unset it') from None  # fmt: skip
    if not isinstance(extra, dict):
        raise ValueError(f"${SERVE_ARGUMENTS_ENV} must be a JSON object of bento arguments, got {raw[:80]!r}")
    unknown = sorted(set(extra) - set(known)) if known is not None else []
    if unknown:
        raise ValueError(
            f"${SERVE_ARGUMENTS_ENV} names unknown bento argument(s) {unknown}; the valid keys are "
            f"{sorted(known or ())}: fix the key(s) in ${SERVE_ARGUMENTS_ENV} or unset it"
        )
    return {**arguments, **extra}
