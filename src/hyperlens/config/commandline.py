"""Command-line options and TOML keys generated from a config class.

Every field of a :class:`~hyperlens.config.Config` becomes an option (``n_boot`` ->
``--n-boot``; a list field takes several values; a ``bool`` field gives ``--x`` and
``--no-x``) and a TOML key (``n-boot`` or ``n_boot``), with the field's help text, type,
range and default in ``--help``. Values from either source reach the config as they came
and are checked there, so one rule and one message cover the command line, the file and a
notebook.

Options are parsed with every default suppressed: the namespace holds only what the user
typed, and :func:`build` layers ``defaults < TOML file < command line``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .base import Config, Option, options_of
from .command import Command
from .context import ContextOptions, RunContext

__all__ = ["add_options", "build", "read_toml", "context_options", "help_line"]

ENV_EXECUTOR = "HYPERLENS_EXECUTOR"
ENV_ADDRESS = "HYPERLENS_RAY_ADDRESS"
_CONTEXT_ALWAYS = ("out", "progress", "verbose")


def context_options(cls: type[Config]) -> tuple[Option, ...]:
    """The common options a command offers: its ``CONTEXT`` plus out/progress/verbose (and
    ``--ray-address`` with ``executor``)."""
    wanted = set(cls.CONTEXT) | set(_CONTEXT_ALWAYS)
    if "executor" in wanted:
        wanted.add("ray_address")
    return tuple(o for o in options_of(ContextOptions) if o.name in wanted)


def _default_text(opt: Option) -> str:
    value = opt.default
    if opt.required:
        return "required"
    if value is None:
        return "default: none"
    if isinstance(value, bool):
        return f"default: {'on' if value else 'off'}"
    if isinstance(value, tuple):
        return "default: " + " ".join(map(str, value))
    return f"default: {value}"


def help_line(opt: Option) -> str:
    """An option's ``--help`` text: the sentence, then what it takes and its default."""
    takes = "" if opt.kind is bool else f"{opt.type_text()}; "
    text = f"{opt.spec.help} ({takes}{_default_text(opt)})"
    return text.replace("%", "%%")


def add_options(parser: argparse.ArgumentParser, cls: type[Config]) -> None:
    """Add the options of config class ``cls`` and its common options to ``parser``."""
    groups: dict[str, Any] = {}
    for opt in (*options_of(cls), *context_options(cls)):
        target: Any = parser
        if opt.spec.group:
            if opt.spec.group not in groups:
                groups[opt.spec.group] = parser.add_argument_group(opt.spec.group)
            target = groups[opt.spec.group]
        kw: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_line(opt)}
        if opt.spec.metavar:
            kw["metavar"] = opt.spec.metavar
        if opt.spec.positional:
            target.add_argument(opt.name, nargs="?", **kw)
            continue
        names = [opt.flag, *opt.spec.aliases]
        if opt.kind is bool:
            target.add_argument(*names, dest=opt.name, action=argparse.BooleanOptionalAction,
                                **kw)
        else:
            nargs = ("+" if opt.spec.min_items else "*") if opt.many else None
            target.add_argument(*names, dest=opt.name, nargs=nargs, **kw)
    offered = {o.name for o in context_options(cls)}
    for opt in options_of(ContextOptions):  # refused with a reason, not "unrecognized"
        if opt.name not in offered:
            parser.add_argument(opt.flag, dest=opt.name, default=argparse.SUPPRESS,
                                help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, default=argparse.SUPPRESS,
                        help="TOML file of option values (top-level keys and a [COMMAND] "
                             "table); command-line options override it")


