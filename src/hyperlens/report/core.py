"""The :class:`Report`: one folder per run with ``results.json``, PNG plots and ``index.html``.

``results.json`` is the single source of truth. It records the schema version, the full
configuration, seeds, package versions, device, git commit, timings and every number that
a table or plot shows (plots are stored as specs, see :mod:`hyperlens.report.plots`).
The PNGs and the page are derived from it and can be rebuilt with :func:`rebuild`
(``hyperlens report DIR``). Every file is written atomically.

A run that saves its report part-way (after each stage, model or seed) saves with
``final=False``: ``results.json`` then says ``"complete": false`` and the page carries a
banner until the final save, so a folder left by a killed or failed run never reads as
finished. Results written before the key existed count as complete (:func:`is_complete`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, ReportError
from ..utils import (
    Timer,
    apply_umask,
    atomic_write_json,
    atomic_write_text,
    cpu_model_name,
    peak_rss_mb,
    to_jsonable,
    vector_flags,
)
from . import plots as _plots
from .html import is_complete

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Report", "Section", "SCHEMA_VERSION", "rebuild", "load_results", "environment_info",
           "check_out_dir", "is_complete", "comparable", "VOLATILE_KEYS", "load_frames"]

SCHEMA_VERSION = 1
#: Parts of ``results.json`` that differ between two runs of the same computation: when
#: and where it ran, how long it took, and which executor ran it (dotted paths).
VOLATILE_KEYS = ("created", "timings", "environment", "data.executor")
_SAFE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.png$")


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if out.returncode != 0:
            return None
        commit = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
            capture_output=True, text=True, timeout=5,
        )
        return commit + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment_info(device: Any = None) -> dict[str, Any]:
    """Versions, platform, CPU threads and device: what a reader needs to reproduce a run."""
    import importlib.metadata as md

    import torch

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for pkg in ("hyperlens", "torch", "numpy", "scipy", "scikit-learn", "transformers",
                "safetensors", "matplotlib", "nltk"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    if versions.get("hyperlens") is None:
        from .. import __version__

        versions["hyperlens"] = __version__
    info: dict[str, Any] = {
        "versions": versions,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_model": cpu_model_name(),
        # what decides the CPU kernels' arithmetic (native bfloat16 or not, AVX-512 or AVX2)
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": vector_flags(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "device": str(device) if device is not None else None,
        "git_commit": _git_commit(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


class Section:
    """A titled part of a report: prose, tables, plots and named numbers."""

    def __init__(self, report: Report, title: str, text: str = "") -> None:
        self._report = report
        self.title = title
        self.text = text
        self.tables: list[dict[str, Any]] = []
        self.plots: list[dict[str, Any]] = []
        self.metrics_: dict[str, Any] = {}

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
              note: str = "") -> Section:
        """Add a table; every row must have one value per column."""
        cols = [str(c) for c in columns]
        clean = []
        for i, row in enumerate(rows):
            row = list(row)
            if len(row) != len(cols):
                raise ReportError(
                    f"table {title!r}: row {i} has {len(row)} values but there are "
                    f"{len(cols)} columns {cols}; give one value per column."
                )
            clean.append(row)
        self.tables.append(
            {"title": title, "columns": cols, "rows": to_jsonable(clean), "note": note}
        )
        return self

    def plot(self, filename: str, spec: dict[str, Any], caption: str = "") -> Section:
        """Add a plot spec, drawn to ``filename`` (a ``.png`` name) when the report is saved."""
        if not _SAFE_FILE.match(filename):
            raise ReportError(
                f"plot filename={filename!r} must be a plain name ending in .png "
                "(letters, digits, '.', '_', '-'; no folders)."
            )
        if any(p["file"] == filename for s in self._report.sections for p in s.plots):
            raise ReportError(
                f"plot filename={filename!r} is used twice in this report; pick another."
            )
        self.plots.append({"file": filename, "spec": to_jsonable(spec), "caption": caption})
        return self

    def metrics(self, values: dict[str, Any]) -> Section:
        """Record named numbers (merged into earlier ones)."""
        self.metrics_.update(to_jsonable(values))
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "text": self.text, "tables": self.tables,
                "plots": self.plots, "metrics": self.metrics_}


class Report:
    """Collects an experiment's results and writes its folder.

    Args:
        name: experiment name (``"tour"``, ``"transfer"`` ...), shown as the page title.
        config: the full configuration (JSON-serialisable after conversion).
        out_dir: the report folder; created if missing.
        seed: the run's master seed.
        device: the device the run used.
    """

    def __init__(self, name: str, config: dict[str, Any] | None = None, *,
                 out_dir: str | os.PathLike[str], seed: int | None = None,
                 device: Any = None, title: str | None = None, description: str = "") -> None:
        self.name = name
        self.title = title or f"hyperlens {name}"
        self.description = description
        self.config = to_jsonable(config or {})
        self.out_dir = Path(out_dir)
        self.seed = seed
        self.device = device
        self.sections: list[Section] = []
        self.data: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.peak_rss: dict[str, float | None] = {}
        self.summary_rows: list[list[Any]] = []
        self.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._start = time.perf_counter()

    def section(self, title: str, text: str = "") -> Section:
        """Start a new section (or return the existing one with this title)."""
        for s in self.sections:
            if s.title == title:
                if text and not s.text:
                    s.text = text
                return s
        sec = Section(self, title, text)
        self.sections.append(sec)
        return sec

    def timer(self, name: str) -> contextlib.AbstractContextManager[None]:
        """Time a block; the seconds land in ``results.json`` under ``timings``, and the
        process's peak resident memory when the block ended under
        ``environment.peak_rss_mb`` (so the block that raised the peak is the first whose
        figure reaches it)."""
        return self._timed(name)

    @contextlib.contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        try:
            with Timer(self.timings)(name):
                yield
        finally:
            self.peak_rss[name] = peak_rss_mb()

    def summary(self, rows: Sequence[Sequence[Any]]) -> None:
        """Set the short ``[name, value]`` table printed by the CLI at the end of a run."""
        self.summary_rows = [list(r) for r in rows]

    def to_dict(self, *, complete: bool = True) -> dict[str, Any]:
        """The ``results.json`` content; ``complete=False`` marks a part-way save."""
        timings = dict(self.timings)
        timings["total_s"] = time.perf_counter() - self._start
        return to_jsonable({
            "schema_version": SCHEMA_VERSION,
            "experiment": self.name,
            "title": self.title,
            "description": self.description,
            "created": self.created,
            "complete": bool(complete),
            "seed": self.seed,
            "config": self.config,
            "environment": {**environment_info(self.device),
                            "peak_rss_mb": {"process": peak_rss_mb(),
                                            "at the end of": dict(self.peak_rss)}},
            "timings": timings,
            "summary": self.summary_rows,
            "sections": [s.to_dict() for s in self.sections],
            "data": self.data,
        })

    def frames(self) -> dict[str, pd.DataFrame]:
        """Every table as a DataFrame, keyed ``"section/table title"``
        (:func:`hyperlens.report.table_frames`)."""
        from .frames import table_frames

        return table_frames(self._tables_only())

    def frame(self, title: str) -> pd.DataFrame:
        """One table as a DataFrame: ``title`` is a key of :meth:`frames` or a table title
        that only one section uses (:func:`hyperlens.report.table_frame`)."""
        from .frames import table_frame

        return table_frame(self._tables_only(), title)

    def _tables_only(self) -> dict[str, Any]:
        return {"sections": [s.to_dict() for s in self.sections]}

    def save(self, final: bool = True) -> Path:
        """Write plots, ``results.json`` and ``index.html``; returns the folder.

        ``final=False`` is a part-way save: ``results.json`` gets ``"complete": false`` and
        the page a banner saying the run stopped before it finished, until a save with
        ``final=True`` (the default) replaces them.

        The new folder is assembled beside ``out_dir`` and renamed into place whole, so a
        crash or a full disk leaves the previous state (or nothing), never a mix. Files the
        run keeps in its folder (e.g. ``cells.jsonl``) are carried over. Files get the
        user's umask. May be called repeatedly (for example after each stage of a long
        run).
        """
        import shutil

        from .html import render_html

        target = check_out_dir(self.out_dir, "out_dir")
        results = self.to_dict(complete=final)
        staging = _stage_folder(target)
        try:
            _render_all(results, staging)
            atomic_write_json(staging / "results.json", results)
            atomic_write_text(staging / "index.html", render_html(results))
            if target.is_dir():
                written = {p.name for p in staging.iterdir()}
                stale = {f"{p.stem}.png" for p in target.glob("*.png")} - written
                _carry_over(target, staging, written | stale)
            _swap_in(staging, target)
        except OSError as exc:
            raise ReportError(
                f"could not write the report to {target} ({exc.strerror or exc}); the "
                "previous contents are unchanged. Free disk space or pass another --out."
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.out_dir


def check_out_dir(path: str | os.PathLike[str], name: str = "--out") -> Path:
    """Check that a report can be written to folder ``path``, before any work is done.

    Refused, each with a :class:`~hyperlens.errors.ConfigError` that says what to do: an
    existing file; a path under a file; an existing folder that is not a hyperlens report
    and not empty (a report replaces its folder whole, so it would be lost; a folder with a
    run's resume records, ``cells.jsonl``, or a killed cell's ``checkpoints`` or ``cells``
    folder, is accepted); a parent that cannot be created or written to. Creates the parent
    folder.
    """
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise ConfigError(
            f"{name} {target} is an existing file; a report is a folder. Pass a folder path "
            "(e.g. runs/my-run)."
        )
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    f"{name} {target} lies under {parent}, which is a file, not a folder; "
                    "pass a path whose parents are folders."
                )
            break
    if target.is_dir():
        entries = [p.name for p in target.iterdir()]
        if entries and not {"results.json", "cells.jsonl", "checkpoints", "cells"} & set(entries):
            raise ConfigError(
                f"{name} {target} is a folder that holds other files ({', '.join(entries[:3])}"
                f"{', ...' if len(entries) > 3 else ''}) and no hyperlens report; a report "
                "replaces its folder whole. Pass a new or empty folder, or an earlier report."
            )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{name} {target}: cannot create its parent folder ({exc.strerror}); pass a "
            "writable location."
        ) from exc
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{name} {target}: the folder {target.parent} is not writable; pass a writable "
            "location."
        )
    return target


def _stage_folder(target: Path) -> Path:
    """A fresh private folder beside ``target`` to assemble the next version of it."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".staging", dir=target.parent))


