"""Figures for the documentation, read from committed JSON while the site is built.

A page never types a measured number. It writes a macro, and the build replaces it with
the value (or table, or plot) read from a committed file, so a figure cannot drift from
the JSON it comes from:

- ``{{ value("bench_hdc", "ternarize.speedup_vs_seed_loop", ".0f") }}``: a number at a
  dotted path (list items by index: ``"cells.0.speedup"``; over every item with
  ``"cells.*.speedup"`` and ``reduce="max"`` or ``"min"``);
- ``{{ ratio("bench_gemma3", "texts_per_s.gemma3", "texts_per_s.smollm2", ".2f") }}``;
- ``{{ cell("header", "Verdict", "HDC header", "accuracy") }}``: one cell of a report
  table, the row picked by its first column (or by a 0-based index, or by a dict of
  column values), the column by name;
- ``{{ metric("terrain", "minilm.pr_over_d", ".3f") }}``: a named number of a report;
- ``{{ summary("terrain") }}``, ``{{ table("terrain", "Terrain at a glance", rows=8) }}``:
  a report's headline rows or one of its tables, as a Markdown table;
- ``{{ plot("terrain", "terrain_minilm_panel.png") }}``: a report's plot, drawn from its
  spec in ``results.json`` at build time;
- ``{{ run("terrain") }}``: the command line, CPU, duration, date and commit of the run,
  with a link to its ``results.json``; ``{{ cpu("bench_hdc") }}`` the CPU of a benchmark;
- ``{{ claim("terrain-cv") }}``: a claim of the seed documents (``docs/seeds.json``).

Sources: ``bench_*`` names and ``gpu_check`` are ``benchmarks/results/<name>.json``; any
other name is the full run ``docs/results/<name>/results.json``. A full run that is not
committed yet turns its macros into a note saying so (the page still builds); a missing
benchmark file, key, table or plot is an error that stops the build.
"""

from __future__ import annotations

import ast
import json
import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MACRO = re.compile(r"\{\{\s*(?P<call>[a-z_]+\(.*?\))\s*\}\}")
INLINE = ("value", "ratio", "cell", "metric", "cpu", "claim", "duration")
BLOCK = ("summary", "table", "plot", "run")
_FENCE = re.compile(r"^\s*(```|~~~)")


class FigureError(Exception):
    """A macro that cannot be filled from the committed JSON (the build stops)."""


def is_benchmark(name: str) -> bool:
    """``bench_*`` and ``gpu_check`` are files under ``benchmarks/results/``."""
    return name.startswith("bench_") or name == "gpu_check"


@dataclass
class Sources:
    """The committed JSON files a page may quote, read once per build."""

    root: Path = ROOT
    _cache: dict[str, Any] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise FigureError(f"source {name!r} is not a plain name (bench_hdc, terrain, ...)")
        if is_benchmark(name):
            return self.root / "benchmarks" / "results" / f"{name}.json"
        return self.root / "docs" / "results" / name / "results.json"

    def uri(self, name: str) -> str | None:
        """The docs-relative address of a full run's ``results.json`` (None for benchmarks)."""
        return None if is_benchmark(name) else f"results/{name}/results.json"

    def get(self, name: str) -> dict[str, Any] | None:
        """The parsed file; ``None`` for a full run that is not committed yet."""
        if name not in self._cache:
            path = self.path(name)
            if not path.is_file():
                if is_benchmark(name):
                    raise FigureError(f"benchmark file {path.relative_to(self.root)} is missing")
                self._cache[name] = None
            else:
                self._cache[name] = json.loads(path.read_text("utf-8"))
        return self._cache[name]

    def claims(self) -> dict[str, Any]:
        if "__claims__" not in self._cache:
            path = self.root / "docs" / "seeds.json"
            self._cache["__claims__"] = json.loads(path.read_text("utf-8"))
        return self._cache["__claims__"]


# -- reading values ------------------------------------------------------------------------

def lookup(data: Any, path: str) -> Any:
    """The value at dotted ``path`` (``"a.b.0.c"``); keys may themselves hold dots when
    the longest matching key is taken first."""
    node = data
    rest = path
    while rest:
        if isinstance(node, dict):
            for key in sorted((k for k in node if rest == k or rest.startswith(k + ".")),
                              key=len, reverse=True):
                node, rest = node[key], rest[len(key) + 1:]
                break
            else:
                raise FigureError(f"no key {rest!r} (keys here: {', '.join(map(str, node))})")
        elif isinstance(node, list):
            head, _, rest = rest.partition(".")
            if not head.lstrip("-").isdigit() or not -len(node) <= int(head) < len(node):
                raise FigureError(f"{head!r} is not an index of a list of {len(node)}")
            node = node[int(head)]
        else:
            raise FigureError(f"{rest!r} goes below a plain value ({node!r})")
    return node


