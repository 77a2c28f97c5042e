"""Declaring one option: its type, default, help text, range and command-line spelling.

A command's options are the fields of a frozen dataclass (:class:`hyperlens.config.Config`);
each field is declared with :func:`option`, which keeps everything the command line, the
TOML file, the help text, the documentation and the bad-input tests need in the field's
metadata. Nothing about an option is written twice.

Ranges are :class:`Check` objects, so that a message names the rule and the tests can ask a
rule for values it must refuse:

    >>> at_least(1).describe()
    '>= 1'
    >>> at_least(1)(0)
    'must be >= 1'
    >>> at_least(1)(3) is None
    True
    >>> between(0, 1, closed=False).refused()
    [0, 1]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Check",
    "at_least",
    "above",
    "between",
    "option",
    "OptionSpec",
    "spec_of",
]


@dataclass(frozen=True)
class Check:
    """A range rule for one value (or for each item of a list option).

    ``test(value)`` is true for an accepted value; ``text`` completes "must be ...";
    ``bad`` are values the rule refuses (the bad-input tests feed them to every option).
    """

    test: Callable[[Any], bool]
    text: str
    bad: tuple[Any, ...] = ()

    def __call__(self, value: Any) -> str | None:
        """``None`` when ``value`` passes, else the reason (``"must be >= 1"``)."""
        return None if self.test(value) else f"must be {self.text}"

    def describe(self) -> str:
        return self.text

    def refused(self) -> list[Any]:
        return list(self.bad)


def at_least(minimum: float) -> Check:
    """``value >= minimum`` (counts: ``at_least(1)``; seeds and indices: ``at_least(0)``)."""
    return Check(lambda v: v >= minimum, f">= {minimum}", (minimum - 1,))


def above(minimum: float) -> Check:
    """``value > minimum`` (rates, penalties, temperatures: ``above(0)``)."""
    return Check(lambda v: v > minimum, f"> {minimum}", (minimum, minimum - 1))


def between(low: float, high: float, *, closed: bool = True) -> Check:
    """``low <= value <= high`` (``closed=False``: strictly between, as for a fraction)."""
    if closed:
        return Check(lambda v: low <= v <= high, f"between {low} and {high}",
                     (low - 1, high + 1))
    return Check(lambda v: low < v < high, f"strictly between {low} and {high}", (low, high))


@dataclass(frozen=True)
class OptionSpec:
    """What :func:`option` records in a field's metadata."""

    help: str
    check: Check | None = None
    flag: str | None = None
    positional: bool = False
    metavar: str | None = None
    min_items: int = 1
    aliases: tuple[str, ...] = ()
    group: str | None = None
    required: bool = False
    unique: bool = False


_KEY = "hyperlens.option"


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    check: Check | None = None,
    flag: str | None = None,
    positional: bool = False,
    metavar: str | None = None,
    min_items: int = 1,
    aliases: Sequence[str] = (),
    group: str | None = None,
    unique: bool = False,
) -> Any:
    """A config field that is also a command-line option and a TOML key.

    Args:
        default: the default value; a list is stored as a tuple (configs are frozen).
            Leave it out for a required option (building the config without it fails with
            a message naming the option).
        help: one sentence for ``--help`` and the documentation (the default, the type and
            the range are appended automatically).
        check: the range of the value, or of each item of a list option.
        flag: the command-line spelling when it is not ``--field-name`` (e.g. ``"--C"``).
        positional: a positional argument instead of an option.
        metavar: the placeholder shown in ``--help``.
        min_items: the fewest items a list option accepts.
        aliases: former spellings (``"--boot"``) still accepted for one release; using one
            prints the spelling to use instead.
        group: a heading under which ``--help`` lists the option.
        unique: a list option whose values must all differ (replicate seeds, arms).
    """
    required = default is dataclasses.MISSING
    spec = OptionSpec(help=help, check=check, flag=flag, positional=positional,
                      metavar=metavar, min_items=min_items, aliases=tuple(aliases),
                      group=group, required=required, unique=unique)
    metadata = {_KEY: spec}
    if required:  # checked by Config.__post_init__, so the message names the option
        return dataclasses.field(default=None, metadata=metadata)
    if isinstance(default, (list, tuple)):
        items = tuple(default)
        return dataclasses.field(default=items, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def spec_of(field: dataclasses.Field[Any]) -> OptionSpec | None:
    """The :class:`OptionSpec` of a field declared with :func:`option` (else ``None``)."""
    spec = field.metadata.get(_KEY)
    return spec if isinstance(spec, OptionSpec) else None


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(
        value
    )
