"""The command contract: typed configs, the run context and the options generated from them.

- :class:`Config` and :func:`option`: a command's options as a frozen dataclass, checked
  when built (types, ranges with :func:`at_least`, :func:`above`, :func:`between`, rules
  across options in :meth:`Config.check`);
- :class:`RunContext`: seed, device, precision, executor, progress and report folder, with
  :func:`derive_seed` the one way to derive a random stream;
- :class:`Command` and :func:`start_report`: ``run(config, ctx) -> Report``;
- :mod:`hyperlens.config.commandline`: the command-line options and TOML keys generated
  from a config class.

docs/architecture.md describes the contract with a worked example.
"""

from __future__ import annotations

from .base import Config, Option, options_of
from .command import Command, start_report
from .context import DTYPES, ContextOptions, RunContext, derive_seed
from .fields import Check, above, at_least, between, option

__all__ = [
    "Config",
    "Option",
    "options_of",
    "option",
    "Check",
    "at_least",
    "above",
    "between",
    "RunContext",
    "ContextOptions",
    "derive_seed",
    "DTYPES",
    "Command",
    "start_report",
]
