"""The option-honoured table: every option of every command, and whether a real run reads it.

Runs the smallest configurations of ``tests/test_options_honoured.py`` (its ``SMALL`` table
and the chain of ``hft`` actions; real offline models, several minutes on two cores) and
prints a Markdown table: command, option, honoured (yes when a run read it, no when none
did, not applicable for a common option the command does not offer), and for ``--seed``
whether another seed changed the numbers (or, for a command that says it draws nothing,
left them alone).

    python scripts/options_table.py            # the table on stdout
    python scripts/options_table.py --json F   # also the rows as JSON in F
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_CONTEXT_NOTE = {
    "device": "yes (models placed there; the report records the resolved device)",
    "dtype": "yes (the report records the resolved precision)",
    "executor": "yes (cells run there; local and Ray give equal results)",
    "ray_address": "yes (with --executor ray)",
    "out": "yes", "progress": "yes", "verbose": "yes (third-party output shown)",
}


def _tests() -> Any:
    spec = importlib.util.spec_from_file_location(
        "options_honoured", ROOT / "tests" / "test_options_honoured.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def rows() -> list[list[str]]:
    from hyperlens.config import RunContext

    t = _tests()
    out: list[list[str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(t.SMALL):
            cmd = t._command(name)
            _, variants = t.SMALL[name]
            read: set[str] = set()
            for i, kw in enumerate(variants):
                with t._reads(cmd.config) as seen:
                    cmd.run(cmd.config(**kw), RunContext(out=Path(tmp) / f"{name}-{i}"))
                read |= seen
            config = cmd.config(**variants[0])
            a = t._numbers(cmd.run(config, RunContext(seed=0, out=Path(tmp) / "a")).out_dir)
            b = t._numbers(cmd.run(config, RunContext(seed=1, out=Path(tmp) / "b")).out_dir)
            out += _command_rows(cmd, read, a != b)
        # hft's actions run in a chain (train captures; eval and generate need its student)
        for action, (read, a, b, _) in t.hft_runs(Path(tmp) / "hft").items():
            out += _command_rows(t._command(f"hft {action}"), read, a != b)
    return out


def _command_rows(cmd: Any, read: set[str], seed_changed: bool) -> list[list[str]]:
    """One command's rows: its options, then the context options."""
    from hyperlens.config import ContextOptions
    from hyperlens.config.commandline import context_options

    out = [[cmd.name, opt.flag, "yes" if opt.name in read else "no"]
           for opt in cmd.config.options()]
    offered = {o.name for o in context_options(cmd.config)}
    for opt in ContextOptions.options():
        if opt.name not in offered:
            out.append([cmd.name, opt.flag, "not applicable (refused with the reason)"])
        elif opt.name == "seed":
            if not cmd.config.RANDOM:
                note = ("yes (draws nothing; recorded)" if not seed_changed
                        else "no: draws nothing, yet --seed 1 changed the numbers")
            else:
                note = ("yes (other numbers with --seed 1)" if seed_changed
                        else "no: --seed 1 gave the same numbers")
            out.append([cmd.name, opt.flag, note])
        else:
            out.append([cmd.name, opt.flag, _CONTEXT_NOTE.get(opt.name, "yes")])
    return out


def main(argv: list[str]) -> int:
    table = rows()
    print("| command | option | honoured |\n| --- | --- | --- |")
    for r in table:
        print(f"| {r[0]} | `{r[1]}` | {r[2]} |")
    if "--json" in argv:
        Path(argv[argv.index("--json") + 1]).write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
