"""The command pages, generated from the commands themselves while the site is built.

Every ``hyperlens`` command is a :class:`hyperlens.config.Command` whose config class
declares its options (type, default, range, help); the command line, the TOML keys and
``--help`` are generated from it, and so are these pages: one per command, and an index.
``hyperlens models`` and ``hyperlens report`` take no config, so their pages come from
their argparse parsers. Nothing here is committed as Markdown, so a page cannot fall
behind its command.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from typing import Any

from docstrings import to_markdown

#: The capability page that explains each command (the pages link to each other).
CAPABILITY = {
    "tour": "index.md",
    "terrain": "capabilities/terrain.md",
    "weights": "capabilities/weights.md",
    "mha-cv": "capabilities/mha-cv.md",
    "transfer": "capabilities/transfer.md",
    "align-vocab": "capabilities/transfer.md",
    "relational": "capabilities/relational.md",
    "modulate": "capabilities/modulate.md",
    "header": "capabilities/header.md",
    "hft capture": "capabilities/hft.md",
    "hft train": "capabilities/hft.md",
    "hft scale": "capabilities/hft.md",
    "hft eval": "capabilities/hft.md",
    "hft generate": "capabilities/hft.md",
    "models": "capabilities/models.md",
    "report": "results.md",
}


@dataclass(frozen=True)
class CommandPage:
    name: str  # as typed: "terrain", "hft train"
    help: str
    markdown: str

    @property
    def uri(self) -> str:
        return f"commands/{self.name.replace(' ', '-')}.md"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(opt: Any) -> str:
    from hyperlens.config.commandline import _default_text

    text = _default_text(opt)
    return text.removeprefix("default: ") if text != "required" else "**required**"


def _option_rows(options: Any) -> list[str]:
    rows = ["| option | takes | default | what it does |", "|---|---|---|---|"]
    for opt in options:
        flag = opt.name.replace("_", "-").upper() if opt.spec.positional else opt.flag
        if opt.kind is bool:
            flag = f"{opt.flag} / --no-{opt.flag[2:]}"
        names = ", ".join(f"`{a}`" for a in opt.spec.aliases)
        aliases = f" (formerly {names})" if names else ""
        takes = "a flag" if opt.kind is bool else opt.type_text()
        rows.append(f"| `{flag}`{aliases} | {_cell(takes)} | {_cell(_default(opt))} | "
                    f"{_cell(opt.spec.help)} |")
    return rows


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def command_page(cmd: Any, module: str) -> CommandPage:
    """The Markdown page of one :class:`~hyperlens.config.Command`."""
    from hyperlens.config.commandline import context_options

    cls = cmd.config
    options = cls.options()
    common = context_options(cls)
    body = to_markdown(cmd.description or cmd.help).strip()
    lines = [f"# hyperlens {cmd.name}", "", f"*{cmd.help}*", "", body, ""]
    lines += ["## Usage", "", "```bash", f"hyperlens {cmd.name} [OPTIONS]", "```", "",
              f"What it does and what its report shows: [{_title(cmd.name)}]"
              f"(../{CAPABILITY[cmd.name]}).", ""]
    groups: dict[str, list[Any]] = {"": []}
    for opt in options:
        groups.setdefault(opt.spec.group or "", []).append(opt)
    lines += ["## Options", ""]
    for group, opts in groups.items():
        if not opts:
            continue
        if group:
            lines += [f"### {group[0].upper()}{group[1:]}", ""]
        lines += _option_rows(opts) + [""]
    lines += ["## Common options", "",
              "The same spelling and meaning in every command; the ones a command does not "
              "use are refused with the reason.", ""]
    lines += _option_rows(common)
    lines += ["| `--config FILE.toml` | a path | none | TOML file of option values (top-level "
              f"keys and a `[{cmd.name.replace(' ', '.')}]` table); options on the command "
              "line override it |", ""]
    if cls.RANDOM:
        lines += [f"`--seed` drives {cls.RANDOM}.", ""]
    example = [o for o in options if not o.required and o.default is not None
               and o.kind is not bool and not o.spec.group][:3]
    table = cmd.name.replace(" ", ".")
    lines += ["## The same run from a TOML file", "", "```toml", "seed = 0", f"[{table}]"]
    lines += [f"# {o.name.replace('_', '-')} = ...   (required: {o.type_text()})"
              for o in options if o.required]
    lines += [f"{o.name.replace('_', '-')} = {_toml_value(o.default)}" for o in example]
    lines += ["```", "", "```bash", f"hyperlens {cmd.name} --config run.toml", "```", ""]
    run_name = getattr(cmd.run, "__name__", "run")
    required = [o for o in options if o.required]
    args = ", ".join(f"{o.name}=..." for o in required)
    lines += ["## The same run in Python", "", "```python",
              f"from hyperlens.experiments.{module.rsplit('.', 1)[-1]} import "
              f"{cls.__name__}, {run_name}",
              "from hyperlens.config import RunContext", "",
              f"report = {run_name}({cls.__name__}({args}), RunContext(seed=0))",
              "report.frames()        # every table as a pandas DataFrame", "```", ""]
    return CommandPage(cmd.name, cmd.help, "\n".join(lines))


def _title(name: str) -> str:
    return "the tour" if name == "tour" else f"the {name.split()[0]} page"


def _argparse_page(name: str, parser: argparse.ArgumentParser, help_text: str) -> CommandPage:
    rows = ["| argument | what it does |", "|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        plain = action.metavar or action.dest.upper()
        flag = ", ".join(f"`{s}`" for s in action.option_strings) or f"`{plain}`"
        rows.append(f"| {flag} | {_cell(action.help or '')} |")
    usage = f"hyperlens {name} " + " ".join(
        (f"[{a.option_strings[0]}]" if a.option_strings else (a.metavar or a.dest.upper()))
        for a in parser._actions if not isinstance(a, argparse._HelpAction))
    lines = [f"# hyperlens {name}", "", f"*{help_text}*", "", "## Usage", "", "```bash",
             usage.strip(), "```", "", "## Arguments", "", *rows, "",
             f"See [{_title(name)}](../{CAPABILITY[name]}).", ""]
    return CommandPage(name, help_text, "\n".join(lines))


def command_pages() -> list[CommandPage]:
    """A page per command, in the order ``hyperlens --help`` lists them."""
    from hyperlens.cli import COMMAND_MODULES, build_parser

    pages = []
    for module in COMMAND_MODULES:
        for cmd in importlib.import_module(module).COMMANDS:
            pages.append(command_page(cmd, module))
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in sub._choices_actions}
    for name in ("models", "report"):
        pages.append(_argparse_page(name, sub.choices[name], helps[name]))
    return pages


def index_page(pages: list[CommandPage]) -> str:
    lines = ["# Commands", "",
             "Every command writes one report folder (see [where results go](../results.md)). "
             "These pages are generated from the commands' configs when the site is built: the "
             "options, types, defaults and help are those `hyperlens COMMAND --help` prints.",
             "", "| command | what it does |", "|---|---|"]
    for p in pages:
        lines.append(f"| [`hyperlens {p.name}`]({p.uri.removeprefix('commands/')}) | "
                     f"{_cell(p.help)} |")
    return "\n".join(lines) + "\n"
