"""Find the parts of a transformer that embedding and capture hook into.

Hugging Face models name the same parts differently (``layers`` / ``h`` /
``encoder.layer`` / ``block``; ``q_proj`` / ``query`` / ``q`` / a fused ``c_attn``). This
module resolves them once into a :class:`Backbone` so the rest of the package never
branches on the architecture. Resolution goes by structure (attribute names present on
the modules), so close relatives of the supported families (Mistral, Qwen2, Phi-3 style
``self_attn.q_proj`` stacks, RoBERTa, DistilGPT-2, ...) work too.

Supported and tested: BERT, Llama, GPT-2, T5 (encoder stack), OPT, Gemma 3.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from ..errors import InputError

__all__ = [
    "AttentionParts",
    "Backbone",
    "block_stack",
    "embedding_module",
    "resolve_backbone",
    "is_causal_lm",
    "cache_kwarg",
]


@dataclass
class AttentionParts:
    """The projections of one self-attention block.

    ``q``/``k``/``v`` are separate linear maps, or ``None`` when ``qkv`` (GPT-2's fused
    ``c_attn``, output ``[batch, pos, 3 * d_model]``) holds all three. ``out`` is the output
    projection whose input is the per-head context ``z`` and whose output is added to the
    residual stream.
    """

    module: nn.Module
    q: nn.Module | None
    k: nn.Module | None
    v: nn.Module | None
    qkv: nn.Module | None
    out: nn.Module


@dataclass
class Backbone:
    """The stack of blocks that produces a model's hidden states.

    ``stack`` is the module to call with ``input_ids`` / ``attention_mask`` (the bare
    backbone, without any language-model head); ``layers`` its blocks in order;
    ``final_norm`` the norm applied after the last block (``None`` for post-norm models
    such as BERT). Head counts follow the config; ``n_kv_heads < n_heads`` for
    grouped-query attention.
    """

    stack: nn.Module
    layers: nn.ModuleList
    final_norm: nn.Module | None
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_head: int
    causal: bool
    family: str

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def attention(self, i: int) -> AttentionParts:
        """The attention parts of block ``i`` (0-based)."""
        return _attention_parts(self.layers[i], self.family)

    def mlp(self, i: int) -> nn.Module:
        """The module whose output is block ``i``'s MLP output (before dropout / residual)."""
        return _mlp_module(self.layers[i], self.family)

    @property
    def embed(self) -> nn.Module | None:
        """The token-embedding module the stack calls on ``input_ids`` (``None`` if unknown)."""
        emb = getattr(self.stack, "embed_tokens", None)
        return emb if isinstance(emb, nn.Module) else embedding_module(self.stack, "input")


def embedding_module(model: nn.Module, side: Literal["input", "output"]) -> nn.Module | None:
    """``model.get_input_embeddings()`` (``side="input"``) or ``get_output_embeddings()``
    (the language-model head), or ``None`` when the model lacks the method, does not
    implement it or returns no module."""
    get = getattr(model, f"get_{side}_embeddings", None)
    if not callable(get):
        return None
    try:
        emb = get()
    except (AttributeError, NotImplementedError):
        return None
    return emb if isinstance(emb, nn.Module) else None


