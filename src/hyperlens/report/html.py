"""A self-contained HTML page for a report: sections, tables, plots, config and provenance."""

from __future__ import annotations

import html
import json
import math
from typing import Any

__all__ = ["render_html", "format_value", "is_complete"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;
margin:2em auto;padding:0 1em;color:#1d2330;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}
h2{border-bottom:1px solid #d8dce4;padding-bottom:.2em;margin-top:1.8em}
h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.88em}
th,td{border:1px solid #d8dce4;padding:.25em .6em;text-align:right}
th{background:#f1f3f7}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafbfc}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #e4e7ee}
figcaption{font-size:.85em;color:#555}
.meta{color:#555;font-size:.9em}.note{color:#555;font-size:.85em;margin-top:-.8em}
details{margin:1em 0}pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.82em}
nav a{margin-right:1em}
.incomplete{background:#fff3cd;border:1px solid #e0b441;padding:.6em 1em;font-weight:600}
"""
INCOMPLETE = "incomplete: this run stopped before it finished"


def format_value(v: Any) -> str:
    """Compact human formatting for table cells (floats to 4 significant digits)."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(format_value(x) for x in v)
    return str(v)


def is_complete(results: dict[str, Any]) -> bool:
    """Whether a ``results.json`` dictionary comes from a run's final save (results written
    before the ``complete`` key existed count as complete)."""
    return results.get("complete", True) is not False


def _table(t: dict[str, Any]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t["columns"])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_value(v))}</td>" for v in row) + "</tr>"
        for row in t["rows"]
    )
    out = f"<h3>{html.escape(t['title'])}</h3><table><tr>{head}</tr>{body}</table>"
    if t.get("note"):
        out += f"<p class='note'>{html.escape(t['note'])}</p>"
    return out


def _kv_table(d: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(format_value(v))}</td></tr>"
        for k, v in d.items()
    )
    return f"<table>{rows}</table>"


def render_html(results: dict[str, Any]) -> str:
    """Build the page from a ``results.json`` dictionary."""
    title = html.escape(results.get("title") or f"hyperlens {results.get('experiment', '')}")
    env = results.get("environment", {})
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>",
             f"<style>{_CSS}</style></head><body><h1>{title}</h1>"]
    meta = (f"created {html.escape(str(results.get('created')))} · seed {results.get('seed')} · "
            f"device {html.escape(str(env.get('device')))} · "
            f"total {format_value(results.get('timings', {}).get('total_s'))} s")
    if env.get("git_commit"):
        meta += f" · commit {html.escape(env['git_commit'][:12])}"
    parts.append(f"<p class='meta'>{meta}</p>")
    if not is_complete(results):
        parts.append(f"<p class='incomplete'>{INCOMPLETE} (or is still running); the tables "
                     "and plots below show only the parts done so far.</p>")
    if results.get("description"):
        parts.append(f"<p>{html.escape(results['description'])}</p>")
    sections = results.get("sections", [])
    if len(sections) > 1:
        parts.append(
            "<nav>"
            + "".join(
                f"<a href='#s{i}'>{html.escape(s['title'])}</a>" for i, s in enumerate(sections)
            )
            + "</nav>"
        )
    if results.get("summary"):
        parts.append("<h2>Summary</h2>")
        parts.append(_table({"title": "", "columns": ["", "value"], "rows": results["summary"]}))
    for i, sec in enumerate(sections):
        parts.append(f"<h2 id='s{i}'>{html.escape(sec['title'])}</h2>")
        if sec.get("text"):
            for para in str(sec["text"]).split("\n\n"):
                parts.append(f"<p>{html.escape(para)}</p>")
        for t in sec.get("tables", []):
            parts.append(_table(t))
        for p in sec.get("plots", []):
            cap = html.escape(p.get("caption") or p["spec"].get("title", ""))
            parts.append(f"<figure><img src='{html.escape(p['file'])}' alt='{cap}'>"
                         f"<figcaption>{cap}</figcaption></figure>")
        if sec.get("metrics"):
            flat = {k: v for k, v in sec["metrics"].items() if not isinstance(v, (dict, list))}
            if flat:
                parts.append("<details><summary>Numbers</summary>" + _kv_table(flat) + "</details>")
    parts.append("<h2>Provenance</h2>")
    parts.append("<h3>Timings (s)</h3>" + _kv_table(results.get("timings", {})))
    versions = env.get("versions", {})
    parts.append(
        "<h3>Environment</h3>"
        + _kv_table(
            {
                **{k: v for k, v in env.items() if k != "versions"},
                **{f"version: {k}": v for k, v in versions.items()},
            }
        )
    )
    parts.append(
        "<details><summary>Full configuration</summary><pre>"
        + html.escape(json.dumps(results.get("config", {}), indent=2))
        + "</pre></details>"
    )
    parts.append(
        "<p class='meta'>All numbers on this page are in results.json; "
        "<code>hyperlens report &lt;folder&gt;</code> redraws the plots and this page from it.</p>"
    )
    parts.append("</body></html>\n")
    return "\n".join(parts)
