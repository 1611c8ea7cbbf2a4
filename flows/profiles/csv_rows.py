"""CSV text as records that keep the line they start on, for errors that name ``file:line``.

Both CSV readers of profile ingestion (the profiles in :mod:`flows.profiles.csv_profiles` and the
``--node-types`` table in :mod:`flows.profiles.hosts`) read through :func:`csv_records`, so a line
number is the line in the file: blank lines (empty or only whitespace) are skipped but counted,
and a record whose quoted value spans several lines is named by its first line. Malformed quoting
is a :class:`ProfileError` naming the line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

from flows.profiles.errors import ProfileError


def csv_records(path: Path, text: str) -> Iterator[tuple[int, list[str]]]:
    """``(line, fields)`` for every non-blank record of ``text`` (lines count from 1)."""
    reader = csv.reader(io.StringIO(text, newline=""), skipinitialspace=True, strict=True)
    start = 1
    try:
        for fields in reader:
            if fields and not (len(fields) == 1 and not fields[0].strip()):
                yield start, fields
            start = reader.line_num + 1
    except csv.Error as err:
        raise ProfileError(
            f"{path}:{start}: not a readable CSV record ({err}); close every quoted value with a quote "
            'followed by a comma or the end of the line, and double a quote inside one ("")'
        ) from None
