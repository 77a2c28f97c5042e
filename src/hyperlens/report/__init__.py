"""Reports: one folder per run with ``results.json``, PNG plots and ``index.html``."""

from .core import (
    SCHEMA_VERSION,
    Report,
    Section,
    check_out_dir,
    environment_info,
    frames,
    load_results,
    rebuild,
)
from .plots import histogram, render

__all__ = ["Report", "Section", "SCHEMA_VERSION", "environment_info", "load_results", "rebuild",
           "histogram", "render", "check_out_dir", "frames"]
