"""Option groups that several commands share, declared once.

A command's config inherits a group (``class TerrainRunConfig(DataFileOptions, ...)``), so
the options have one spelling, one help text and one check everywhere.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import Any

from .base import Config
from .fields import Check, option

__all__ = ["DataFileOptions", "text_encoding", "check_side_by_side"]


def _known_encoding(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def text_encoding() -> Check:
    """A text encoding Python knows (``utf-8``, ``latin-1``, ``cp1252``, ...)."""
    return Check(_known_encoding, "a text encoding Python knows (utf-8, latin-1, cp1252, ...)",
                 ("klingon-8",))


_GROUP = "reading a data file"


def check_side_by_side(models: tuple[str, ...]) -> None:
    """``--models`` of a command that studies one model, or two side by side."""
    from ..errors import ConfigError

    if len(models) > 2:
        raise ConfigError(f"--models takes one model or two side by side, got "
                          f"{len(models)}: {' '.join(models)}.")


@dataclass(frozen=True, kw_only=True)
class DataFileOptions(Config):
    """How to read a local data file (every command that reads a dataset offers these)."""

    text_column: str | None = option(None, help="column holding the texts (name or 0-based "
                                     "position; default: detected)", group=_GROUP)
    label_column: str | None = option(None, help="column holding the labels (name or 0-based "
                                      "position; default: detected)", group=_GROUP)
    drop_invalid: bool = option(False, help="drop rows with an empty or non-string text or a "
                                "missing label instead of failing (the counts are kept in the "
                                "report)", group=_GROUP)
    encoding: str | None = option(None, help="text encoding of a csv / tsv file (default: "
                                  "utf-8, BOM accepted)", check=text_encoding(), group=_GROUP)

    def read_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`hyperlens.data.load`."""
        def column(value: str | None) -> str | int | None:
            return int(value) if value is not None and value.isdigit() else value

        opts: dict[str, Any] = {"text_column": column(self.text_column),
                                "label_column": column(self.label_column),
                                "drop_invalid": self.drop_invalid}
        if self.encoding:
            opts["read_options"] = {"encoding": codecs.lookup(self.encoding).name}
        return opts
