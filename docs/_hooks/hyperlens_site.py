"""MkDocs hooks of the hyperlens site (``hooks:`` in ``mkdocs.yml``).

- the command pages are generated from the commands' configs (:mod:`commands`);
- the API reference pages, one per public subpackage, are generated for mkdocstrings;
- the "Commands" and "API reference" sections of the navigation list those pages;
- every page's figure macros are filled from committed JSON (:mod:`figures`), and the
  plots they name are drawn from their specs in ``results.json`` into the built site.

Nothing generated is committed: a new command, subpackage or results file shows up in the
next build.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for path in (str(HERE), str(ROOT / "src")):  # this checkout's hyperlens, and the siblings
    if path not in sys.path:
        sys.path.insert(0, path)

import figures  # noqa: E402
from commands import command_pages, index_page  # noqa: E402
from mkdocs.exceptions import PluginError  # noqa: E402
from mkdocs.structure.files import File  # noqa: E402

#: API reference pages: page name -> (what it holds, the modules it documents).
API_PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "hyperlens": ("the package, its errors and shared utilities",
                  ("hyperlens", "hyperlens.errors", "hyperlens.utils")),
    "models": ("the model zoo, embedding, hook sites (capture, intervene)",
               ("hyperlens.models",)),
    "data": ("labelled text data sets, local files, WordNet", ("hyperlens.data",)),
    "functional": ("pure tensor functions: HDC algebra, sketches, geometry, statistics, kernels",
                   ("hyperlens.functional.hdc", "hyperlens.functional.sketch",
                    "hyperlens.functional.geometry", "hyperlens.functional.stats",
                    "hyperlens.functional.kernels", "hyperlens.functional.packed")),
    "hdc": ("ternary encoder, packed codes, search, streaming PCA", ("hyperlens.hdc",)),
    "align": ("aligners between two models' spaces and transfer scores", ("hyperlens.align",)),
    "train": ("the one training loop", ("hyperlens.train",)),
    "config": ("the command contract: configs, options, run context",
               ("hyperlens.config", "hyperlens.config.commandline")),
    "run": ("executors (local, Ray), the cell ledger, shards", ("hyperlens.run",)),
    "probes": ("measurement batteries",
               ("hyperlens.probes.terrain", "hyperlens.probes.weights",
                "hyperlens.probes.relational", "hyperlens.probes.mha_cv")),
    "inject": ("adapters for frozen models: steer, low-rank, modulators, semantic header",
               ("hyperlens.inject",)),
    "hft": ("the HyperField transformer", ("hyperlens.hft",)),
    "experiments": ("the commands' configs and run functions",
                    ("hyperlens.experiments.tour", "hyperlens.experiments.terrain",
                     "hyperlens.experiments.weights", "hyperlens.experiments.mha_cv",
                     "hyperlens.experiments.transfer", "hyperlens.experiments.align_vocab",
                     "hyperlens.experiments.relational", "hyperlens.experiments.modulate",
                     "hyperlens.experiments.header", "hyperlens.experiments.hft",
                     "hyperlens.experiments.hft_saved")),
    "report": ("reports: results.json, plots, the HTML page, DataFrames",
               ("hyperlens.report",)),
}

_state: dict[str, Any] = {}


def api_page(name: str) -> str:
    what, modules = API_PAGES[name]
    title = "hyperlens" if name == "hyperlens" else f"hyperlens.{name}"
    lines = [f"# {title}", "", f"*{what[0].upper()}{what[1:]}.*", ""]
    for mod in modules:
        if len(modules) > 1:
            lines += [f"## {mod}", ""]
        lines += [f"::: {mod}", "    options:",
                  f"      heading_level: {3 if len(modules) > 1 else 2}", ""]
    return "\n".join(lines)


def api_index() -> str:
    lines = ["# API reference", "",
             "Generated from the docstrings when the site is built. Every subpackage is "
             "importable on its own (`import hyperlens` loads them on first use).", "",
             "| page | what it holds |", "|---|---|"]
    for name, (what, _) in API_PAGES.items():
        title = "hyperlens" if name == "hyperlens" else f"hyperlens.{name}"
        lines.append(f"| [`{title}`]({name}.md) | {what} |")
    return "\n".join(lines) + "\n"


def _expand_nav(nav: list[Any], title: str, entries: list[dict[str, str]]) -> None:
    for i, item in enumerate(nav):
        if isinstance(item, dict) and title in item:
            nav[i] = {title: entries}
            return
    raise PluginError(f"mkdocs.yml: the nav has no '{title}' entry for the hook to fill")


def on_config(config: Any) -> Any:
    pages = command_pages()
    _state["commands"] = pages
    nav = config["nav"]
    _expand_nav(nav, "Commands", [{"Overview": "commands/index.md"}] + [
        {f"hyperlens {p.name}": p.uri} for p in pages])
    _expand_nav(nav, "API reference", [{"Overview": "reference/index.md"}] + [
        {("hyperlens" if n == "hyperlens" else f"hyperlens.{n}"): f"reference/{n}.md"}
        for n in API_PAGES])
    return config


def _plots(files: Any, config: Any, sources: figures.Sources, out: Path) -> list[File]:
    """Draw every plot a page asks for, from its spec in the committed results.json."""
    from hyperlens.report.plots import render

    wanted: set[tuple[str, str]] = set()
    for f in files.documentation_pages():
        if f.src_uri.endswith(".md") and f.abs_src_path:
            text = Path(f.abs_src_path).read_text("utf-8")
            for fn, args, _ in figures.calls(text):
                if fn == "plot":
                    wanted.add((args[0], args[1]))
    made: dict[str, File] = {}
    for name, file in sorted(wanted):
        results = sources.get(name)
        if results is None:
            continue
        try:
            spec = figures.find_plot(results, file)
        except figures.FigureError as exc:
            raise PluginError(f"plot({name!r}, {file!r}): {exc}") from None
        uri = figures.plot_uri(name, spec["file"])
        if uri in made:
            continue
        target = out / uri
        target.parent.mkdir(parents=True, exist_ok=True)
        render(spec["spec"], target)
        made[uri] = File.generated(config, uri, abs_src_path=str(target))
    return list(made.values())


def on_files(files: Any, config: Any) -> Any:
    sources = figures.Sources(ROOT)
    _state["sources"] = sources
    generated = {"commands/index.md": index_page(_state["commands"]),
                 "reference/index.md": api_index()}
    generated.update({p.uri: p.markdown for p in _state["commands"]})
    generated.update({f"reference/{n}.md": api_page(n) for n in API_PAGES})
    for uri, text in generated.items():
        files.append(File.generated(config, uri, content=text))
    tmp = Path(tempfile.mkdtemp(prefix="hyperlens-docs-"))
    _state["tmp"] = tmp
    try:
        for f in _plots(files, config, sources, tmp):
            files.append(f)
    except figures.FigureError as exc:
        raise PluginError(str(exc)) from None
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    try:
        return figures.render(markdown, page.file.src_uri, _state["sources"])
    except figures.FigureError as exc:
        raise PluginError(str(exc)) from None


def on_post_build(config: Any) -> None:
    tmp = _state.pop("tmp", None)
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
