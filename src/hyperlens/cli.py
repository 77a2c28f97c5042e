"""The ``hyperlens`` command line.

Every experiment is one subcommand that writes a report folder (``results.json``, PNG
plots, ``index.html``). Subcommands live in :mod:`hyperlens.experiments`; each module
declares ``COMMANDS``, a tuple of :class:`hyperlens.config.Command` (a name, a config class
and ``run(config, ctx) -> Report``), and the options, TOML keys and ``--help`` are
generated from the config class (:mod:`hyperlens.config.commandline`). Modules not yet
declared that way expose ``COMMAND``, ``HELP``, ``add_arguments(parser)`` and
``main(args) -> Path``, and may define ``validate(args)``. Every value is checked, and the
output folder too, before any model is loaded.

Options shared by every command: ``--seed``, ``--device``, ``--out``, ``--config``
(a TOML file whose top-level keys and ``[<command>]`` table fill options not given on the
command line: flags override the file), ``--no-progress``, and ``--executor local|ray`` /
``--ray-address`` (:mod:`hyperlens.run`; accepted by commands with ``USES_EXECUTOR``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from . import __version__
from .config import Command
from .config.commandline import add_options, build
from .errors import ConfigError, HyperlensError
from .experiments.options import nonnegative_int

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
)

_BUILTIN = {"models", "report"}


def _load_commands() -> list[ModuleType]:
    mods = []
    for name in COMMAND_MODULES:
        mod = importlib.import_module(name)
        if hasattr(mod, "COMMANDS"):
            mods.append(mod)
            continue
        for attr in ("COMMAND", "HELP", "add_arguments", "main"):
            if not hasattr(mod, attr):
                raise RuntimeError(f"command module {name} lacks {attr}")
        mods.append(mod)
    return mods


def _add_common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("common options")
    g.add_argument("--seed", type=nonnegative_int, default=0,
                   help="master random seed (default: 0)")
    g.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    g.add_argument("--out", type=Path, default=None,
                   help="report folder (default: runs/<command>-<date>-<time>)")
    g.add_argument("--config", type=Path, default=None,
                   help="TOML file with option values; command-line flags override it")
    g.add_argument("--no-progress", dest="progress", action="store_false", default=True,
                   help="hide progress bars")
    g.add_argument("--executor", default=os.environ.get("HYPERLENS_EXECUTOR", "local"),
                   help="where cells and embedding shards run: local (this process) | ray "
                        "(default: $HYPERLENS_EXECUTOR or local)")
    g.add_argument("--ray-address", default=os.environ.get("HYPERLENS_RAY_ADDRESS"),
                   help="Ray cluster for --executor ray: auto | HOST:PORT (default: "
                        "$HYPERLENS_RAY_ADDRESS, else a private instance on this machine)")


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
        if hasattr(mod, "COMMANDS"):
            for cmd in mod.COMMANDS:
                _add_command(sub, groups, cmd)
            continue
        p = sub.add_parser(
            mod.COMMAND, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP)
        )
        mod.add_arguments(p)
        _add_common(p)
        p.set_defaults(_module=mod.__name__)
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


def _explicit_options(argv: Sequence[str]) -> set[str]:
    """Names of the options the user typed (a second parse with every default suppressed)."""
    shadow = build_parser()

    def suppress(p: argparse.ArgumentParser) -> None:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for child in action.choices.values():
                    suppress(child)
            elif action.dest not in ("help", "version"):
                action.default = argparse.SUPPRESS
        p.set_defaults(**{k: argparse.SUPPRESS for k in list(p._defaults)})

    suppress(shadow)
    ns, _ = shadow.parse_known_args(list(argv))
    return set(vars(ns))


def _apply_config(
    args: argparse.Namespace, argv: Sequence[str], parser: argparse.ArgumentParser
) -> None:
    path: Path = args.config
    if not path.exists():
        raise ConfigError(f"--config {path} does not exist; pass the path of a TOML file.")
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path} is not valid TOML: {exc}") from exc
    values: dict[str, Any] = {k: v for k, v in data.items() if not isinstance(v, dict)}
    table = data.get(args.command, {})
    if isinstance(table, dict):
        values.update(table)
    explicit = _explicit_options(argv)
    known = set(vars(args)) - {"_module", "command", "config"}
    for key, value in values.items():
        dest = key.replace("-", "_")
        if dest not in known:
            raise ConfigError(
                f"--config {path}: key {key!r} is not an option of 'hyperlens {args.command}'; "
                f"valid keys: {', '.join(sorted(k.replace('_', '-') for k in known))}."
            )
        if dest not in explicit:
            setattr(args, dest, _coerce(_action_for(parser, args.command, dest), key, value, path))


def _action_for(
    parser: argparse.ArgumentParser, command: str, dest: str
) -> argparse.Action | None:
    """The argparse action of option ``dest`` in subcommand ``command``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            for a in action.choices[command]._actions:
                if a.dest == dest:
                    return a
    return None


