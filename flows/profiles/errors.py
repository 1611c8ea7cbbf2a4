"""The one error type of profile ingestion, raised for input a user must fix.

:class:`ProfileError` carries a one-line message naming the file, the field or row, the value
found and the fix; the ``reach profiles`` commands print it and exit with status 2. A failed Great
Expectations validation is a :class:`ProfileValidationError`, which also carries the saved reports.
"""

from __future__ import annotations

from pathlib import Path


class ProfileError(ValueError):
    """Profile input that cannot be used as given; the message says where and how to fix it."""


class ProfileValidationError(ProfileError):
    """The profile table failed validation; nothing was written except the reports listed here."""

    def __init__(self, message: str, report_paths: tuple[Path, ...] = ()) -> None:
        self.report_paths = report_paths
        super().__init__(message)
