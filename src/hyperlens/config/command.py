"""A command: a name, a config class and ``run(config, ctx) -> Report``.

Each module of :mod:`hyperlens.experiments` declares its commands with :class:`Command`;
the command line, the TOML keys, ``--help`` and the documentation are all generated from
the config class (:mod:`hyperlens.config.commandline`), and a notebook calls the same
``run`` with a config it builds itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..report import Report, check_out_dir
from .base import Config
from .context import RunContext

__all__ = ["Command", "start_report"]


@dataclass(frozen=True)
class Command:
    """One command of the ``hyperlens`` CLI.

    Args:
        name: the command as typed (``"transfer"``, or ``"hft train"`` for an action of a
            command group).
        help: one line for ``hyperlens --help``.
        config: the config class (its fields are the command's options).
        run: ``run(config, ctx) -> Report``; the report is saved when it returns.
        description: a paragraph for ``hyperlens NAME --help`` (default: ``help``).
        group_help: for an action, the line ``hyperlens --help`` shows for its group.
    """

    name: str
    help: str
    config: type[Config]
    run: Callable[[Any, RunContext], Report]
    description: str = ""
    group_help: str = ""

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self.name.split())


def start_report(name: str, config: Config, ctx: RunContext, *, title: str | None = None,
                 description: str = "") -> Report:
    """The report of a run: its folder from ``ctx`` (checked before any work), its config
    and the context that ran it (seed, resolved device and precision, executor; a command
    without ``--dtype`` in its ``CONTEXT`` records float32, the precision its models load
    in)."""
    out = check_out_dir(ctx.out_dir(name.replace(" ", "-")))
    record = ctx.record()
    if "dtype" not in config.CONTEXT:  # it takes no --dtype: its models run at full precision
        record["dtype"] = "float32"
    return Report(name, {**config.to_dict(), "context": record}, out_dir=out, seed=ctx.seed,
                  device=record["device"], title=title, description=description)