def fmt_value(value: Any, fmt: str | None = None) -> str:
    """``value`` as text: a format spec (``".3f"``, ``",.0f"``), ``"duration"`` (seconds
    as ``14 min 45 s``), ``"pct"`` (a share as ``37.5 %``), or the report's own cell
    format when ``fmt`` is None. A pair ``[lo, hi]`` prints as an interval."""
    from hyperlens.report.html import format_value

    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return f"[{fmt_value(value[0], fmt)}, {fmt_value(value[1], fmt)}]"
    if fmt is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return format_value(value)
    if fmt == "duration":
        return duration_text(float(value))
    if fmt == "pct":
        return f"{100 * value:.1f} %"
    text = format(value, fmt)
    return text.replace("-", "−") if text.startswith("-") else text


def duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def report_table(results: dict[str, Any], title: str) -> tuple[list[str], list[list[Any]],
                                                                 str]:
    """Columns, rows and note of a report table (``title`` or ``"section/title"``)."""
    from hyperlens.errors import ReportError
    from hyperlens.report import table_frame

    try:
        frame = table_frame(results, title)
    except ReportError as exc:
        raise FigureError(str(exc)) from None
    key_title = frame.attrs["title"]
    for sec in results.get("sections", []):
        for t in sec.get("tables", []):
            if t.get("title") == key_title and sec.get("title") == frame.attrs["section"]:
                return list(t["columns"]), [list(r) for r in t["rows"]], t.get("note", "")
    raise FigureError(f"table {title!r} vanished")  # pragma: no cover - table_frame found it


def pick_row(columns: list[str], rows: list[list[Any]], row: Any) -> list[Any]:
    """The row whose first column is ``row``, the row at index ``row``, or (a dict) the row
    whose columns hold the given values: ``{"synsets": "nouns", "measure": "path"}``."""
    if isinstance(row, dict):
        missing = [c for c in row if c not in columns]
        if missing:
            raise FigureError(f"no columns {missing}; columns: {columns}")
        hits = [r for r in rows
                if all(str(r[columns.index(c)]) == str(v) for c, v in row.items())]
        if len(hits) != 1:
            raise FigureError(f"{len(hits)} rows match {row!r}; name columns that pick one")
        return hits[0]
    if isinstance(row, int):
        if not -len(rows) <= row < len(rows):
            raise FigureError(f"row {row} is out of range: the table has {len(rows)} rows")
        return rows[row]
    hits = [r for r in rows if str(r[0]) == str(row)]
    if len(hits) != 1:
        firsts = ", ".join(repr(str(r[0])) for r in rows[:20])
        raise FigureError(f"{len(hits)} rows start with {row!r} (first column {columns[0]!r}: "
                          f"{firsts}); name a row that occurs once, or give its index")
    return hits[0]


def find_metric(results: dict[str, Any], key: str) -> Any:
    hits = [s["metrics"][key] for s in results.get("sections", [])
            if key in s.get("metrics", {})]
    if len(hits) != 1:
        raise FigureError(f"{len(hits)} sections record the metric {key!r}")
    return hits[0]


def markdown_table(columns: list[str], rows: list[list[Any]]) -> str:
    def esc(text: Any) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(esc(c) for c in columns) + " |",
           "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(esc(fmt_value(v)) for v in r) + " |" for r in rows]
    return "\n".join(out)


# -- where a run ran -----------------------------------------------------------------------

def _find_key(data: Any, names: tuple[str, ...]) -> Any:
    """The first value stored under one of ``names``, searching nested dicts breadth-first."""
    queue = [data]
    while queue:
        node = queue.pop(0)
        if isinstance(node, dict):
            for name in names:
                if name in node and node[name] not in (None, "", {}):
                    return node[name]
            queue.extend(v for v in node.values() if isinstance(v, dict))
    return None


