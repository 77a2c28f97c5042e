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
import re
import socket
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
    "CONNECT_TIMEOUT_S",
]

EXECUTORS = ("local", "ray")
#: Environment variables that give ``--executor`` and ``--ray-address`` their defaults.
ENV_EXECUTOR = "HYPERLENS_EXECUTOR"
ENV_ADDRESS = "HYPERLENS_RAY_ADDRESS"
#: Object-store size (MB) of a Ray instance that hyperlens starts itself (no address given).
ENV_OBJECT_STORE_MB = "HYPERLENS_RAY_OBJECT_STORE_MB"
_DEFAULT_OBJECT_STORE_MB = 500
#: Seconds to wait for a TCP answer from a cluster address before ``ray.init`` (which would
#: otherwise retry for minutes).
CONNECT_TIMEOUT_S = 3.0
_OPTION = "--ray-address"
# auto | HOST:PORT | ray://HOST:PORT; HOST is a name, an IPv4 address or an [IPv6] address
_ADDRESS = re.compile(
    r"^(?:ray://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
    r":(?P<port>[0-9]{1,5})$"
)


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
            connection is used as it is and left open. A cluster address is checked first
            with a TCP connect of at most :data:`CONNECT_TIMEOUT_S` seconds, so an address
            where nothing listens fails at once instead of after Ray's minutes of retries.
        num_cpus: CPUs of a private instance (default: all of this machine's).
        object_store_mb: object-store size of a private instance (default
            ``$HYPERLENS_RAY_OBJECT_STORE_MB`` or 500).
        max_retries: how often Ray reruns a task whose worker process died.
        address_source: where ``address`` came from, as error messages name it
            (``"--ray-address"`` or ``"$HYPERLENS_RAY_ADDRESS"``).
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None,
                 object_store_mb: int | None = None, max_retries: int = 3,
                 address_source: str = _OPTION) -> None:
        self.address = _check_address(address, address_source) if address else None
        self.max_retries = int(max_retries)
        ray = _import_ray(local_instance=self.address is None)
        self._ray = ray
        self._owned = False
        if self.address is not None:
            _probe(self.address, address_source)
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
                    f"no Ray cluster answers at {self.address} ({_from(address_source)}{exc}); "
                    f"start one with `ray start --head` or {_drop(address_source)}."
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


# --------------------------------------------------------------------------- addresses
def _from(source: str) -> str:
    """``"from $VAR; "`` when the value came from an environment variable, else nothing."""
    return f"from {source}; " if source.startswith("$") else ""


def _drop(source: str) -> str:
    """How to stop giving the address: drop the option, or unset the variable."""
    return f"unset {source[1:]}" if source.startswith("$") else f"drop {source}"


def _check_address(address: str, source: str = _OPTION) -> str:
    """The address, stripped, when it has the form ``auto``, ``HOST:PORT`` or
    ``ray://HOST:PORT``; a :class:`ConfigError` naming ``source`` otherwise."""
    addr = str(address).strip()
    if addr == "auto":
        return addr
    m = _ADDRESS.match(addr)
    if m is None or not 0 < int(m["port"]) < 65536:
        raise ConfigError(
            f"{source} {address!r} is not a Ray cluster address; give auto, HOST:PORT (as "
            "`ray start --head` prints it, e.g. 127.0.0.1:6379) or ray://HOST:PORT (a Ray "
            f"Client server, e.g. ray://127.0.0.1:10001), or {_drop(source)}."
        )
    return addr


def _why(exc: OSError, timeout: float) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):  # socket.timeout is TimeoutError
        return f"no answer within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return "unknown host"
    return exc.strerror or str(exc) or type(exc).__name__


