"""A normal run shows hyperlens' output only; --verbose leaves third-party output alone."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
from hyperlens.models.quiet import quiet_third_party
quiet_third_party(verbose=sys.argv[1] == "1")
from transformers.utils import logging as tlog
import logging
print(tlog.is_progress_bar_enabled(), logging.getLogger("transformers").level <= logging.WARNING)
"""


def _state(verbose: bool) -> str:
    out = subprocess.run([sys.executable, "-c", CODE, "1" if verbose else "0"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_quiet_by_default_and_verbose_on_request() -> None:
    assert _state(False) == "False False"  # no bars, no warnings below errors
    assert _state(True) == "True True"
