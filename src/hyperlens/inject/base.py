"""Adapters for frozen models: the config, the module, the registry, attach, save and load.

An adapter is a small ``nn.Module`` with a dataclass config that, attached to a model,
rewrites some of its hook sites (:mod:`hyperlens.models.hooks`) through
:meth:`Adapter.interventions`. The model's own weights are never touched: training an
adapter with :func:`hyperlens.train.fit` (``frozen=model``) updates only the adapter.

    >>> from hyperlens.inject import make_adapter, attach, save_adapter, load_adapter
    >>> ad = make_adapter("steer", d_model=576, layers=(10, 20))      # doctest: +SKIP
    >>> with attach(model, ad):                                       # doctest: +SKIP
    ...     out = model.module.generate(**batch, max_new_tokens=8)
    >>> save_adapter(ad, "steer.safetensors", model=model)             # doctest: +SKIP
    >>> ad2 = load_adapter("steer.safetensors", model=model)           # doctest: +SKIP

Every adapter:

- has a config class derived from :class:`AdapterConfig` whose ``__post_init__`` raises
  :class:`~hyperlens.errors.ConfigError` for bad values; sizes the adapter needs from the
  model (``d_model``, layer indices) are config fields, so it can be built without the model;
- registers under a short name with :func:`register_adapter` (the same registry pattern as
  the aligners: :class:`hyperlens.utils.Registry`);
- leaves the model's outputs unchanged at initialisation (atol 1e-6), changes them after
  one optimisation step, and comes back from :func:`save_adapter` / :func:`load_adapter`
  with identical outputs; ``example_config(model)`` gives the contract test
  (``tests/inject/test_contract.py``, run over :func:`available_adapters`) a small config.

Files: :func:`save_adapter` writes one ``.safetensors`` file holding the adapter's own
tensors (its ``state_dict``), with the adapter's name, its config and the identity of the
model it was trained on in the header, written atomically with the umask's mode;
:func:`load_adapter` rebuilds it without pickle, and names a damaged file
(:class:`~hyperlens.errors.DataError`) instead of failing inside safetensors.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..errors import ConfigError, DataError, InputError
from ..models.arch import resolve_backbone
from ..models.handle import ModelHandle, from_module
from ..models.hooks import InterventionFn, intervene
from ..utils import Registry, load_safetensors, save_safetensors

__all__ = [
    "AdapterConfig",
    "Adapter",
    "register_adapter",
    "make_adapter",
    "available_adapters",
    "adapter_class",
    "attach",
    "save_adapter",
    "load_adapter",
    "model_identity",
    "FORMAT",
]

FORMAT = "hyperlens.inject/1"

_REGISTRY: Registry[Adapter] = Registry(
    "adapter", "Register your own with @hyperlens.inject.register_adapter('name')."
)
#: Class decorator that adds an :class:`Adapter` subclass under a name:
#: ``@register_adapter("mine")``; :class:`ConfigError` when the name is taken (pass
#: ``replace=True`` to override).
register_adapter = _REGISTRY.register
#: Names of every registered adapter, sorted.
available_adapters = _REGISTRY.names
#: The adapter class registered under a name; :class:`ConfigError` listing the names otherwise.
adapter_class = _REGISTRY.lookup


@dataclass
class AdapterConfig:
    """Base of every adapter's config: a dataclass validated in ``__post_init__``.

    Subclasses add fields (JSON-friendly values: numbers, strings, tuples of them) and
    check them in :meth:`validate`. :meth:`as_dict` is what the saved file's header holds.
    """

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):  # JSON brings tuples back as lists
                setattr(self, f.name, tuple(v))
        self.validate()

    def validate(self) -> None:
        """Check the fields, once lists have become tuples; raise :class:`ConfigError`
        naming the field, what came and the fix. A subclass of a config with checks calls
        ``super().validate()`` first."""

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def check_layers(layers: Any, name: str = "layers") -> tuple[int, ...]:
    """Validate a non-empty tuple of distinct non-negative block indices."""
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = (layers,)
    if (not isinstance(layers, (tuple, list)) or not layers
            or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in layers)
            or len(set(layers)) != len(layers)):
        raise ConfigError(
            f"{name}={layers!r} is invalid: expected distinct block indices >= 0, e.g. (4, 8)."
        )
    return tuple(int(i) for i in layers)


def check_positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} is invalid: expected a positive int.")
    return int(value)


class Adapter(nn.Module):
    """Base class: a trainable module that rewrites hook sites of a frozen model.

    Subclasses set ``config_class``, build their parameters in ``__init__(config)`` and
    implement :meth:`interventions`; ``example_config`` returns a small config for a given
    model (used by the contract test and as documentation of typical values).
    """

    name: ClassVar[str] = "base"
    config_class: ClassVar[type[AdapterConfig]] = AdapterConfig

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got "
                f"{type(config).__name__}; build it with make_adapter({self.name!r}, **fields)."
            )
        self.config = config

    def interventions(self, model: ModelHandle | nn.Module) -> dict[str, InterventionFn]:
        """``{site name: fn(act, ctx) -> act}`` for :func:`hyperlens.models.intervene`."""
        raise NotImplementedError

    @classmethod
    def example_config(cls, model: ModelHandle | nn.Module) -> AdapterConfig:
        """A small config that fits ``model`` (for the contract test)."""
        raise NotImplementedError(f"{cls.__name__} does not provide example_config(model).")

    def check_model(self, model: ModelHandle | nn.Module) -> tuple[int, int]:
        """``(d_model, num_layers)`` of ``model``, checked against the config's fields."""
        module = model.module if isinstance(model, ModelHandle) else model
        if not isinstance(module, nn.Module):
            raise InputError(f"adapter {self.name!r} needs a transformer; got {model!r}.")
        bb = resolve_backbone(module)
        d = getattr(self.config, "d_model", None)
        if d is not None and d != bb.d_model:
            raise InputError(
                f"adapter {self.name!r} was built for d_model={d} but the model has "
                f"d_model={bb.d_model}; build it with d_model={bb.d_model}."
            )
        layers = getattr(self.config, "layers", ()) or ()
        bad = [i for i in layers if i >= bb.num_layers]
        if bad:
            raise InputError(
                f"adapter {self.name!r} uses layers {bad} but the model has {bb.num_layers} "
                f"blocks (0..{bb.num_layers - 1})."
            )
        return bb.d_model, bb.num_layers

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.as_dict().items())


