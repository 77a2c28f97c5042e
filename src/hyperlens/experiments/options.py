"""Option types and checks shared by every command: the one validation layer of the CLI.

Commands declare their options with these argparse types, so a bad value is refused while
the command line (or the ``--config`` TOML file, which goes through the same types) is
read, under the option's public name and before any model or dataset is loaded. A command
that needs checks across options defines ``validate(args)``; the CLI calls it before
``main(args)``.

Examples:
    >>> positive_int("3")
    3
    >>> positive_int("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be an integer >= 1, got '0'
"""

from __future__ import annotations

import argparse
import codecs
from typing import Any

__all__ = [
    "positive_int",
    "nonnegative_int",
    "count_of_two",
    "positive_float",
    "unit_fraction",
    "encoding_name",
    "add_data_options",
    "data_options",
]


def _int_at_least(value: str, minimum: int) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be an integer >= {minimum}, got {value!r}"
        ) from None
    if n < minimum:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value!r}")
    return n


def positive_int(value: str) -> int:
    """An integer >= 1 (counts, sizes, widths)."""
    return _int_at_least(value, 1)


def count_of_two(value: str) -> int:
    """An integer >= 2 (sample sizes that a spread or an interval needs)."""
    return _int_at_least(value, 2)


def nonnegative_int(value: str) -> int:
    """An integer >= 0."""
    return _int_at_least(value, 0)


def _float(value: str) -> float:
    try:
        x = float(str(value).strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {value!r}") from None
    if x != x or x in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {value!r}")
    return x


def positive_float(value: str) -> float:
    """A finite number > 0 (learning rates, penalties, thresholds)."""
    x = _float(value)
    if x <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {value!r}")
    return x


def unit_fraction(value: str) -> float:
    """A number strictly between 0 and 1 (a share of the data)."""
    x = _float(value)
    if not 0.0 < x < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, got {value!r}")
    return x


def encoding_name(value: str) -> str:
    """A text encoding Python knows (``utf-8``, ``latin-1``, ``cp1252``, ...)."""
    try:
        return codecs.lookup(str(value)).name
    except LookupError:
        raise argparse.ArgumentTypeError(
            f"unknown text encoding {value!r}; use e.g. utf-8, latin-1 or cp1252"
        ) from None


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """``--text-column``, ``--label-column``, ``--drop-invalid`` and ``--encoding``: how to
    read a local data file (every command that reads a dataset offers them)."""
    g = parser.add_argument_group("reading a data file")
    g.add_argument("--text-column", default=None,
                   help="column holding the texts (name or 0-based position; default: detected)")
    g.add_argument("--label-column", default=None,
                   help="column holding the labels (name or 0-based position; default: detected)")
    g.add_argument("--drop-invalid", action="store_true",
                   help="drop rows with an empty or non-string text or a missing label "
                        "instead of failing (the counts are kept in the report)")
    g.add_argument("--encoding", default=None, type=encoding_name,
                   help="text encoding of a csv / tsv file (default: utf-8, BOM accepted)")


def _column(value: Any) -> str | int | None:
    if value is None:
        return None
    text = str(value)
    return int(text) if text.isdigit() else text


def data_options(args: argparse.Namespace | Any) -> dict[str, Any]:
    """Keyword arguments for :func:`hyperlens.data.load` from :func:`add_data_options`."""
    opts: dict[str, Any] = {
        "text_column": _column(getattr(args, "text_column", None)),
        "label_column": _column(getattr(args, "label_column", None)),
        "drop_invalid": bool(getattr(args, "drop_invalid", False)),
    }
    encoding = getattr(args, "encoding", None)
    if encoding:
        opts["read_options"] = {"encoding": str(encoding)}
    return opts