def _coerce(action: argparse.Action | None, key: str, value: Any, path: Path) -> Any:
    """A TOML value checked and converted exactly as the same option on the command line."""
    where = f"--config {path}: {key}"
    if action is None:
        return value
    if action.nargs == 0:  # flags: store_true / store_false
        if not isinstance(value, bool):
            raise ConfigError(f"{where} is a flag; write {key} = true or false, got {value!r}.")
        return value  # the key is the option's destination (e.g. progress = false)
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if isinstance(value, dict) or (isinstance(value, list) and not many):
        raise ConfigError(f"{where} takes one value, got {value!r}.")
    items = value if isinstance(value, list) else [value]
    if many and action.nargs == "+" and not items:
        raise ConfigError(f"{where} needs at least one value, got an empty list.")
    if isinstance(action.nargs, int) and len(items) != action.nargs:
        raise ConfigError(f"{where} takes {action.nargs} values, got {value!r}.")
    out = []
    for item in items:
        if isinstance(item, (dict, list)):
            raise ConfigError(f"{where}: {item!r} is not a single value.")
        if isinstance(item, bool):
            raise ConfigError(f"{where} takes {_kind(action)}, got the boolean {item!r}.")
        text = str(item)
        try:
            conv = action.type(text) if callable(action.type) else text
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where} takes {_kind(action)}, got {item!r} ({exc}).") from None
        if action.choices is not None and conv not in action.choices:
            raise ConfigError(
                f"{where} must be one of {', '.join(map(str, action.choices))}, got {item!r}."
            )
        out.append(conv)
    return out if many else out[0]


def _kind(action: argparse.Action) -> str:
    t = action.type
    name = getattr(t, "__name__", None) or "a string"
    return {"int": "an integer", "float": "a number", "str": "a string"}.get(name, name)


def _check_executor(args: argparse.Namespace) -> None:
    """Validate ``--executor`` / ``--ray-address`` (commands opt in with ``USES_EXECUTOR``)."""
    from .run import check_executor

    args.executor = check_executor(args.executor, args.ray_address)
    mod = importlib.import_module(args._module)
    if args.executor != "local" and not getattr(mod, "USES_EXECUTOR", False):
        users = [m.COMMAND for m in _load_commands() if getattr(m, "USES_EXECUTOR", False)]
        raise ConfigError(
            f"hyperlens {args.command} runs in one process; --executor {args.executor} applies "
            f"to: {', '.join(users)}. Drop --executor for this command."
        )


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
    from .report import check_out_dir

    try:
        if args.command == "models":
            return _run_models(args)
        if args.command == "report":
            return _run_report(args)
        if args.config is not None:
            _apply_config(args, argv, parser)
        if not args.progress:
            os.environ["HYPERLENS_PROGRESS"] = "0"
        from .utils import resolve_device

        # Every check runs here, before any model or dataset is loaded.
        resolve_device(args.device)
        _check_executor(args)
        if args.out is None:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            args.out = Path("runs") / f"{args.command}-{stamp}"
        args.out = check_out_dir(args.out)
        mod = importlib.import_module(args._module)
        validate = getattr(mod, "validate", None)
        if validate is not None:
            validate(args)
        folder = Path(mod.main(args))
    except HyperlensError as exc:
        print(f"hyperlens {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nhyperlens {args.command}: interrupted; finished parts are kept in {args.out}",
              file=sys.stderr)
        return 130
    _print_summary(folder)
    return 0


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
