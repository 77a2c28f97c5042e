"""The run context: what every command receives beside its config.

A command is ``run(config, ctx) -> Report``. The config says *what* to compute; the
context says *how and where*: the base seed of every random choice, the device and
precision policy, the executor that runs independent cells, progress output and the report
folder. The command line builds it from the common options (``--seed``, ``--device``,
``--dtype``, ``--executor``, ``--ray-address``, ``--out``, ``--no-progress``,
``--verbose``); a notebook builds it directly or takes the default.

Randomness flows only from ``ctx.seed`` through :func:`derive_seed`, so two streams that
need to differ (a split and an initialisation, two replicates) are keyed, never written as
``seed * 10 + k``:

    >>> derive_seed(0, "split") == derive_seed(0, "split")
    True
    >>> derive_seed(0, "split") != derive_seed(1, "split") != derive_seed(0, "init")
    True
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..utils import derive_seed
from .base import Config
from .fields import at_least, option

if TYPE_CHECKING:
    import torch

    from ..run import Executor

__all__ = ["ContextOptions", "RunContext", "derive_seed", "DTYPES"]

DTYPES = ("auto", "float32", "bfloat16")


@dataclass(frozen=True, kw_only=True)
class ContextOptions(Config):
    """The common options: the same spelling, meaning and checks in every command."""

    seed: int = option(0, help="base of every random choice: splits, pools, initialisations",
                       check=at_least(0), group="common options")
    device: str = option("auto", help="auto | cpu | cuda | cuda:N: where models and tensors go",
                         group="common options")
    dtype: Literal["auto", "float32", "bfloat16"] = option(
        "auto", help="precision of model arithmetic; auto picks bfloat16 only where the "
                     "device computes it natively", group="common options")
    executor: Literal["local", "ray"] = option(
        "local", help="where independent cells run: local (this process) or ray "
                      "(default: $HYPERLENS_EXECUTOR, else local)", group="common options")
    ray_address: str | None = option(
        None, help="Ray cluster for --executor ray: auto | HOST:PORT (default: "
                   "$HYPERLENS_RAY_ADDRESS, else a private instance on this machine)",
        group="common options")
    out: Path | None = option(None, help="report folder (default: runs/<command>-<date>-<time>)",
                              group="common options")
    progress: bool = option(True, help="show progress bars", group="common options")
    verbose: bool = option(False, help="also show third-party progress bars and warnings",
                           group="common options")


@dataclass(frozen=True)
class RunContext:
    """How and where a command runs (see the module docstring).

    Args:
        seed: base seed; every random stream derives from it with :meth:`seed_for`.
        device: ``auto | cpu | cuda | cuda:N``; :attr:`torch_device` resolves it.
        dtype: ``auto | float32 | bfloat16``; :meth:`resolve_dtype` resolves it.
        executor: ``local`` or ``ray``; :meth:`make_executor` builds it.
        ray_address: the Ray cluster for ``executor="ray"``.
        out: the report folder (``None``: ``runs/<command>-<date>-<time>``).
        progress: show progress bars.
        verbose: show third-party progress bars and warnings too.
    """

    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"
    executor: str = "local"
    ray_address: str | None = None
    out: Path | None = None
    progress: bool = True
    verbose: bool = False

    def __post_init__(self) -> None:
        ContextOptions(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))

    @classmethod
    def from_options(cls, opts: ContextOptions) -> RunContext:
        return cls(**{f.name: getattr(opts, f.name) for f in dataclasses.fields(cls)})

    # ------------------------------------------------------------------ randomness
    def seed_for(self, *keys: Any) -> int:
        """The seed of the random stream named by ``keys`` (see :func:`derive_seed`)."""
        return derive_seed(self.seed, *keys)

    def rng(self, *keys: Any) -> np.random.Generator:
        """A NumPy generator for the stream named by ``keys``."""
        return np.random.default_rng(self.seed_for(*keys))

    def generator(self, *keys: Any, device: Any = "cpu") -> torch.Generator:
        """A torch generator for the stream named by ``keys``."""
        from ..utils import make_generator

        return make_generator(self.seed_for(*keys), device)

    # ------------------------------------------------------------------ placement
    @property
    def torch_device(self) -> torch.device:
        """The resolved device (``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``)."""
        from ..utils import resolve_device

        return resolve_device(self.device)

    def resolve_dtype(self, device: Any = None) -> str:
        """``float32`` or ``bfloat16``: ``auto`` picks bfloat16 on CUDA and on CPUs with
        native bfloat16 arithmetic, float32 elsewhere."""
        if self.dtype != "auto":
            return self.dtype
        dev = self.torch_device if device is None else device
        if "cuda" in str(dev):
            return "bfloat16"
        from ..functional.kernels import cpu_features

        return "bfloat16" if cpu_features().bf16 else "float32"

    def make_executor(self) -> Executor:
        from ..run import make_executor

        return make_executor(self.executor, self.ray_address)

    def check(self) -> None:
        """Resolve the device and the executor now, so a bad one fails before any work."""
        from ..errors import ConfigError, DeviceError
        from ..run import check_executor

        try:
            _ = self.torch_device
        except DeviceError as exc:
            raise ConfigError(f"--device {self.device}: {exc}") from None
        check_executor(self.executor, self.ray_address)

    # ------------------------------------------------------------------ output
    def out_dir(self, command: str) -> Path:
        """The report folder: ``out``, else ``runs/<command>-<date>-<time>``."""
        if self.out is not None:
            return self.out
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        return Path("runs") / f"{command}-{stamp}"

    def replace(self, **changes: Any) -> RunContext:
        return dataclasses.replace(self, **changes)

    def record(self) -> dict[str, Any]:
        """What a report records of the context (the resolved device and precision)."""
        dev = self.torch_device
        return {"seed": self.seed, "device": str(dev), "dtype": self.resolve_dtype(dev),
                "executor": self.executor}
