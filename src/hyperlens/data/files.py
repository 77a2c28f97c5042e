"""Reading labelled text from local files: csv, tsv, jsonl, json and parquet.

Column choice, in order: the ``text_column`` / ``label_column`` the caller names (a
column name or a 0-based position); otherwise the first column whose name is a usual
one (``text``, ``sentence``, ... / ``label``, ``class``, ...); otherwise, for files with
no header, the string column with the longest texts and the column with the fewest
distinct values. Files with a header but no usual names are refused with the list of
columns, because a guess there is too easy to get silently wrong.

Header detection for csv / tsv (``header=None``): the first row is a header when one of
its cells is a usual column name or a column the caller named, or when it does not
look like the rows below it (a numeric column with a non-numeric first cell; a
few-valued column whose first cell never occurs again).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from ..errors import DataError
from .text import Provenance, TextDataset, encode_labels

__all__ = [
    "TEXT_COLUMNS",
    "LABEL_COLUMNS",
    "FILE_FORMATS",
    "file_format",
    "read_table",
    "dataset_from_frame",
    "load_file",
    "ColumnOptions",
]

#: Column names recognised as the text, in order of preference (case-insensitive).
TEXT_COLUMNS: tuple[str, ...] = (
    "text", "sentence", "sentences", "review", "content", "document", "body", "comment",
    "tweet", "utterance", "description", "snippet", "passage", "abstract", "question",
    "input", "query", "title",
)
#: Column names recognised as the label, in order of preference (case-insensitive).
LABEL_COLUMNS: tuple[str, ...] = (
    "label", "labels", "class", "category", "target", "sentiment", "polarity", "y",
    "class_label", "label_name", "topic", "intent", "tag",
)
#: File suffix -> format name.
FILE_FORMATS: dict[str, str] = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv", ".jsonl": "jsonl",
    ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".pq": "parquet",
}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zip", ".zst")


class ColumnOptions(TypedDict):
    """How the rows of a table become a labelled dataset: the options that
    :func:`hyperlens.data.load` hands unchanged to :func:`load_file` or the Hugging Face
    reader, and they to :func:`dataset_from_frame` (see its arguments)."""

    text_column: str | int | None
    label_column: str | int | None
    label_names: Sequence[str] | None
    drop_invalid: bool
    min_classes: int


def file_format(path: str | os.PathLike[str]) -> str | None:
    """The format of ``path`` from its suffix (compression suffixes are skipped), or None."""
    p = Path(path)
    suffixes = [s.lower() for s in p.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    return FILE_FORMATS.get(suffixes[-1]) if suffixes else None


def read_table(
    path: Path,
    fmt: str,
    *,
    header: bool | None = None,
    wanted: Sequence[str] = (),
    read_options: Mapping[str, Any] | None = None,
) -> Any:
    """Read ``path`` into a ``pandas.DataFrame``; csv / tsv cells are kept as strings.

    ``wanted`` are column names the caller asked for (they count as header evidence).
    Headerless files get integer column names ``0, 1, ...``.
    """
    import pandas as pd

    opts = dict(read_options or {})
    try:
        if fmt in {"csv", "tsv"}:
            base: dict[str, Any] = {
                "sep": "," if fmt == "csv" else "\t",
                "header": None,
                "dtype": str,
                "keep_default_na": False,
                "na_filter": False,
                "encoding": "utf-8-sig",  # also strips a byte-order mark
            }
            if fmt == "tsv":
                # TSV has no quoting convention; GLUE-style files contain bare quotes.
                base["quoting"] = csv.QUOTE_NONE
            base.update(opts)
            df = pd.read_csv(path, **base)
            if header is None:
                header = _looks_like_header(df, wanted)
            if header and len(df):
                df.columns = [str(c).strip() for c in df.iloc[0].tolist()]
                df = df.iloc[1:].reset_index(drop=True)
            return df
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, dtype=False, **opts)
        if fmt == "json":
            return pd.read_json(path, dtype=False, **opts)
        if fmt == "parquet":
            return pd.read_parquet(path, **opts)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid UTF-8 ({exc.reason} at byte {exc.start}); re-save it as UTF-8 "
            "or pass read_options={'encoding': 'latin-1'} (csv / tsv)."
        ) from exc
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        hint = (
            " A tsv is read without quote handling; if its fields are quoted, pass "
            "read_options={'quoting': 0}."
            if fmt == "tsv"
            else ""
        )
        raise DataError(f"could not read {path} as {fmt}: {exc}.{hint}") from exc
    raise DataError(
        f"unsupported format {fmt!r} for {path}; use one of {sorted(set(FILE_FORMATS.values()))}."
    )


def _looks_like_header(df: Any, wanted: Sequence[str]) -> bool:
    """Whether the first row of a string-typed, headerless read is a header row."""
    import pandas as pd

    if len(df) < 2:
        return len(df) == 1 and _has_known_name(df.iloc[0].tolist(), wanted)
    first = df.iloc[0].tolist()
    if _has_known_name(first, wanted):
        return True
    body = df.iloc[1 : min(len(df), 2001)]
    votes = 0
    for j, col in enumerate(body.columns):
        values = body[col]
        cell = str(first[j]).strip()
        numeric = pd.to_numeric(values, errors="coerce")
        if numeric.notna().all():
            votes += 1 if pd.isna(pd.to_numeric(pd.Series([cell]), errors="coerce")[0]) else -1
            continue
        distinct = values.nunique()
        if len(values) >= 10 and distinct <= min(50, len(values) // 3):
            votes += -1 if cell in set(values.tolist()) else 1
    return votes > 0


def _has_known_name(cells: Sequence[Any], wanted: Sequence[str]) -> bool:
    known = {c.lower() for c in TEXT_COLUMNS + LABEL_COLUMNS} | {w.lower() for w in wanted}
    return any(str(c).strip().lower() in known for c in cells)


def _pick_column(
    df: Any, role: str, explicit: str | int | None, path: str, exclude: Any = None
) -> Any:
    """The column to use as ``role`` ("text" / "label")."""
    columns = list(df.columns)
    arg = f"{role}_column"
    if explicit is not None:
        if isinstance(explicit, int) and not isinstance(explicit, bool):
            if explicit in columns:  # headerless files use positions as names
                return explicit
            if -len(columns) <= explicit < len(columns):
                return columns[explicit]
            raise DataError(
                f"{arg}={explicit} is out of range: {path} has {len(columns)} columns "
                f"({_show(columns)}); pass a position in 0..{len(columns) - 1} or a name."
            )
        if explicit in columns:
            return explicit
        folded = [c for c in columns if str(c).lower() == str(explicit).lower()]
        if len(folded) == 1:
            return folded[0]
        raise DataError(
            f"{arg}={explicit!r} is not a column of {path}; its columns are {_show(columns)}. "
            f"Pass one of those as {arg}= (or --{role}-column on the command line)."
        )
    candidates = TEXT_COLUMNS if role == "text" else LABEL_COLUMNS
    by_lower = {str(c).lower(): c for c in columns if c is not exclude and c != exclude}
    for name in candidates:
        if name in by_lower:
            return by_lower[name]
    if all(isinstance(c, int | np.integer) for c in columns):
        guess = _guess_headerless(df, role, exclude)
        if guess is not None:
            return guess
    raise DataError(
        f"could not tell which column of {path} holds the {role}s: its columns are "
        f"{_show(columns)} and none is a usual {role} column name (such as "
        f"{', '.join(repr(c) for c in candidates[:4])}). Pass {arg}=<name or position>."
    )


def _guess_headerless(df: Any, role: str, exclude: Any) -> Any:
    """Text: the string column with the longest mean length. Label: the other column
    with the fewest distinct values."""
    cols = [c for c in df.columns if c is not exclude and c != exclude]
    if not cols:
        return None
    sample = df.iloc[: min(len(df), 5000)]
    if role == "text":
        lengths = {c: sample[c].astype(str).str.len().mean() for c in cols}
        return max(cols, key=lambda c: lengths[c])
    distinct = {c: sample[c].astype(str).nunique() for c in cols}
    best = min(cols, key=lambda c: distinct[c])
    return best if distinct[best] < max(2, len(sample)) else None


def _show(columns: Sequence[Any]) -> str:
    shown = [repr(c) for c in columns[:20]]
    return "[" + ", ".join(shown) + (", ...]" if len(columns) > 20 else "]")


def dataset_from_frame(
    df: Any,
    *,
    source: str,
    fmt: str,
    name: str,
    text_column: str | int | None = None,
    label_column: str | int | None = None,
    label_names: Sequence[str] | None = None,
    drop_invalid: bool = False,
    split: str | None = None,
    extra_dropped: Mapping[str, int] | None = None,
    rows_read: int | None = None,
    min_classes: int = 2,
    notes: str = "",
    missing_label: Any = None,
) -> TextDataset:
    """Turn a ``pandas.DataFrame`` into a :class:`TextDataset`.

    Rows whose text is missing, not a string, or blank, and rows without a label, are
    refused with a :class:`DataError` that lists them, or dropped and counted in
    ``provenance.dropped`` when ``drop_invalid``. ``missing_label`` is a label value that
    means "no label" (Hugging Face uses ``-1``).
    """
    import pandas as pd

    text_col = _pick_column(df, "text", text_column, source)
    label_col = _pick_column(df, "label", label_column, source, exclude=text_col)
    if label_col == text_col:
        raise DataError(
            f"text_column and label_column both resolve to {text_col!r} in {source}; "
            "pass two different columns."
        )
    texts = df[text_col].to_numpy(dtype=object)  # [N]
    labels = df[label_col]
    n = len(texts)

    is_str = np.fromiter((type(t) is str for t in texts), dtype=bool, count=n)
    blank = np.zeros(n, dtype=bool)
    if is_str.any():
        blank[is_str] = pd.Series(texts[is_str]).str.strip().eq("").to_numpy()
    missing_text = np.asarray(pd.isna(pd.Series(texts)).to_numpy(), dtype=bool) & ~is_str
    non_string = ~is_str & ~missing_text
    label_missing = np.array(labels.isna().to_numpy(), dtype=bool)
    if not pd.api.types.is_numeric_dtype(labels.dtype):  # object or pandas' str dtype
        label_missing |= (
            labels.astype(object).fillna("").astype(str).str.strip().eq("").to_numpy(bool)
        )
    if missing_label is not None:
        label_missing |= (labels == missing_label).to_numpy()

    if is_str.any() and not non_string.any() and _all_numeric(texts[is_str & ~blank]):
        raise DataError(
            f"column {text_col!r} of {source} was taken as the text but holds only numbers "
            f"(e.g. {texts[is_str & ~blank][0]!r}); pass text_column=<the column with the "
            "sentences>"
            f" (columns: {_show(list(df.columns))})."
        )

    problems = {
        "missing_text": missing_text,
        "non_string_text": non_string,
        "empty_text": blank,
        "missing_label": label_missing & ~(missing_text | non_string | blank),
    }
    bad = missing_text | non_string | blank | label_missing
    if bad.all() and n:
        raise DataError(
            f"no usable rows in {source}: all {n} rows lack a text or a label "
            f"(text column {text_col!r}, label column {label_col!r}); check the columns and the "
            "file."
            + (
                f" Every label is {missing_label!r}, which marks hidden labels (as in GLUE test "
                "splits); use a split that has labels."
                if missing_label is not None and label_missing.all()
                else ""
            )
        )
    if bad.any() and not drop_invalid:
        parts = []
        for reason, mask in problems.items():
            if mask.any():
                rows = (np.flatnonzero(mask)[:5] + 1).tolist()
                example = texts[np.flatnonzero(mask)[0]]
                parts.append(
                    f"{int(mask.sum())} {reason.replace('_', ' ')} (data rows {rows}"
                    + (f", e.g. {example!r:.40}" if reason == "non_string_text" else "")
                    + ")"
                )
        raise DataError(
            f"{source} has rows hyperlens cannot use in text column {text_col!r} / label column "
            f"{label_col!r}: {'; '.join(parts)}. Fix the file, or pass drop_invalid=True "
            "(--drop-invalid) to drop them; the dropped counts are kept in the dataset's "
            "provenance."
        )
    dropped = {k: int(v.sum()) for k, v in problems.items() if v.any()}
    for k, v in (extra_dropped or {}).items():
        if v:
            dropped[k] = dropped.get(k, 0) + int(v)
    keep = ~bad
    kept_texts = texts[keep].tolist()
    raw_labels = labels.to_numpy()[keep]
    ids, names = encode_labels(
        raw_labels, label_names, what=f"labels in column {label_col!r} of {source}"
    )
    prov = Provenance(
        source=source,
        format=fmt,
        text_column=str(text_col),
        label_column=str(label_col),
        rows_read=int(rows_read if rows_read is not None else n),
        rows_kept=len(kept_texts),
        dropped=dropped,
        split=split,
        notes=notes,
    )
    ds = TextDataset(kept_texts, ids, names, name=name, provenance=prov)
    if min_classes > 1:
        ds.require_classes(min_classes, what=f"label column {label_col!r} of {source}")
    return ds


def _all_numeric(values: np.ndarray) -> bool:
    import pandas as pd

    if values.size == 0:
        return False
    sample = pd.Series(values[:2000])
    return bool(pd.to_numeric(sample, errors="coerce").notna().all())


def load_file(
    path: Path,
    *,
    text_column: str | int | None = None,
    label_column: str | int | None = None,
    label_names: Sequence[str] | None = None,
    header: bool | None = None,
    drop_invalid: bool = False,
    min_classes: int = 2,
    read_options: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> TextDataset:
    """Load one local csv / tsv / jsonl / json / parquet file (see the module docstring)."""
    fmt = file_format(path)
    if fmt is None:
        raise DataError(
            f"cannot tell the format of {path} from its suffix {''.join(path.suffixes)!r}; "
            f"supported suffixes are {sorted(FILE_FORMATS)} (optionally compressed: "
            f"{', '.join(_COMPRESSION)}). Rename the file or convert it."
        )
    wanted = [c for c in (text_column, label_column) if isinstance(c, str)]
    df = read_table(path, fmt, header=header, wanted=wanted, read_options=read_options)
    if len(df) == 0:
        raise DataError(f"{path} has no data rows; check that it is the right file.")
    return dataset_from_frame(
        df,
        source=str(path),
        fmt=fmt,
        name=name or _stem(path),
        text_column=text_column,
        label_column=label_column,
        label_names=label_names,
        drop_invalid=drop_invalid,
        min_classes=min_classes,
    )


def _stem(path: Path) -> str:
    name = path.name
    for suffix in reversed(path.suffixes):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name or path.name
