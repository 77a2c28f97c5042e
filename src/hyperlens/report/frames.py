"""A report's tables as pandas DataFrames, for notebooks.

Each table becomes one DataFrame with the table's columns, keyed ``"section/table title"``;
the table's note, section and title ride along in ``DataFrame.attrs``. The same frames come
from a live :class:`~hyperlens.report.Report` (:meth:`~hyperlens.report.Report.frames`) and
from a saved folder (:func:`hyperlens.report.load_frames`), since both read the ``sections`` of
``results.json``.

>>> from hyperlens.report import Report
>>> rep = Report("demo", out_dir="unused")
>>> _ = rep.section("Results").table("scores", ["model", "acc"], [["a", 0.5], ["b", None]])
>>> list(rep.frames())
['Results/scores']
>>> df = rep.frame("scores")
>>> df["acc"].tolist()[0], df["acc"].isna().tolist()
(0.5, [False, True])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import ReportError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["table_frames", "table_frame"]


def table_frames(results: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Every table of a ``results.json`` dictionary as a DataFrame, in page order, keyed
    ``"section/table title"`` (a title repeated within one section gets `` (2)``, `` (3)``
    ...). Missing values (``null``) become ``NaN``/``None``."""
    import pandas as pd

    out: dict[str, pd.DataFrame] = {}
    for sec in results.get("sections", []):
        for t in sec.get("tables", []):
            key = base = f"{sec.get('title', '')}/{t.get('title', '')}"
            n = 1
            while key in out:
                n += 1
                key = f"{base} ({n})"
            df = pd.DataFrame(t.get("rows", []), columns=list(t.get("columns", [])))
            df.attrs.update(section=sec.get("title", ""), title=t.get("title", ""),
                            note=t.get("note", ""))
            out[key] = df
    return out


def table_frame(results: dict[str, Any], title: str) -> pd.DataFrame:
    """One table of a ``results.json`` dictionary: ``title`` is a key of
    :func:`table_frames` (``"section/table title"``) or a table title used by only one
    table. A :class:`~hyperlens.errors.ReportError` lists the keys when none or several
    match."""
    frames = table_frames(results)
    if title in frames:
        return frames[title]
    hits = [k for k, df in frames.items() if df.attrs["title"] == title]
    if len(hits) == 1:
        return frames[hits[0]]
    if hits:
        raise ReportError(
            f"table title {title!r} is used by {len(hits)} tables ({', '.join(map(repr, hits))});"
            " pass the full 'section/table title' key."
        )
    keys = list(frames)
    shown = ", ".join(map(repr, keys[:12])) + (f", ... ({len(keys)} in all)" if len(keys) > 12
                                               else "")
    raise ReportError(
        f"no table {title!r} in this report; the tables are: {shown or 'none'}. Pass one of "
        "these keys or a table title."
    )