def _carry_over(old: Path, staging: Path, replaced: set[str]) -> None:
    """Hard-link (or copy) the files of the previous folder that this save does not rewrite
    (a run's own records such as ``cells.jsonl``) into the staging folder."""
    import shutil

    for entry in old.iterdir():
        if entry.name in replaced or entry.name.startswith("."):
            continue
        dest = staging / entry.name
        if entry.is_dir():
            shutil.copytree(entry, dest, copy_function=_link_or_copy)
        else:
            _link_or_copy(entry, dest)


def _link_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    import shutil

    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _swap_in(staging: Path, target: Path) -> None:
    """Rename ``staging`` onto ``target`` (the previous folder, if any, goes only after)."""
    import shutil

    apply_umask(staging, directory=True)
    if target.is_dir():
        backup = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(backup, ignore_errors=True)
        os.replace(target, backup)
        try:
            os.replace(staging, target)
        except OSError:
            os.replace(backup, target)
            raise
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(staging, target)


def _render_all(results: dict[str, Any], out_dir: Path) -> None:
    for sec in results.get("sections", []):
        for p in sec.get("plots", []):
            _plots.render(p["spec"], out_dir / p["file"])


def load_results(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a report folder's ``results.json``."""
    path = Path(folder)
    if path.is_file() and path.name == "results.json":
        path = path.parent
    file = path / "results.json"
    if not file.exists():
        raise ReportError(
            f"{file} does not exist; pass a report folder written by a hyperlens command "
            "(it holds results.json)."
        )
    try:
        results = json.loads(file.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ReportError(f"{file} is not valid JSON ({exc}); re-run the experiment.") from exc
    version = results.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ReportError(
            f"{file} has schema_version={version!r}; this hyperlens reads version "
            f"{SCHEMA_VERSION}. Re-run the experiment with this version."
        )
    return results


def load_frames(folder: str | os.PathLike[str]) -> dict[str, pd.DataFrame]:
    """Every table of a saved report folder (or its ``results.json``) as a DataFrame, keyed
    ``"section/table title"`` (:func:`hyperlens.report.table_frames`)."""
    from .frames import table_frames

    return table_frames(load_results(folder))


def rebuild(folder: str | os.PathLike[str]) -> Path:
    """Re-draw every plot and ``index.html`` of a report folder from its ``results.json``."""
    path = Path(folder)
    results = load_results(path)
    if path.is_file():
        path = path.parent
    _render_all(results, path)
    from .html import render_html

    atomic_write_text(path / "index.html", render_html(results))
    return path


def comparable(results: dict[str, Any], drop: Sequence[str] = VOLATILE_KEYS) -> dict[str, Any]:
    """A copy of ``results`` without the parts in ``drop`` (dotted paths such as
    ``"data.executor"``; missing ones are skipped), for comparing two runs of the same
    computation: ``assert comparable(a) == comparable(b)``.

    >>> a = {"created": "2025-01-01", "timings": {"total_s": 1.5}, "data": {"x": 1,
    ...      "executor": {"executor": "local"}}}
    >>> b = {"created": "2025-02-01", "timings": {"total_s": 9.0}, "data": {"x": 1,
    ...      "executor": {"executor": "ray"}}}
    >>> comparable(a) == comparable(b), comparable(a)
    (True, {'data': {'x': 1}})
    """
    import copy

    out = copy.deepcopy(results)
    for path in drop:
        *parents, last = path.split(".")
        node: Any = out
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out