def cpu_text(data: dict[str, Any]) -> str:
    """The CPU a JSON file says it ran on: model (or architecture), instruction set and the
    kernel profile when one was forced, and the threads used."""
    model = _find_key(data, ("cpu_model",))
    arch = _find_key(data, ("machine",))
    cpu = data.get("cpu")
    if model is None and isinstance(cpu, str):
        model = cpu
    if model is None and isinstance(cpu, dict):
        model = cpu.get("model")
    if model is None:
        platform = _find_key(data, ("platform",))
        model = arch or (str(platform).split("-with-")[0] if platform else "CPU not recorded")
    parts = []
    capability = _find_key(data, ("cpu_capability", "torch_capability"))
    features = _find_key(data, ("features",))
    profile = _find_key(data, ("kernels_profile",))
    if capability:
        extra = [k.upper() for k in ("vnni", "bf16", "amx")
                 if isinstance(features, dict) and features.get(k)]
        forced = ["forced"] if profile and profile != "native" else []
        parts.append(" ".join([str(capability), *extra, *forced]))
    elif profile and profile != "native":
        parts.append(f"kernels forced to {profile}")
    threads = _find_key(data, ("threads", "torch_threads"))
    count = _find_key(data, ("cpu_count",))
    def n(k: Any, what: str) -> str:
        return f"{k} {what}" + ("" if k == 1 else "s")

    if threads and count and threads != count:
        parts.append(f"{n(threads, 'thread')} of {n(count, 'CPU')}")
    elif threads or count:
        parts.append(n(threads, "thread") if threads else n(count, "CPU"))
    return f"{model} ({', '.join(parts)})" if parts else str(model)


