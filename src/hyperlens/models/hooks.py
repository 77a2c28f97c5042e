"""Named hook sites on a transformer: read them with :func:`capture`, write with :func:`intervene`.

Usage::

    from hyperlens.models import load, capture, intervene

    m = load("smollm2")
    batch = m.tokenizer(["a fine film"], return_tensors="pt")
    with capture(m, ["hidden.*", "blocks.3.attn.k", "blocks.-1.attn.out"]) as acts:
        out = m.module(**batch)               # the ordinary forward, unchanged
    acts["blocks.3.attn.k"].shape             # [batch, pos, n_kv_heads, d_head] = [1, 4, 3, 64]

    steer = torch.zeros(576)
    with intervene(m, {"blocks.10.resid_post": lambda act, ctx: act + steer}):
        out = m.module.generate(**batch, max_new_tokens=5)   # every step, KV cache and all

One :class:`Site` describes each name (the module, whether its input or its output is
meant, and the view that reshapes it); reading and writing go through the same
description, so a name means the same tensor in both. Site names (``i`` is a block index
``0..L-1``, ``l`` a hidden-state index ``0..L``; negative indices count from the end,
``*`` means every index):

==========================  ==================================  ==================================
name                        what                                view (``act`` shape)
==========================  ==================================  ==================================
``inputs``                  the keyword arguments of the top-   ``dict[str, Any]``
                            level forward (write only; see
                            below)
``embed``                   token embeddings (output of the     ``[batch, pos, d_model]``
                            input embedding; Gemma's includes
                            its sqrt(d_model) scale)
``hidden.{l}``              Hugging Face's                      ``[batch, pos, d_model]``
                            ``hidden_states[l]``: ``hidden.0``
                            is the input of block 0,
                            ``hidden.l`` the output of block
                            ``l-1``, ``hidden.L`` the output
                            after the final norm (the
                            ``last_hidden_state``)
``blocks.{i}.resid_pre``    residual stream entering block      ``[batch, pos, d_model]``
                            ``i``
``blocks.{i}.resid_post``   residual stream leaving block       ``[batch, pos, d_model]``
                            ``i`` (before any final norm)
``blocks.{i}.attn.q``       query projection, per head          ``[batch, pos, n_heads, d_head]``
``blocks.{i}.attn.k``       key projection, per key/value head  ``[batch, pos, n_kv, d_head]``
``blocks.{i}.attn.v``       value projection, per key/value     ``[batch, pos, n_kv, d_head]``
                            head
``blocks.{i}.attn.z``       per-head attention context (the     ``[batch, pos, n_heads, d_head]``
                            input of the output projection)
``blocks.{i}.attn.out``     attention output projection (what   ``[batch, pos, d_model]``
                            the attention block adds to the
                            residual)
``blocks.{i}.mlp.out``      output of the MLP (feed-forward)    ``[batch, pos, d_model]``
                            before dropout, residual add or
                            any post-norm
``ln_final``                output of the final norm (models    ``[batch, pos, d_model]``
                            that have one: not BERT)
``unembed``                 the logits of the language-model    ``[batch, pos, vocab]``
                            head (models that have one),
                            before any soft-capping
==========================  ==================================  ==================================

``q``, ``k`` and ``v`` are the outputs of the linear projections, before any q/k norm
(Gemma 3), rotary position embedding (Llama) or query scaling (OPT). GPT-2's fused
``c_attn`` output is split into the three. Grouped-query models give ``k`` and ``v`` with
``n_kv_heads`` heads. BERT's ``mlp.out`` is ``output.dense``, OPT's is ``fc2``, T5's is
``DenseReluDense``. For T5 the encoder stack is hooked (its ``embed`` only while the
encoder runs, although the embedding table is shared with the decoder).

Reading (:func:`capture`) returns nothing from the hooks, so outputs are bit-identical with
and without capturing; with ``stop_early=True`` the forward pass ends as soon as every
requested site is recorded (use :meth:`Activations.run`, which absorbs the stop signal).

Writing (:func:`intervene`) calls ``fn(act, ctx) -> act`` and puts the result in place of
the activation (same shape; an identity ``fn`` leaves outputs bit-identical). ``ctx`` is a
:class:`SiteContext` with the site, the layer, the absolute ``positions`` ``[batch, pos]``
(the model's ``position_ids`` when given, else the cache length plus ``0..pos-1``, so each
``generate()`` step sees only its new positions with their true indices), ``input_ids``
and ``attention_mask`` as the backbone received them. Gradients flow through ``fn`` into
any trainable module it uses; the model's own weights are neither frozen nor unfrozen here
(:func:`hyperlens.train.fit` does that and proves they stayed unchanged).

The ``inputs`` site gets and returns the dict of keyword arguments of the outermost call
(the model you passed, or its backbone when you call that directly; positional arguments
are turned into keywords), once per forward and so once per ``generate()`` step. A prefix
adapter uses it to replace ``input_ids`` by ``inputs_embeds`` with extra pseudo-tokens and
to extend ``attention_mask`` and ``position_ids`` to match.

Hooks exist only inside the ``with`` block: they are registered on entry and removed on
exit, also when the block raises. At output sites, hooks run in the order their contexts
were entered (a :func:`capture` entered inside an :func:`intervene` records the written
value). At input sites (``hidden.0``, ``resid_pre``, ``attn.z``) :func:`capture` reads
before any other hook of that module, so that ``stop_early`` can end the pass before the
block starts: it records the value as it arrived, before an intervention at the same site.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .arch import Backbone, embedding_module, resolve_backbone
from .handle import ModelHandle

__all__ = [
    "Site",
    "SiteContext",
    "sites",
    "resolve_sites",
    "capture",
    "intervene",
    "Activations",
    "StopForward",
    "point_names",
    "resolve_points",
]

_ATTN_PARTS = ("q", "k", "v", "z", "out")
_BLOCK_PARTS = ("resid_pre", "resid_post") + tuple(f"attn.{p}" for p in _ATTN_PARTS) + ("mlp.out",)
_HIDDEN_RE = re.compile(r"^hidden\.(\*|-?\d+)$")
_BLOCK_RE = re.compile(
    r"^blocks\.(\*|-?\d+)\.(resid_pre|resid_post|attn\.(?:q|k|v|z|out)|mlp\.out)$"
)
_GLOBAL = ("inputs", "embed", "ln_final", "unembed")
InterventionFn = Callable[[Any, "SiteContext"], Any]


class StopForward(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside a hook to end a forward pass once every requested point is recorded."""


