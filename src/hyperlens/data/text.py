"""Labelled text datasets and seeded, stratified train / test / anchor splits.

A :class:`TextDataset` is an immutable bundle of texts, integer class labels and class
names, plus a :class:`Provenance` record saying where the rows came from and which rows
were dropped on the way in. Subsets made by :meth:`TextDataset.split`,
:meth:`TextDataset.subsample` or :meth:`TextDataset.select` keep ``indices`` into the
dataset as it was loaded, so a report can always say exactly which rows it used.

Splits are computed with NumPy only (one permutation, one stable sort, one comparison
against per-class quotas): no Python loop over rows, and the same seed gives the same
rows on every machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

import numpy as np

from ..errors import DataError, InputError
from ..utils import check_int

__all__ = ["Provenance", "TextDataset", "Splits", "SizeSpec", "encode_labels"]

#: A part size: an absolute row count (``int``), a fraction of the rows (``float`` in
#: ``(0, 1]``) or ``None`` for "whatever is left".
SizeSpec = int | float | None


@dataclass(frozen=True)
class Provenance:
    """Where a dataset's rows came from.

    Attributes:
        source: the file path, ``hf:<id>`` or the named dataset's files.
        format: ``"csv"``, ``"tsv"``, ``"jsonl"``, ``"json"``, ``"parquet"``, ``"hf"``,
            ``"hf-disk"``, ``"memory"``, or ``"named"``.
        text_column, label_column: the columns the texts and labels were read from.
        rows_read: rows in the source (after the header, before any filtering).
        rows_kept: rows that made it into the dataset.
        dropped: reason -> number of rows dropped for it (``{"empty_text": 3}``).
        split: the source split (``"train"``, ``"dev"``, ...) when the source has several.
        notes: free text, e.g. how the label names were obtained.
    """

    source: str
    format: str
    text_column: str | None = None
    label_column: str | None = None
    rows_read: int = 0
    rows_kept: int = 0
    dropped: Mapping[str, int] = field(default_factory=dict)
    split: str | None = None
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (for ``results.json``)."""
        out = dataclasses.asdict(self)
        out["dropped"] = {str(k): int(v) for k, v in self.dropped.items()}
        return out


def encode_labels(
    values: Sequence[Any] | np.ndarray,
    label_names: Sequence[str] | None = None,
    *,
    what: str = "labels",
) -> tuple[np.ndarray, list[str]]:
    """Map raw labels to ``int64`` class ids ``0..C-1`` and return ``(ids, names)``.

    * With ``label_names``: string labels must be among the names (ids follow the given
      order); integer labels must lie in ``0..len(label_names)-1`` and are kept as they are.
    * Without: the distinct values are sorted (numbers numerically, strings
      lexicographically) and numbered in that order; ``names`` are their string forms.
      Integer labels that already are ``0..C-1`` therefore keep their values.

    Float labels with a fractional part (regression targets) are refused with
    :class:`DataError`: bin them into classes first.

    Shapes:
        values: ``[N]`` -> ids ``[N]`` int64, names ``[C]``.
    """
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.ndim != 1:
        raise InputError(f"{what} must be one-dimensional, got shape {arr.shape}.")
    numeric = _as_integer_labels(arr, what)
    if label_names is not None:
        names = [str(n) for n in label_names]
        if len(set(names)) != len(names):
            raise InputError(f"label_names has duplicates: {names}; give each class one name.")
        if numeric is not None:
            bad = (numeric < 0) | (numeric >= len(names))
            if bad.any():
                raise DataError(
                    f"{what} hold integer values {sorted(set(numeric[bad].tolist()))[:5]} outside "
                    f"0..{len(names) - 1}, the range implied by label_names={names}; pass one "
                    "name per class id, or leave label_names out to number the classes "
                    "automatically."
                )
            return numeric.astype(np.int64), names
        as_str = arr.astype(str)
        lookup = {n: i for i, n in enumerate(names)}
        uniq, inverse = np.unique(as_str, return_inverse=True)
        missing = [u for u in uniq.tolist() if u not in lookup]
        if missing:
            raise DataError(
                f"{what} contain values {missing[:5]} that are not in label_names={names}; "
                "add them to label_names or leave label_names out."
            )
        table = np.array([lookup[u] for u in uniq.tolist()], dtype=np.int64)
        return table[inverse.reshape(-1)], names
    if numeric is not None:
        uniq, inverse = np.unique(numeric, return_inverse=True)
        return inverse.reshape(-1).astype(np.int64), [str(int(u)) for u in uniq.tolist()]
    uniq, inverse = np.unique(arr.astype(str), return_inverse=True)
    return inverse.reshape(-1).astype(np.int64), [str(u) for u in uniq.tolist()]


