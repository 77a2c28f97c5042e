"""Reading activations: :func:`capture` and its helpers, defined with the sites in :mod:`.hooks`.

Kept as its own import path; the site table is in :mod:`hyperlens.models.hooks`.
"""

from __future__ import annotations

from .hooks import Activations, StopForward, capture, point_names, resolve_points

__all__ = ["capture", "Activations", "StopForward", "point_names", "resolve_points"]
