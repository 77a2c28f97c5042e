"""Executors: where independent tasks (experiment cells, embedding shards) run.

Two implementations share one small interface:

- :class:`LocalExecutor` (the default) runs every task in this process, one after the other,
  exactly as the experiments always did;
- :class:`RayExecutor` turns each task into a Ray task with a resource request (CPUs, a GPU
  when the task needs one) on a local or remote Ray cluster, and each shard worker into a
  Ray actor (:mod:`hyperlens.run.shards`).

The driver (this process) stays the only writer of results: tasks return plain values and
the caller records them (:class:`hyperlens.run.ledger.Ledger`), so a run can stop under one
executor and finish under the other. Large inputs shared by many tasks are handed over once
with :meth:`Executor.share` (the Ray object store; in-process a plain reference) instead of
being pickled into every task.

Ray is not reimplemented here: scheduling, retries of tasks whose worker died, actor
restarts and the object store are Ray's. This module only maps hyperlens' tasks onto them and
keeps the in-process path free of any Ray import.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, DependencyError

__all__ = [
    "EXECUTORS",
    "ENV_ADDRESS",
    "ENV_EXECUTOR",
    "Resources",
    "Task",
    "Shared",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "make_executor",
    "check_executor",
]

EXECUTORS = ("local", "ray")
#: Environment variables that give ``--executor`` and ``--ray-address`` their defaults.
ENV_EXECUTOR = "HYPERLENS_EXECUTOR"
ENV_ADDRESS = "HYPERLENS_RAY_ADDRESS"
#: Object-store size (MB) of a Ray instance that hyperlens starts itself (no address given).
ENV_OBJECT_STORE_MB = "HYPERLENS_RAY_OBJECT_STORE_MB"
_DEFAULT_OBJECT_STORE_MB = 500


@dataclass(frozen=True)
class Resources:
    """What one task (or one actor) asks the scheduler for.

    ``num_cpus`` is also the number of intra-op threads the task runs with on Ray;
    ``num_gpus`` is 0 for CPU work, 1 (or a fraction) for a task that needs a GPU.
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.num_cpus <= 0:
            raise ConfigError(f"Resources.num_cpus must be > 0, got {self.num_cpus}.")
        if self.num_gpus < 0:
            raise ConfigError(f"Resources.num_gpus must be >= 0, got {self.num_gpus}.")

    @staticmethod
    def for_device(device: Any, num_cpus: float = 1.0) -> Resources:
        """One GPU when ``device`` is a CUDA device, none otherwise."""
        return Resources(num_cpus=num_cpus, num_gpus=1.0 if "cuda" in str(device) else 0.0)


@dataclass(frozen=True)
class Shared:
    """A value handed to many tasks: in-process the value itself, on Ray an object ref."""

    ref: Any
    local: bool = True


@dataclass
class Task:
    """One call ``fn(**kwargs)``; ``fn`` must be a module-level function (it is pickled by
    reference) and return a picklable value. :class:`Shared` values among ``kwargs`` are
    resolved before the call."""

    fn: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)


