"""Capture activations from a transformer through named hook points.

Usage::

    from hyperlens.models import load, capture

    m = load("smollm2")
    batch = m.tokenizer(["a fine film"], return_tensors="pt")
    with capture(m, ["hidden.*", "blocks.3.attn.k", "blocks.-1.attn.out"]) as acts:
        out = m.module(**batch)               # the ordinary forward, unchanged
    acts["blocks.3.attn.k"].shape             # [batch, pos, n_kv_heads, d_head] = [1, 4, 3, 64]

Point names (``i`` is a block index ``0..L-1``, ``l`` a hidden-state index ``0..L``;
negative indices count from the end, ``*`` means every index):

==========================  =======================================  =========================
name                        what                                     shape
==========================  =======================================  =========================
``hidden.{l}``              Hugging Face's ``hidden_states[l]``:      ``[batch, pos, d_model]``
                            ``hidden.0`` is the input of block 0,
                            ``hidden.l`` the output of block ``l-1``,
                            ``hidden.L`` the output after the final
                            norm (the ``last_hidden_state``)
``blocks.{i}.resid_pre``    residual stream entering block ``i``      ``[batch, pos, d_model]``
``blocks.{i}.resid_post``   residual stream leaving block ``i``       ``[batch, pos, d_model]``
                            (before any final norm)
``blocks.{i}.attn.q``       query projection, per head                ``[batch, pos, n_heads, d_head]``
``blocks.{i}.attn.k``       key projection, per key/value head        ``[batch, pos, n_kv_heads, d_head]``
``blocks.{i}.attn.v``       value projection, per key/value head      ``[batch, pos, n_kv_heads, d_head]``
``blocks.{i}.attn.z``       per-head attention context (the input     ``[batch, pos, n_heads, d_head]``
                            of the output projection)
``blocks.{i}.attn.out``     attention output projection (what the     ``[batch, pos, d_model]``
                            attention block adds to the residual)
==========================  =======================================  =========================

``q``, ``k`` and ``v`` are the outputs of the linear projections, before rotary position
embedding (Llama) or query scaling (OPT). GPT-2's fused ``c_attn`` output is split into
the three. Grouped-query models (Llama with ``num_key_value_heads < num_attention_heads``)
give ``k`` and ``v`` with ``n_kv_heads`` heads. For T5 the encoder stack is hooked.

Hooks only read: they return nothing, so the model's outputs are bit-identical with
and without capturing. They are registered on entry and removed on exit, also when the
block raises. With ``stop_early=True`` the forward pass is cut short as soon as every
requested point has been recorded (use :meth:`Activations.run`, which absorbs the stop
signal); this is how :func:`hyperlens.models.embed` avoids running layers it does not need.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .arch import Backbone, resolve_backbone
from .handle import ModelHandle

__all__ = ["capture", "Activations", "StopForward", "point_names", "resolve_points"]

_ATTN_PARTS = ("q", "k", "v", "z", "out")
_BLOCK_PARTS = ("resid_pre", "resid_post") + tuple(f"attn.{p}" for p in _ATTN_PARTS)
_HIDDEN_RE = re.compile(r"^hidden\.(\*|-?\d+)$")
_BLOCK_RE = re.compile(r"^blocks\.(\*|-?\d+)\.(resid_pre|resid_post|attn\.(?:q|k|v|z|out))$")


class StopForward(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside a hook to end a forward pass once every requested point is recorded."""


def point_names(num_layers: int) -> list[str]:
    """Every valid point name for a model with ``num_layers`` blocks (canonical form)."""
    names = [f"hidden.{li}" for li in range(num_layers + 1)]
    for i in range(num_layers):
        names += [f"blocks.{i}.{p}" for p in _BLOCK_PARTS]
    return names


def _valid_help(num_layers: int) -> str:
    return (
        f"hidden.0..hidden.{num_layers}, blocks.<i>.resid_pre, blocks.<i>.resid_post, "
        f"blocks.<i>.attn.q|k|v|z|out with i in 0..{num_layers - 1} (negative indices count "
        "from the end; '*' means every index)"
    )