def _as_integer_labels(arr: np.ndarray, what: str) -> np.ndarray | None:
    """``arr`` as int64 if every value is a number (or a number written as a string) with
    no fractional part; None when the labels are names. Raises for fractional numbers."""
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f":
        floats = arr.astype(np.float64)
    else:
        import pandas as pd

        as_text = pd.Series(arr.astype(str)).str.strip()
        if not as_text.str.fullmatch(_NUMBER).all():
            return None
        floats = as_text.astype(np.float64).to_numpy()
    if not np.isfinite(floats).all():
        return None
    frac = floats != np.round(floats)
    if frac.any():
        raise DataError(
            f"{what} hold non-integer numbers (for example {floats[frac][0]!r}): hyperlens needs "
            "class labels, not regression scores; bin them into classes first (e.g. score >= 0.5 "
            "-> 1)."
        )
    return floats.astype(np.int64)


_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


class TextDataset:
    """Texts with integer class labels ``0..C-1`` and the names of those classes.

    Attributes:
        texts: ``list[str]`` of length ``N``.
        labels: ``np.ndarray`` int64 ``[N]`` with values in ``0..C-1``.
        label_names: ``list[str]`` of length ``C`` (a subset may lack some classes; the
            names stay those of the full dataset so label ids mean the same everywhere).
        name: a short name used in reports (``"sst2"``, ``"sst2[train]"``).
        provenance: a :class:`Provenance` record of the source.
        indices: ``np.ndarray`` int64 ``[N]``, row numbers in the dataset as loaded.

    Shapes:
        texts ``[N]``, labels ``[N]``, indices ``[N]``, class_counts ``[C]``.

    Example:
        >>> ds = TextDataset(["good", "bad", "fine", "awful"], [1, 0, 1, 0], ["neg", "pos"])
        >>> len(ds), ds.num_classes, ds.class_counts.tolist()
        (4, 2, [2, 2])
        >>> parts = ds.split(train=2, test=2, seed=0)
        >>> sorted(parts.train.labels.tolist()), sorted(parts.test.labels.tolist())
        ([0, 1], [0, 1])
    """

    __slots__ = ("_texts", "_labels", "_label_names", "name", "provenance", "_indices")

    def __init__(
        self,
        texts: Sequence[str],
        labels: Sequence[int] | np.ndarray,
        label_names: Sequence[str] | None = None,
        *,
        name: str = "dataset",
        provenance: Provenance | None = None,
        indices: np.ndarray | None = None,
    ) -> None:
        texts = list(texts)
        bad = [i for i, t in enumerate(texts) if type(t) is not str or not t.strip()]
        if bad:
            first = bad[0]
            raise InputError(
                f"texts must be non-empty strings; {len(bad)} of {len(texts)} are not "
                f"(first at index {first}: {type(texts[first]).__name__} {texts[first]!r:.60}); "
                "drop or fix those rows (load() does this with drop_invalid=True)."
            )
        lab = np.asarray(labels)
        if lab.ndim != 1 or lab.shape[0] != len(texts):
            raise InputError(
                f"labels must be a 1-D array with one label per text: got shape {lab.shape} "
                f"for {len(texts)} texts."
            )
        if lab.size and lab.dtype.kind not in "iu":
            raise InputError(
                f"labels must be integer class ids, got dtype {lab.dtype}; use "
                "TextDataset.from_lists(texts, labels) to encode string labels."
            )
        lab = lab.astype(np.int64, copy=True)
        if label_names is None:
            label_names = [str(i) for i in range(int(lab.max()) + 1 if lab.size else 0)]
        names = [str(n) for n in label_names]
        if lab.size and (lab.min() < 0 or lab.max() >= len(names)):
            raise InputError(
                f"labels must lie in 0..{len(names) - 1} (one id per name in label_names="
                f"{names}), got values from {int(lab.min())} to {int(lab.max())}."
            )
        if indices is None:
            idx = np.arange(len(texts), dtype=np.int64)
        else:
            idx = np.asarray(indices, dtype=np.int64).copy()
            if idx.shape != lab.shape:
                raise InputError(f"indices must have shape {lab.shape}, got {idx.shape}.")
        lab.setflags(write=False)
        idx.setflags(write=False)
        self._texts = texts
        self._labels = lab
        self._label_names = names
        self.name = name
        self.provenance = provenance or Provenance(
            source="memory", format="memory", rows_read=len(texts), rows_kept=len(texts)
        )
        self._indices = idx

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_lists(
        cls,
        texts: Sequence[str],
        labels: Sequence[Any],
        label_names: Sequence[str] | None = None,
        *,
        name: str = "dataset",
    ) -> TextDataset:
        """Build a dataset from in-memory texts and labels of any kind (strings or ints);
        labels are numbered as :func:`encode_labels` describes."""
        ids, names = encode_labels(list(labels), label_names)
        return cls(texts, ids, names, name=name)

    # ------------------------------------------------------------------ basic views
    @property
    def texts(self) -> list[str]:
        """The texts (a list; treat it as read-only)."""
        return self._texts

    @property
    def labels(self) -> np.ndarray:
        """Class ids, int64 ``[N]`` (read-only array)."""
        return self._labels

    @property
    def label_names(self) -> list[str]:
        """Class names; ``label_names[i]`` names class id ``i``."""
        return list(self._label_names)

    @property
    def indices(self) -> np.ndarray:
        """Row numbers of these rows in the dataset as loaded, int64 ``[N]``."""
        return self._indices

    @property
    def num_classes(self) -> int:
        """Number of classes ``C`` (``len(label_names)``), present in this subset or not."""
        return len(self._label_names)

    @property
    def class_counts(self) -> np.ndarray:
        """Rows per class, int64 ``[C]``."""
        return np.bincount(self._labels, minlength=self.num_classes).astype(np.int64)

    def class_distribution(self) -> dict[str, int]:
        """``{class name: rows}`` in class-id order."""
        return dict(zip(self._label_names, self.class_counts.tolist(), strict=True))

    @property
    def majority_rate(self) -> float:
        """Accuracy of always predicting the most frequent class (the chance baseline)."""
        n = len(self)
        return float(self.class_counts.max() / n) if n else float("nan")

    @property
    def majority_class(self) -> str:
        """Name of the most frequent class (the lowest id on ties)."""
        if not len(self):
            raise DataError(f"dataset {self.name!r} is empty; it has no majority class.")
        return self._label_names[int(self.class_counts.argmax())]

    def __len__(self) -> int:
        return len(self._texts)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return zip(self._texts, self._labels.tolist(), strict=True)

    @overload
    def __getitem__(self, key: int) -> tuple[str, int]: ...
    @overload
    def __getitem__(self, key: slice | Sequence[int] | np.ndarray) -> TextDataset: ...
    def __getitem__(self, key: Any) -> tuple[str, int] | TextDataset:
        """``ds[i]`` is ``(text, label)``; ``ds[a:b]``, ``ds[[i, j]]`` and boolean masks give a
        :class:`TextDataset`."""
        if isinstance(key, int | np.integer):
            i = int(key)
            if not -len(self) <= i < len(self):
                raise IndexError(f"index {i} out of range for {len(self)} rows")
            return self._texts[i], int(self._labels[i])
        if isinstance(key, slice):
            return self.select(np.arange(len(self))[key])
        return self.select(key)

    def __repr__(self) -> str:
        dist = ", ".join(f"{k}: {v}" for k, v in self.class_distribution().items())
        src = self.provenance.source
        if len(src) > 60:
            src = "..." + src[-57:]
        return f"TextDataset(name={self.name!r}, n={len(self)}, classes={{{dist}}}, source={src!r})"

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary for reports: name, size, classes, counts, majority rate,
        provenance."""
        return {
            "name": self.name,
            "n": len(self),
            "num_classes": self.num_classes,
            "label_names": self.label_names,
            "class_counts": self.class_counts.tolist(),
            "majority_rate": self.majority_rate if len(self) else None,
            "provenance": self.provenance.to_dict(),
        }

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` with columns ``text``, ``label``, ``label_name``, ``index``."""
        import pandas as pd

        return pd.DataFrame(
            {
                "text": self._texts,
                "label": self._labels,
                "label_name": np.asarray(self._label_names, dtype=object)[self._labels]
                if len(self)
                else [],
                "index": self._indices,
            }
        )

    # ------------------------------------------------------------------ subsets
    def select(self, rows: Sequence[int] | np.ndarray, *, name: str | None = None) -> TextDataset:
        """The rows at positions ``rows`` (ints, or a boolean mask of length ``N``), in that
        order."""
        idx = np.asarray(rows)
        if idx.dtype == bool:
            if idx.shape != (len(self),):
                raise InputError(f"a boolean mask must have shape ({len(self)},), got {idx.shape}.")
            idx = np.flatnonzero(idx)
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise InputError(
                f"rows must be a 1-D array of integer positions, got {idx.dtype} {idx.shape}."
            )
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise InputError(
                f"rows must lie in 0..{len(self) - 1} for dataset {self.name!r}, got values from "
                f"{int(idx.min())} to {int(idx.max())}."
            )
        idx = idx.astype(np.int64) % max(len(self), 1)
        texts = self._texts
        return self._subset(
            [texts[i] for i in idx.tolist()],
            self._labels[idx],
            self._indices[idx],
            name or self.name,
        )

    def _subset(
        self, texts: list[str], labels: np.ndarray, indices: np.ndarray, name: str
    ) -> TextDataset:
        """A dataset of rows already validated by ``self`` (skips the per-text checks)."""
        out = TextDataset.__new__(TextDataset)
        labels = np.array(labels, dtype=np.int64)
        indices = np.array(indices, dtype=np.int64)
        labels.setflags(write=False)
        indices.setflags(write=False)
        out._texts = texts
        out._labels = labels
        out._label_names = self._label_names
        out.name = name
        out.provenance = self.provenance
        out._indices = indices
        return out

    def split(
        self,
        train: SizeSpec = None,
        test: SizeSpec = 0.2,
        anchors: SizeSpec = 0,
        *,
        seed: int = 0,
        stratify: bool = True,
    ) -> Splits:
        """Disjoint, seeded train / test / anchor subsets.

        Sizes are row counts (``int``), fractions of ``len(self)`` (``float`` in ``(0, 1]``,
        rounded to the nearest row), or ``None`` for "all rows the other parts leave"
        (at most one part may be ``None``). With ``stratify`` every part gets each class in
        proportion to the whole (largest-remainder rounding, so part sizes are exact).
        Each part comes back shuffled. The default is 80 % train, 20 % test, no anchors.

        Raises :class:`InputError` when the sizes add up to more rows than there are.

        Shapes:
            self ``[N]`` -> train ``[n_train]``, test ``[n_test]``, anchors ``[n_anchors]``
            with ``n_train + n_test + n_anchors <= N``.
        """
        seed = _check_seed(seed)
        sizes = _resolve_sizes(
            len(self), {"train": train, "test": test, "anchors": anchors}, self.name
        )
        parts = _allocate(self._labels if stratify else None, list(sizes.values()), seed, len(self))
        out = {
            part: self.select(rows, name=f"{self.name}[{part}]")
            for part, rows in zip(sizes, parts, strict=True)
        }
        rows = dict(zip(sizes, parts, strict=True))
        for r in rows.values():
            r.setflags(write=False)
        return Splits(
            train=out["train"], test=out["test"], anchors=out["anchors"], seed=seed,
            stratify=stratify, rows=rows,
        )

    def subsample(self, n: int | float, *, seed: int = 0, stratify: bool = True) -> TextDataset:
        """A seeded random subset of ``n`` rows (a count, or a fraction in ``(0, 1]``), with
        class proportions kept when ``stratify``. The rows come back shuffled."""
        seed = _check_seed(seed)
        if n is None:
            raise InputError("subsample(n=None): give a row count or a fraction in (0, 1].")
        size = _resolve_sizes(len(self), {"n": n}, self.name)["n"]
        (rows,) = _allocate(self._labels if stratify else None, [size], seed, len(self))
        return self.select(rows, name=self.name)

    def shuffle(self, *, seed: int = 0) -> TextDataset:
        """All rows in a seeded random order."""
        seed = _check_seed(seed)
        return self.select(np.random.default_rng(seed).permutation(len(self)))

    def require_classes(self, min_classes: int = 2, *, what: str | None = None) -> TextDataset:
        """Return ``self`` if at least ``min_classes`` classes have rows, else raise
        :class:`DataError` naming the class that is there and how to fix it."""
        present = np.flatnonzero(self.class_counts)
        if present.size >= min_classes:
            return self
        where = what or f"dataset {self.name!r} ({self.provenance.source})"
        if present.size == 0:
            raise DataError(f"{where} has no rows; check the file and the label column.")
        only = self._label_names[int(present[0])]
        hint = (
            " (-1 usually marks hidden labels, as in GLUE test splits; use a split with labels)"
            if only == "-1"
            else ""
        )
        raise DataError(
            f"{where} has labels of a single class, {only!r} ({len(self)} rows){hint}; "
            f"hyperlens needs at least {min_classes} classes to probe, split or evaluate. "
            f"Check label_column= (now {self.provenance.label_column!r}) or use a file whose "
            "label column holds two or more classes."
        )


