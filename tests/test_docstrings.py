"""Docstrings are part of the spec: every Sphinx-style reference in the packages names something that exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ceenv", "flows", "bento", "migrator")
REFERENCE = re.compile(r":(?:func|mod|class|meth|attr|data):`~?([\w\.]+)`")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolves(name: str, home: str) -> bool:
    """``name`` is an importable module or an attribute path below one (tried from the longest module prefix),
    or an attribute path inside the citing module itself (``Layout.to_dict``)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        rest = parts[i:]
        break
    else:
        obj, rest = importlib.import_module(home), parts
    for part in rest:
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def references() -> list[tuple[str, str]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            home = module_name(path)
            for name in REFERENCE.findall(path.read_text()):
                if name.startswith("."):
                    base = home if path.name == "__init__.py" else home.rsplit(".", 1)[0]
                    name = base + name
                found.append((home, name))
    return found


@pytest.mark.parametrize(("home", "name"), sorted(set(references())))
def test_every_docstring_reference_names_something_that_exists(home: str, name: str) -> None:
    assert resolves(name, home), f"{home} cites {name!r}, which does not exist: fix the docstring"
