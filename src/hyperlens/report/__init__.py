"""Reports: one folder per run with ``results.json``, PNG plots and ``index.html``."""

from .core import (
    SCHEMA_VERSION,
    VOLATILE_KEYS,
    Report,
    Section,
    check_out_dir,
    comparable,
    environment_info,
    is_complete,
    load_frames,
    load_results,
    rebuild,
)
from .frames import table_frame, table_frames
from .plots import histogram, render

__all__ = ["Report", "Section", "SCHEMA_VERSION", "environment_info", "load_results", "rebuild",
           "histogram", "render", "check_out_dir", "is_complete", "comparable", "VOLATILE_KEYS",
           "table_frames", "table_frame", "load_frames"]