@dataclass(frozen=True)
class Splits:
    """Three disjoint subsets of one dataset: ``train``, ``test`` and ``anchors`` (the
    paired rows that alignment methods fit on; empty when not asked for).

    ``rows[part]`` holds each part's positions in the dataset that was split, so features
    computed once for the whole dataset can be indexed directly:
    ``X[splits.rows["train"]]`` lines up with ``splits.train.labels``.

    Shapes:
        rows["train"] ``[n_train]``, rows["test"] ``[n_test]``, rows["anchors"] ``[n_anchors]``.
    """

    train: TextDataset
    test: TextDataset
    anchors: TextDataset
    seed: int
    stratify: bool
    rows: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __iter__(self) -> Iterator[TextDataset]:
        return iter((self.train, self.test, self.anchors))

    @property
    def sizes(self) -> dict[str, int]:
        """``{"train": n, "test": n, "anchors": n}``."""
        return {"train": len(self.train), "test": len(self.test), "anchors": len(self.anchors)}

    def summary(self) -> dict[str, Any]:
        """JSON-ready record: seed, stratification, sizes and class counts of each part."""
        return {
            "seed": self.seed,
            "stratify": self.stratify,
            "sizes": self.sizes,
            "class_counts": {
                part: ds.class_counts.tolist()
                for part, ds in (
                    ("train", self.train),
                    ("test", self.test),
                    ("anchors", self.anchors),
                )
            },
        }

    def __repr__(self) -> str:
        s = self.sizes
        return (
            f"Splits(train={s['train']}, test={s['test']}, anchors={s['anchors']}, "
            f"seed={self.seed}, stratify={self.stratify})"
        )