def resolve_points(points: str | Sequence[str], num_layers: int) -> dict[str, str]:
    """Map each requested name (and every expansion of ``*``) to its canonical name.

    Returns ``{requested_or_expanded_name: canonical_name}``. Raises :class:`InputError`
    listing the valid names when a name is unknown or an index is out of range.
    """
    if isinstance(points, str):
        points = [points]
    if not isinstance(points, Sequence) or len(points) == 0:
        raise InputError(
            f"points must be a non-empty list of point names, got {points!r}; valid names: "
            f"{_valid_help(num_layers)}."
        )
    out: dict[str, str] = {}
    for name in points:
        if not isinstance(name, str):
            raise InputError(f"point names must be strings, got {type(name).__name__} {name!r}.")
        m_h = _HIDDEN_RE.match(name)
        m_b = _BLOCK_RE.match(name)
        if m_h:
            idx, top, prefix, suffix = m_h.group(1), num_layers + 1, "hidden.", ""
        elif m_b:
            idx, top, prefix, suffix = m_b.group(1), num_layers, "blocks.", "." + m_b.group(2)
        else:
            raise InputError(
                f"unknown capture point {name!r}; valid names: {_valid_help(num_layers)}."
            )
        if idx == "*":
            for j in range(top):
                canon = f"{prefix}{j}{suffix}"
                out[canon] = canon
            continue
        j = int(idx)
        if not -top <= j < top:
            raise InputError(
                f"capture point {name!r} has index {j} but the model has {num_layers} blocks "
                f"(valid: {_valid_help(num_layers)})."
            )
        out[name] = f"{prefix}{j % top}{suffix}"
    return out


