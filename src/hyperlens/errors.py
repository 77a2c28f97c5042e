"""The exception hierarchy of hyperlens.

Every error that hyperlens raises on purpose derives from :class:`HyperlensError`, so a
caller can catch the whole family with one ``except``. Subclasses exist where a caller
needs to tell failures apart; several also derive from the matching built-in exception
(``ValueError``, ``LookupError``, ``FileNotFoundError``) so generic handlers keep working.

Messages follow one rule: name the argument, say what was expected, show what arrived,
and say how to fix it.
"""

from __future__ import annotations

__all__ = [
    "HyperlensError",
    "InputError",
    "ShapeError",
    "ModelNotFoundError",
    "DataError",
    "DeviceError",
    "DependencyError",
    "ConfigError",
    "ReportError",
    "NotFittedError",
]


class HyperlensError(Exception):
    """Base class of every error raised by hyperlens."""


class InputError(HyperlensError, ValueError):
    """An argument has a bad value: NaN, empty input, out-of-range parameter, ..."""


class ShapeError(InputError):
    """Tensor shapes do not fit together; the message repeats the shapes that arrived."""


class ModelNotFoundError(HyperlensError, LookupError):
    """A model name, Hugging Face id or path cannot be resolved or loaded offline."""


class DataError(HyperlensError):
    """A dataset, file or column is missing or malformed."""


class DeviceError(HyperlensError):
    """The requested device is not available (for example ``cuda`` without a GPU)."""


class DependencyError(HyperlensError, ImportError):
    """An optional package that this feature needs is not installed."""


class ConfigError(HyperlensError, ValueError):
    """A configuration file or a command-line option is invalid."""


class ReportError(HyperlensError):
    """A report folder is missing, incomplete or was written by an incompatible version."""


class NotFittedError(InputError, AttributeError):
    """An estimator (encoder, PCA, aligner) was used before ``fit``.

    Derives from ``ValueError`` and ``AttributeError`` like scikit-learn's own
    ``NotFittedError``, so scikit-learn's checks and ``hasattr``-style probes treat it the
    same way.
    """
