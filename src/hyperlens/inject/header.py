"""The semantic header: codes of a text as ``k`` pseudo-tokens for a frozen causal LM.

A :class:`SemanticHeader` maps one code per text (a ternary HDC code, dense ``int8`` or
:class:`~hyperlens.hdc.PackedCodes`, or a float sentence embedding) ``[n, D]`` to
``[n, k, d_model]`` vectors that are spliced into the LM's input embeddings, either as a
prefix (before the first real token, optionally after ``sink_tokens`` leading tokens that
keep the attention-sink position) or just before the answer cue (the last ``cue_len``
tokens of each prompt). :func:`splice` does the insertion for left- or right-padded
batches and returns the matching attention mask and position ids.

Variants (``HeaderConfig.variant``):

- ``"mlp"``: the original design, ``D -> min(2048, 4 d) -> k d`` with GELU and dropout;
- ``"projector"``: ``D -> hidden (64) -> k d``, each output token rescaled to
  ``target_norm`` (the mean norm of the LM's token embeddings, so pseudo-tokens live at
  the scale the LM expects);
- ``"gated"``: a learned static prompt ``P [k, d]`` plus ``g * projector(code)`` with a
  per-token gate ``g`` initialised to zero, so training starts exactly at the static prompt;
- ``"static"``: the static prompt alone (input-independent prompt tuning; codes ignored).

The header is the adapter registered as ``header``: :meth:`SemanticHeader.interventions`
returns ``{"inputs": fn}`` for the input site (``fn(kwargs, ctx) -> kwargs`` rewrites the
keyword arguments of the top-level forward), so :func:`hyperlens.inject.attach` hooks it
into ``forward`` and every ``generate`` step; the codes of the batch are given with
:meth:`SemanticHeader.use_codes`::

    header = make_adapter("header", code_dim=10_000, d_model=576, k=4, placement="cue",
                          cue_len=4)
    with attach(lm, header), header.use_codes(codes):     # codes [batch, 10_000]
        out = lm.module.generate(**batch, max_new_tokens=4)

:func:`hyperlens.inject.save_adapter` / ``load_adapter`` store it (one safetensors file).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError, InputError, ShapeError
from ..hdc import PackedCodes
from ..models.arch import embedding_module
from .base import Adapter, AdapterConfig, register_adapter

__all__ = [
    "HeaderConfig",
    "SemanticHeader",
    "VARIANTS",
    "PLACEMENTS",
    "splice",
    "insert_index",
    "check_lm",
    "embedding_norm",
]

VARIANTS = ("mlp", "projector", "gated", "static")
PLACEMENTS = ("prefix", "cue", "add")


@dataclass
class HeaderConfig(AdapterConfig):
    """Configuration of a :class:`SemanticHeader` (validated on construction).

    Args:
        code_dim: width ``D`` of the codes (10,000 for the seed's HDC codes, 384 for MiniLM).
        d_model: width of the LM's input embeddings.
        k: number of pseudo-tokens (> 0).
        variant: one of :data:`VARIANTS`.
        placement: ``"prefix"``, ``"cue"`` (inserted just before the last ``cue_len``
            tokens) or ``"add"`` (no new tokens: added to the embeddings of the ``k`` tokens
            before the cue; with the static prompt starting at zero this is exactly the
            plain model at initialisation).
        cue_len: tokens of the answer cue (``placement="cue"``).
        sink_tokens: leading real tokens kept before a prefix header.
        hidden: bottleneck width of the projector / gated variants.
        mlp_hidden: hidden width of the ``"mlp"`` variant (0 = ``min(2048, 4 d_model)``).
        dropout: dropout of the ``"mlp"`` variant.
        target_norm: per-token output norm of the projector (0 = no rescaling).
        code_kind: ``"ternary"`` (values in {-1, 0, 1}) or ``"float"``.
    """

    code_dim: int
    d_model: int
    k: int = 4
    variant: str = "projector"
    placement: str = "cue"
    cue_len: int = 0
    sink_tokens: int = 0
    hidden: int = 64
    mlp_hidden: int = 0
    dropout: float = 0.1
    target_norm: float = 0.0
    code_kind: str = "ternary"

    def validate(self) -> None:
        for name in ("code_dim", "d_model", "k"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ConfigError(f"HeaderConfig.{name} must be a positive int, got {v!r}"
                                 + ("; use k >= 1 pseudo-tokens." if name == "k" else "."))
        for name in ("cue_len", "sink_tokens", "mlp_hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ConfigError(f"HeaderConfig.{name} must be an int >= 0, got {v!r}.")
        if self.variant not in VARIANTS:
            raise ConfigError(f"HeaderConfig.variant must be one of {VARIANTS}, got "
                             f"{self.variant!r}.")
        if self.placement not in PLACEMENTS:
            raise ConfigError(f"HeaderConfig.placement must be one of {PLACEMENTS}, got "
                             f"{self.placement!r}.")
        if self.placement == "cue" and self.cue_len <= 0:
            raise ConfigError("HeaderConfig.cue_len must be >= 1 with placement='cue' (the "
                             f"number of answer-cue tokens at the end of each prompt), got "
                             f"{self.cue_len}.")
        if self.hidden <= 0:
            raise ConfigError(f"HeaderConfig.hidden must be a positive int, got {self.hidden!r}.")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError(f"HeaderConfig.dropout must be in [0, 1), got {self.dropout!r}.")
        if not np.isfinite(self.target_norm) or self.target_norm < 0:
            raise ConfigError(f"HeaderConfig.target_norm must be >= 0, got {self.target_norm!r}.")
        if self.code_kind not in ("ternary", "float"):
            raise ConfigError(f"HeaderConfig.code_kind must be 'ternary' or 'float', got "
                             f"{self.code_kind!r}.")


def check_lm(model: nn.Module, d_model: int | None = None) -> int:
    """Width of ``model``'s input embeddings; raises when it has none or it mismatches."""
    module = getattr(model, "module", model)
    emb = embedding_module(module, "input")
    if not isinstance(emb, nn.Embedding):
        raise InputError(
            f"model {type(module).__name__} has no input embedding table "
            "(get_input_embeddings() returned "
            f"{type(emb).__name__}); the header needs a Hugging Face causal LM whose forward "
            "accepts inputs_embeds.")
    width = int(emb.weight.shape[1])
    if d_model is not None and width != d_model:
        raise ShapeError(f"header d_model={d_model} but the model's input embeddings are "
                         f"{width}-d; build the header with d_model={width}.")
    return width


def embedding_norm(model: nn.Module, token_ids: Any = None) -> float:
    """Mean norm of the vectors the input embedding layer produces for ``token_ids``.

    The tokens go through the embedding module itself, so a scaled embedding (Gemma 3
    multiplies its table by ``sqrt(d_model)``) gives the norm the LM actually sees: use it
    as a projector's ``target_norm`` at layer 0. ``None``: the whole vocabulary.
    """
    check_lm(model)
    module: Any = getattr(model, "module", model)
    emb: Any = module.get_input_embeddings()
    if token_ids is None:
        token_ids = torch.arange(int(emb.weight.shape[0]))
    ids = torch.as_tensor(token_ids, dtype=torch.long).reshape(-1).to(emb.weight.device)
    if ids.numel() == 0:
        raise InputError("embedding_norm needs at least one token id.")
    with torch.no_grad():
        total = 0.0
        for chunk in ids.split(8192):  # a 262k vocabulary in pieces
            total += float(emb(chunk).float().norm(dim=-1).sum())
    return total / ids.numel()


@register_adapter("header")
class SemanticHeader(Adapter):
    """Codes ``[n, D]`` -> pseudo-tokens ``[n, k, d_model]`` (see the module docstring).

    Shapes:
        forward(codes): ``[n, D]`` (float, int8 or PackedCodes) -> ``[n, k, d_model]`` float32
    """

    name = "header"
    config_class = HeaderConfig
    config: HeaderConfig

    def __init__(self, config: HeaderConfig | None = None, **kwargs: Any) -> None:
        if config is None:
            config = HeaderConfig(**kwargs)
        elif kwargs:
            raise InputError("pass either a HeaderConfig or keyword options, not both.")
        super().__init__(config)
        c = config
        kd = c.k * c.d_model
        self.net: nn.Module | None = None
        if c.variant == "mlp":
            mid = c.mlp_hidden or min(2048, 4 * c.d_model)
            self.net = nn.Sequential(nn.Linear(c.code_dim, mid), nn.GELU(), nn.Dropout(c.dropout),
                                     nn.Linear(mid, kd))
        elif c.variant in ("projector", "gated"):
            self.net = nn.Sequential(nn.Linear(c.code_dim, c.hidden), nn.GELU(),
                                     nn.Linear(c.hidden, kd))
        if c.variant in ("gated", "static"):
            # an added prompt starts at zero (the plain model); an inserted one near zero
            scale = 0.0 if c.placement == "add" else 0.02
            self.prompt = nn.Parameter(torch.randn(c.k, c.d_model) * scale)
        if c.variant == "gated":
            self.gate = nn.Parameter(torch.zeros(c.k, 1))
        self._codes: torch.Tensor | None = None
        self._at: torch.Tensor | None = None
        self.saved_model: str | None = None

    # ------------------------------------------------------------------ codes
    def codes_tensor(self, codes: Any, name: str = "codes") -> torch.Tensor:
        """Validate ``codes`` and return them as float32 ``[n, D]``."""
        if isinstance(codes, PackedCodes):
            codes = codes.to_dense()
        elif isinstance(codes, np.ndarray):
            codes = torch.from_numpy(np.ascontiguousarray(codes))
        if not isinstance(codes, torch.Tensor):
            raise InputError(f"{name} must be a tensor, array or PackedCodes [n, "
                             f"{self.config.code_dim}], got {type(codes).__name__}.")
        if codes.dim() != 2 or codes.shape[1] != self.config.code_dim:
            raise ShapeError(
                f"{name} has shape {tuple(codes.shape)} but this header takes [n, "
                f"{self.config.code_dim}] codes; encode with the same width (e.g. "
                f"TernaryEncoder(dim={self.config.code_dim})) or build a header with "
                f"code_dim={codes.shape[-1] if codes.dim() else '?'}.")
        if codes.shape[0] == 0:
            raise ShapeError(f"{name} is empty; give at least one code.")
        out = codes.float()
        if not torch.isfinite(out).all():
            raise InputError(f"{name} contains NaN or infinite values.")
        return out

    def forward(self, codes: Any) -> torch.Tensor:
        c = self.config
        dev = self._device()
        if c.variant == "static":  # input-independent: only the batch size matters
            n = int(codes) if isinstance(codes, int) else int(self.codes_tensor(codes).shape[0])
            return self.prompt.unsqueeze(0).expand(n, -1, -1)
        x = self.codes_tensor(codes).to(dev)
        assert self.net is not None
        z = self.net(x).view(x.shape[0], c.k, c.d_model)
        if c.variant in ("projector", "gated") and c.target_norm > 0:
            z = z * (c.target_norm / z.norm(dim=-1, keepdim=True).clamp_min(1e-6))
        if c.variant == "gated":
            z = self.prompt.unsqueeze(0) + self.gate.unsqueeze(0) * z
        return z

    def _device(self) -> torch.device:
        p = next(self.parameters())
        return p.device

    def init_prompt(self, vectors: torch.Tensor) -> None:
        """Set the static prompt (``"gated"`` / ``"static"``) to ``vectors [k, d_model]``."""
        if not hasattr(self, "prompt"):
            raise InputError(f"variant {self.config.variant!r} has no static prompt to set.")
        if tuple(vectors.shape) != tuple(self.prompt.shape):
            raise ShapeError(f"prompt vectors must be {tuple(self.prompt.shape)}, got "
                             f"{tuple(vectors.shape)}.")
        with torch.no_grad():
            self.prompt.copy_(vectors.to(self.prompt))

    # ------------------------------------------------------------------ adapter
    @classmethod
    def example_config(cls, model: Any) -> HeaderConfig:
        """An input-independent added prompt on the last two tokens (identity at start)."""
        d = check_lm(model)
        return HeaderConfig(code_dim=1, d_model=d, k=2, variant="static", placement="add")

    def check_model(self, model: Any) -> tuple[int, int]:
        """The model needs input embeddings of width ``d_model`` (then the base checks)."""
        check_lm(model, self.config.d_model)
        return super().check_model(model)

    @contextlib.contextmanager
    def use_codes(self, codes: Any) -> Iterator[SemanticHeader]:
        """Codes of the texts of the next forward / generate calls (one row per batch row)."""
        prev = self._codes
        self._codes = self.codes_tensor(codes)
        try:
            yield self
        finally:
            self._codes = prev

    def interventions(self, model: Any) -> dict[str, Callable[..., Any]]:
        """``{"inputs": fn}``: splice the pseudo-tokens into the top-level forward's inputs.

        The first call of a sequence (no cache yet) inserts the ``k`` vectors; later
        ``generate`` steps only widen the attention mask by ``k`` and shift positions.
        """
        module: Any = getattr(model, "module", model)
        check_lm(module, self.config.d_model)
        embed: Any = module.get_input_embeddings()
        header = self

        def fn(kw: dict[str, Any], ctx: Any = None) -> dict[str, Any]:
            static = header.config.variant == "static"
            if header._codes is None and not static:
                raise InputError("the header has no codes for this batch; wrap the call in "
                                 "`with header.use_codes(codes):`.")
            ids = kw.get("input_ids")
            emb = kw.get("inputs_embeds")
            if emb is None:
                if ids is None:
                    raise InputError("the forward got neither input_ids nor inputs_embeds.")
                emb = embed(ids)
            b, t = emb.shape[:2]
            mask = kw.get("attention_mask")
            cache = kw.get("past_key_values", kw.get("cache"))
            past = int(cache.get_seq_length()) if cache is not None and hasattr(
                cache, "get_seq_length") else 0
            out = dict(kw)
            out.pop("input_ids", None)
            codes = header._codes
            if past == 0 and codes is not None and codes.shape[0] != b:
                raise ShapeError(f"the header holds {codes.shape[0]} codes but the batch has "
                                 f"{b} rows; give one code per text.")
            if header.config.placement == "add":
                if past == 0:  # generate() steps after the first see the change through the cache
                    m = mask if mask is not None else torch.ones(b, t, dtype=torch.long,
                                                                 device=emb.device)
                    pseudo = header(b if codes is None else codes).to(emb)
                    out["inputs_embeds"] = add_at(emb, pseudo, insert_index(m, header.config))
                else:
                    out["inputs_embeds"] = emb
                return out
            if past == 0:
                if mask is None:
                    mask = torch.ones(b, t, dtype=torch.long, device=emb.device)
                pseudo = header(b if codes is None else codes).to(emb)
                at = insert_index(mask, header.config)
                emb, mask, pos = splice(emb, mask, pseudo, at)
                header._at = at
            else:
                # a generate() step: the mask generate() keeps lacks the k header columns
                k = header.config.k
                if mask is None:
                    mask = torch.ones(b, past + t - k, dtype=torch.long, device=emb.device)
                at = header._at if header._at is not None else torch.zeros(b, dtype=torch.long)
                mask = _insert_ones(mask, at.to(mask.device), k)
                pos = (mask.long().cumsum(-1) - 1).clamp_min(0)[:, -t:]
            out["inputs_embeds"] = emb
            out["attention_mask"] = mask
            out["position_ids"] = pos
            return out

        return {"inputs": fn}


# --------------------------------------------------------------------------- splicing
def insert_index(attention_mask: torch.Tensor, config: HeaderConfig) -> torch.Tensor:
    """Where each row's pseudo-tokens go, in padded coordinates.

    Prefix: before the first real token (plus ``sink_tokens``); cue: before the last
    ``cue_len`` real tokens. Works for left and right padding.

    Shapes:
        attention_mask: ``[b, T]`` -> ``[b]`` int64
    """
    m = attention_mask.bool()
    T = m.shape[1]
    ar = torch.arange(T, device=m.device)
    if not m.any(dim=1).all():
        raise InputError("a row of attention_mask has no real token; drop empty texts.")
    first = torch.where(m, ar, T).min(dim=1).values
    last = torch.where(m, ar, -1).max(dim=1).values
    n_real = m.sum(1)
    if config.placement == "prefix":
        if (n_real < config.sink_tokens).any():
            raise InputError(f"sink_tokens={config.sink_tokens} exceeds a prompt's length.")
        return first + config.sink_tokens
    if config.placement == "add":
        if (n_real < config.cue_len + config.k).any():
            raise InputError(f"an added header needs k + cue_len = {config.k + config.cue_len} "
                             "real tokens per prompt; some prompt is shorter.")
        return last + 1 - config.cue_len - config.k
    if (n_real < config.cue_len).any():
        raise InputError(f"cue_len={config.cue_len} exceeds a prompt's length; every prompt "
                         "must end with the answer cue.")
    return last + 1 - config.cue_len


def add_at(embeds: torch.Tensor, pseudo: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """``embeds`` with ``pseudo`` added at positions ``at .. at + k - 1`` of each row.

    Shapes:
        embeds: ``[b, T, d]``, pseudo: ``[b, k, d]``, at: ``[b]`` -> ``[b, T, d]``
    """
    b, t, d = embeds.shape
    k = pseudo.shape[1]
    j = torch.arange(t, device=embeds.device).unsqueeze(0)
    at = at.to(embeds.device)[:, None]
    inside = (j >= at) & (j < at + k)
    pj = (j - at).clamp(0, k - 1)
    add = pseudo.gather(1, pj.unsqueeze(-1).expand(b, t, d))
    return embeds + torch.where(inside.unsqueeze(-1), add, torch.zeros_like(add))


def _insert_ones(mask: torch.Tensor, at: torch.Tensor, k: int) -> torch.Tensor:
    b, t = mask.shape
    j = torch.arange(t + k, device=mask.device).unsqueeze(0)
    src = torch.where(j < at[:, None], j, j - k).clamp(0, t - 1)
    out = mask.gather(1, src)
    inside = (j >= at[:, None]) & (j < at[:, None] + k)
    return torch.where(inside, torch.ones_like(out), out)


def splice(
    embeds: torch.Tensor, attention_mask: torch.Tensor, pseudo: torch.Tensor, at: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Insert ``pseudo`` into each row of ``embeds`` at index ``at`` (differentiable).

    Returns the new embeddings, the attention mask (ones over the pseudo-tokens) and
    position ids counting real and pseudo tokens only (``cumsum(mask) - 1``), so left
    padding does not shift positions.

    Shapes:
        embeds: ``[b, T, d]``, attention_mask: ``[b, T]``, pseudo: ``[b, k, d]``, at: ``[b]``
        -> ``[b, T + k, d]``, ``[b, T + k]``, ``[b, T + k]``
    """
    b, t, d = embeds.shape
    if pseudo.dim() != 3 or pseudo.shape[0] != b or pseudo.shape[2] != d:
        raise ShapeError(f"pseudo-tokens must be [{b}, k, {d}], got {tuple(pseudo.shape)}.")
    k = pseudo.shape[1]
    j = torch.arange(t + k, device=embeds.device).unsqueeze(0)  # [1, T+k]
    at = at.to(embeds.device)[:, None]
    inside = (j >= at) & (j < at + k)  # [b, T+k]
    src = torch.where(j < at, j, j - k).clamp(0, t - 1)
    base = embeds.gather(1, src.unsqueeze(-1).expand(b, t + k, d))
    pj = (j - at).clamp(0, k - 1)
    ins = pseudo.gather(1, pj.unsqueeze(-1).expand(b, t + k, d))
    out = torch.where(inside.unsqueeze(-1), ins, base)
    mask = _insert_ones(attention_mask.to(embeds.device), at[:, 0], k)
    pos = (mask.long().cumsum(-1) - 1).clamp_min(0)
    return out, mask, pos