# ---------------------------------------------------------------------- split helpers
def _check_seed(seed: Any) -> int:
    return check_int(seed, "seed", minimum=0)


def _resolve_sizes(n: int, spec: dict[str, SizeSpec], name: str) -> dict[str, int]:
    """Turn counts / fractions / one ``None`` into row counts that fit in ``n`` rows."""
    out: dict[str, int | None] = {}
    for part, value in spec.items():
        if value is None:
            out[part] = None
        elif isinstance(value, bool) or not isinstance(
            value, int | float | np.integer | np.floating
        ):
            raise InputError(
                f"{part}= must be a row count (int), a fraction in (0, 1] (float) or None, "
                f"got {type(value).__name__} {value!r}."
            )
        elif isinstance(value, float | np.floating):
            if not 0.0 <= float(value) <= 1.0:
                raise InputError(
                    f"{part}={value!r} is a float, so it is read as a fraction, which must lie in "
                    f"[0, 1]; pass an int for a row count (e.g. {part}={int(value)})."
                )
            out[part] = int(round(float(value) * n))
        else:
            if value < 0:
                raise InputError(f"{part}={value} is negative; pass a row count >= 0.")
            out[part] = int(value)
    open_parts = [p for p, v in out.items() if v is None]
    if len(open_parts) > 1:
        raise InputError(
            f"only one part may be None (take the rest), got None for {open_parts}; "
            "give sizes for all but one of them."
        )
    fixed = sum(v for v in out.values() if v is not None)
    desc = " + ".join(f"{p}={spec[p]!r} ({v} rows)" for p, v in out.items() if v is not None)
    if fixed > n:
        raise InputError(
            f"the requested sizes {desc} add up to {fixed} rows, but dataset {name!r} has only "
            f"{n}; lower the sizes, pass fractions, or load more data (e.g. split='all')."
        )
    if open_parts:
        rest = n - fixed
        if rest == 0:
            raise InputError(
                f"{open_parts[0]}=None takes the rows left over, but {desc} use all {n} rows of "
                f"dataset {name!r}; lower the other sizes."
            )
        out[open_parts[0]] = rest
    return {p: int(v) for p, v in out.items()}  # type: ignore[arg-type]


