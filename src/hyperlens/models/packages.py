"""Where installed packages live, found without importing them.

Some model packages import heavy dependencies on import; the zoo only needs their data
folders, so it asks :mod:`importlib` for the package's location instead.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["package_dir"]


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (``None`` if absent)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin:
        return Path(spec.origin).parent
    return None
