"""muBench work models as REACH workloads: ``reach sim import-mubench``.

:func:`import_workmodel` reads a muBench work model (:mod:`ceenv.mubench`, both the ``compute_pi``
and ``loader`` forms) and per-service execution times by CPU type, and writes the REACH
call-pattern file, whole or not at all; it never overwrites, not even a file that appears while it
writes. Part of profile ingestion (stage 1): a work model plus measured times is a workload.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from ceenv.validation import ScenarioError, read_json


def load_execution_times(path: Path) -> dict[str, dict[int, float]]:
    """``{"service": {"<cpu_type>": "7ms"}}`` → ``{service: {cpu_type: ms}}``, with file/path errors."""
    from ceenv.units import UnitError, parse_time_ms
    from ceenv.validation import child

    raw = read_json(path)
    if not isinstance(raw, dict):
        raise ScenarioError(str(path), "$", "wrong type", raw, 'an object such as {"s0": {"0": "7ms"}}')
    result: dict[str, dict[int, float]] = {}
    for service, per_type in raw.items():
        if not isinstance(per_type, dict):
            raise ScenarioError(
                str(path), child("$", service), "wrong type", per_type, 'an object such as {"0": "7ms"}'
            )
        result[service] = {}
        for key, value in per_type.items():
            try:
                result[service][int(key)] = parse_time_ms(value)
            except (ValueError, UnitError) as err:
                raise ScenarioError(
                    str(path), child(child("$", service), key), f"bad CPU type or time: {err}", value
                ) from None
    return result


def _cannot_write(out: Path, err: OSError, temporary: str = "") -> OSError:
    shown = err.filename is not None and str(err.filename) not in (str(out), temporary)
    where = f" ({err.filename})" if shown else ""
    return OSError(f"cannot write {out}: {err.strerror or err}{where}; choose a writable --out path")


def write_new_file(out: Path, text: str) -> None:
    """Write ``text`` to ``out`` whole or not at all, never replacing a file (not even one that appears
    while we write): a temporary file in the same folder is hard-linked to ``out``, which fails if
    ``out`` exists, then removed. Raises ``FileExistsError`` or ``OSError`` naming ``out``."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as err:
        raise _cannot_write(out, err) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.link(tmp, out)
    except FileExistsError:
        raise FileExistsError(f"{out} exists; choose another --out (reach never overwrites a workload)") from None
    except OSError as err:
        raise _cannot_write(out, err, tmp) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def import_workmodel(workmodel: Path, times: Path, out: Path, **options: Any) -> Path:
    """Write the REACH call-pattern file of a muBench work model; refuses to overwrite ``out``."""
    import json

    from ceenv.mubench import load_workmodel
    from ceenv.workload import workload_to_json

    workload = load_workmodel(workmodel, load_execution_times(times), execution_source=str(times), **options)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose another --out (reach never overwrites a workload)")
    write_new_file(out, json.dumps(workload_to_json(workload), indent=2) + "\n")
    return out
