"""The config base class: every command's options as one frozen, validated dataclass.

A config is checked when it is built, whoever builds it (the command line, a TOML file or
a notebook): each value is converted to its field's type (strings from the command line,
numbers and lists from TOML, Python values as they are) and tested against its range, then
:meth:`Config.check` applies the rules across fields. Every failure is a
:class:`~hyperlens.errors.ConfigError` that names the option, shows what came and says what
is allowed.

    >>> from dataclasses import dataclass
    >>> from hyperlens.config import Config, option, at_least
    >>> @dataclass(frozen=True, kw_only=True)
    ... class Demo(Config):
    ...     n_boot: int = option(1000, help="bootstrap resamples", check=at_least(1))
    ...     seeds: tuple[int, ...] = option((0, 1), help="replicate seeds", check=at_least(0))
    >>> Demo(n_boot="200", seeds=[3]).n_boot, Demo(seeds=[3]).seeds
    (200, (3,))
    >>> Demo(n_boot=0)
    Traceback (most recent call last):
    ...
    hyperlens.errors.ConfigError: --n-boot must be an integer >= 1, got 0.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Union

from ..errors import ConfigError
from .fields import OptionSpec, spec_of

__all__ = ["Config", "Option", "options_of"]


@dataclass(frozen=True)
class Option:
    """One option of a config class, resolved: name, type, default and spelling."""

    name: str
    spec: OptionSpec
    kind: type | None  # int, float, str, bool, Path (None: a Literal's choices)
    choices: tuple[Any, ...] | None
    many: bool  # a list option (tuple[...] field)
    optional: bool  # None is allowed
    default: Any
    required: bool

    @property
    def flag(self) -> str:
        """The command-line spelling (``--n-boot``)."""
        return self.spec.flag or "--" + self.name.replace("_", "-")

    @property
    def label(self) -> str:
        """How messages name the option."""
        return self.name.replace("_", "-").upper() if self.spec.positional else self.flag

    def type_text(self) -> str:
        """``an integer >= 1``, ``one of a, b``, ``a path`` ...: what the option takes."""
        if self.choices is not None:
            text = "one of " + ", ".join(map(str, self.choices))
        else:
            text = _KIND_TEXT.get(self.kind, "a value")
            if self.spec.check is not None:
                text = f"{text} {self.spec.check.describe()}"
        return f"a list of {_plural(text)}" if self.many else text

    def convert(self, raw: Any) -> Any:
        """``raw`` as this option's type and range; :class:`ConfigError` naming it if not."""
        if raw is None:
            if self.optional:
                return None
            raise ConfigError(f"{self.label} needs a value ({self.type_text()}); got nothing.")
        if self.many:
            items: list[Any] = (
                [raw] if isinstance(raw, (str, bytes)) or not _iterable(raw) else list(raw)
            )
            if len(items) < self.spec.min_items:
                raise ConfigError(
                    f"{self.label} needs at least {self.spec.min_items} value(s), got "
                    f"{len(items)}; give {self.type_text()}."
                )
            values = tuple(self._one(item, whole=raw) for item in items)
            if self.spec.unique and len(set(values)) != len(values):
                raise ConfigError(f"{self.label} names a value twice "
                                  f"({' '.join(map(str, values))}); give each once.")
            return values
        if isinstance(raw, (list, tuple)) and self.kind is not None and not isinstance(raw, str):
            raise ConfigError(f"{self.label} takes one value ({self.type_text()}), got {raw!r}.")
        return self._one(raw, whole=None)

    def _one(self, raw: Any, whole: Any) -> Any:
        shown = repr(raw)
        if self.choices is not None:
            value = _match_choice(raw, self.choices)
            if value is _NO:
                raise ConfigError(f"{self.label} must be {self.type_text()}, got {shown}.")
            return value
        value = _to_kind(self.kind, raw)
        if value is _NO:
            raise ConfigError(f"{self.label} must be {self.type_text()}, got {shown}.")
        check = self.spec.check
        if check is not None and check(value) is not None:
            if whole is not None:
                raise ConfigError(
                    f"{self.label} must be {self.type_text()}; {shown} is not (got {whole!r})."
                )
            raise ConfigError(f"{self.label} must be {self.type_text()}, got {shown}.")
        return value


_KIND_TEXT: dict[Any, str] = {
    int: "an integer", float: "a number", str: "a string", bool: "true or false",
    Path: "a path",
}


def _plural(text: str) -> str:
    for one, many in (("an integer", "integers"), ("a number", "numbers"),
                      ("a string", "strings"), ("a path", "paths")):
        if text.startswith(one):
            return many + text[len(one):]
    return text


class _No:
    pass


_NO: Any = _No()


def _iterable(value: Any) -> bool:
    return isinstance(value, (list, tuple, set, frozenset)) or (
        hasattr(value, "__iter__") and not isinstance(value, (str, bytes, Mapping, Path))
    )


