"""The site's build hooks: figure macros, command pages, API pages and docstring conversion.

These run without MkDocs (the hooks' logic is plain Python); tests/docs/test_site.py builds
and opens the real site.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOOKS = ROOT / "docs" / "_hooks"
sys.path.insert(0, str(HOOKS))

pytest.importorskip("griffe", reason="the docs extra (pip install -e '.[docs]') is not installed")

import figures  # noqa: E402
from docstrings import to_markdown  # noqa: E402

RESULTS = {
    "schema_version": 1, "experiment": "terrain", "created": "2026-01-02T03:04:05+00:00",
    "complete": True, "seed": 0,
    "config": {"models": ["minilm", "smollm2"], "n_simplices": 2000, "layers": False,
               "cv_band": [0.2, 0.23]},
    "environment": {"machine": "x86_64", "cpu_count": 2, "torch_threads": 2,
                    "platform": "Linux-6.1-x86_64", "git_commit": "0123456789abcdef",
                    "versions": {"python": "3.11.7", "torch": "2.13.0+cpu"}},
    "timings": {"total_s": 75.0},
    "summary": [["minilm: PR/d", "0.534"]],
    "sections": [
        {"title": "Overview", "text": "", "metrics": {"minilm.pr_over_d": 0.5335},
         "plots": [{"file": "panel_minilm.png", "caption": "the panel", "spec": {}}],
         "tables": [{"title": "Scores", "columns": ["model", "set", "acc"], "note": "a note",
                     "rows": [["a", "x", 0.5], ["a", "y", 0.25], ["b", "x", -0.125]]}]},
    ],
    "data": {"verdict": "no help"},
}
BENCH = {"cpu": {"cpu_model": "AMD EPYC", "cpu_count": 2, "torch_capability": "AVX512",
                 "features": {"vnni": True, "bf16": True, "amx": False}},
         "threads": 2, "kernels_profile": "avx2",
         "cells": [{"gap": 0.5, "s": 1.0}, {"gap": 0.25, "s": 3.0}],
         "ternarize": {"seconds": {"fast": 0.04, "slow": 1.94}, "ci": [0.06226, 0.0628]}}


@pytest.fixture()
def sources(tmp_path: Path) -> figures.Sources:
    (tmp_path / "docs" / "results" / "terrain").mkdir(parents=True)
    (tmp_path / "docs" / "results" / "terrain" / "results.json").write_text(json.dumps(RESULTS))
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "bench_x.json").write_text(json.dumps(BENCH))
    (tmp_path / "docs" / "seeds.json").write_text(json.dumps(
        {"band": {"seed": "002", "claim": "CV is 0.20-0.23"}}))
    return figures.Sources(tmp_path)


def render(text: str, sources: figures.Sources, uri: str = "capabilities/x.md") -> str:
    return figures.render(text, uri, sources)


def test_values_come_from_the_json(sources: figures.Sources) -> None:
    assert render('{{ value("bench_x", "ternarize.seconds.fast", ".3f") }} s', sources) == \
        "0.040 s"
    assert render('{{ ratio("bench_x", "ternarize.seconds.slow", "ternarize.seconds.fast", '
                  '".0f") }}×', sources) == "48×"
    assert render('{{ value("bench_x", "cells.1.s", ".1f") }}', sources) == "3.0"
    assert render('{{ value("bench_x", "cells.*.gap", ".2f", reduce="max") }}', sources) == \
        "0.50"
    assert render('{{ value("bench_x", "ternarize.ci", ".4f") }}', sources) == \
        "[0.0623, 0.0628]"
    assert render('{{ cell("terrain", "Scores", "b", "acc", ".3f") }}', sources) == "−0.125"
    assert render('{{ cell("terrain", "Scores", {"model": "a", "set": "y"}, "acc") }}',
                  sources) == "0.25"
    assert render('{{ metric("terrain", "minilm.pr_over_d", ".2f") }}', sources) == "0.53"
    assert render('{{ value("terrain", "data.verdict") }}', sources) == "no help"
    assert render('{{ claim("band") }}', sources) == "CV is 0.20-0.23 (seed `002`)"


def test_tables_summary_plot_and_run(sources: figures.Sources) -> None:
    out = render('{{ table("terrain", "Scores", rows=2, where={"model": "a"}) }}', sources)
    assert "| model | set | acc |" in out and "| a | y | 0.25 |" in out and "| b |" not in out
    assert "a note" in out
    out = render('{{ table("terrain", "Scores", where={"set": ["y", "z"]}) }}', sources)
    assert "| a | y | 0.25 |" in out and "| a | x |" not in out
    out = render('{{ table("terrain", "Scores", rows=1) }}', sources)
    assert "First 1 of 3 rows" in out
    assert "| minilm: PR/d | 0.534 |" in render('{{ summary("terrain") }}', sources)
    out = render('{{ plot("terrain", "panel_*.png") }}', sources)
    assert "](../plots/terrain/panel_minilm.png)" in out and "the panel" in out
    out = render('{{ run("terrain") }}', sources)
    assert "`hyperlens terrain --models minilm smollm2 --no-layers`" in out
    assert "x86_64 (2 threads)" in out and "1 min 15 s" in out
    assert "2026-01-02" in out and "`0123456789ab`" in out
    assert "](../results/terrain/results.json)" in out


def test_a_missing_run_is_a_note_and_a_missing_key_an_error(sources: figures.Sources) -> None:
    page = render('{{ summary("header") }}\n\n{{ table("header", "T") }}\n'
                  'acc {{ cell("header", "T", "a", "b") }}', sources)
    assert page.count("The full header run is not committed yet") == 1
    assert "acc *(the full `header` run is not committed yet)*" in page
    with pytest.raises(figures.FigureError, match="no key 'nope'"):
        render('{{ value("bench_x", "nope") }}', sources)
    with pytest.raises(figures.FigureError, match="missing"):
        render('{{ value("bench_gone", "x") }}', sources)
    with pytest.raises(figures.FigureError, match="no plot"):
        render('{{ plot("terrain", "other.png") }}', sources)
    with pytest.raises(figures.FigureError, match="2 rows start with 'a'"):
        render('{{ cell("terrain", "Scores", "a", "acc") }}', sources)
    with pytest.raises(figures.FigureError, match="unknown macro"):
        render('{{ eval("1") }}', sources)
    with pytest.raises(figures.FigureError, match="literals"):
        render('{{ value("bench_x", open("f")) }}', sources)


def test_code_keeps_its_braces(sources: figures.Sources) -> None:
    text = ('```python\n{{ value("bench_x", "nope") }}\n```\n'
            'inline `{{ value("bench_x", "nope") }}` stays\n')
    assert render(text, sources) == text


def test_cpu_text_reads_each_json_shape() -> None:
    assert figures.cpu_text(BENCH) == "AMD EPYC (AVX512 VNNI BF16 forced, 2 threads)"
    assert figures.cpu_text({"cpu": "Intel(R) Xeon(R)", "cpu_capability": "AVX512",
                             "cpu_count": 4, "threads": 1}) == \
        "Intel(R) Xeon(R) (AVX512, 1 thread of 4 CPUs)"
    assert figures.cpu_text({"platform": "Linux-6.1-x86_64-with-glibc2.36"}) == "Linux-6.1-x86_64"


def test_formats() -> None:
    assert figures.fmt_value(885.0, "duration") == "14 min 45 s"
    assert figures.fmt_value(5000.0, "duration") == "1 h 23 min"
    assert figures.fmt_value(0.375, "pct") == "37.5 %"
    assert figures.fmt_value(25904, ",") == "25,904"
    assert figures.fmt_value(True) == "yes"
    assert figures.lookup({"a.b": {"c": [1, 2]}}, "a.b.c.1") == 2


def test_docstrings_become_markdown() -> None:
    text = ("Use :func:`~hyperlens.data.load` and :class:`hyperlens.hdc.PackedCodes`::\n\n"
            "    x = load()\n\nThen:\n\n    >>> 1 + 1\n    2\n\n```python\n>>> kept\n```")
    out = to_markdown(text)
    assert out.startswith(
        "Use `load` and `hyperlens.hdc.PackedCodes`:\n\n```python\nx = load()\n```")
    assert "```pycon\n>>> 1 + 1\n2\n```" in out
    assert out.endswith("```python\n>>> kept\n```")


def test_every_command_has_a_generated_page() -> None:
    import importlib

    from commands import command_pages, index_page

    from hyperlens.cli import COMMAND_MODULES

    pages = {p.name: p for p in command_pages()}
    for module in COMMAND_MODULES:
        for cmd in importlib.import_module(module).COMMANDS:
            page = pages[cmd.name].markdown
            for opt in cmd.config.options():
                assert f"`{opt.flag}" in page or opt.spec.positional, (cmd.name, opt.flag)
                assert opt.spec.help.replace("|", "\\|") in page
    assert {"models", "report"} <= set(pages)
    assert "| `--n-simplices` | an integer >= 10 | 2000 |" in pages["terrain"].markdown
    assert "[`hyperlens hft train`](hft-train.md)" in index_page(list(pages.values()))


def test_every_subpackage_has_an_api_page() -> None:
    pytest.importorskip("mkdocs", reason='the docs tools: pip install -e ".[docs]"')
    import hyperlens_site

    documented = {m for _, mods in hyperlens_site.API_PAGES.values() for m in mods}
    packages = {f"hyperlens.{p.parent.name}" for p in (ROOT / "src" / "hyperlens").glob(
        "*/__init__.py")}
    missing = {p for p in packages if not any(m == p or m.startswith(p + ".")
                                               for m in documented)}
    assert not missing, f"subpackages without an API page: {sorted(missing)}"


def test_every_page_macro_fills_from_the_committed_json() -> None:
    sources = figures.Sources(ROOT)
    pages = sorted((ROOT / "docs").rglob("*.md"))
    assert len(pages) > 20
    for page in pages:
        uri = page.relative_to(ROOT / "docs").as_posix()
        out = figures.render(page.read_text("utf-8"), uri, sources)
        assert "{{ value(" not in out.replace("`{{ value(", "")


def test_a_doctest_under_a_section_keeps_its_indent() -> None:
    text = "Summary.\n\nExample:\n    >>> r[0]\n    2\n"
    assert to_markdown(text) == ("Summary.\n\nExample:\n    ```pycon\n    >>> r[0]\n    2\n"
                                 "    ```\n")
