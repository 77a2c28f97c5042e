"""The ``hyperlens`` command line.

Every experiment is one subcommand that writes a report folder (``results.json``, PNG
plots, ``index.html``). Subcommands live in :mod:`hyperlens.experiments`; each module
declares ``COMMANDS``, a tuple of :class:`hyperlens.config.Command` (a name, a config class
and ``run(config, ctx) -> Report``), and the options, TOML keys and ``--help`` are
generated from the config class (:mod:`hyperlens.config.commandline`). Every value is
checked, and the output folder too, before any model is loaded.

Common options (:class:`hyperlens.config.ContextOptions`): ``--out``, ``--config`` (a TOML
file whose top-level keys and ``[<command>]`` table fill options not given on the command
line: flags override the file), ``--no-progress`` and ``--verbose`` everywhere; ``--seed``,
``--device``, ``--dtype`` and ``--executor`` / ``--ray-address`` where the command's config
says it honours them (elsewhere they are refused with the reason).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from . import __version__
from .config import Command
from .config.commandline import add_options, build
from .errors import HyperlensError

__all__ = ["main", "build_parser", "COMMAND_MODULES"]

#: Modules that provide subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "hyperlens.experiments.tour",
    "hyperlens.experiments.terrain",
    "hyperlens.experiments.mha_cv",
    "hyperlens.experiments.weights",
    "hyperlens.experiments.transfer",
    "hyperlens.experiments.align_vocab",
    "hyperlens.experiments.relational",
    "hyperlens.experiments.modulate",
    "hyperlens.experiments.header",
    "hyperlens.experiments.hft",
    "hyperlens.experiments.hft_saved",
    "hyperlens.experiments.hft_scale",
)

def _load_commands() -> list[ModuleType]:
    mods = []
    for name in COMMAND_MODULES:
        mod = importlib.import_module(name)
        if not hasattr(mod, "COMMANDS"):
            raise RuntimeError(f"command module {name} lacks COMMANDS")
        mods.append(mod)
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyperlens",
        description="Measure frozen networks' geometry, encode them as hyperdimensional codes "
                    "and move knowledge between models. Each command writes a report folder.",
    )
    parser.add_argument("--version", action="version", version=f"hyperlens {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, Any] = {}
    for mod in _load_commands():
        for cmd in mod.COMMANDS:
            _add_command(sub, groups, cmd)
    pm = sub.add_parser("models", help="list the named models and whether each is available here")
    pm.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pr = sub.add_parser(
        "report", help="redraw a report's plots and index.html from its results.json"
    )
    pr.add_argument("folder", type=Path, help="a report folder written by a hyperlens command")
    return parser


def _add_command(sub: Any, groups: dict[str, Any], cmd: Command) -> None:
    """A subparser for ``cmd`` (an action under its group for ``"hft train"``)."""
    words = cmd.words
    target = sub
    if len(words) == 2:
        if words[0] not in groups:
            gp = sub.add_parser(words[0], help=cmd.group_help or f"{words[0]} commands",
                                description=cmd.group_help or None)
            groups[words[0]] = gp.add_subparsers(dest="action", metavar="ACTION", required=True)
        target = groups[words[0]]
    text = (cmd.description or cmd.help).replace("``", "")
    p = target.add_parser(words[-1], help=cmd.help, description=text)
    add_options(p, cmd.config)
    p.set_defaults(_command=cmd)


def _run_command(cmd: Command, ns: argparse.Namespace, argv: Sequence[str]) -> int:
    """Check everything, run ``cmd`` and print its summary; returns the exit code."""
    from .report import check_out_dir

    typed = {k: v for k, v in vars(ns).items()
             if k not in {"command", "action", "_command", "_module"}}
    out: Path | None = None
    try:
        config, ctx = build(cmd, typed, argv)
        out = check_out_dir(ctx.out_dir(cmd.name.replace(" ", "-")))
        ctx = ctx.replace(out=out)
        if not ctx.progress:
            os.environ["HYPERLENS_PROGRESS"] = "0"
        from .quiet import quiet_third_party

        quiet_third_party(ctx.verbose)
        report = cmd.run(config, ctx)
    except HyperlensError as exc:
        print(f"hyperlens {cmd.name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nhyperlens {cmd.name}: interrupted; finished parts are kept in {out}",
              file=sys.stderr)
        return 130
    _print_summary(Path(report.out_dir))
    return 0


def _print_table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> None:
    from .report.html import format_value

    cells = [[format_value(v) for v in r] for r in rows]
    if header:
        cells.insert(0, list(header))
    if not cells:
        return
    widths = [
        max(len(r[i]) for r in cells if i < len(r)) for i in range(max(len(r) for r in cells))
    ]
    for j, r in enumerate(cells):
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
        if header and j == 0:
            print("  ".join("-" * w for w in widths))


def _run_models(args: argparse.Namespace) -> int:
    from .models import list_models

    rows = list_models()
    if args.json:
        import json

        from .utils import to_jsonable

        print(json.dumps(to_jsonable(rows), indent=2))
        return 0
    cols = ["name", "kind", "hidden", "layers", "parameters", "available", "detail"]
    _print_table([[r.get(c) for c in cols] for r in rows], header=cols)
    return 0


def _run_report(args: argparse.Namespace) -> int:
    from .report import rebuild

    folder = rebuild(args.folder)
    print(f"report: {folder / 'index.html'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hyperlens`` command; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    if getattr(args, "_command", None) is not None:
        return _run_command(args._command, args, argv)
    try:
        if args.command == "models":
            return _run_models(args)
        return _run_report(args)
    except HyperlensError as exc:
        print(f"hyperlens {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _print_summary(folder: Path) -> None:
    import json

    results_file = folder / "results.json"
    if results_file.exists():
        results = json.loads(results_file.read_text("utf-8"))
        rows = results.get("summary") or []
        if rows:
            print()
            _print_table(rows, header=["result", "value"])
        total = results.get("timings", {}).get("total_s")
        if total is not None:
            print(f"\nfinished in {total:.1f} s")
    print(f"report: {(folder / 'index.html').resolve()}")
