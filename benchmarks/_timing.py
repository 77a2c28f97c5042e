"""Side-by-side timing shared by the benchmarks: every way of doing a thing is timed in the
same rounds, the order of the ways alternating between rounds, so a machine that gets
busier (or quieter) during the run slows every way alike and the ratio of the medians is
the figure to compare.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping
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
