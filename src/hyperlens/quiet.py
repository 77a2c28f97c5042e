"""Third-party chatter on or off: a run prints hyperlens' own progress and summary only.

transformers, huggingface_hub and datasets draw their own progress bars ("Loading weights",
"Loading checkpoint shards", "Generating train split") and log advice through their own
loggers; they and PyTorch raise ``FutureWarning`` / ``DeprecationWarning`` about their own
APIs. :func:`quiet_third_party` hides all of that (``verbose=False``) or shows it again
(``verbose=True``). A deprecation warning raised from hyperlens' own code (or a script's
``__main__``) always shows: it points at a call of ours that needs fixing.

This module imports nothing heavy: packages not yet imported are quietened through their
environment variables, which they read when they are imported; packages already imported
are switched through their own functions. Call it once, early (the CLI does, before any
work); a later call switches back what it can.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import warnings
from types import ModuleType

__all__ = ["quiet_third_party"]

#: Warning categories hidden when they come from another package.
CATEGORIES: tuple[type[Warning], ...] = (DeprecationWarning, PendingDeprecationWarning,
                                         FutureWarning)
# Modules whose deprecation warnings always show: ours, and a script run as __main__.
_OURS = r"(hyperlens|__main__)(\.|$)"
# Environment variables read at import: (package, variable, value when quiet).
_ENV = (
    ("transformers", "TRANSFORMERS_VERBOSITY", "error"),
    ("transformers", "TRANSFORMERS_NO_ADVISORY_WARNINGS", "1"),
    ("datasets", "DATASETS_VERBOSITY", "error"),
    ("datasets", "HF_DATASETS_DISABLE_PROGRESS_BARS", "1"),
)
# The variables this module set (and may take back); ones the user set are left alone.
_SET_BY_US: set[str] = set()


def quiet_third_party(verbose: bool = False) -> None:
    """Hide (``verbose=False``) or show (``verbose=True``) other packages' progress bars,
    log messages below ERROR and deprecation warnings.

    Hidden when quiet: the progress bars of transformers, huggingface_hub and datasets;
    their INFO/WARNING log lines; ``DeprecationWarning``, ``PendingDeprecationWarning`` and
    ``FutureWarning`` raised from any module outside hyperlens. Errors, hyperlens' own
    progress bars (``HYPERLENS_PROGRESS``) and warnings of other categories are untouched.
    Environment variables the user set (``TRANSFORMERS_VERBOSITY``,
    ``HF_HUB_DISABLE_PROGRESS_BARS``, ...) win over both settings.

    Example:
        >>> quiet_third_party(verbose=False)  # what ``hyperlens`` does without --verbose
    """
    _set_warning_filters(verbose)
    _set_environment(verbose)
    _set_hub(verbose)
    if "transformers" in sys.modules:
        _set_transformers(verbose)
    if "datasets" in sys.modules:
        _set_datasets(verbose)


def _set_warning_filters(verbose: bool) -> None:
    # ``filterwarnings`` moves an identical filter to the front instead of adding a copy,
    # so switching back and forth never grows the list and the latest call wins.
    for cat in CATEGORIES:
        if verbose:
            warnings.filterwarnings("default", category=cat)
        else:
            warnings.filterwarnings("ignore", category=cat)
            warnings.filterwarnings("default", category=cat, module=_OURS)


def _set_environment(verbose: bool) -> None:
    for _, var, value in _ENV:
        if verbose:
            if var in _SET_BY_US:
                os.environ.pop(var, None)
                _SET_BY_US.discard(var)
        elif var not in os.environ:
            os.environ[var] = value
            _SET_BY_US.add(var)


def _user_set(var: str) -> bool:
    return var in os.environ and var not in _SET_BY_US


def _set_hub(verbose: bool) -> None:
    """huggingface_hub's bars (transformers' own bar follows them when it is imported)."""
    if _user_set("HF_HUB_DISABLE_PROGRESS_BARS"):
        return
    try:
        hub = importlib.import_module("huggingface_hub.utils")
    except ImportError:  # not installed: nothing of it to quieten
        return
    _switch_bars(hub, "progress_bars", verbose)


def _set_transformers(verbose: bool) -> None:
    tlog = importlib.import_module("transformers.utils.logging")
    _switch_bars(tlog, "progress_bar", verbose)
    _set_verbosity(tlog, "TRANSFORMERS_VERBOSITY", verbose)


def _set_datasets(verbose: bool) -> None:
    dutils = importlib.import_module("datasets.utils")
    with warnings.catch_warnings():  # datasets warns when its environment variable wins
        warnings.simplefilter("ignore")
        _switch_bars(dutils, "progress_bars", verbose)
    _set_verbosity(importlib.import_module("datasets.utils.logging"), "DATASETS_VERBOSITY", verbose)


def _switch_bars(module: ModuleType, what: str, verbose: bool) -> None:
    """Call ``module.enable_<what>()`` or ``module.disable_<what>()``."""
    getattr(module, f"{'enable' if verbose else 'disable'}_{what}")()


def _set_verbosity(log_module: ModuleType, var: str, verbose: bool) -> None:
    """A package's log level: WARNING when verbose, else ERROR, unless the user set ``var``."""
    if not _user_set(var):
        log_module.set_verbosity(logging.WARNING if verbose else logging.ERROR)