def read_toml(path: Path, words: Sequence[str]) -> dict[str, Any]:
    """The values a TOML file gives command ``words``: its top-level keys, then the table
    of the command (``[transfer]``; ``[hft.train]`` for an action)."""
    if not path.is_file():
        raise ConfigError(f"--config {path} does not exist; pass the path of a TOML file.")
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path} is not valid TOML: {exc}") from exc
    values = {k: v for k, v in data.items() if not isinstance(v, dict)}
    table: Any = data
    for depth, word in enumerate(words, 1):
        table = table.get(word, {}) if isinstance(table, dict) else {}
        if not isinstance(table, dict):
            raise ConfigError(f"--config {path}: {'.'.join(words[:depth])} must be a table "
                              f"([{'.'.join(words[:depth])}]), got {table!r}.")
        last = depth == len(words)  # a table inside the last one is a bad value, not an action
        values.update({k: v for k, v in table.items() if last or not isinstance(v, dict)})
    return values


def _warn_aliases(cls: type[Config], argv: Sequence[str]) -> None:
    for opt in options_of(cls):
        for alias in opt.spec.aliases:
            if any(a == alias or a.startswith(alias + "=") for a in argv):
                print(f"hyperlens: {alias} is now {opt.flag}; use {opt.flag} (the old "
                      "spelling will be removed in the next release)", file=sys.stderr)


_UNUSED = {
    "seed": "draws nothing at random outside its own options",
    "executor": "runs in one process",
    "ray_address": "runs in one process",
    "dtype": "has no precision setting",
    "device": "runs on the CPU only",
}


def _refuse_unused_context(command: Command, typed: Mapping[str, Any]) -> None:
    offered = {o.name for o in context_options(command.config)}
    for opt in options_of(ContextOptions):
        if opt.name in typed and opt.name not in offered:
            raise ConfigError(
                f"hyperlens {command.name} {_UNUSED.get(opt.name, 'does not use it')}: "
                f"{opt.flag} does nothing here; drop it."
            )


def build(command: Command, typed: Mapping[str, Any], argv: Sequence[str] = (),
          env: Mapping[str, str] | None = None) -> tuple[Config, RunContext]:
    """The checked config and run context of one invocation.

    ``typed`` holds the options given on the command line (parsed with suppressed
    defaults, so absent options are absent) and maybe ``config`` (a TOML path).
    """
    env = os.environ if env is None else env
    cls = command.config
    _warn_aliases(cls, argv)
    typed = dict(typed)
    _refuse_unused_context(command, typed)
    path = typed.pop("config", None)
    values: dict[str, Any] = {}
    if path is not None:
        values = read_toml(Path(path), command.words)
    ctx_names = {o.name for o in context_options(cls)}
    known = {o.name for o in options_of(cls)} | ctx_names
    for key in values:
        if key.replace("-", "_") not in known:
            keys = sorted(k.replace("_", "-") for k in known)
            raise ConfigError(
                f"--config {path}: key {key!r} is not an option of 'hyperlens {command.name}'; "
                f"valid keys: {', '.join(keys)}."
            )
    values = {k.replace("-", "_"): v for k, v in values.items()}
    from_file = set(values) - set(typed)
    values.update(typed)
    ctx_values = {k: v for k, v in values.items() if k in ctx_names}
    if "device" not in ctx_names:  # a command that runs on the CPU only records the CPU
        ctx_values["device"] = "cpu"
    if "executor" in ctx_names and "executor" not in ctx_values and env.get(ENV_EXECUTOR):
        ctx_values["executor"] = env[ENV_EXECUTOR]
    if ctx_values.get("executor", "local") == "ray" and "ray_address" not in ctx_values:
        if env.get(ENV_ADDRESS):
            ctx_values["ray_address"] = env[ENV_ADDRESS]
    if ctx_values.get("ray_address") and ctx_values.get("executor", "local") == "local":
        raise ConfigError(
            f"--ray-address {ctx_values['ray_address']!r} was given with --executor local; "
            "add --executor ray (or drop the address)."
        )
    try:
        opts = ContextOptions(**ctx_values)
        config = cls(**{k: v for k, v in values.items() if k not in ctx_names})
    except ConfigError as exc:
        flags = {o.flag for o in (*options_of(cls), *context_options(cls))
                 if o.name in from_file}
        named = [f for f in flags if f in str(exc)]
        raise ConfigError(f"{exc} (in --config {path})" if named else str(exc)) from None
    ctx = RunContext.from_options(opts)
    ctx.check()
    return config, ctx
