"""Shards of a corpus handled by workers that hold a model: Ray actors, or this process.

A *shard worker* is a class whose constructor does the expensive set-up once (loading a
model) and whose instances are called once per shard::

    class EmbedWorker:
        def __init__(self, model: str, device: str) -> None: ...     # once per actor
        def __call__(self, texts: list[str], ...) -> np.ndarray: ...  # once per shard

:func:`map_shards` runs every shard through such workers and hands each result to
``on_result(index, value)`` in this process, which is the one place that stores results
(embedding writes each shard atomically into the cache; a capture can do the same), so a
shard is recorded once however often it had to run. With :class:`~hyperlens.run.LocalExecutor`
one worker runs in-process; with :class:`~hyperlens.run.RayExecutor` ``n_workers`` actors
each take one shard at a time. A shard whose call fails is retried (``max_attempts`` in all);
a worker whose process dies is replaced by a fresh actor (it loads its model again) and its
shard goes back in the queue.

Why not ``ray.util.ActorPool``: it neither replaces dead actors nor resubmits their work,
which is exactly what a long corpus pass needs; the loop below is that and nothing more.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import HyperlensError
from .executor import Executor, LocalExecutor, RayExecutor, Resources

__all__ = ["map_shards", "ShardError"]


class ShardError(HyperlensError):
    """A shard failed on every attempt."""


class _Host:
    """The Ray actor: builds one worker (pinned to its CPU share) and calls it per shard."""

    def __init__(self, worker_cls: type, init_kwargs: dict[str, Any], threads: int) -> None:
        import os

        import torch

        torch.set_num_threads(max(1, threads))
        self.pid = os.getpid()
        self.worker = worker_cls(**init_kwargs)

    def ping(self) -> int:
        return self.pid

    def run(self, shard: dict[str, Any]) -> Any:
        return self.worker(**shard)


def map_shards(
    worker_cls: type,
    init_kwargs: dict[str, Any],
    shards: Sequence[dict[str, Any]],
    on_result: Callable[[int, Any], None],
    executor: Executor | None = None,
    *,
    resources: Resources | None = None,
    n_workers: int | None = None,
    max_attempts: int = 3,
    skip: set[int] | None = None,
) -> dict[str, int]:
    """Call ``worker_cls(**init_kwargs)(**shards[i])`` for every ``i`` not in ``skip``.

    Returns counts: ``{"shards", "attempts", "retried", "workers_started"}``.
    """
    executor = executor or LocalExecutor()
    todo = [i for i in range(len(shards)) if not (skip and i in skip)]
    stats = {"shards": len(todo), "attempts": 0, "retried": 0, "workers_started": 0}
    if not todo:
        return stats
    if not isinstance(executor, RayExecutor):
        worker = worker_cls(**init_kwargs)
        stats["workers_started"] = 1
        for i in todo:
            stats["attempts"] += 1
            on_result(i, worker(**shards[i]))
        return stats
    return _map_ray(executor, worker_cls, init_kwargs, shards, todo, on_result,
                    resources or Resources(), n_workers, max_attempts, stats)


def _map_ray(ex: RayExecutor, worker_cls: type, init_kwargs: dict[str, Any],
             shards: Sequence[dict[str, Any]], todo: list[int],
             on_result: Callable[[int, Any], None], res: Resources, n_workers: int | None,
             max_attempts: int, stats: dict[str, int]) -> dict[str, int]:
    ray = ex._ray
    from ray.exceptions import RayActorError, RayTaskError

    if n_workers is None:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        n_workers = max(1, int(cpus // res.num_cpus))
    n_workers = max(1, min(int(n_workers), len(todo)))
    host = ray.remote(_Host).options(num_cpus=res.num_cpus, num_gpus=res.num_gpus,
                                     max_restarts=0, max_task_retries=0)

    def start() -> Any:
        stats["workers_started"] += 1
        return host.remote(worker_cls, init_kwargs, int(res.num_cpus))

    queue = deque(todo)
    attempts = {i: 0 for i in todo}
    idle = [start() for _ in range(n_workers)]
    running: dict[Any, tuple[int, Any]] = {}  # ref -> (shard, actor)
    try:
        while queue or running:
            while queue and idle:
                i, actor = queue.popleft(), idle.pop()
                attempts[i] += 1
                stats["attempts"] += 1
                running[actor.run.remote(shards[i])] = (i, actor)
            done, _ = ray.wait(list(running), num_returns=1)
            ref = done[0]
            i, actor = running.pop(ref)
            try:
                value = ray.get(ref)
            except RayActorError as exc:  # the worker process died: replace it
                ray.kill(actor, no_restart=True)
                idle.append(start())
                _retry(i, attempts, max_attempts, queue, stats, exc)
                continue
            except RayTaskError as exc:  # the call raised: same actor, shard again
                idle.append(actor)
                _retry(i, attempts, max_attempts, queue, stats, exc)
                continue
            idle.append(actor)
            on_result(i, value)
    finally:
        for ref in running:
            ray.cancel(ref, force=True)
        for actor in idle + [a for _, a in running.values()]:
            ray.kill(actor, no_restart=True)
    return stats


def _retry(i: int, attempts: dict[int, int], max_attempts: int, queue: deque[int],
           stats: dict[str, int], exc: BaseException) -> None:
    if attempts[i] >= max_attempts:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, HyperlensError):
            raise cause
        raise ShardError(f"shard {i} failed {attempts[i]} time(s); last error: {exc}") from exc
    stats["retried"] += 1
    queue.appendleft(i)