def _plain(value: Any) -> Any:
    """A config value as results.json stores it (tuples as lists, paths as text)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def _command_of(results: dict[str, Any]) -> Any:
    """The command (from its module's ``COMMANDS``) whose run ``results`` records."""
    import importlib

    from hyperlens.cli import COMMAND_MODULES

    name = results.get("experiment", "").replace(" ", "-")
    for mod_name in COMMAND_MODULES:
        for cmd in importlib.import_module(mod_name).COMMANDS:
            if cmd.name.replace(" ", "-") == name:
                return cmd
    raise FigureError(f"results.json names the experiment {name!r}, which is no command")


def command_line(results: dict[str, Any]) -> str:
    """The ``hyperlens`` command that reproduces a run: its options that differ from the
    defaults, read from the recorded config with the command's own config class."""
    cmd = _command_of(results)
    words = [f"hyperlens {cmd.name}"]
    config = results.get("config", {})
    for opt in cmd.config.options():
        if opt.name not in config:  # added after the run: see newer_options
            continue
        value = _plain(config[opt.name])
        if value == _plain(opt.default):
            continue
        if opt.kind is bool:
            words.append(opt.flag if value else "--no-" + opt.flag[2:])
        elif isinstance(value, list):
            words.append(" ".join([opt.flag, *map(str, value)]))
        else:
            words.append(f"{opt.flag} {value}")
    seed = results.get("seed")
    if seed not in (None, 0):
        words.append(f"--seed {seed}")
    return " ".join(words)


def newer_options(results: dict[str, Any]) -> list[str]:
    """The flags of the run's command that its recorded config lacks: options added after
    the run, which it ran without (their defaults may describe another computation)."""
    config = results.get("config", {})
    return [o.flag for o in _command_of(results).config.options() if o.name not in config]


def run_text(name: str, results: dict[str, Any], link: str) -> str:
    env = results.get("environment", {})
    versions = env.get("versions", {})
    total = results.get("timings", {}).get("total_s")
    bits = [f"`{command_line(results)}`",
            f"on {cpu_text(env)}, {env.get('platform', 'platform not recorded')}",
            f"Python {versions.get('python', '?')}, torch {versions.get('torch', '?')}"]
    if total is not None:
        bits.append(f"{duration_text(float(total))} in all")
    when = str(results.get("created", ""))[:10]
    commit = str(env.get("git_commit") or "no commit recorded")[:12]
    note = "" if results.get("complete", True) else " **The run did not finish.**"
    newer = newer_options(results)
    if newer:
        note += (f" The run predates {', '.join(f'`{f}`' for f in newer)}: it ran as the "
                 "code of its commit did, not with those options' current defaults.")
    return (f"Run: {'; '.join(bits)}; {when}, commit `{commit}`. "
            f"The tables, plots and figures of this run come from its "
            f"[results.json]({link}).{note}")


# -- the macros ----------------------------------------------------------------------------

@dataclass
class Page:
    """The state of one page while its macros are filled."""

    src_uri: str
    sources: Sources
    noted: set[str] = field(default_factory=set)

    def rel(self, uri: str) -> str:
        return posixpath.relpath(uri, posixpath.dirname(self.src_uri) or ".")

    def results(self, name: str, block: bool) -> dict[str, Any] | str:
        data = self.sources.get(name)
        if data is not None:
            return data
        if not block:
            return f"*(the full `{name}` run is not committed yet)*"
        if name in self.noted:
            return ""
        self.noted.add(name)
        return (f'!!! note "The full {name} run is not committed yet"\n'
                f"    Its figures appear here once `docs/results/{name}/results.json` is "
                "committed (copy `results.json` from the run's report folder).\n")


def _call(page: Page, fn: str, args: list[Any], kw: dict[str, Any]) -> str:
    if fn not in INLINE + BLOCK:
        raise FigureError(f"unknown macro {fn}(); the macros are {', '.join(INLINE + BLOCK)}")
    if fn == "claim":
        (key,) = args
        claims = page.sources.claims()
        if key not in claims:
            raise FigureError(f"docs/seeds.json has no claim {key!r}")
        c = claims[key]
        return f"{c['claim']} (seed `{c['seed']}`)"
    name, *rest = args
    if is_benchmark(name):
        data: Any = page.sources.get(name)
    else:
        data = page.results(name, block=fn in BLOCK)
        if isinstance(data, str):
            return data
    return _MACROS[fn](page, name, data, *rest, **kw)


def _value(page: Page, name: str, data: Any, path: str, fmt: str | None = None,
           reduce: str | None = None) -> str:
    if "*" not in path:
        return fmt_value(lookup(data, path), fmt)
    head, _, tail = path.partition(".*")
    items = lookup(data, head)
    if not isinstance(items, list) or reduce not in ("max", "min"):
        raise FigureError(f"{path!r}: '*' runs over a list and needs reduce='max' or 'min'")
    values = [lookup(item, tail.lstrip(".")) for item in items]
    return fmt_value(max(values) if reduce == "max" else min(values), fmt)


def _ratio(page: Page, name: str, data: Any, num: str, den: str, fmt: str = ".1f") -> str:
    a, b = lookup(data, num), lookup(data, den)
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        raise FigureError(f"ratio of {a!r} and {b!r} is not a number")
    return fmt_value(a / b, fmt)


def _cell(page: Page, name: str, data: Any, table: str, row: Any, col: str,
          fmt: str | None = None) -> str:
    columns, rows, _ = report_table(data, table)
    if col not in columns:
        raise FigureError(f"table {table!r} has no column {col!r}; columns: {columns}")
    return fmt_value(pick_row(columns, rows, row)[columns.index(col)], fmt)


def _metric(page: Page, name: str, data: Any, key: str, fmt: str | None = None) -> str:
    return fmt_value(find_metric(data, key), fmt)


def _cpu(page: Page, name: str, data: Any) -> str:
    return cpu_text(data.get("environment", data) if not is_benchmark(name) else data)


def _duration(page: Page, name: str, data: Any, path: str = "timings.total_s") -> str:
    value = lookup(data, path)
    if isinstance(value, list):  # a list of repeats: the best
        value = min(value)
    return duration_text(float(value))


def _summary(page: Page, name: str, data: Any) -> str:
    rows = data.get("summary") or []
    if not rows:
        raise FigureError(f"the {name} report has no summary rows")
    return markdown_table(["result", "value"], rows)


def _table(page: Page, name: str, data: Any, title: str, rows: int | None = None,
           columns: list[str] | None = None, where: dict[str, Any] | None = None) -> str:
    cols, body, note = report_table(data, title)
    for col, want in (where or {}).items():
        if col not in cols:
            raise FigureError(f"table {title!r} has no column {col!r}; columns: {cols}")
        allowed = {str(w) for w in (want if isinstance(want, list) else [want])}
        body = [r for r in body if str(r[cols.index(col)]) in allowed]
        if not body:
            raise FigureError(f"no row of table {title!r} has {col} = {want!r}")
    if columns:
        missing = [c for c in columns if c not in cols]
        if missing:
            raise FigureError(f"table {title!r} has no columns {missing}; columns: {cols}")
        idx = [cols.index(c) for c in columns]
        cols, body = list(columns), [[r[i] for i in idx] for r in body]
    shown = body[:rows] if rows else body
    out = markdown_table(cols, shown)
    extra = []
    if len(shown) < len(body):
        extra.append(f"First {len(shown)} of {len(body)} rows; the rest are in the report.")
    if note:
        extra.append(note)
    caption = f"*{title}* ({name} report)"
    return caption + "\n\n" + out + ("\n\n" + " ".join(extra) if extra else "")


def plot_uri(name: str, file: str) -> str:
    return f"plots/{name}/{file}"


def find_plot(results: dict[str, Any], file: str) -> dict[str, Any]:
    """The plot named ``file``, or the first (in report order) matching a pattern such as
    ``"weights_panel_*.png"`` (for plots named after the run's models)."""
    import fnmatch

    for sec in results.get("sections", []):
        for p in sec.get("plots", []):
            if p["file"] == file or fnmatch.fnmatchcase(p["file"], file):
                return p
    files = [p["file"] for s in results.get("sections", []) for p in s.get("plots", [])]
    raise FigureError(f"the report has no plot {file!r}; its plots: {files}")


def _plot(page: Page, name: str, data: Any, file: str, caption: str | None = None) -> str:
    spec = find_plot(data, file)
    text = caption or spec.get("caption") or spec["file"]
    return (f"<figure markdown>\n![{text}]({page.rel(plot_uri(name, spec['file']))})\n"
            f"<figcaption>{text}</figcaption>\n</figure>")


def _run(page: Page, name: str, data: Any) -> str:
    uri = page.sources.uri(name)
    if uri is None:
        raise FigureError(f"run() describes a full run; {name} is a benchmark (use cpu())")
    return run_text(name, data, page.rel(uri))


_MACROS: dict[str, Callable[..., str]] = {
    "value": _value, "ratio": _ratio, "cell": _cell, "metric": _metric, "cpu": _cpu,
    "duration": _duration, "summary": _summary, "table": _table, "plot": _plot, "run": _run,
}


def parse(call: str) -> tuple[str, list[Any], dict[str, Any]]:
    """``'cell("a", "b", 1)'`` -> ``("cell", ["a", "b", 1], {})``; literals only."""
    try:
        node = ast.parse(call, mode="eval").body
    except SyntaxError as exc:
        raise FigureError(f"cannot read the macro {{{{ {call} }}}}: {exc.msg}") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise FigureError(f"{{{{ {call} }}}} is not a macro call")
    try:
        args = [ast.literal_eval(a) for a in node.args]
        kw = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
    except ValueError:
        raise FigureError(f"{{{{ {call} }}}}: arguments must be literals") from None
    return node.func.id, args, kw


def _outside_code(markdown: str) -> Iterator[tuple[bool, str]]:
    """``(is_code, line)`` for each line; fenced code blocks are left as they are."""
    fence = None
    for line in markdown.splitlines(keepends=True):
        m = _FENCE.match(line)
        if m and (fence is None or m.group(1) == fence):
            fence = m.group(1) if fence is None else None
            yield True, line
        else:
            yield fence is not None, line


def calls(markdown: str) -> Iterator[tuple[str, list[Any], dict[str, Any]]]:
    """Every macro of a page (outside code), parsed."""
    for is_code, line in _outside_code(markdown):
        if not is_code:
            for m in MACRO.finditer(line):
                yield parse(m.group("call"))


def render(markdown: str, src_uri: str, sources: Sources) -> str:
    """``markdown`` with every macro outside code blocks and inline code filled in."""
    page = Page(src_uri, sources)
    out = []
    for is_code, line in _outside_code(markdown):
        if is_code:
            out.append(line)
            continue
        parts = re.split(r"(`[^`]*`)", line)  # inline code stays as written
        for i in range(0, len(parts), 2):
            parts[i] = MACRO.sub(lambda m: _fill(page, m.group("call")), parts[i])
        out.append("".join(parts))
    return "".join(out)


def _fill(page: Page, call: str) -> str:
    fn, args, kw = parse(call)
    try:
        return _call(page, fn, args, kw)
    except TypeError as exc:
        raise FigureError(f"{{{{ {call} }}}}: {exc}") from None
    except FigureError as exc:
        raise FigureError(f"{page.src_uri}: {{{{ {call} }}}}: {exc}") from None