class Activations(dict):
    """The activations recorded by :func:`capture`: ``{point name: tensor}``.

    Holds the most recent forward pass (each forward overwrites). Indexing accepts the
    names as requested (``"blocks.-1.attn.q"``) and their canonical form.
    """

    def __init__(self, aliases: dict[str, str], stack: nn.Module) -> None:
        super().__init__()
        self._aliases = aliases
        self._stack = stack

    def __getitem__(self, key: str) -> torch.Tensor:
        return super().__getitem__(self._aliases.get(key, key))

    def __contains__(self, key: object) -> bool:
        return super().__contains__(self._aliases.get(key, key) if isinstance(key, str) else key)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Call the backbone stack (no language-model head) and absorb :class:`StopForward`.

        Returns the stack's output, or ``None`` when the pass was stopped early.
        """
        try:
            return self._stack(*args, **kwargs)
        except StopForward:
            return None


def _first_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    if hasattr(x, "last_hidden_state"):
        return x.last_hidden_state
    raise TypeError(f"cannot find a tensor in a {type(x).__name__}")


def _input_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    if args and isinstance(args[0], torch.Tensor):
        return args[0]
    for key in ("hidden_states", "input", "x"):
        if isinstance(kwargs.get(key), torch.Tensor):
            return kwargs[key]
    raise TypeError("cannot find the hidden-state input of a block")


@contextlib.contextmanager
def capture(
    model: ModelHandle | nn.Module,
    points: str | Sequence[str],
    *,
    stop_early: bool = False,
    detach: bool = True,
) -> Iterator[Activations]:
    """Record named activations of ``model`` while the block runs (see module docstring).

    Args:
        model: a :class:`ModelHandle` or a Hugging Face ``nn.Module``.
        points: point names; unknown names raise :class:`InputError` listing valid ones.
        stop_early: end each forward pass as soon as all points are recorded (call the
            model through :meth:`Activations.run`, or catch :class:`StopForward`).
        detach: store detached tensors (default) so no autograd graph is kept.

    Yields:
        an :class:`Activations` dict filled by each forward pass.
    """
    module = model.module if isinstance(model, ModelHandle) else model
    if module is None:
        raise InputError(
            f"capture needs a transformer; model {getattr(model, 'name', model)!r} is static "
            "(word vectors have no layers to hook)."
        )
    bb = resolve_backbone(module)
    L = bb.num_layers
    aliases = resolve_points(points, L)
    wanted = set(aliases.values())
    acts = Activations({k: v for k, v in aliases.items() if k != v}, bb.stack)
    fired: set[str] = set()

    def put(name: str, t: torch.Tensor) -> None:
        acts[name] = t.detach() if detach else t
        fired.add(name)

    def maybe_stop() -> None:
        if stop_early and fired >= wanted:
            raise StopForward

    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        # reset the bookkeeping at the start of every forward of the stack
        def _start(_m: nn.Module, _a: tuple[Any, ...]) -> None:
            fired.clear()

        handles.append(bb.stack.register_forward_pre_hook(_start))
        for spec in _plan(bb, wanted):
            handles.append(spec(put, maybe_stop))
        yield acts
    finally:
        for h in handles:
            h.remove()


_Put = Callable[[str, torch.Tensor], None]
_Register = Callable[[_Put, Callable[[], None]], Any]


def _plan(bb: Backbone, wanted: set[str]) -> list[_Register]:
    """One registration per (module, direction) that records every wanted name it serves."""
    L = bb.num_layers
    pre: dict[int, list[str]] = {}  # block -> names read from its input
    post: dict[int, list[str]] = {}  # block -> names read from its output
    final: list[str] = []
    attn: dict[int, set[str]] = {}
    for name in wanted:
        parts = name.split(".")
        if parts[0] == "hidden":
            li = int(parts[1])
            if li == 0:
                pre.setdefault(0, []).append(name)
            elif li < L or bb.final_norm is None:
                post.setdefault(li - 1, []).append(name)
            else:
                final.append(name)
        else:
            i, part = int(parts[1]), ".".join(parts[2:])
            if part == "resid_pre":
                pre.setdefault(i, []).append(name)
            elif part == "resid_post":
                post.setdefault(i, []).append(name)
            else:
                attn.setdefault(i, set()).add(part.split(".")[1])

    regs: list[_Register] = []

    def reg_pre(module: nn.Module, names: list[str]) -> _Register:
        def register(put: _Put, stop: Callable[[], None]) -> Any:
            def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                x = _input_tensor(args, kwargs)  # [batch, pos, d_model]
                for n in names:
                    put(n, x)
                stop()

            return module.register_forward_pre_hook(hook, with_kwargs=True, prepend=True)

        return register

    def reg_post(module: nn.Module, names: list[str]) -> _Register:
        def register(put: _Put, stop: Callable[[], None]) -> Any:
            def hook(_m: nn.Module, _a: tuple[Any, ...], out: Any) -> None:
                y = _first_tensor(out)  # [batch, pos, d_model]
                for n in names:
                    put(n, y)
                stop()

            return module.register_forward_hook(hook)

        return register

    for i, names in pre.items():
        regs.append(reg_pre(bb.layers[i], names))
    for i, names in post.items():
        regs.append(reg_post(bb.layers[i], names))
    if final and bb.final_norm is not None:
        regs.append(reg_post(bb.final_norm, final))
    for i, parts in attn.items():
        regs.extend(_attn_regs(bb, i, parts))
    return regs


def _attn_regs(bb: Backbone, i: int, parts: set[str]) -> list[_Register]:
    ap = bb.attention(i)
    H, KV = bb.n_heads, bb.n_kv_heads
    prefix = f"blocks.{i}.attn."
    regs: list[_Register] = []

    def heads(t: torch.Tensor, n: int) -> torch.Tensor:
        return t.reshape(*t.shape[:-1], n, t.shape[-1] // n)  # [batch, pos, n, d_head]

    def out_hook(module: nn.Module, fn: Callable[[torch.Tensor, _Put], None]) -> _Register:
        def register(put: _Put, stop: Callable[[], None]) -> Any:
            def hook(_m: nn.Module, _a: tuple[Any, ...], out: Any) -> None:
                fn(_first_tensor(out), put)
                stop()

            return module.register_forward_hook(hook)

        return register

    if ap.qkv is not None and parts & {"q", "k", "v"}:
        want = parts & {"q", "k", "v"}

        def split(t: torch.Tensor, put: _Put) -> None:
            q, k, v = t.split(t.shape[-1] // 3, dim=-1)  # each [batch, pos, d_model]
            for nm, x, n in (("q", q, H), ("k", k, KV), ("v", v, KV)):
                if nm in want:
                    put(prefix + nm, heads(x, n))

        regs.append(out_hook(ap.qkv, split))
    else:
        for nm, mod, n in (("q", ap.q, H), ("k", ap.k, KV), ("v", ap.v, KV)):
            if nm in parts and mod is not None:
                regs.append(out_hook(mod, lambda t, put, nm=nm, n=n: put(prefix + nm, heads(t, n))))
    if "out" in parts:
        regs.append(out_hook(ap.out, lambda t, put: put(prefix + "out", t)))
    if "z" in parts:

        def register_z(put: _Put, stop: Callable[[], None]) -> Any:
            def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
                x = _input_tensor(args, kwargs)  # [batch, pos, n_heads * d_head]
                put(prefix + "z", heads(x, H))
                stop()

            return ap.out.register_forward_pre_hook(hook, with_kwargs=True)

        regs.append(register_z)
    return regs