_REGISTRY.base = Adapter


def make_adapter(name: str, **config: Any) -> Adapter:
    """Build the adapter registered under ``name`` from its config fields.

    Unknown fields raise :class:`ConfigError` naming the accepted ones.
    """
    cls = adapter_class(name)
    fields = [f.name for f in dataclasses.fields(cls.config_class)]
    _REGISTRY.check_known(name, config, fields, "field")
    try:
        cfg = cls.config_class(**config)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"adapter {name!r}: {exc}; its config has {fields}.") from None
    return cls(cfg)


@contextlib.contextmanager
def attach(model: ModelHandle | nn.Module, adapter: Adapter) -> Iterator[Adapter]:
    """Hook ``adapter`` into ``model`` for the ``with`` block; the hooks leave on exit or error.

    Yields the adapter. The model's parameters are not modified.
    """
    if not isinstance(adapter, Adapter):
        raise InputError(
            "attach needs an Adapter (from make_adapter or load_adapter), got "
            f"{type(adapter).__name__}."
        )
    adapter.check_model(model)
    with intervene(model, adapter.interventions(model)):
        yield adapter


def model_identity(model: ModelHandle | nn.Module) -> dict[str, Any]:
    """What an adapter file records about its model: name, widths and a weight fingerprint."""
    if isinstance(model, ModelHandle):
        h = model
    elif isinstance(model, nn.Module):
        h = from_module(model)
    else:
        raise InputError(
            f"model must be a ModelHandle or an nn.Module, got {type(model).__name__}."
        )
    return {"name": h.name, "kind": h.kind, "hidden_size": h.hidden_size,
            "num_layers": h.num_layers, "identity": h.identity()}


def save_adapter(
    adapter: Adapter, path: str | os.PathLike[str], model: ModelHandle | nn.Module | None = None
) -> Path:
    """Write ``adapter`` to one ``.safetensors`` file, atomically (see module docstring)."""
    from .. import __version__

    if not isinstance(adapter, Adapter):
        raise InputError(f"save_adapter needs an Adapter, got {type(adapter).__name__}.")
    meta = {
        "format": FORMAT,
        "adapter": adapter.name,
        "config": json.dumps(adapter.config.as_dict()),
        "model": json.dumps(model_identity(model) if model is not None else None),
        "hyperlens": __version__,
    }
    return save_safetensors(path, dict(adapter.state_dict()), meta)


def load_adapter(
    path: str | os.PathLike[str], model: ModelHandle | nn.Module | None = None, *,
    strict_model: bool = True,
) -> Adapter:
    """Rebuild an adapter written by :func:`save_adapter` (no pickle).

    With ``model``, its identity is compared with the file's: a different model raises
    :class:`InputError` unless ``strict_model=False`` (then only the widths must agree).
    A damaged file (empty, truncated, garbage, or tensors that do not fit its own config)
    raises :class:`~hyperlens.errors.DataError` naming it.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"adapter file {str(p)!r} does not exist; pass the path given to save_adapter."
        )

    def check(meta: dict[str, str]) -> None:
        if meta.get("format") != FORMAT:
            raise InputError(
                f"{str(p)!r} is not a hyperlens adapter file (format {meta.get('format')!r}, "
                f"expected {FORMAT!r})."
            )

    fix = "delete it, then train the adapter again (or save it again with save_adapter)"
    tensors, meta = load_safetensors(p, what="adapter file", fix=fix, check=check)
    def damaged(exc: Exception, part: str) -> DataError:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return DataError(f"adapter file {str(p)!r} is damaged ({part}: {why}); {fix}.")

    try:
        name, config = meta["adapter"], json.loads(meta["config"])
        saved = json.loads(meta.get("model") or "null")
        if not isinstance(config, dict):
            raise TypeError(f"config is {type(config).__name__}, not a dict")
    except (KeyError, TypeError, ValueError) as exc:
        raise damaged(exc, "its header is incomplete") from exc
    adapter = make_adapter(name, **config)  # an unknown adapter or field: ConfigError
    try:
        adapter.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise damaged(exc, "its tensors do not fit its config") from exc
    if model is not None:
        adapter.check_model(model)
        if saved is not None and strict_model:
            now = model_identity(model)
            if now["identity"] != saved["identity"]:
                raise InputError(
                    f"adapter file {str(p)!r} was trained on model {saved['name']!r} "
                    f"(identity {saved['identity']}), not on {now['name']!r} (identity "
                    f"{now['identity']}); pass the same model or strict_model=False."
                )
    adapter.eval()
    return adapter


def _as_act(t: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """``t`` in the dtype and on the device of ``act``."""
    return t.to(dtype=act.dtype, device=act.device)