def _cfg_get(cfg: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        val = getattr(cfg, name, None)
        if val is not None:
            return val
    return default


def _first_attr(obj: Any, path: str) -> Any:
    cur = obj
    for part in path.split("."):
        cur = getattr(cur, part, None)
        if cur is None:
            return None
    return cur


# (path to the block list from the backbone, path to the final norm, family label)
_LAYOUTS: tuple[tuple[str, str | None, str], ...] = (
    ("layers", "norm", "llama"),  # Llama, Mistral, Qwen2, Gemma, ...
    ("h", "ln_f", "gpt2"),  # GPT-2, GPT-J, GPT-Neo
    ("encoder.layer", None, "bert"),  # BERT, RoBERTa, MiniLM, ...
    ("decoder.layers", "decoder.final_layer_norm", "opt"),  # OPT
    ("block", "final_layer_norm", "t5"),  # T5 stacks
)


def cache_kwarg(module: nn.Module) -> str:
    """The name under which ``module.forward`` takes its KV cache: ``"cache"`` in recent
    transformers releases, ``"past_key_values"`` in earlier ones (5.17 and 4.x). A cache
    passed under the other name lands in ``**kwargs`` and is silently ignored."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def is_causal_lm(module: nn.Module) -> bool:
    """Whether ``module`` is a decoder-only (causal) language model or backbone."""
    cfg = getattr(module, "config", None)
    if cfg is not None and getattr(cfg, "is_encoder_decoder", False):
        return False
    try:
        bb = resolve_backbone(module)
    except InputError:
        return False
    return bb.causal


def block_stack(module: nn.Module) -> nn.Module:
    """The module that runs ``module``'s blocks without its head: the encoder of an
    encoder-decoder model, else the base model (a causal LM's decoder stack, no LM head)."""
    cfg = getattr(module, "config", None)
    if cfg is not None and getattr(cfg, "is_encoder_decoder", False) and hasattr(
            module, "get_encoder"):
        enc: Any = module.get_encoder()  # type: ignore[operator]
        return enc
    base = getattr(module, "base_model", None)
    return base if isinstance(base, nn.Module) else module


def resolve_backbone(module: nn.Module) -> Backbone:
    """Resolve ``module`` (a Hugging Face model, with or without a head) into a :class:`Backbone`.

    Encoder-decoder models resolve to their encoder stack. Raises :class:`InputError`
    naming the module type when no known layout matches.
    """
    if not isinstance(module, nn.Module):
        raise InputError(
            f"model must be a torch.nn.Module (a Hugging Face model), got {type(module).__name__}; "
            "pass a model from hyperlens.models.load(...) or a transformers model."
        )
    root = block_stack(module)
    for layout in _LAYOUTS:
        layers = _first_attr(root, layout[0])
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            break
    else:
        raise InputError(
            f"model of type {type(module).__name__} has no block list hyperlens recognises "
            "(looked for .layers, .h, .encoder.layer, .decoder.layers, .block); supported "
            "families are BERT, Llama, GPT-2, T5 and OPT and their close relatives."
        )
    _, norm_path, family = layout
    final_norm = _first_attr(root, norm_path) if norm_path else None
    cfg = getattr(module, "config", None) or getattr(root, "config", None)
    d_model = int(_cfg_get(cfg, "hidden_size", "n_embd", "d_model"))
    n_heads = int(_cfg_get(cfg, "num_attention_heads", "n_head", "num_heads"))
    n_kv = int(_cfg_get(cfg, "num_key_value_heads", default=n_heads))
    attn = _attention_parts(layers[0], family)
    if attn.q is not None and isinstance(attn.q, nn.Linear):
        d_head = attn.q.out_features // n_heads
    else:
        d_head = int(_cfg_get(cfg, "head_dim", "d_kv", default=d_model // n_heads))
    if family == "t5":
        d_head = int(_cfg_get(cfg, "d_kv", default=d_head))
    causal_attr = getattr(attn.module, "is_causal", None)
    if family == "t5":
        causal = bool(getattr(root, "is_decoder", False))
    elif causal_attr is not None:
        causal = bool(causal_attr)
    else:
        causal = family in {"llama", "gpt2", "opt"}
    return Backbone(
        stack=root,
        layers=layers,
        final_norm=final_norm,
        d_model=d_model,
        n_heads=n_heads,
        n_kv_heads=n_kv,
        d_head=d_head,
        causal=causal,
        family=family,
    )


def _mlp_module(block: nn.Module, family: str) -> nn.Module:
    if family == "t5":
        return block.layer[-1].DenseReluDense  # type: ignore[return-value]
    if family == "bert":
        return block.output.dense  # type: ignore[return-value]
    for path in ("mlp", "feed_forward", "fc2", "ffn"):
        mod = _first_attr(block, path)
        if isinstance(mod, nn.Module):
            return mod
    raise InputError(f"block of type {type(block).__name__} has no MLP module hyperlens recognises "
                     "(looked for .mlp, .feed_forward, .fc2, .ffn).")


def _attention_parts(block: nn.Module, family: str) -> AttentionParts:
    if family == "t5":
        attn = block.layer[0].SelfAttention
        return AttentionParts(attn, attn.q, attn.k, attn.v, None, attn.o)
    if family == "bert":
        attn = block.attention.self
        return AttentionParts(
            attn, attn.query, attn.key, attn.value, None, block.attention.output.dense
        )
    attn = None
    for name in ("self_attn", "attn", "attention", "self_attention"):
        attn = getattr(block, name, None)
        if isinstance(attn, nn.Module):
            break
    if attn is None:
        raise InputError(
            f"block of type {type(block).__name__} has no self-attention module hyperlens "
            "recognises."
        )
    if hasattr(attn, "c_attn"):  # GPT-2 fused projection
        return AttentionParts(attn, None, None, None, attn.c_attn, attn.c_proj)
    q = getattr(attn, "q_proj", None)
    k = getattr(attn, "k_proj", None)
    v = getattr(attn, "v_proj", None)
    out = (
        getattr(attn, "o_proj", None)
        or getattr(attn, "out_proj", None)
        or getattr(attn, "dense", None)
    )
    if q is None or k is None or v is None or out is None:
        raise InputError(
            f"attention module {type(attn).__name__} has no q_proj/k_proj/v_proj/o_proj layout "
            "hyperlens recognises."
        )
    return AttentionParts(attn, q, k, v, None, out)
