"""Where work runs: in this process (``local``, the default) or on a Ray cluster (``ray``).

- :func:`make_executor` / :class:`LocalExecutor` / :class:`RayExecutor`: run independent
  tasks (:class:`Task` with :class:`Resources`), share large inputs once (:meth:`share`);
- :class:`Ledger` / :func:`run_cells`: a sweep's finished cells in ``cells.jsonl``, written
  only by the driver, so a run resumes under either executor;
- :func:`map_shards`: corpus shards through workers that load a model once each (Ray
  actors, replaced when they die; failed shards retried);
- :func:`pinned_threads`: a cell's block on a fixed thread count, so it gives the same bits
  in this process and on a Ray worker.

This package sits just above ``errors`` and ``utils``: it imports nothing else from
hyperlens, and Ray is imported only when a Ray executor is made.
"""

from __future__ import annotations

from .executor import (
    ENV_ADDRESS,
    ENV_EXECUTOR,
    EXECUTORS,
    Executor,
    LocalExecutor,
    RayExecutor,
    Resources,
    Shared,
    Task,
    check_executor,
    make_executor,
)
from .ledger import CELLS_TIMING, Cell, Ledger, run_cells
from .shards import ShardError, map_shards
from .threads import pinned_threads

__all__ = [
    "EXECUTORS",
    "ENV_ADDRESS",
    "ENV_EXECUTOR",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "Resources",
    "Shared",
    "Task",
    "check_executor",
    "make_executor",
    "Ledger",
    "Cell",
    "run_cells",
    "CELLS_TIMING",
    "map_shards",
    "ShardError",
    "pinned_threads",
    "executor_from_args",
]


def executor_from_args(args: object) -> Executor:
    """The executor chosen by a command's ``--executor`` / ``--ray-address`` options.

    Both options are the values typed (``None`` when not given): ``$HYPERLENS_EXECUTOR`` and,
    for a Ray run only, ``$HYPERLENS_RAY_ADDRESS`` fill in the rest (:func:`check_executor`).
    """
    return make_executor(getattr(args, "executor", None), getattr(args, "ray_address", None))