class Executor:
    """Common interface of :class:`LocalExecutor` and :class:`RayExecutor`."""

    name = "base"

    def share(self, value: Any) -> Shared:  # pragma: no cover - interface
        raise NotImplementedError

    def map(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Any]]:  # pragma: no cover
        """Run ``tasks``; yield ``(index, result)`` as each finishes (any order)."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name}

    def close(self) -> None:
        """Release what the executor started (a Ray instance it launched itself)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _resolve(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Arguments with every :class:`Shared` replaced by its value (fetched from the object
    store when it was shared by a Ray executor)."""
    out = {}
    for k, v in kwargs.items():
        if isinstance(v, Shared):
            if v.local:
                v = v.ref
            else:
                import ray

                v = ray.get(v.ref)
        out[k] = v
    return out


class LocalExecutor(Executor):
    """Runs tasks in this process, in order; ``share`` is the identity."""

    name = "local"

    def share(self, value: Any) -> Shared:
        return Shared(value, local=True)

    def map(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Any]]:
        for i, task in enumerate(tasks):
            yield i, task.fn(**_resolve(task.kwargs))


# --------------------------------------------------------------------------- Ray
def _import_ray(local_instance: bool) -> Any:
    """Import Ray, with usage statistics off; a local instance listens on loopback only."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if local_instance:
        # Ray's own switch for a single-machine instance bound to 127.0.0.1 (read at import)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError as exc:
        raise DependencyError(
            "--executor ray needs the 'ray' package, which is not importable here; install it "
            "with `pip install ray` (scripts/setup.sh does) or use --executor local."
        ) from exc
    return ray


def _call_task(fn: Callable[..., Any], kwargs: dict[str, Any], names: list[str], threads: int,
               *shared: Any) -> Any:
    """Body of every Ray task: pin the thread count, put shared values back, call ``fn``."""
    import torch

    torch.set_num_threads(max(1, threads))
    kw = dict(kwargs)
    kw.update(zip(names, shared, strict=True))
    return fn(**kw)


class RayExecutor(Executor):
    """Tasks as Ray tasks on the cluster at ``address``.

    Args:
        address: a running cluster (``"auto"``, ``"HOST:PORT"`` or ``"ray://HOST:PORT"``);
            ``None`` starts a private single-machine instance bound to 127.0.0.1, which is
            shut down by :meth:`close`. When Ray is already initialised in this process that
            connection is used as it is and left open.
        num_cpus: CPUs of a private instance (default: all of this machine's).
        object_store_mb: object-store size of a private instance (default
            ``$HYPERLENS_RAY_OBJECT_STORE_MB`` or 500).
        max_retries: how often Ray reruns a task whose worker process died.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 object_store_mb: int | None = None, max_retries: int = 3) -> None:
        self.address = address or None
        self.max_retries = int(max_retries)
        ray = _import_ray(local_instance=self.address is None)
        self._ray = ray
        self._owned = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "configure_logging": False}
            if self.address is None:
                mb = object_store_mb or int(os.environ.get(ENV_OBJECT_STORE_MB,
                                                           _DEFAULT_OBJECT_STORE_MB))
                kw.update(num_cpus=num_cpus or os.cpu_count() or 1,
                          object_store_memory=int(mb) * 2**20)
            try:
                ray.init(address=self.address, **kw)
            except ConnectionError as exc:
                raise ConfigError(
                    f"--ray-address {self.address!r}: no Ray cluster answers there ({exc}); start "
                    "one with `ray start --head` or leave the address out for a private instance."
                ) from exc
            self._owned = True
        #: where other drivers reach this cluster (``ray.init(address=...)``)
        self.cluster_address: str = ray.get_runtime_context().gcs_address
        self._remote = ray.remote(_call_task)

    def describe(self) -> dict[str, Any]:
        ray = self._ray
        res = ray.cluster_resources()
        return {"executor": self.name, "address": self.address or "private instance",
                "cluster_address": self.cluster_address,
                "ray_version": ray.__version__, "nodes": len(ray.nodes()),
                "cpus": res.get("CPU", 0.0), "gpus": res.get("GPU", 0.0)}

    def share(self, value: Any) -> Shared:
        return Shared(self._ray.put(value), local=False)

    def submit(self, task: Task) -> Any:
        """Submit one task; returns its object ref."""
        names = [k for k, v in task.kwargs.items() if isinstance(v, Shared)]
        plain = {k: v for k, v in task.kwargs.items() if k not in names}
        refs = [task.kwargs[k].ref for k in names]
        r = task.resources
        return self._remote.options(num_cpus=r.num_cpus, num_gpus=r.num_gpus,
                                    max_retries=self.max_retries).remote(
            task.fn, plain, names, int(r.num_cpus), *refs)

    def map(self, tasks: Sequence[Task]) -> Iterator[tuple[int, Any]]:
        ray = self._ray
        index = {}
        for i, t in enumerate(tasks):
            index[self.submit(t)] = i
        pending = list(index)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    yield index[ref], ray.get(ref)
        finally:
            for ref in pending:  # the caller stopped early or a task failed
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()
        self._owned = False


# --------------------------------------------------------------------------- factory
def check_executor(name: str | None, address: str | None = None) -> str:
    """Validate ``--executor`` / ``--ray-address`` before any heavy work; returns the name."""
    name = (name or os.environ.get(ENV_EXECUTOR) or "local").strip().lower()
    if name not in EXECUTORS:
        raise ConfigError(f"--executor must be one of {list(EXECUTORS)}, got {name!r}.")
    if name == "local" and address:
        raise ConfigError(
            f"--ray-address {address!r} was given with --executor local; add --executor ray "
            "(or drop the address)."
        )
    if name == "ray":
        try:
            import importlib.util

            found = importlib.util.find_spec("ray") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise DependencyError(
                "--executor ray needs the 'ray' package, which is not installed; `pip install "
                "ray` (scripts/setup.sh installs it) or use --executor local."
            )
    return name


def make_executor(name: str | None = None, address: str | None = None, **ray_kw: Any) -> Executor:
    """``"local"`` (default) or ``"ray"``; ``address`` defaults to ``$HYPERLENS_RAY_ADDRESS``."""
    name = check_executor(name, address)
    if name == "local":
        return LocalExecutor()
    return RayExecutor(address or os.environ.get(ENV_ADDRESS) or None, **ray_kw)