def _allocate(labels: np.ndarray | None, sizes: list[int], seed: int, n: int) -> list[np.ndarray]:
    """Disjoint row sets of the given sizes, stratified by ``labels`` when given.

    Per class ``c`` and part ``p`` the quota is ``counts[c] * sizes[p] / n``; floors are
    taken and each part's shortfall is handed to the classes with the largest remainders
    that still have unused rows. Rows are then dealt out by one permutation, a stable sort
    by class, and a comparison of each row's rank within its class against the cumulative
    quotas.

    Shapes:
        labels ``[n]`` -> one int64 index array per part, ``[sizes[p]]``.
    """
    rng = np.random.default_rng(seed)
    lab = np.zeros(n, dtype=np.int64) if labels is None else labels
    counts = np.bincount(lab, minlength=1).astype(np.int64)  # [C]
    size_arr = np.asarray(sizes, dtype=np.int64)  # [P]
    quota = counts[:, None] * size_arr[None, :] / max(n, 1)  # [C, P]
    alloc = np.floor(quota).astype(np.int64)
    for p in range(len(sizes)):  # parts are few (<= 3); classes are few
        need = int(size_arr[p] - alloc[:, p].sum())
        order = np.argsort(-(quota[:, p] - alloc[:, p]), kind="stable")
        while need > 0:
            free = counts[order] - alloc[order].sum(axis=1)
            takers = order[free > 0][:need]
            if takers.size == 0:  # cannot happen when sum(sizes) <= n
                raise DataError(f"internal error: cannot place {need} more rows in part {p}.")
            alloc[takers, p] += 1
            need -= int(takers.size)
    perm = rng.permutation(n)  # [n]
    grouped = perm[np.argsort(lab[perm], kind="stable")]  # rows grouped by class, random within
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])  # [C]
    g_lab = lab[grouped]
    rank = np.arange(n) - starts[g_lab]  # rank of each row within its class
    bounds = np.cumsum(alloc, axis=1)  # [C, P]
    part_of = (rank[:, None] >= bounds[g_lab]).sum(axis=1)  # [n] in 0..P (P = unused)
    out = []
    for p in range(len(sizes)):
        rows = grouped[part_of == p]
        out.append(rows[rng.permutation(rows.size)].astype(np.int64))
    return out
