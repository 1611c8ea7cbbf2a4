"""Turn a validated profile into a new, versioned dataset directory, written atomically.

The dataset holds, for each input workload, the REACH-format ``<name>_call_patterns.json`` with
the measured mean execution time of every call per CPU type (optionally also
``execution-time-p50`` / ``execution-time-p95``, extra keys the loader ignores), the summary
table (``summary.csv``, ``summary.md``), the validation report (``validation.json``,
``validation.md``) and ``manifest.json`` (content SHA-256 and version, inputs and their hashes,
options). The directory is built under a temporary name next to ``--out`` and renamed into place,
so it is either complete or absent; an existing ``--out`` is never overwritten, not even an empty
directory that appears while the dataset is written (the rename is Linux's ``renameat2`` with
``RENAME_NOREPLACE``, which fails if ``--out`` exists). Used by :mod:`flows.profiles.ingest`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ceenv.units import format_ms
from ceenv.workload import WORKLOAD_SUFFIX, Call, Workload, workload_to_json
from flows.profiles.errors import ProfileError
from flows.profiles.report import report_markdown, summary_markdown

CellTable = Mapping[tuple[str, int], float]
MANIFEST = "manifest.json"


def _update_call(call: Call, means: CellTable) -> Call:
    times = {**call.execution_ms, **{t: v for (s, t), v in means.items() if s == call.service}}
    groups = tuple(tuple(_update_call(c, means) for c in group) for group in call.groups)
    return replace(call, execution_ms=times, groups=groups)


def updated_workload(workload: Workload, means: CellTable) -> Workload:
    """``workload`` with every call's execution time replaced by the measured mean where measured."""
    endpoints = tuple(
        replace(e, groups=tuple(tuple(_update_call(c, means) for c in g) for g in e.groups)) for e in workload.endpoints
    )
    return replace(workload, endpoints=endpoints)


def _add_percentiles(doc: Any, p50: CellTable, p95: CellTable) -> None:
    """Add ``execution-time-p50``/``-p95`` to every call of a call-pattern document, in place."""
    for group in doc.get("call-path", []):
        for service, call in group.items():
            for key, table in (("execution-time-p50", p50), ("execution-time-p95", p95)):
                cells = {str(t): format_ms(v) for (s, t), v in sorted(table.items()) if s == service}
                if cells:
                    call[key] = cells
            _add_percentiles(call, p50, p95)


def workload_document(workload: Workload, cells: Sequence[Mapping[str, Any]], percentiles: bool) -> dict[str, Any]:
    """The call-pattern JSON of an updated workload, with percentiles from ``cells`` if asked."""
    doc = workload_to_json(workload)
    if percentiles:
        p50 = {(c["service"], c["cpu_type"]): c["p50_ms"] for c in cells}
        p95 = {(c["service"], c["cpu_type"]): c["p95_ms"] for c in cells}
        for endpoint in doc.values():
            _add_percentiles(endpoint, p50, p95)
    return doc


def summary_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = ["service,cpu_type,n,mean_ms,p50_ms,p95_ms"]
    lines += [
        f"{r['service']},{r['cpu_type']},{r['n']},{r['mean_ms']:.6g},{r['p50_ms']:.6g},{r['p95_ms']:.6g}" for r in rows
    ]
    return "\n".join(lines) + "\n"


def cell_means(cells: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], float]:
    """(service, CPU type) → mean execution time (ms) from summary rows."""
    return {(c["service"], c["cpu_type"]): c["mean_ms"] for c in cells}


def data_files(workloads: Sequence[Workload], cells: Sequence[Mapping[str, Any]], percentiles: bool) -> dict[str, str]:
    """The versioned content of the dataset from the *updated* workloads: call patterns and summary
    (the content hash covers exactly these files)."""
    files = {
        f"{w.name}{WORKLOAD_SUFFIX}": json.dumps(workload_document(w, cells, percentiles), indent=2) + "\n"
        for w in workloads
    }
    files["summary.csv"] = summary_csv(cells)
    files["summary.md"] = "# Profile summary (ms)\n\n" + summary_markdown(list(cells))
    return files


def content_sha256(files: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name].encode()).hexdigest().encode() + b"\n")
    return digest.hexdigest()


def existing_version(out: Path) -> str | None:
    """The content hash recorded in an existing dataset's manifest, if ``out`` is one."""
    try:
        return str(json.loads((out / MANIFEST).read_text(encoding="utf-8"))["content_sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


def _rename_noreplace_linux(src: Path, dst: Path) -> bool:
    """``renameat2(src, dst, RENAME_NOREPLACE)``: atomic, and fails with ``EEXIST`` if ``dst`` exists.

    Returns False where the C library, the kernel or the file system lacks it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(code, os.strerror(code), str(dst))


def rename_new(src: Path, dst: Path) -> None:
    """Rename the directory ``src`` to ``dst``, failing with ``FileExistsError`` if ``dst`` exists.

    ``os.rename`` alone would silently replace an empty directory at ``dst``. Without
    ``renameat2``, ``dst`` is first claimed with ``mkdir`` (which fails if it exists) and ``src``
    renamed onto that empty directory of ours."""
    if _rename_noreplace_linux(src, dst):
        return
    dst.mkdir()
    try:
        os.rename(src, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            dst.rmdir()
        raise


def write_dataset(out: Path, files: Mapping[str, str], report: Mapping[str, Any], manifest: Mapping[str, Any]) -> Path:
    """Build the dataset in a temporary sibling directory and rename it to ``out``; never overwrite."""
    if out.exists():
        raise ProfileError(f"{out}: already exists; datasets are never overwritten: choose a new --out directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        everything = {
            **files,
            "validation.json": json.dumps(report, indent=2, default=str) + "\n",
            "validation.md": report_markdown(report),
            MANIFEST: json.dumps(manifest, indent=2) + "\n",
        }
        for name, text in everything.items():
            with open(tmp / name, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
        rename_new(tmp, out)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError) and err.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise ProfileError(
                f"{out}: appeared while the dataset was being written; datasets are never overwritten: "
                "choose a new --out directory"
            ) from None
        raise
    return out
