"""Hidden-state geometry across layers and the structure of position encodings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ...errors import InputError
from ...functional import geometry as G
from ...models.arch import block_stack
from ...utils import derive_seed, make_generator
from ._common import (
    _bootstrap_mean_ci,
    _unit_rows,
)
from .config import (
    TerrainSubject,
)


# --------------------------------------------------------------------------- layers
def _pr_over_d(X: torch.Tensor) -> float:
    """Participation ratio of the covariance of ``X [n, d]`` over ``d`` (0 for one row)."""
    return G.participation_ratio(X) / X.shape[1] if X.shape[0] > 1 else 0.0


def _encode_texts(subject: TerrainSubject, texts: Sequence[str] | None, *, max_length: int,
                  seed: int, n_random: int = 32) -> tuple[list[list[int]], set[int], str]:
    tok = subject.tokenizer
    vocab_size = subject.embeddings.shape[0]
    if tok is not None and texts:
        seqs = [list(tok.encode(t, add_special_tokens=True))[:max_length] for t in texts]
        special = {int(i) for i in (getattr(tok, "all_special_ids", None) or [])}
        return [s for s in seqs if s], special, "texts"
    gen = make_generator(derive_seed(seed, "texts"))
    lengths = torch.randint(8, max(9, min(max_length, 24)), (n_random,), generator=gen)
    seqs = [torch.randint(0, vocab_size, (int(L),), generator=gen).tolist() for L in lengths]
    return seqs, set(), "random token ids (no tokenizer)"


def _hidden_states(
    module: nn.Module, ids: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """All hidden states ``(L+1) x [B, T, d]`` of the encoder (encoder-decoder) or the model.

    The block stack runs without the model's head: a causal LM's vocabulary product over
    every position is never read here (for Gemma 3 270M it is most of the forward's work).
    """
    target: Any = block_stack(module)
    out = target(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    hs = getattr(out, "hidden_states", None)
    if hs is None:
        hs = getattr(out, "encoder_hidden_states", None)
    if hs is None:
        raise InputError(
            f"module {type(module).__name__} returned no hidden states; it cannot be probed layer "
            "by layer."
        )
    return tuple(hs)


def layer_evolution(subject: TerrainSubject, texts: Sequence[str] | None = None, *,
                    max_length: int = 64, batch_size: int = 16, seed: int = 0,
                    n_bootstrap: int = 1000, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Per-layer geometry of the hidden states over ``texts`` (one forward pass per batch).

    For every hidden state (embedding output = layer 0, then each block): mean token norm
    with a bootstrap interval over sentences, mean pairwise cosine over all real tokens
    (exact, across sentences), mean within-sentence pairwise cosine with an interval, PR / d
    of the token states and PR / d of mean-pooled sentence vectors. Special tokens (CLS,
    SEP, BOS, ...) and padding are left out of every statistic; without a tokenizer, seeded
    random token sequences stand in for text.

    Token-level states are needed here, so the forward pass is run directly on
    ``subject.module`` rather than through pooled embedding helpers.
    """
    if subject.module is None or subject.kind == "static":
        return {
            "available": False,
            "note": f"{subject.name} is a static embedding model: it has no layers",
        }
    seqs, special, source = _encode_texts(subject, texts, max_length=max_length, seed=seed)
    if not seqs:
        raise InputError("texts produced no tokens; pass non-empty sentences.")
    module = subject.module
    # inputs go where the weights are; ``device`` only matters for modules without parameters
    params = list(module.parameters())
    dev = params[0].device if params else torch.device(device)
    per_layer_tokens: list[list[torch.Tensor]] = []
    sent_norm: list[list[float]] = []
    sent_cos: list[list[float]] = []
    pooled: list[list[torch.Tensor]] = []
    with torch.inference_mode():
        for start in range(0, len(seqs), batch_size):
            chunk = seqs[start:start + batch_size]
            T = max(len(s) for s in chunk)
            ids = torch.zeros(len(chunk), T, dtype=torch.long)
            mask = torch.zeros(len(chunk), T, dtype=torch.long)
            keep = torch.zeros(len(chunk), T, dtype=torch.bool)
            for b, s in enumerate(chunk):
                ids[b, : len(s)] = torch.as_tensor(s)
                mask[b, : len(s)] = 1
                keep[b, : len(s)] = torch.as_tensor([t not in special for t in s])
            hs = _hidden_states(module, ids.to(dev), mask.to(dev))
            if not per_layer_tokens:
                per_layer_tokens = [[] for _ in hs]
                sent_norm = [[] for _ in hs]
                sent_cos = [[] for _ in hs]
                pooled = [[] for _ in hs]
            for li, h in enumerate(hs):
                h = h.detach().double().cpu()  # [B, T, d]
                for b in range(h.shape[0]):
                    x = h[b][keep[b]]
                    if x.shape[0] == 0:
                        continue
                    per_layer_tokens[li].append(x)
                    sent_norm[li].append(float(x.norm(dim=1).mean()))
                    if x.shape[0] > 1:
                        sent_cos[li].append(G.cosine_moments(x)[0])
                    pooled[li].append(x.mean(0))
    gen = make_generator(derive_seed(seed, "layers"))
    rows = []
    for li in range(len(per_layer_tokens)):
        X = torch.cat(per_layer_tokens[li])
        P = torch.stack(pooled[li])
        norms = torch.tensor(sent_norm[li], dtype=torch.float64)
        coss = torch.tensor(sent_cos[li], dtype=torch.float64)
        rows.append(
            {
                "layer": li,
                "tokens": int(X.shape[0]),
                "norm_mean": float(X.norm(dim=1).mean()),
                "norm_std": float(X.norm(dim=1).std()),
                "norm_median": float(X.norm(dim=1).median()),
                # a few "massive activation" tokens (often the first position) can dominate the mean
                "norm_max_over_median": float(
                    X.norm(dim=1).max() / X.norm(dim=1).median().clamp_min(1e-300)
                ),
                "norm_ci": list(_bootstrap_mean_ci(norms, n_bootstrap, gen)),
                "cos_all": G.cosine_moments(X)[0],
                "cos_within": float(coss.mean()) if coss.numel() else float("nan"),
                "cos_within_ci": list(_bootstrap_mean_ci(coss, n_bootstrap, gen)),
                "pr_over_d": _pr_over_d(X),
                "pooled_pr_over_d": _pr_over_d(P),
            }
        )
    return {"available": True, "source": source, "n_sequences": len(seqs), "layers": rows}


# --------------------------------------------------------------------------- positions
_ABS_NAMES = ("position_embeddings", "wpe", "embed_positions")


def _rope_thetas(cfg: Any) -> dict[str, float]:
    """RoPE base per attention kind: ``{"default": theta}``, or one per layer type when the
    config gives several (Gemma 3: ``full_attention`` and ``sliding_attention``)."""
    params = getattr(cfg, "rope_parameters", None)
    if isinstance(params, dict):
        if "rope_theta" in params:
            return {"default": float(params["rope_theta"])}
        per = {
            k: float(v["rope_theta"])
            for k, v in params.items()
            if isinstance(v, dict) and v.get("rope_theta") is not None
        }
        if per:
            return per
    theta = getattr(cfg, "rope_theta", None)
    return {"default": float(theta)} if theta is not None else {}


def _rope_theta(cfg: Any) -> float | None:
    """The RoPE base of the global (full) attention layers, or the only one."""
    thetas = _rope_thetas(cfg)
    if not thetas:
        return None
    return thetas.get("default", thetas.get("full_attention", next(iter(thetas.values()))))


def position_structure(
    module: nn.Module | None, *, kind: str = "", max_positions: int = 128
) -> dict[str, Any]:
    """Position structure of a model: learned absolute, T5 relative buckets, rotary, or none.

    * learned absolute (BERT, GPT-2, OPT): cosine of position vectors against the offset
      ``|i - j|`` over the first ``max_positions`` positions, Spearman correlation, norms, PR;
    * T5 relative attention: the bias of every head against the signed offset (through the
      model's own bucket function) and the heads x buckets table;
    * rotary (Llama, Qwen, SmolLM): no position parameters exist; the analytic mean
      ``cos(offset * theta_k)`` over the rotary frequencies is given and labelled as such.
    """
    if module is None or kind == "static":
        return {"type": "none", "note": "static embedding model: no positions"}
    cfg = getattr(module, "config", None)
    # T5-style relative attention bias
    for name, mod in module.named_modules():
        bias = getattr(mod, "relative_attention_bias", None)
        if isinstance(bias, nn.Embedding) and getattr(mod, "has_relative_attention_bias", True):
            W = bias.weight.detach().double().cpu()  # [buckets, heads]
            buckets, heads = W.shape
            bidirectional = bool(getattr(mod, "is_decoder", False) is False)
            max_distance = int(getattr(mod, "relative_attention_max_distance", 128))
            span = min(max_positions, max_distance)
            offsets = torch.arange(-span, span + 1)
            fn = getattr(type(mod), "_relative_position_bucket", None)
            if fn is None:
                return {"type": "relative", "module": name, "note": "bucket function not found",
                        "bias": W.T.tolist()}
            b = fn(
                offsets, bidirectional=bidirectional, num_buckets=buckets, max_distance=max_distance
            )
            curve = W[b]  # [offsets, heads]
            near = curve[(offsets.abs() <= 1)].mean(0)
            far = curve[(offsets.abs() >= span // 2)].mean(0)
            return {
                "type": "relative", "module": name, "buckets": buckets, "heads": heads,
                "bidirectional": bidirectional, "max_distance": max_distance,
                "bias": W.T.tolist(), "offsets": offsets.tolist(),
                "bias_by_offset_mean": curve.mean(1).tolist(),
                "head_std": W.std(0).tolist(),
                "local_heads": int((near > far).sum()),
                "note": "T5 relative attention: a learned scalar bias per head and offset bucket",
            }
    # learned absolute positions
    for name, mod in module.named_modules():
        if isinstance(mod, nn.Embedding) and name.split(".")[-1] in _ABS_NAMES:
            offset = int(getattr(mod, "offset", 0) or 0)
            W = mod.weight.detach().double().cpu()[offset:]
            n = min(max_positions, W.shape[0])
            P = W[:n]
            U = _unit_rows(P)
            C = U @ U.T
            iu = torch.triu_indices(n, n, offset=1)
            off = (iu[1] - iu[0])
            vals = C[iu[0], iu[1]]
            sums = torch.zeros(n, dtype=torch.float64).index_add_(0, off, vals)
            cnt = torch.bincount(off, minlength=n).double().clamp_min(1.0)
            by_off = (sums / cnt)[1:]
            from scipy.stats import spearmanr

            rho = float(spearmanr(off.numpy(), vals.numpy()).statistic)
            show = min(n, 64)
            return {
                "type": "absolute", "module": name, "positions_total": int(W.shape[0]),
                "positions_used": n, "offset_rows_skipped": offset,
                "cosine_by_offset": by_off.tolist(), "spearman_offset_cosine": rho,
                "norms": P.norm(dim=1).tolist(), "pr_over_d": _pr_over_d(P),
                "cosine_matrix": C[:show, :show].tolist(),
                "note": "learned absolute position vectors",
            }
    theta = _rope_theta(cfg) if cfg is not None else None
    if theta is not None:
        hidden = int(getattr(cfg, "hidden_size", 0) or 0)
        heads = int(getattr(cfg, "num_attention_heads", 1) or 1)
        head_dim = int(getattr(cfg, "head_dim", 0) or (hidden // heads))
        partial = float(getattr(cfg, "partial_rotary_factor", 1.0) or 1.0)
        rot = int(head_dim * partial) // 2 * 2
        freqs = theta ** (-torch.arange(0, rot, 2, dtype=torch.float64) / rot)
        offsets = torch.arange(0, max_positions)
        curve = torch.cos(offsets[:, None].double() * freqs[None, :]).mean(1)
        by_type: dict[str, Any] = {}
        thetas = _rope_thetas(cfg)
        if len(thetas) > 1:  # e.g. Gemma 3: local (sliding-window) and global layers
            for layer_kind, th in thetas.items():
                f_k = th ** (-torch.arange(0, rot, 2, dtype=torch.float64) / rot)
                c_k = torch.cos(offsets[:, None].double() * f_k[None, :]).mean(1)
                by_type[layer_kind] = {"theta": th, "analytic_similarity": c_k.tolist()}
        return {
            "type": "rotary", "theta": theta, "head_dim": head_dim, "rotary_dims": rot,
            "by_layer_type": by_type, "sliding_window": getattr(cfg, "sliding_window", None),
            "offsets": offsets.tolist(), "analytic_similarity": curve.tolist(),
            "note": ("rotary position embedding (RoPE): no learned position vectors; the curve is "
                     "the analytic mean cos(offset * theta_k) over the rotary frequencies, a "
                     "property of the formula, not a measurement of the weights"),
        }
    return {"type": "none", "note": "no position parameters or rotary configuration found"}