def _probe(address: str, source: str = _OPTION, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise a :class:`ConfigError` unless something accepts a TCP connection at ``address``
    within ``timeout`` seconds (``auto`` is looked up the way Ray does it first).

    For a loopback host the address Ray itself dials (this machine's node address) is tried
    as well: the check fails only when neither answers, so it never refuses a cluster that
    ``ray.init`` would reach."""
    hint = f"start one with `ray start --head` or {_drop(source)}"
    target = address
    if address == "auto":
        try:
            from ray._private.services import get_ray_address_from_environment

            found = get_ray_address_from_environment("auto", None)
        except ConnectionError as exc:
            raise ConfigError(
                f"no Ray cluster answers at auto ({_from(source)}none runs on this machine); "
                f"{hint}."
            ) from exc
        except Exception:  # Ray's lookup moved: ray.init reports it instead
            return
        if not found:
            return
        target = str(found)
    m = _ADDRESS.match(target)
    if m is None:
        return
    host, port = m["host"].strip("[]"), int(m["port"])
    failures: dict[str, str] = {}
    for h in _dialled_hosts(host):
        try:
            with socket.create_connection((h, port), timeout=timeout):
                return
        except OSError as exc:
            failures[f"{h}:{port}"] = _why(exc, timeout)
    why = ("; ".join(f"{a}: {w}" for a, w in failures.items())
           if len(set(failures.values())) > 1 else next(iter(failures.values())))
    raise ConfigError(f"no Ray cluster answers at {address} ({_from(source)}{why}); {hint}.")


def _dialled_hosts(host: str) -> list[str]:
    """``host`` and, for a loopback name, the node address Ray itself dials instead."""
    hosts = [host]
    try:
        from ray._private.services import resolve_ip_for_localhost

        dialled = str(resolve_ip_for_localhost(host))
    except Exception:  # only an extra candidate; the given host is tried
        return hosts
    return hosts + [dialled] if dialled != host else hosts


# --------------------------------------------------------------------------- factory
def _choose(name: str | None, address: str | None) -> tuple[str, str | None, str]:
    """The executor, the Ray address (``None``: a private instance) and where the address
    came from. ``name``/``address`` are what the user typed (``None``: not given); the
    environment variables fill in only what was not typed, and ``$HYPERLENS_RAY_ADDRESS``
    only for a Ray run."""
    env_name = os.environ.get(ENV_EXECUTOR, "").strip()
    typed = str(name).strip() if name is not None else ""
    raw, name_source = (typed, "--executor") if typed else (env_name, f"${ENV_EXECUTOR}")
    chosen = (raw or "local").lower()
    if chosen not in EXECUTORS:
        fix = "" if typed else f" Set {ENV_EXECUTOR} to one of them or unset it."
        raise ConfigError(f"{name_source} must be one of {list(EXECUTORS)}, got {raw!r}.{fix}")
    given = str(address).strip() if address is not None else ""
    if chosen == "local":
        if given:
            how = "--executor local" if typed or not env_name else f"{ENV_EXECUTOR}=local"
            raise ConfigError(
                f"--ray-address {address!r} was given with {how}; add --executor ray (or drop "
                "the address)."
            )
        return chosen, None, _OPTION  # $HYPERLENS_RAY_ADDRESS applies to Ray runs only
    if given:
        return chosen, _check_address(given, _OPTION), _OPTION
    env_address = os.environ.get(ENV_ADDRESS, "").strip()
    if env_address:
        source = f"${ENV_ADDRESS}"
        return chosen, _check_address(env_address, source), source
    return chosen, None, _OPTION


def check_executor(name: str | None, address: str | None = None) -> str:
    """Validate ``--executor`` / ``--ray-address`` before any heavy work; returns the name.

    ``name`` and ``address`` are the values typed on the command line, ``None`` when not
    given: ``$HYPERLENS_EXECUTOR`` then chooses the executor (default ``local``) and
    ``$HYPERLENS_RAY_ADDRESS`` the cluster of a Ray run (it is ignored by local runs). The
    address must read ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``; whether a cluster
    answers there is checked when the executor connects (:class:`RayExecutor`).
    """
    chosen, _, _ = _choose(name, address)
    if chosen == "ray":
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
    return chosen


def make_executor(name: str | None = None, address: str | None = None, **ray_kw: Any) -> Executor:
    """``"local"`` (default) or ``"ray"``, chosen and checked as :func:`check_executor` does;
    a Ray run without ``address`` uses ``$HYPERLENS_RAY_ADDRESS``, else a private instance."""
    chosen, addr, source = _choose(name, address)
    if chosen == "local":
        return LocalExecutor()
    return RayExecutor(addr, address_source=source, **ray_kw)