# --------------------------------------------------------------------------- the description
@dataclass(frozen=True, eq=False)
class Site:
    """One hook site: which tensor a name means and how it is viewed.

    Attributes:
        name: canonical name (``"blocks.3.attn.k"``).
        module: the module hooked.
        direction: ``"input"`` (the module's first input), ``"output"`` (its first output)
            or ``"kwargs"`` (the keyword arguments of the top-level forward).
        view: ``"resid"`` (``[batch, pos, d_model]``), ``"heads"`` (``[batch, pos, n, d_head]``
            from ``[batch, pos, n * d_head]``), ``"logits"`` or ``"kwargs"``.
        layer: the block index (``hidden.l`` counts as block ``l - 1``'s output; ``None`` for
            sites outside the blocks).
        n_heads: head count of a ``"heads"`` view.
        columns: ``(start, stop)`` of the slice of a fused projection's last dimension
            (GPT-2's ``c_attn``), else ``None``.
        guard: only act while the backbone stack runs (T5's embedding, shared with the decoder).
        flat: the module sees ``[batch * pos, d]`` (OPT's ``fc2``); the view restores
            ``[batch, pos, d]`` from the batch and length of the running forward.
    """

    name: str
    module: nn.Module
    direction: str
    view: str
    layer: int | None = None
    n_heads: int | None = None
    columns: tuple[int, int] | None = None
    guard: bool = False
    flat: bool = False

    def read(self, raw: torch.Tensor, lead: tuple[int, int] | None = None) -> torch.Tensor:
        """The site's view of ``raw`` (the module's input or output tensor).

        ``lead`` is ``(batch, pos)`` of the running forward, needed by ``flat`` sites.
        """
        if self.flat and raw.dim() == 2 and lead is not None:
            raw = raw.reshape(*lead, raw.shape[-1])
        t = raw if self.columns is None else raw[..., self.columns[0]:self.columns[1]]
        if self.view == "heads":
            assert self.n_heads is not None
            return t.reshape(*t.shape[:-1], self.n_heads, t.shape[-1] // self.n_heads)
        return t

    def write(self, raw: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """``raw`` with this site's part replaced by ``act`` (given in the site's view)."""
        flat = act.reshape(*act.shape[:-2], -1) if self.view == "heads" else act
        if self.columns is not None:
            a, b = self.columns
            flat = torch.cat([raw[..., :a], flat, raw[..., b:]], dim=-1)
        return flat.reshape(raw.shape) if self.flat else flat


@dataclass
class SiteContext:
    """What an intervention function knows besides the activation.

    Shapes:
        positions: [batch, pos] absolute positions of the tokens in ``act``
        input_ids: [batch, pos] (``None`` when the model got ``inputs_embeds``)
        attention_mask: as the backbone received it (``[batch, past + pos]`` under a cache)
    """

    site: str
    layer: int | None
    positions: torch.Tensor | None
    input_ids: torch.Tensor | None
    attention_mask: torch.Tensor | None


def point_names(num_layers: int) -> list[str]:
    """Every block and hidden-state site name for ``num_layers`` blocks (canonical form)."""
    names = [f"hidden.{j}" for j in range(num_layers + 1)]
    for i in range(num_layers):
        names += [f"blocks.{i}.{p}" for p in _BLOCK_PARTS]
    return names


def _valid_help(num_layers: int) -> str:
    return (
        f"hidden.0..hidden.{num_layers}, blocks.<i>.resid_pre|resid_post|mlp.out, "
        f"blocks.<i>.attn.q|k|v|z|out with i in 0..{num_layers - 1} (negative indices count "
        "from the end; '*' means every index), embed, ln_final, unembed, inputs"
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
            f"points must be a non-empty list of site names, got {points!r}; valid names: "
            f"{_valid_help(num_layers)}."
        )
    out: dict[str, str] = {}
    for name in points:
        if not isinstance(name, str):
            raise InputError(f"site names must be strings, got {type(name).__name__} {name!r}.")
        if name in _GLOBAL:
            out[name] = name
            continue
        m_h = _HIDDEN_RE.match(name)
        m_b = _BLOCK_RE.match(name)
        if m_h:
            idx, top, prefix, suffix = m_h.group(1), num_layers + 1, "hidden.", ""
        elif m_b:
            idx, top, prefix, suffix = m_b.group(1), num_layers, "blocks.", "." + m_b.group(2)
        else:
            raise InputError(f"unknown site {name!r}; valid names: {_valid_help(num_layers)}.")
        if idx == "*":
            for j in range(top):
                canon = f"{prefix}{j}{suffix}"
                out[canon] = canon
            continue
        j = int(idx)
        if not -top <= j < top:
            raise InputError(
                f"site {name!r} has index {j} but the model has {num_layers} blocks "
                f"(valid: {_valid_help(num_layers)})."
            )
        out[name] = f"{prefix}{j % top}{suffix}"
    return out


def _module_of(model: ModelHandle | nn.Module, what: str) -> nn.Module:
    module = model.module if isinstance(model, ModelHandle) else model
    if module is None:
        raise InputError(
            f"{what} needs a transformer; model {getattr(model, 'name', model)!r} is static "
            "(word vectors have no layers to hook)."
        )
    if not isinstance(module, nn.Module):
        raise InputError(
            f"model must be a ModelHandle or a torch.nn.Module, got {type(module).__name__}; "
            "pass a model from hyperlens.models.load(...)."
        )
    return module


def _site(top: nn.Module, bb: Backbone, name: str) -> Site:
    """The :class:`Site` a canonical name means on this model (InputError if it has none)."""
    L = bb.num_layers
    if name == "inputs":
        return Site(name, top, "kwargs", "kwargs")
    if name == "embed":
        emb = bb.embed
        if emb is None:
            raise InputError(
                f"model {type(top).__name__} has no input embedding to hook as 'embed'."
            )
        return Site(name, emb, "output", "resid", guard=True)
    if name == "ln_final":
        if bb.final_norm is None:
            raise InputError(
                f"model {type(top).__name__} ({bb.family}) has no final norm, so it has no "
                "'ln_final' site; use hidden.<L> or blocks.-1.resid_post."
            )
        return Site(name, bb.final_norm, "output", "resid", layer=L - 1)
    if name == "unembed":
        head = embedding_module(top, "output")
        if head is None:
            raise InputError(
                f"model {type(top).__name__} has no language-model head, so it has no 'unembed' "
                "site; load the model with its head (AutoModelForCausalLM)."
            )
        return Site(name, head, "output", "logits", layer=L - 1)
    parts = name.split(".")
    if parts[0] == "hidden":
        h = int(parts[1])
        if h == 0:
            return Site(name, bb.layers[0], "input", "resid", layer=0)
        if h < L or bb.final_norm is None:
            return Site(name, bb.layers[h - 1], "output", "resid", layer=h - 1)
        return Site(name, bb.final_norm, "output", "resid", layer=L - 1)
    i, part = int(parts[1]), ".".join(parts[2:])
    if part == "resid_pre":
        return Site(name, bb.layers[i], "input", "resid", layer=i)
    if part == "resid_post":
        return Site(name, bb.layers[i], "output", "resid", layer=i)
    if part == "mlp.out":
        return Site(name, bb.mlp(i), "output", "resid", layer=i, flat=bb.family == "opt")
    ap = bb.attention(i)
    nm = part.split(".")[1]
    H, KV = bb.n_heads, bb.n_kv_heads
    if nm == "out":
        return Site(name, ap.out, "output", "resid", layer=i)
    if nm == "z":
        return Site(name, ap.out, "input", "heads", layer=i, n_heads=H)
    n = H if nm == "q" else KV
    if ap.qkv is not None:
        width = bb.d_model  # GPT-2 packs q, k, v of width d_model each
        a = {"q": 0, "k": width, "v": 2 * width}[nm]
        return Site(name, ap.qkv, "output", "heads", layer=i, n_heads=n, columns=(a, a + width))
    mod = {"q": ap.q, "k": ap.k, "v": ap.v}[nm]
    assert mod is not None
    return Site(name, mod, "output", "heads", layer=i, n_heads=n)


def sites(model: ModelHandle | nn.Module) -> list[str]:
    """Every site name this model has, in forward order per block (canonical form)."""
    top = _module_of(model, "sites")
    bb = resolve_backbone(top)
    names = ["inputs", "embed"] + point_names(bb.num_layers)
    for extra in ("ln_final", "unembed"):
        try:
            _site(top, bb, extra)
        except InputError:
            continue
        names.append(extra)
    return names


def resolve_sites(model: ModelHandle | nn.Module, names: str | Sequence[str]) -> dict[str, Site]:
    """``{requested_or_expanded_name: Site}`` for ``names`` on ``model`` (see module docstring)."""
    top = _module_of(model, "resolve_sites")
    bb = resolve_backbone(top)
    points = resolve_points(names, bb.num_layers)
    return {req: _site(top, bb, canon) for req, canon in points.items()}


# --------------------------------------------------------------------------- tensors in hooks
def _first_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    if hasattr(x, "last_hidden_state"):
        return x.last_hidden_state
    raise TypeError(f"cannot find a tensor in a {type(x).__name__}")


def _replace_first(x: Any, t: torch.Tensor) -> Any:
    if isinstance(x, torch.Tensor):
        return t
    if isinstance(x, tuple) and x and isinstance(x[0], torch.Tensor):
        return (t,) + x[1:]
    if isinstance(x, list) and x and isinstance(x[0], torch.Tensor):
        return [t] + x[1:]
    raise TypeError(f"cannot replace the tensor in a {type(x).__name__}")


def _input_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | str:
    if args and isinstance(args[0], torch.Tensor):
        return 0
    for key in ("hidden_states", "input", "x"):
        if isinstance(kwargs.get(key), torch.Tensor):
            return key
    raise TypeError("cannot find the hidden-state input of a block")


def _input_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    key = _input_key(args, kwargs)
    return args[0] if key == 0 else kwargs[key]  # type: ignore[index]


# A site action gets (site, act) and returns the new act, or None to leave it alone.
_Action = Callable[[Site, torch.Tensor], "torch.Tensor | None"]


def _groups(resolved: Sequence[Site]) -> list[tuple[nn.Module, str, list[Site]]]:
    """Sites grouped by (module, direction), in the order first seen."""
    out: dict[tuple[int, str], tuple[nn.Module, str, list[Site]]] = {}
    for s in resolved:
        key = (id(s.module), s.direction)
        if key not in out:
            out[key] = (s.module, s.direction, [])
        out[key][2].append(s)
    return list(out.values())


class _StackState:
    """Per-forward state of the backbone: whether it runs and the context it was called with.

    Hooks the stack and, when a language-model wrapper skips the stack and calls the module
    that owns the blocks directly (OPT calls ``model.decoder``), that module too; the
    outermost call sets the context.
    """

    def __init__(self, bb: Backbone) -> None:
        self.depth = 0
        self.positions: torch.Tensor | None = None
        self.input_ids: torch.Tensor | None = None
        self.attention_mask: torch.Tensor | None = None
        self.modules = [bb.stack]
        owner = next(
            (m for m in bb.stack.modules() if any(c is bb.layers for c in m.children())), None
        )
        if owner is not None and owner is not bb.stack and _accepts(owner, "input_ids"):
            self.modules.append(owner)
        self.on_enter: Callable[[], None] | None = None

    def enter(self, params: list[str], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.depth += 1
        if self.depth > 1:
            return
        kw = _as_kwargs(params, args, kwargs)
        ids = kw.get("input_ids")
        self.input_ids = ids if isinstance(ids, torch.Tensor) else None
        self.attention_mask = kw.get("attention_mask")
        self.positions = _positions(kw)
        if self.on_enter is not None:
            self.on_enter()

    def leave(self) -> None:
        self.depth = max(0, self.depth - 1)

    @property
    def lead(self) -> tuple[int, int] | None:
        """``(batch, pos)`` of the running forward."""
        if self.positions is None:
            return None
        return int(self.positions.shape[0]), int(self.positions.shape[1])

    def install(self) -> list[torch.utils.hooks.RemovableHandle]:
        handles: list[torch.utils.hooks.RemovableHandle] = []
        for module in self.modules:
            params = list(inspect.signature(module.forward).parameters)

            def pre(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                    params: list[str] = params) -> None:
                self.enter(params, args, kwargs)

            def post(_m: nn.Module, _a: Any, _k: Any, _o: Any) -> None:
                self.leave()

            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(module.register_forward_hook(post, with_kwargs=True, always_call=True))
        return handles


def _accepts(module: nn.Module, name: str) -> bool:
    try:
        return name in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return False


def _as_kwargs(
    params: list[str], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    kw: dict[str, Any] = dict(zip(params, args, strict=False))
    kw.update(kwargs)
    return kw


def _positions(kw: Mapping[str, Any]) -> torch.Tensor | None:
    """Absolute positions ``[batch, pos]`` of the tokens in one forward (see module docstring)."""
    x = kw.get("input_ids")
    if not isinstance(x, torch.Tensor):
        x = kw.get("inputs_embeds")
    if not isinstance(x, torch.Tensor) or x.dim() < 2:
        return None
    B, T = int(x.shape[0]), int(x.shape[1])
    pid = kw.get("position_ids")
    if isinstance(pid, torch.Tensor) and pid.shape[-1] == T:
        return pid.reshape(-1, T).expand(B, T)
    past = 0
    cache = kw.get("cache", kw.get("past_key_values"))
    if cache is not None:
        if hasattr(cache, "get_seq_length"):
            past = int(cache.get_seq_length())
        elif isinstance(cache, (tuple, list)) and cache and isinstance(cache[0], (tuple, list)):
            past = int(cache[0][0].shape[-2])
    return torch.arange(past, past + T, device=x.device).unsqueeze(0).expand(B, T)


def _install(
    top: nn.Module,
    bb: Backbone,
    resolved: Sequence[Site],
    action: _Action,
    after: Callable[[], None] | None = None,
    state: _StackState | None = None,
    prepend_inputs: bool = False,
) -> list[torch.utils.hooks.RemovableHandle]:
    """Register one hook per (module, direction) that applies ``action`` to each of its sites.

    ``prepend_inputs`` puts the input hooks before every other pre-hook of their module.
    """
    handles: list[torch.utils.hooks.RemovableHandle] = []

    def apply(group: list[Site], raw: torch.Tensor) -> torch.Tensor:
        """Run ``action`` on each site of one hook in turn; ``raw`` itself when none writes."""
        new = raw
        for s in group:
            act = action(s, s.read(new, state.lead if state is not None else None))
            if act is not None:
                new = s.write(new, act)
        if after is not None:
            after()
        return new

    try:
        for module, direction, group in _groups(resolved):
            if direction == "output":

                def out_hook(_m: nn.Module, _a: Any, out: Any, group: list[Site] = group) -> Any:
                    if group[0].guard and state is not None and state.depth == 0:
                        return None
                    raw = _first_tensor(out)
                    new = apply(group, raw)
                    return None if new is raw else _replace_first(out, new)

                handles.append(module.register_forward_hook(out_hook))
            elif direction == "input":

                def in_hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                            group: list[Site] = group) -> Any:
                    key = _input_key(args, kwargs)
                    raw = args[0] if key == 0 else kwargs[key]  # type: ignore[index]
                    new = apply(group, raw)
                    if new is raw:
                        return None
                    if key == 0:
                        return (new,) + tuple(args[1:]), kwargs
                    new_kwargs: dict[str, Any] = {**kwargs, str(key): new}
                    return args, new_kwargs

                handles.append(module.register_forward_pre_hook(in_hook, with_kwargs=True,
                                                                prepend=prepend_inputs))
    except BaseException:
        for h in handles:
            h.remove()
        raise
    return handles


# --------------------------------------------------------------------------- reading
class Activations(dict):
    """The activations recorded by :func:`capture`: ``{site name: tensor}``.

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
        points: site names (any but ``inputs``); unknown names raise :class:`InputError`
            listing valid ones.
        stop_early: end each forward pass as soon as all points are recorded (call the
            model through :meth:`Activations.run`, or catch :class:`StopForward`).
        detach: store detached tensors (default) so no autograd graph is kept.

    Yields:
        an :class:`Activations` dict filled by each forward pass.
    """
    top = _module_of(model, "capture")
    bb = resolve_backbone(top)
    aliases = resolve_points(points, bb.num_layers)
    if "inputs" in aliases.values():
        raise InputError("the 'inputs' site can be written (intervene) but not captured; "
                         "read the keyword arguments where you call the model.")
    canon = sorted(set(aliases.values()), key=list(aliases.values()).index)
    resolved = [_site(top, bb, c) for c in canon]
    wanted = set(canon)
    acts = Activations({k: v for k, v in aliases.items() if k != v}, bb.stack)
    fired: set[str] = set()
    state = _StackState(bb)
    state.on_enter = fired.clear  # each forward starts the bookkeeping afresh

    def record(s: Site, act: torch.Tensor) -> None:
        acts[s.name] = act.detach() if detach else act
        fired.add(s.name)

    def maybe_stop() -> None:
        if stop_early and fired >= wanted:
            raise StopForward

    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        handles += state.install()
        handles += _install(top, bb, resolved, record, maybe_stop, state, prepend_inputs=True)
        yield acts
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------- writing
@contextlib.contextmanager
def intervene(
    model: ModelHandle | nn.Module,
    interventions: Mapping[str, InterventionFn],
) -> Iterator[None]:
    """Replace activations with ``fn(act, ctx)`` while the block runs (see module docstring).

    Args:
        model: a :class:`ModelHandle` or a Hugging Face ``nn.Module``; for decoders pass the
            model with its head (the ``inputs`` site hooks the module you pass and its
            backbone, whichever is called outermost).
        interventions: ``{site name: fn}``; ``*`` in a name gives every match the same ``fn``.
            ``fn(act, ctx)`` returns a tensor of ``act``'s shape (``inputs``: a dict of keyword
            arguments). Two names meaning the same site raise :class:`InputError`.

    Example::

        with intervene(model, {"blocks.*.resid_post": lambda act, ctx: act}):
            model(**batch)                 # bit-identical to the plain forward
    """
    top = _module_of(model, "intervene")
    if not isinstance(interventions, Mapping) or not interventions:
        raise InputError(
            "interventions must be a non-empty dict {site name: fn(act, ctx) -> act}, got "
            f"{interventions!r}."
        )
    bb = resolve_backbone(top)
    fns: dict[str, InterventionFn] = {}
    for name, fn in interventions.items():
        if not callable(fn):
            raise InputError(f"the intervention for site {name!r} must be callable fn(act, ctx), "
                             f"got {type(fn).__name__}.")
        for req, canon in resolve_points([name], bb.num_layers).items():
            if canon in fns:
                raise InputError(
                    f"site {canon!r} is named twice (as {req!r}); give each site one fn and "
                    "compose inside it."
                )
            fns[canon] = fn
    resolved = [_site(top, bb, c) for c in fns if c != "inputs"]
    state = _StackState(bb)

    def apply(s: Site, act: torch.Tensor) -> torch.Tensor:
        ctx = SiteContext(s.name, s.layer, state.positions, state.input_ids, state.attention_mask)
        new = fns[s.name](act, ctx)
        if not isinstance(new, torch.Tensor) or new.shape != act.shape:
            got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
            raise InputError(
                f"the intervention at site {s.name!r} must return a tensor of shape "
                f"{tuple(act.shape)} (the activation's), got {got}."
            )
        return new

    handles: list[torch.utils.hooks.RemovableHandle] = []
    try:
        if "inputs" in fns:
            handles += _inputs_hooks(top, bb.stack, fns["inputs"])
        handles += state.install()
        handles += _install(top, bb, resolved, apply, None, state)
        yield
    finally:
        for h in handles:
            h.remove()


def _inputs_hooks(top: nn.Module, stack: nn.Module, fn: InterventionFn) -> list[Any]:
    """Pre-hooks that rewrite the keyword arguments of the outermost of ``top`` and ``stack``."""
    modules = [top] if top is stack else [top, stack]
    depth = [0]
    handles: list[Any] = []
    for module in modules:
        params = list(inspect.signature(module.forward).parameters)

        def pre(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                params: list[str] = params) -> Any:
            depth[0] += 1
            if depth[0] > 1:
                return None
            kw = _as_kwargs(params, args, kwargs)
            ids = kw.get("input_ids")
            ids = ids if isinstance(ids, torch.Tensor) else None
            ctx = SiteContext("inputs", None, _positions(kw), ids, kw.get("attention_mask"))
            new = fn(dict(kw), ctx)
            if not isinstance(new, Mapping):
                raise InputError(f"the intervention at site 'inputs' must return a dict of keyword "
                                 f"arguments, got {type(new).__name__}.")
            return (), dict(new)

        def post(_m: nn.Module, _a: Any, _k: Any, _o: Any) -> None:
            depth[0] = max(0, depth[0] - 1)

        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(module.register_forward_hook(post, with_kwargs=True, always_call=True))
    return handles
