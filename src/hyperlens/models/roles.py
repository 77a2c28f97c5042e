"""Weight roles: what every tensor of a checkpoint does, from its name and ``config.json``.

No model is built. :func:`classify_tensors` takes tensor names and shapes (a safetensors
header is enough) plus the model's config dictionary and returns one :class:`TensorRole`
per tensor, or several when a fused tensor holds more than one role (GPT-2's ``c_attn``
holds Q, K and V side by side). Each role says how to cut the tensor and how to turn it
into the canonical ``[out_features, in_features]`` orientation of ``nn.Linear``, so the
analysis code never needs to know the architecture.

Architectures with exact rules: BERT (and RoBERTa-style checkpoints with the same names),
Llama (grouped-query attention; also Mistral/Qwen2-style names), GPT-2 (``Conv1D`` stores
``[in, out]``; ``c_attn`` fuses Q, K, V), T5 (encoder self, decoder self and cross
attention; relative position bias; gated ``wi_0``/``wi_1`` MLPs), OPT and Gemma 3 (q/k
norms; a norm before and after both attention and MLP, whose stored weights are offsets
from one: the scale is ``1 + w``). Any other
architecture falls back to common name patterns; tensors that match nothing are reported
with ``role="unclassified"`` so callers can list them.

Example:
    >>> roles = classify_tensors({"model.layers.0.self_attn.q_proj.weight": (64, 64)},
    ...                          {"model_type": "llama", "hidden_size": 64,
    ...                           "num_attention_heads": 4})
    >>> (roles[0].role, roles[0].layer, roles[0].location, roles[0].attention)
    ('q', 0, 'decoder', 'self')
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ROLES",
    "MATRIX_ROLES",
    "TensorRole",
    "AttentionGeometry",
    "attention_geometry",
    "classify_tensors",
    "unclassified",
    "known_architectures",
    "norm_offset",
    "NORM_OFFSET_TYPES",
]

#: Every role a tensor can get. ``head`` covers poolers, classifier and projection layers
#: outside the blocks; ``buffer`` covers non-trainable tensors saved with the weights
#: (position ids, causal masks).
ROLES: tuple[str, ...] = (
    "q", "k", "v", "o", "qkv", "mlp_up", "mlp_gate", "mlp_down", "norm", "embedding",
    "unembedding", "position", "head", "buffer", "unclassified",
)
#: Roles whose weights are matrices that take part in the spectral battery.
MATRIX_ROLES: tuple[str, ...] = ("q", "k", "v", "o", "qkv", "mlp_up", "mlp_gate", "mlp_down",
                                 "embedding", "unembedding", "position", "head")


@dataclass(frozen=True)
class TensorRole:
    """The role of one tensor (or one slice of a fused tensor).

    Attributes:
        name: the tensor's name in the checkpoint.
        role: one of :data:`ROLES`.
        param: ``"weight"`` or ``"bias"`` (norm shifts are biases too).
        layer: block index, or ``None`` outside the blocks.
        location: ``"encoder"``, ``"decoder"`` or ``"model"`` (outside both stacks).
        attention: ``"self"`` or ``"cross"`` for attention tensors, else ``None``.
        shape: the stored shape of the whole tensor.
        split: ``(axis, start, stop)`` to cut a fused tensor, or ``None``.
        transposed: ``True`` when the stored layout is ``[in, out]`` (GPT-2 ``Conv1D``);
            :meth:`canonical_shape` and the loaders transpose it back.
        detail: a short free-form note (``"token_type"``, ``"relative_bias"``, ...).

    Shapes:
        ``canonical_shape``: ``[out, in]`` for matrices, ``[n]`` for vectors;
        ``[num_buckets, num_heads]`` for T5 relative position bias.
    """

    name: str
    role: str
    param: str
    layer: int | None
    location: str
    attention: str | None
    shape: tuple[int, ...]
    split: tuple[int, int, int] | None = None
    transposed: bool = False
    detail: str = ""

    @property
    def canonical_shape(self) -> tuple[int, ...]:
        shape = list(self.shape)
        if self.split is not None:
            axis, start, stop = self.split
            shape[axis] = stop - start
        if self.transposed and len(shape) == 2:
            shape = shape[::-1]
        return tuple(shape)

    @property
    def is_matrix(self) -> bool:
        return self.param == "weight" and len(self.shape) == 2 and self.role in MATRIX_ROLES

    @property
    def key(self) -> str:
        """A unique label: the name, plus the role for slices of fused tensors."""
        return f"{self.name}[{self.role}]" if self.split is not None else self.name

    @property
    def group(self) -> str:
        """Role label with location and attention kind, e.g. ``decoder.cross.q``."""
        parts = [self.location]
        if self.attention is not None:
            parts.append(self.attention)
        parts.append(self.role)
        return ".".join(parts)


@dataclass(frozen=True)
class AttentionGeometry:
    """Head layout read from a config: ``num_heads`` query heads and ``num_kv_heads`` key/value
    heads (fewer under grouped-query attention) of width ``head_dim`` over ``hidden_size``."""

    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def group_size(self) -> int:
        """Query heads sharing one key/value head."""
        return self.num_heads // max(self.num_kv_heads, 1)


def _first(config: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        v = config.get(k)
        if v is not None:
            return v
    return None


def attention_geometry(config: Mapping[str, Any]) -> AttentionGeometry | None:
    """Read heads, key/value heads and head width from a Hugging Face ``config.json`` dict.

    Returns ``None`` when the config does not say how many heads there are.
    """
    hidden = _first(config, "hidden_size", "n_embd", "d_model", "dim", "embed_dim")
    heads = _first(config, "num_attention_heads", "n_head", "num_heads", "n_heads",
                   "encoder_attention_heads")
    if hidden is None or heads is None:
        return None
    kv = _first(config, "num_key_value_heads", "n_kv_heads", "num_kv_heads") or heads
    head_dim = _first(config, "head_dim", "d_kv") or int(hidden) // int(heads)
    return AttentionGeometry(int(hidden), int(heads), int(kv), int(head_dim))


# --------------------------------------------------------------------------- rules
# A rule: (regex over the name, role, attention, location override or None, detail).
# The regex's named group ``layer`` gives the block index; ``param`` the weight/bias part.
_P = r"(?P<param>weight|bias|scale|g|b|gamma|beta)$"
_L = r"(?P<layer>\d+)"

_Rule = tuple[str, str, str | None, str | None, str]

_BERT: list[_Rule] = [
    (r"embeddings\.word_embeddings\." + _P, "embedding", None, None, "token"),
    (r"embeddings\.token_type_embeddings\." + _P, "embedding", None, None, "token_type"),
    (r"embeddings\.position_embeddings\." + _P, "position", None, None, "absolute"),
    (r"embeddings\.position_ids$", "buffer", None, None, "position_ids"),
    (r"embeddings\.token_type_ids$", "buffer", None, None, "token_type_ids"),
    (r"embeddings\.LayerNorm\." + _P, "norm", None, None, "embedding_norm"),
    (rf"layer\.{_L}\.attention\.self\.query\." + _P, "q", "self", None, ""),
    (rf"layer\.{_L}\.attention\.self\.key\." + _P, "k", "self", None, ""),
    (rf"layer\.{_L}\.attention\.self\.value\." + _P, "v", "self", None, ""),
    (rf"layer\.{_L}\.attention\.output\.dense\." + _P, "o", "self", None, ""),
    (rf"layer\.{_L}\.attention\.output\.LayerNorm\." + _P, "norm", None, None, "attention_norm"),
    (rf"layer\.{_L}\.intermediate\.dense\." + _P, "mlp_up", None, None, ""),
    (rf"layer\.{_L}\.output\.dense\." + _P, "mlp_down", None, None, ""),
    (rf"layer\.{_L}\.output\.LayerNorm\." + _P, "norm", None, None, "mlp_norm"),
    (r"pooler\.dense\." + _P, "head", None, "model", "pooler"),
    (r"cls\.predictions\.transform\.dense\." + _P, "head", None, "model", "mlm_transform"),
    (r"cls\.predictions\.transform\.LayerNorm\." + _P, "norm", None, "model", "mlm_norm"),
    (r"cls\.predictions\.decoder\." + _P, "unembedding", None, "model", ""),
    (r"cls\.predictions\.(?P<param>bias)$", "unembedding", None, "model", ""),
    (r"cls\.seq_relationship\." + _P, "head", None, "model", "nsp"),
    (r"classifier\." + _P, "head", None, "model", "classifier"),
]

_LLAMA: list[_Rule] = [
    (r"embed_tokens\." + _P, "embedding", None, None, "token"),
    (rf"layers\.{_L}\.self_attn\.q_proj\." + _P, "q", "self", None, ""),
    (rf"layers\.{_L}\.self_attn\.k_proj\." + _P, "k", "self", None, ""),
    (rf"layers\.{_L}\.self_attn\.v_proj\." + _P, "v", "self", None, ""),
    (rf"layers\.{_L}\.self_attn\.o_proj\." + _P, "o", "self", None, ""),
    (rf"layers\.{_L}\.self_attn\.(q|k)_norm\." + _P, "norm", None, None, "qk_norm"),
    (rf"layers\.{_L}\.self_attn\.rotary_emb\.inv_freq$", "buffer", None, None, "rope"),
    (rf"layers\.{_L}\.mlp\.gate_proj\." + _P, "mlp_gate", None, None, ""),
    (rf"layers\.{_L}\.mlp\.up_proj\." + _P, "mlp_up", None, None, ""),
    (rf"layers\.{_L}\.mlp\.down_proj\." + _P, "mlp_down", None, None, ""),
    (rf"layers\.{_L}\.input_layernorm\." + _P, "norm", None, None, "attention_norm"),
    (rf"layers\.{_L}\.post_attention_layernorm\." + _P, "norm", None, None, "mlp_norm"),
    (r"(^|\.)norm\." + _P, "norm", None, "decoder", "final_norm"),
    (r"lm_head\." + _P, "unembedding", None, "model", ""),
    (r"score\." + _P, "head", None, "model", "classifier"),
]

# Gemma 2/3 put a norm before and after both attention and the MLP; Llama's names cover the rest.
_GEMMA: list[_Rule] = [
    (rf"layers\.{_L}\.post_attention_layernorm\." + _P, "norm", None, None, "attention_post_norm"),
    (rf"layers\.{_L}\.pre_feedforward_layernorm\." + _P, "norm", None, None, "mlp_norm"),
    (rf"layers\.{_L}\.post_feedforward_layernorm\." + _P, "norm", None, None, "mlp_post_norm"),
    *_LLAMA,
]

_GPT2: list[_Rule] = [
    (r"wte\." + _P, "embedding", None, None, "token"),
    (r"wpe\." + _P, "position", None, None, "absolute"),
    (rf"h\.{_L}\.ln_1\." + _P, "norm", None, None, "attention_norm"),
    (rf"h\.{_L}\.ln_2\." + _P, "norm", None, None, "mlp_norm"),
    (rf"h\.{_L}\.attn\.c_attn\." + _P, "qkv", "self", None, "conv1d"),
    (rf"h\.{_L}\.attn\.c_proj\." + _P, "o", "self", None, "conv1d"),
    (rf"h\.{_L}\.attn\.(bias|masked_bias)$", "buffer", None, None, "causal_mask"),
    (rf"h\.{_L}\.mlp\.c_fc\." + _P, "mlp_up", None, None, "conv1d"),
    (rf"h\.{_L}\.mlp\.c_proj\." + _P, "mlp_down", None, None, "conv1d"),
    (r"ln_f\." + _P, "norm", None, None, "final_norm"),
    (r"lm_head\." + _P, "unembedding", None, "model", ""),
    (r"score\." + _P, "head", None, "model", "classifier"),
]

_T5_ATT = r"(?P<stack>encoder|decoder)\.block\.(?P<layer>\d+)\.layer\.\d+\."
_T5: list[_Rule] = [
    (r"^shared\." + _P, "embedding", None, "model", "token"),
    (r"(encoder|decoder)\.embed_tokens\." + _P, "embedding", None, None, "token"),
    (_T5_ATT + r"SelfAttention\.relative_attention_bias\." + _P, "position", "self", None, "relative_bias"),
    (_T5_ATT + r"SelfAttention\.q\." + _P, "q", "self", None, ""),
    (_T5_ATT + r"SelfAttention\.k\." + _P, "k", "self", None, ""),
    (_T5_ATT + r"SelfAttention\.v\." + _P, "v", "self", None, ""),
    (_T5_ATT + r"SelfAttention\.o\." + _P, "o", "self", None, ""),
    (_T5_ATT + r"EncDecAttention\.relative_attention_bias\." + _P, "position", "cross", None, "relative_bias"),
    (_T5_ATT + r"EncDecAttention\.q\." + _P, "q", "cross", None, ""),
    (_T5_ATT + r"EncDecAttention\.k\." + _P, "k", "cross", None, ""),
    (_T5_ATT + r"EncDecAttention\.v\." + _P, "v", "cross", None, ""),
    (_T5_ATT + r"EncDecAttention\.o\." + _P, "o", "cross", None, ""),
    (_T5_ATT + r"DenseReluDense\.wi\." + _P, "mlp_up", None, None, ""),
    (_T5_ATT + r"DenseReluDense\.wi_0\." + _P, "mlp_gate", None, None, ""),
    (_T5_ATT + r"DenseReluDense\.wi_1\." + _P, "mlp_up", None, None, ""),
    (_T5_ATT + r"DenseReluDense\.wo\." + _P, "mlp_down", None, None, ""),
    (_T5_ATT + r"layer_norm\." + _P, "norm", None, None, "block_norm"),
    (r"(?P<stack>encoder|decoder)\.final_layer_norm\." + _P, "norm", None, None, "final_norm"),
    (r"lm_head\." + _P, "unembedding", None, "model", ""),
]

_OPT: list[_Rule] = [
    (r"decoder\.embed_tokens\." + _P, "embedding", None, None, "token"),
    (r"decoder\.embed_positions\." + _P, "position", None, None, "absolute_offset2"),
    (r"decoder\.project_in\." + _P, "head", None, None, "project_in"),
    (r"decoder\.project_out\." + _P, "head", None, None, "project_out"),
    (r"decoder\.final_layer_norm\." + _P, "norm", None, None, "final_norm"),
    (rf"layers\.{_L}\.self_attn\.q_proj\." + _P, "q", "self", None, ""),
    (rf"layers\.{_L}\.self_attn\.k_proj\." + _P, "k", "self", None, ""),
    (rf"layers\.{_L}\.self_attn\.v_proj\." + _P, "v", "self", None, ""),
    (rf"layers\.{_L}\.self_attn\.out_proj\." + _P, "o", "self", None, ""),
    (rf"layers\.{_L}\.self_attn_layer_norm\." + _P, "norm", None, None, "attention_norm"),
    (rf"layers\.{_L}\.final_layer_norm\." + _P, "norm", None, None, "mlp_norm"),
    (rf"layers\.{_L}\.fc1\." + _P, "mlp_up", None, None, ""),
    (rf"layers\.{_L}\.fc2\." + _P, "mlp_down", None, None, ""),
    (r"lm_head\." + _P, "unembedding", None, "model", ""),
    (r"score\." + _P, "head", None, "model", "classifier"),
]

# Name patterns for architectures without exact rules (ViT, Mistral, Qwen, Falcon, ...).
_BLK = r"(?:layers?|h|blocks?|resblocks|encoderlayer|decoderlayer)\.(?P<layer>\d+)\."
_GENERIC: list[_Rule] = [
    (r"(position_ids|inv_freq|masked_bias|attn\.bias)$", "buffer", None, None, ""),
    (r"relative_attention_bias\." + _P, "position", "self", None, "relative_bias"),
    (r"(pos_embed|position_embeddings?|positional_embedding|embed_positions|wpe)(\.|$)", "position",
     None, None, "absolute"),
    (_BLK + r".*(norm|ln_?\d?|layernorm|layer_norm)[^.]*\." + _P, "norm", None, None, ""),
    (_BLK + r".*(in_proj_weight|in_proj_bias)$", "qkv", "self", None, "fused"),
    (_BLK + r".*(\.qkv|Wqkv|qkv_proj|query_key_value|c_attn)\." + _P, "qkv", "self", None, "fused"),
    (_BLK + r".*(q_proj|query|\.q|wq|to_q)\." + _P, "q", "self", None, ""),
    (_BLK + r".*(k_proj|key|\.k|wk|to_k)\." + _P, "k", "self", None, ""),
    (_BLK + r".*(v_proj|value|\.v|wv|to_v)\." + _P, "v", "self", None, ""),
    (_BLK + r".*(o_proj|out_proj|attention\.output\.dense|attn\.proj|\.o|wo_attn|to_out[.\d]*|"
     r"attn\.c_proj|dense)\." + _P, "o", "self", None, ""),
    (_BLK + r".*(gate_proj|w1|wi_0|fc_gate)\." + _P, "mlp_gate", None, None, ""),
    (_BLK + r".*(up_proj|fc1|c_fc|intermediate\.dense|w3|wi_1|wi|fc_in|dense_h_to_4h|mlp\.0)\." + _P,
     "mlp_up", None, None, ""),
    (_BLK + r".*(down_proj|fc2|mlp\.c_proj|output\.dense|w2|wo|fc_out|dense_4h_to_h|mlp\.2)\." + _P,
     "mlp_down", None, None, ""),
    (r"(word_embeddings|embed_tokens|wte|tok_embeddings|token_embedding|shared|patch_embed\w*|"
     r"embeddings\.\w+)\." + _P, "embedding", None, "model", ""),
    (r"(lm_head|output|embed_out|head)\." + _P, "unembedding", None, "model", ""),
    (r"(norm|ln_f|final_layer_norm|layernorm|LayerNorm|post_layernorm|pre_layrnorm)\." + _P, "norm",
     None, "model", "final_norm"),
    (r"(pooler|classifier|score|proj)\S*\." + _P, "head", None, "model", ""),
]

_RULES: dict[str, list[_Rule]] = {
    "bert": _BERT, "roberta": _BERT, "xlm-roberta": _BERT, "electra": _BERT, "camembert": _BERT,
    "llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA, "qwen3": _LLAMA, "gemma": _LLAMA,
    "gemma2": _GEMMA, "gemma3": _GEMMA, "gemma3_text": _GEMMA, "olmo": _LLAMA, "smollm3": _LLAMA,
    "gpt2": _GPT2,
    "t5": _T5, "mt5": _T5, "umt5": _T5,
    "opt": _OPT,
}
_DEFAULT_LOCATION = {"bert": "encoder", "roberta": "encoder", "xlm-roberta": "encoder",
                     "electra": "encoder", "camembert": "encoder", "t5": "model", "mt5": "model",
                     "umt5": "model"}


#: ``model_type`` values whose RMSNorm weights are stored as offsets from one (scale 1 + w).
NORM_OFFSET_TYPES: frozenset[str] = frozenset({"gemma", "gemma2", "gemma3", "gemma3_text"})


def norm_offset(config: Mapping[str, Any] | None) -> float:
    """What to add to a stored norm weight to get its scale (1.0 for Gemma, else 0.0)."""
    mt = str((config or {}).get("model_type", "")).lower()
    return 1.0 if mt in NORM_OFFSET_TYPES else 0.0


def known_architectures() -> list[str]:
    """``model_type`` values with exact rules (others use name patterns)."""
    return sorted(_RULES)


def _compiled(rules: list[_Rule]) -> list[tuple[re.Pattern[str], str, str | None, str | None, str]]:
    return [(re.compile(p), role, att, loc, detail) for p, role, att, loc, detail in rules]


_COMPILED = {k: _compiled(v) for k, v in _RULES.items()}
_COMPILED_GENERIC = _compiled(_GENERIC)


def _param_kind(match: re.Match[str], name: str) -> str:
    p = match.groupdict().get("param")
    if p in {"bias", "b", "beta"}:
        return "bias"
    if p is None and name.endswith("_bias"):
        return "bias"
    return "weight"


def _location(name: str, match: re.Match[str], override: str | None, default: str) -> str:
    stack = match.groupdict().get("stack")
    if stack:
        return stack
    if override is not None:
        return override
    if re.search(r"(^|\.)encoder(\.|$)", name):
        return "encoder"
    if re.search(r"(^|\.)decoder(\.|$)", name):
        return "decoder"
    return default


def classify_tensors(
    tensors: Mapping[str, Sequence[int]],
    config: Mapping[str, Any] | None = None,
) -> list[TensorRole]:
    """Give every tensor a role, a layer index and a location.

    Args:
        tensors: ``{name: shape}`` for every tensor in the checkpoint (a safetensors header).
        config: the model's ``config.json`` as a dict; ``model_type`` picks the exact rules
            and the head counts split fused tensors. ``None`` or an unknown type falls back
            to name patterns.

    Returns:
        One :class:`TensorRole` per tensor, three for GPT-2's fused ``c_attn`` (Q, K, V),
        sorted by location, layer and name. Tensors matching no rule get
        ``role="unclassified"``.
    """
    config = dict(config or {})
    model_type = str(config.get("model_type", "")).lower()
    rules = _COMPILED.get(model_type)
    default_loc = _DEFAULT_LOCATION.get(model_type, "decoder" if rules is not None else "model")
    geom = attention_geometry(config)
    out: list[TensorRole] = []
    for name, shape in tensors.items():
        shape_t = tuple(int(s) for s in shape)
        hit = None
        for table in ([rules] if rules is not None else []) + [_COMPILED_GENERIC]:
            for pat, role, att, loc, detail in table:
                m = pat.search(name)
                if m is not None:
                    hit = (m, role, att, loc, detail)
                    break
            if hit is not None:
                break
        if hit is None:
            out.append(TensorRole(name, "unclassified", "weight", None, "model", None, shape_t))
            continue
        m, role, att, loc_override, detail = hit
        layer_s = m.groupdict().get("layer")
        layer = int(layer_s) if layer_s is not None else None
        location = _location(name, m, loc_override if layer is None else None, default_loc)
        if layer is not None and location == "model":
            location = default_loc if default_loc != "model" else "encoder"
        param = _param_kind(m, name)
        # Cross attention outside T5: names with "cross"/"encoder_attn" in them.
        if att == "self" and re.search(r"(crossattention|cross_attn|encoder_attn|EncDecAttention)",
                                         name, re.IGNORECASE):
            att = "cross"
        transposed = detail == "conv1d" and len(shape_t) == 2
        if role == "qkv":
            out.extend(_split_fused(name, shape_t, param, layer, location, att, detail, geom,
                                    model_type))
            continue
        out.append(TensorRole(name, role, param, layer, location, att, shape_t,
                              transposed=transposed, detail=detail))
    out.sort(key=lambda r: (r.location, -1 if r.layer is None else r.layer, r.name, r.role))
    return out


def _split_fused(name: str, shape: tuple[int, ...], param: str, layer: int | None, location: str,
                 att: str | None, detail: str, geom: AttentionGeometry | None,
                 model_type: str) -> list[TensorRole]:
    """Cut a fused QKV tensor into Q, K and V views.

    GPT-2 ``Conv1D`` stores ``[in, 3 * hidden]`` (split the last axis, then transpose);
    ``nn.MultiheadAttention.in_proj_weight`` and timm ``qkv`` store ``[3 * hidden, in]``.
    Grouped layouts with fewer key/value heads are cut as ``[q | k | v]`` with widths from
    the config. Interleaved per-head layouts (GPT-NeoX ``query_key_value``) cannot be cut
    without the head order, so they stay one ``qkv`` role.
    """
    conv1d = detail == "conv1d" or model_type == "gpt2"
    axis = 1 if (conv1d and len(shape) == 2) else 0
    total = shape[axis] if len(shape) > axis else 0
    if geom is not None:
        q_w = geom.num_heads * geom.head_dim
        kv_w = geom.num_kv_heads * geom.head_dim
    else:
        q_w = kv_w = total // 3
    interleaved = "query_key_value" in name
    if interleaved or q_w + 2 * kv_w != total or total == 0:
        return [TensorRole(name, "qkv", param, layer, location, att, shape,
                           transposed=conv1d and len(shape) == 2, detail="fused")]
    bounds = {"q": (0, q_w), "k": (q_w, q_w + kv_w), "v": (q_w + kv_w, total)}
    if param == "bias":
        axis = 0
    return [TensorRole(name, r, param, layer, location, att, shape, split=(axis, a, b),
                       transposed=conv1d and len(shape) == 2 and param == "weight", detail="fused")
            for r, (a, b) in bounds.items()]


def unclassified(roles: Sequence[TensorRole]) -> list[str]:
    """Names of tensors that no rule matched."""
    return [r.name for r in roles if r.role == "unclassified"]
