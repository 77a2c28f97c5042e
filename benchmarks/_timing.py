"""Side-by-side timing shared by the benchmarks: every way of doing a thing is timed in the
same rounds, the order of the ways alternating between rounds, so a machine that gets
busier (or quieter) during the run slows every way alike and the ratio of the medians is
the figure to compare.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from hyperlens.functional import kernels as K


def alternate(ways: Mapping[str, Callable[[], Any]], rounds: int, repeat: int = 1, *,
              warm: bool = False, label: str = "round"
              ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Seconds per call of each way in every round, and each way's last result.

    Each round calls every way ``repeat`` times in a row (the mean of those calls is the
    round's figure); even rounds go in the given order, odd rounds in reverse. ``warm``
    calls each way once first (first-call allocation, packing, caches).
    """
    last: dict[str, Any] = {}
    if warm:
        for w, fn in ways.items():
            last[w] = fn()
    seconds: dict[str, list[float]] = {w: [] for w in ways}
    for r in range(rounds):
        for w in (list(ways) if r % 2 == 0 else list(ways)[::-1]):
            t0 = time.perf_counter()
            for _ in range(repeat):
                last[w] = ways[w]()
            seconds[w].append((time.perf_counter() - t0) / repeat)
        print(f"{label} {r + 1}/{rounds}", file=sys.stderr)
    return seconds, last


def medians(seconds: Mapping[str, list[float]]) -> dict[str, float]:
    """The median of each way's rounds."""
    return {w: statistics.median(v) for w, v in seconds.items()}


def in_context(ctx: Callable[[], Any], fn: Callable[[], Any]) -> Any:
    """``fn()`` inside the context manager ``ctx()`` (a way that is a setting, not a
    function: a patched method, a precision)."""
    with ctx():
        return fn()


def machine() -> dict[str, Any]:
    """What a timing depends on, recorded beside it: threads, torch, the CPU and its load."""
    return {"threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": K.cpu_info(),
            "loadavg": os.getloadavg()}


def in_children(script: str, args: Sequence[str], cells: Iterable[tuple[str, int]]
                ) -> list[dict[str, Any]]:
    """Run ``script *args --child MODE ROWS`` once per ``(mode, rows)``, each in a fresh
    process (so one mode's heap, caches and high-water mark never reach the next), and
    collect the JSON dict each child prints on its last line of stdout."""
    out = []
    for mode, rows in cells:
        cmd = [sys.executable, script, *args, "--child", mode, str(rows)]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(r, flush=True)
        out.append(r)
    return out


def ready_capture(capture_dir: str, default: str, root: str) -> None:
    """Make ``hyperlens hft train``'s default capture when ``capture_dir`` is that default
    and missing (run from ``root``); any other missing capture is the caller's error."""
    if capture_dir == default and not os.path.isdir(default):
        subprocess.run([sys.executable, "-m", "hyperlens", "hft", "capture",
                        "--capture-dir", capture_dir], check=True, cwd=root)