def _to_kind(kind: Any, raw: Any) -> Any:
    """``raw`` converted to ``kind``, or ``_NO``."""
    if kind is bool:  # a flag on the command line, true / false in TOML: nothing else
        return raw if isinstance(raw, bool) else _NO
    if isinstance(raw, bool):
        return _NO  # True is not the integer 1 here
    if kind is int:
        if isinstance(raw, int):
            return int(raw)
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        if isinstance(raw, str):
            try:
                return int(raw.strip())
            except ValueError:
                return _NO
        try:
            import numpy as np

            if isinstance(raw, np.integer):
                return int(raw)
        except ImportError:  # pragma: no cover - numpy is a dependency
            pass
        return _NO
    if kind is float:
        try:
            value = float(raw.strip()) if isinstance(raw, str) else float(raw)
        except (TypeError, ValueError):
            return _NO
        return value if math.isfinite(value) else _NO
    if kind is str:
        if isinstance(raw, str):
            return raw
        if isinstance(raw, (int, float)):
            return str(raw)
        return _NO
    if kind is Path:
        if isinstance(raw, (str, Path)) and str(raw) != "":
            return Path(raw)
        return _NO
    return raw


def _match_choice(raw: Any, choices: tuple[Any, ...]) -> Any:
    for c in choices:
        if raw == c and type(raw) is type(c):
            return c
    text = str(raw).strip() if isinstance(raw, (str, int)) and not isinstance(raw, bool) else None
    for c in choices:
        if text is not None and str(c) == text:
            return c
    return _NO


def _resolve(tp: Any) -> tuple[Any, tuple[Any, ...] | None, bool, bool]:
    """(kind, choices, many, optional) of an annotation."""
    optional = False
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        if len(args) != 1:
            raise TypeError(f"unsupported option type {tp!r}")
        tp = args[0]
        origin = typing.get_origin(tp)
    many = False
    if origin in (tuple, list):
        tp = typing.get_args(tp)[0]
        many = True
        origin = typing.get_origin(tp)
    if origin is Literal:
        return None, tuple(typing.get_args(tp)), many, optional
    if tp not in _KIND_TEXT:
        raise TypeError(f"unsupported option type {tp!r}")
    return tp, None, many, optional


_OPTIONS: dict[type, tuple[Option, ...]] = {}


def options_of(cls: type) -> tuple[Option, ...]:
    """The options of a config class, in declaration order (cached per class)."""
    cached = _OPTIONS.get(cls)
    if cached is not None:
        return cached
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        spec = spec_of(f)
        if spec is None:
            continue
        kind, choices, many, optional = _resolve(hints[f.name])
        default = (f.default_factory() if f.default_factory is not dataclasses.MISSING
                   else f.default)
        out.append(Option(f.name, spec, kind, choices, many, optional or spec.required,
                          default, spec.required))
    _OPTIONS[cls] = tuple(out)
    return _OPTIONS[cls]


@dataclass(frozen=True, kw_only=True)
class Config:
    """Base of every command's config: values converted and checked when built.

    Subclasses are ``@dataclass(frozen=True, kw_only=True)`` classes whose fields are
    declared with :func:`hyperlens.config.option`, and may override :meth:`check` for rules
    across fields. ``CONTEXT`` names the run-context options the command honours
    (``seed``, ``device``, ``dtype``, ``executor``); the command line offers only those.
    """

    CONTEXT: ClassVar[frozenset[str]] = frozenset({"seed", "device"})
    #: What the command draws at random (``--seed`` drives it); empty: it draws nothing.
    RANDOM: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for opt in options_of(type(self)):
            raw = getattr(self, opt.name)
            if raw is None and opt.required:
                raise ConfigError(
                    f"{opt.label} is required: give {opt.type_text()} ({opt.spec.help})."
                )
            object.__setattr__(self, opt.name, opt.convert(raw))
        self.check()

    def check(self) -> None:
        """Rules across options (override; raise :class:`ConfigError`)."""

    @classmethod
    def options(cls) -> tuple[Option, ...]:
        return options_of(cls)

    @classmethod
    def option(cls, name: str) -> Option:
        for opt in options_of(cls):
            if opt.name == name:
                return opt
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """``{option: value}`` with JSON-friendly values (tuples as lists, paths as text)."""
        out: dict[str, Any] = {}
        for opt in options_of(type(self)):
            value = getattr(self, opt.name)
            if isinstance(value, tuple):
                value = [str(v) if isinstance(v, Path) else v for v in value]
            elif isinstance(value, Path):
                value = str(value)
            out[opt.name] = value
        return out

    def replace(self, **changes: Any) -> Config:
        """A copy with some options changed (checked like a new config)."""
        return dataclasses.replace(self, **changes)
