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

The header is an adapter: :meth:`SemanticHeader.interventions` returns ``{"inputs": fn}``
for the input site (``fn(kwargs, ctx) -> kwargs`` rewrites the keyword arguments of the
top-level forward), and :func:`attach` hooks it into a model for ``forward`` and
``generate`` (the codes for the batch are given with :meth:`SemanticHeader.use_codes`).
Weights and configuration save to one safetensors file (:func:`save_header`,
:func:`load_header`); no pickle.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import DataError, InputError, ShapeError
from ..hdc import PackedCodes
from ..utils import atomic_path

__all__ = [
    "HeaderConfig",
    "SemanticHeader",
    "VARIANTS",
    "PLACEMENTS",
    "splice",
    "insert_index",
    "attach",
    "save_header",
    "load_header",
    "check_lm",
    "FORMAT_NAME",
]

VARIANTS = ("mlp", "projector", "gated", "static")
PLACEMENTS = ("prefix", "cue")
FORMAT_NAME = "hyperlens.adapter.header"


@dataclass
class HeaderConfig:
    """Configuration of a :class:`SemanticHeader` (validated on construction).

    Args:
        code_dim: width ``D`` of the codes (10,000 for the seed's HDC codes, 384 for MiniLM).
        d_model: width of the LM's input embeddings.
        k: number of pseudo-tokens (> 0).
        variant: one of :data:`VARIANTS`.
        placement: ``"prefix"`` or ``"cue"`` (just before the last ``cue_len`` tokens).
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

    def __post_init__(self) -> None:
        for name in ("code_dim", "d_model", "k"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise InputError(f"HeaderConfig.{name} must be a positive int, got {v!r}"
                                 + ("; use k >= 1 pseudo-tokens." if name == "k" else "."))
        for name in ("cue_len", "sink_tokens", "mlp_hidden"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise InputError(f"HeaderConfig.{name} must be an int >= 0, got {v!r}.")
        if self.variant not in VARIANTS:
            raise InputError(f"HeaderConfig.variant must be one of {VARIANTS}, got "
                             f"{self.variant!r}.")
        if self.placement not in PLACEMENTS:
            raise InputError(f"HeaderConfig.placement must be 'prefix' or 'cue', got "
                             f"{self.placement!r}.")
        if self.placement == "cue" and self.cue_len <= 0:
            raise InputError("HeaderConfig.cue_len must be >= 1 with placement='cue' (the "
                             f"number of answer-cue tokens at the end of each prompt), got "
                             f"{self.cue_len}.")
        if self.hidden <= 0:
            raise InputError(f"HeaderConfig.hidden must be a positive int, got {self.hidden!r}.")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise InputError(f"HeaderConfig.dropout must be in [0, 1), got {self.dropout!r}.")
        if not np.isfinite(self.target_norm) or self.target_norm < 0:
            raise InputError(f"HeaderConfig.target_norm must be >= 0, got {self.target_norm!r}.")
        if self.code_kind not in ("ternary", "float"):
            raise InputError(f"HeaderConfig.code_kind must be 'ternary' or 'float', got "
                             f"{self.code_kind!r}.")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_lm(model: nn.Module, d_model: int | None = None) -> int:
    """Width of ``model``'s input embeddings; raises when it has none or it mismatches."""
    module = getattr(model, "module", model)
    get = getattr(module, "get_input_embeddings", None)
    emb = get() if callable(get) else None
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


class SemanticHeader(nn.Module):
    """Codes ``[n, D]`` -> pseudo-tokens ``[n, k, d_model]`` (see the module docstring).

    Shapes:
        forward(codes): ``[n, D]`` (float, int8 or PackedCodes) -> ``[n, k, d_model]`` float32
    """

    def __init__(self, config: HeaderConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        if config is None:
            config = HeaderConfig(**kwargs)
        elif kwargs:
            raise InputError("pass either a HeaderConfig or keyword options, not both.")
        self.config = config
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
            self.prompt = nn.Parameter(torch.randn(c.k, c.d_model) * 0.02)
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
        if c.variant == "static":
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
    @contextlib.contextmanager
    def use_codes(self, codes: Any) -> Iterator[SemanticHeader]:
        """Codes of the texts of the next forward / generate calls (one row per batch row)."""
        prev = self._codes
        self._codes = self.codes_tensor(codes) if self.config.variant != "static" else (
            codes if isinstance(codes, torch.Tensor) else self.codes_tensor(codes))
        try:
            yield self
        finally:
            self._codes = prev

    def interventions(self, model: nn.Module) -> dict[str, Callable[..., dict[str, Any]]]:
        """``{"inputs": fn}``: splice the pseudo-tokens into the top-level forward's inputs.

        The first call of a sequence (no cache yet) inserts the ``k`` vectors; later
        ``generate`` steps only widen the attention mask by ``k`` and shift positions.
        """
        module: Any = getattr(model, "module", model)
        check_lm(module, self.config.d_model)
        embed: Any = module.get_input_embeddings()
        header = self

        def fn(kw: dict[str, Any], ctx: Any = None) -> dict[str, Any]:
            if header._codes is None:
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
            if past == 0:
                if header._codes.shape[0] != b:
                    raise ShapeError(f"the header holds {header._codes.shape[0]} codes but the "
                                     f"batch has {b} rows; give one code per text.")
                if mask is None:
                    mask = torch.ones(b, t, dtype=torch.long, device=emb.device)
                pseudo = header(header._codes).to(emb)
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
    if (n_real < config.cue_len).any():
        raise InputError(f"cue_len={config.cue_len} exceeds a prompt's length; every prompt "
                         "must end with the answer cue.")
    return last + 1 - config.cue_len


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


# --------------------------------------------------------------------------- attach
@contextlib.contextmanager
def attach(model: Any, header: SemanticHeader) -> Iterator[Any]:
    """Hook ``header`` into ``model``'s ``inputs`` site (so also into every ``generate`` step).

    Goes through :func:`hyperlens.models.intervene`; the hook is removed on exit, also when
    the block raises. Give the codes with ``header.use_codes(codes)``.
    """
    from ..models.hooks import intervene

    module = getattr(model, "module", model)
    if not isinstance(module, nn.Module):
        raise InputError(f"model must be an nn.Module or ModelHandle, got {type(model).__name__}.")
    fns = header.interventions(module)
    with intervene(module, fns):
        yield model


# --------------------------------------------------------------------------- save / load
def save_header(header: SemanticHeader, path: str | os.PathLike[str],
                model: Any = None) -> Path:
    """Write weights and config (and the model's identity when given) to one safetensors file."""
    from safetensors.torch import save_file

    meta = {"format": FORMAT_NAME, "version": "1", "adapter": "header",
            "config": json.dumps(header.config.as_dict())}
    if model is not None:
        ident = getattr(model, "identity", None)
        meta["model"] = str(ident() if callable(ident) else getattr(model, "name", type(model)))
    tensors = {k: v.detach().cpu().contiguous() for k, v in header.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load_header(path: str | os.PathLike[str]) -> SemanticHeader:
    """Rebuild a header written by :func:`save_header`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise DataError(f"header file {str(path)!r} does not exist.")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT_NAME:
        raise DataError(f"{str(path)!r} is not a header file (format {meta.get('format')!r}).")
    raw = json.loads(meta["config"])
    names = {f.name for f in fields(HeaderConfig)}
    header = SemanticHeader(HeaderConfig(**{k: v for k, v in raw.items() if k in names}))
    header.load_state_dict(load_file(str(path)))
    header.saved_model = meta.get("model")  # the identity of the model it was trained on
    return header
