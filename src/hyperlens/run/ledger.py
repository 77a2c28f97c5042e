"""The cell ledger: finished cells of a sweep as JSON lines, and the loop that fills it.

A *cell* is one independent unit of a sweep (a transfer configuration at one seed, one
trained model of the mha-cv grid), identified by a JSON key. :class:`Ledger` keeps the
finished ones in ``cells.jsonl`` in the report folder; the file is rewritten atomically after
every cell, so a crash (even ``kill -9``) never leaves a half-written line, and a rerun skips
what is there. Records carry a fingerprint of the options that change a cell's numbers;
records with another fingerprint are ignored, and kept in the file as they were (a run with
other options, or another precision, never erases the cells of the first). Each record also
keeps the wall-clock seconds of the call that computed it (measured where the cell ran), so
a study finished over several sittings can still say what it cost in all
(:meth:`Ledger.account`); a cell that resumed from its own mid-training checkpoint counts
the sitting that finished it.

:func:`run_cells` is the only place that writes the ledger: whatever executor computes the
cells, results come back to this (the driver) process and are recorded here, once each, in
the order they finish. Because local and Ray executors compute the same function on the same
inputs, a sweep started under one can be finished under the other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..utils import atomic_write_text, progress, stable_hash
from .executor import Executor, LocalExecutor, Task

__all__ = ["Ledger", "Cell", "run_cells", "CELLS_TIMING"]

#: The report timing that sums the seconds of a ledger's cells over every sitting.
CELLS_TIMING = "cells (all sittings)"


class Ledger:
    """Finished cells of a run, persisted as JSON lines in ``path`` (``None``: in memory only).

    Results are stored as their JSON round trip, so a computed cell and a resumed one are
    the same Python value (NumPy scalars and arrays become numbers and lists).
    """

    def __init__(self, path: Path | None, fingerprint: str, fresh: bool = False) -> None:
        self.path = None if path is None else Path(path)
        self.fingerprint = fingerprint
        self.cells: dict[str, dict[str, Any]] = {}
        self._lines: dict[str, str] = {}
        self._put: set[str] = set()  # the cells this process recorded
        self._others: list[str] = []  # other fingerprints' records, written back unchanged
        self.resumed = 0
        if self.path is not None and self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a damaged line is recomputed
                if rec.get("fingerprint") != fingerprint:
                    self._others.append(line)
                elif not fresh:
                    self.cells[rec["id"]] = rec
                    self._lines[rec["id"]] = line
            self.resumed = len(self.cells)

    @staticmethod
    def cell_id(key: dict[str, Any]) -> str:
        return stable_hash(key, length=20)

    def __contains__(self, key: dict[str, Any]) -> bool:
        return self.cell_id(key) in self.cells

    def __len__(self) -> int:
        return len(self.cells)

    def get(self, key: dict[str, Any]) -> dict[str, Any] | None:
        rec = self.cells.get(self.cell_id(key))
        return None if rec is None else rec["result"]

    def put(self, key: dict[str, Any], result: dict[str, Any],
            seconds: float | None = None) -> None:
        cid = self.cell_id(key)
        rec: dict[str, Any] = {"id": cid, "fingerprint": self.fingerprint, "key": key,
                               "result": result}
        if seconds is not None:
            rec["seconds"] = round(float(seconds), 3)
        line = json.dumps(rec, allow_nan=True, default=_plain)
        self.cells[cid] = json.loads(line)
        self._lines[cid] = line
        self._put.add(cid)
        self._write()

    def discard(self, key: dict[str, Any]) -> bool:
        """Forget a finished cell, in the file too, so it is computed again (a cell whose
        outputs beside the ledger were lost); ``False`` if it was not there.

        >>> led = Ledger(None, "f")
        >>> led.put({"a": 1}, {"x": 1}); led.discard({"a": 1}), {"a": 1} in led
        (True, False)
        """
        cid = self.cell_id(key)
        if cid not in self.cells:
            return False
        del self.cells[cid]
        self._lines.pop(cid, None)
        self._put.discard(cid)
        self._write()
        return True

    def _write(self) -> None:
        if self.path is not None:
            lines = [*self._others, *self._lines.values()]
            atomic_write_text(self.path, "".join(v + "\n" for v in lines))

    def account(self) -> dict[str, Any]:
        """What the ledger holds and what its cells cost: ``cells``, ``resumed`` (read back
        from the file and kept), ``computed`` (recorded by this process), ``compute_s`` (the
        seconds of every cell that recorded them, whichever sitting computed it) and
        ``timed`` (how many did; records written before cells were timed have none).

        >>> led = Ledger(None, "f")
        >>> led.put({"a": 1}, {"x": 1}, seconds=2.5); led.put({"a": 2}, {"x": 2})
        >>> led.account()
        {'cells': 2, 'resumed': 0, 'computed': 2, 'compute_s': 2.5, 'timed': 1}
        """
        times = [float(r["seconds"]) for r in self.cells.values() if "seconds" in r]
        return {"cells": len(self.cells), "resumed": len(self.cells) - len(self._put),
                "computed": len(self._put), "compute_s": round(sum(times), 3),
                "timed": len(times)}

    def report_into(self, rep: Any, **override: Any) -> None:
        """Write the account into a report: the counts (and ``override``) as
        ``data["cells"]``, the seconds under ``timings`` as :data:`CELLS_TIMING` (durations
        live only there, so two runs of one computation still compare equal)."""
        acc = self.account()
        rep.timings[CELLS_TIMING] = acc.pop("compute_s")
        rep.data["cells"] = {**acc, **override,
                             "file": None if self.path is None else self.path.name}


def _timed(_cell_fn: Any, **kwargs: Any) -> dict[str, Any]:
    """Call a cell's function where the executor runs it and time the call."""
    start = time.perf_counter()
    result = _cell_fn(**kwargs)
    return {"result": result, "seconds": time.perf_counter() - start}


def _plain(obj: Any) -> Any:
    """NumPy scalars and arrays as Python values (NaN kept), for a result's JSON line."""
    import numpy as np

    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise TypeError(f"a cell result holds a {type(obj).__name__}, which has no JSON form")


@dataclass
class Cell:
    """A ledger key and the task that computes its result (a JSON-ready dict)."""

    key: dict[str, Any]
    task: Task


def run_cells(cells: Sequence[Cell], ledger: Ledger, executor: Executor | None = None, *,
              desc: str = "cells", show_progress: bool | None = None) -> int:
    """Compute the cells missing from ``ledger`` with ``executor`` and record each result as
    it arrives (this process is the single writer). Duplicate keys run once.

    Returns the number of cells computed.
    """
    executor = executor or LocalExecutor()
    todo: list[Cell] = []
    seen: set[str] = set()
    for c in cells:
        cid = ledger.cell_id(c.key)
        if cid in seen or cid in ledger.cells:
            continue
        seen.add(cid)
        todo.append(c)
    if not todo:
        return 0
    bar = progress(range(len(todo)), total=len(todo), desc=f"{desc} ({executor.name})",
                   enabled=show_progress, unit="cell")
    it = iter(bar)
    timed = [Task(_timed, {"_cell_fn": c.task.fn, **c.task.kwargs}, c.task.resources)
             for c in todo]
    for i, out in executor.map(timed):
        ledger.put(todo[i].key, out["result"], seconds=out["seconds"])
        next(it, None)
    next(it, None)
    return len(todo)
