"""Quiet output: only hyperlens' own progress and summary unless the user asks for more.

Loading a model through transformers prints a "Loading weights" bar per model and the
libraries emit deprecation and future warnings that say nothing about the experiment.
:func:`quiet_third_party` turns those off for a normal run; ``verbose=True`` (the CLI's
``--verbose``) leaves every third-party message as the libraries print it.
"""

from __future__ import annotations

import logging
import os
import warnings

__all__ = ["quiet_third_party"]

#: Packages whose progress bars, log lines and warnings a normal run hides.
_PACKAGES = ("transformers", "huggingface_hub", "datasets", "accelerate", "sentence_transformers",
             "gguf", "torch", "sklearn", "numba", "ray")


def quiet_third_party(verbose: bool = False) -> None:
    """Silence third-party progress bars, log lines below errors and their warnings.

    Idempotent; call once at the start of a run. With ``verbose=True`` nothing is changed.
    """
    if verbose:
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DATASETS_VERBOSITY", "error")
    for name in _PACKAGES:
        logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=rf"{name}(\.|$)")
        warnings.filterwarnings("ignore", category=FutureWarning, module=rf"{name}(\.|$)")
        warnings.filterwarnings("ignore", category=UserWarning, module=rf"{name}(\.|$)")
    try:  # already-imported libraries read their settings at import: tell them directly
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:  # pragma: no cover
        pass
