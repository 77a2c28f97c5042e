"""The pieces of ``hyperlens modulate``: set-up, the two tasks, training and evaluation.

- :func:`prepare`: match WordNet nouns to the model's tokenizer, split by hypernym
  subtree, fit the WordNet geometry on training anchors only, build the controls, the
  Procrustes initial projection and the residual norms.
- Tasks (the frozen model never changes): a causal LM (SmolLM2) predicts the lemma as the
  next token after ``"Definition: <gloss>\\nWord:"`` (cross-entropy at the last prompt
  position, which is the position whose logits predict the lemma); an encoder (MiniLM)
  does a contrastive reverse dictionary: the pooled definition embedding against the
  frozen, unmodulated embedding of the lemma (in-batch InfoNCE, temperature 0.05), scored
  by recall@1/10 among all held-out lemmas.
- :func:`relational_table`: Pearson / Spearman of pairwise cosines of held-out definition
  embeddings against Wu-Palmer and path similarity, with percentile-bootstrap intervals
  over held-out synsets, every condition scored on the same resamples so lifts are paired.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data.synsets import MatchedSynset, match_synsets, subtree_split
from ..data.wordnet import similarity_matrix
from ..inject import attach, make_adapter
from ..inject.geometry import (
    CONTROLS,
    TokenGeometry,
    make_control,
    procrustes_projection,
    wordnet_geometry,
)
from ..models.arch import resolve_backbone
from ..models.handle import ModelHandle
from ..train import TrainConfig, fit

PROMPT = "Definition: {d}\nWord:"


@dataclass
class Setup:
    """Everything a model's runs share (built once per model)."""

    name: str
    handle: ModelHandle
    causal: bool
    layers: list[int]
    train: list[MatchedSynset]
    test: list[MatchedSynset]
    geometries: dict[str, TokenGeometry]
    proj0: torch.Tensor  # [d_model, k] Procrustes initial projection
    resid_norm: torch.Tensor  # [n_layers_chosen]
    split_summary: dict[str, Any]
    targets: torch.Tensor | None = None  # encoder: frozen lemma embeddings [n_items, d]
    target_index: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- forward helpers
def _mod(h: ModelHandle) -> Any:
    """The handle's module (the experiment refuses static models before it gets here)."""
    return h.module


def _tok(h: ModelHandle, texts: Sequence[str], max_length: int = 64) -> dict[str, torch.Tensor]:
    tok = h.tokenizer
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return dict(
        tok(list(texts), return_tensors="pt", padding=True, truncation=True, max_length=max_length)
    )


def _pooled(h: ModelHandle, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean of the final hidden states over real tokens ``[B, d]`` (gradients kept)."""
    stack = resolve_backbone(_mod(h)).stack
    hid = stack(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    m = batch["attention_mask"].unsqueeze(-1).to(hid.dtype)
    return (hid * m).sum(1) / m.sum(1).clamp_min(1.0)


def _last_logits(h: ModelHandle, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits at each row's last real token ``[B, vocab]``: the prediction of the next token."""
    stack = resolve_backbone(_mod(h)).stack
    hid = stack(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    last = batch["attention_mask"].sum(1) - 1
    x = hid[torch.arange(hid.shape[0]), last]
    return _mod(h).get_output_embeddings()(x)


def _batches(n: int, size: int) -> list[range]:
    return [range(s, min(n, s + size)) for s in range(0, n, size)]


@torch.no_grad()
def encode(
    h: ModelHandle, texts: Sequence[str], adapter: Any = None, batch_size: int = 32
) -> torch.Tensor:
    """Mean-pooled final hidden states ``[N, d]`` float32, with the adapter attached if given."""
    order = np.argsort([len(t) for t in texts])
    out = torch.empty(len(texts), h.hidden_size)
    ctx = attach(_mod(h), adapter) if adapter is not None else _null()
    with ctx:
        for r in _batches(len(texts), batch_size):
            idx = order[r.start : r.stop]
            out[torch.as_tensor(idx)] = _pooled(h, _tok(h, [texts[i] for i in idx])).float()
    return out


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *a: Any) -> None:
        return None


# --------------------------------------------------------------------------- set-up
def default_layers(n_layers: int, causal: bool) -> list[int]:
    """Every block of a small encoder; every third block of a deeper decoder."""
    return list(range(n_layers)) if n_layers <= 12 else list(range(0, n_layers, 3))


def prepare(
    name: str,
    handle: ModelHandle,
    wn: Any,
    *,
    n_anchors: int,
    n_test: int,
    layers: list[int] | None,
    split_seed: int = 0,
    dim: int = 64,
) -> Setup:
    causal = handle.kind == "decoder"
    matched = match_synsets(handle.tokenizer, wn)
    split = subtree_split(matched, test_fraction=0.25, depth=4, seed=split_seed)
    rng = np.random.default_rng(split_seed)
    train = [
        split.train[i]
        for i in sorted(
            rng.choice(len(split.train), min(n_anchors, len(split.train)), replace=False)
        )
    ]
    test = [
        split.test[i]
        for i in sorted(rng.choice(len(split.test), min(n_test, len(split.test)), replace=False))
    ]
    E = handle.token_embeddings()
    geo = wordnet_geometry(E, train, matched, dim=dim)
    geometries = {"wordnet": geo} | {
        c: make_control(c, geo, E, seed=split_seed + 1) for c in CONTROLS
    }
    chosen = layers if layers is not None else default_layers(handle.num_layers, causal)
    # residual norms and the Procrustes projection, from the anchors' definitions only
    texts = [_text(m, causal) for m in train]
    probe: Any = make_adapter(
        "lerp",
        d_model=handle.hidden_size,
        vocab_size=E.shape[0],
        n_layers=handle.num_layers,
        layers=chosen,
        dim=dim,
        alpha=0.0,
    )
    batches = [_tok(handle, texts[r.start : r.stop]) for r in _batches(min(len(texts), 128), 32)]
    norms = probe.calibrate(_mod(handle), batches)
    from ..models import embed

    mid = chosen[len(chosen) // 2]
    reps = torch.from_numpy(embed(texts, handle, pooling="mean", layer=mid, progress=False))
    ids = torch.tensor([m.token_id for m in train])
    proj0 = procrustes_projection(geo, ids, reps)
    s = Setup(name, handle, causal, chosen, train, test, geometries, proj0, norms, split.summary())
    if not causal:
        items = train + test
        s.targets = encode(handle, [m.word for m in items])
        s.target_index = {m.name: i for i, m in enumerate(items)}
    return s


def _text(m: MatchedSynset, causal: bool) -> str:
    return PROMPT.format(d=m.definition) if causal else m.definition


# --------------------------------------------------------------------------- adapters
def build_adapter(s: Setup, kind: str, geometry: str, alpha: float, seed: int) -> Any:
    torch.manual_seed(seed)
    h = s.handle
    V = h.token_embeddings().shape[0]
    common = dict(
        d_model=h.hidden_size,
        vocab_size=V,
        n_layers=h.num_layers,
        layers=s.layers,
        dim=s.proj0.shape[1],
    )
    ad: Any = make_adapter(kind, alpha=alpha, **common)
    g = s.geometries[geometry]
    ad.set_geometry(g.vectors, g.mask)
    if kind == "lerp":
        with torch.no_grad():
            ad.proj.copy_(s.proj0)
            ad.resid_norm.copy_(s.resid_norm)
    return ad


# --------------------------------------------------------------------------- training
def task_loss(
    s: Setup, ad: Any, items: list[MatchedSynset], tau: float = 0.05
) -> tuple[torch.Tensor, dict[str, float]]:
    h = s.handle
    with attach(_mod(h), ad):
        if s.causal:
            logits = _last_logits(h, _tok(h, [_text(m, True) for m in items]))
            loss = torch.nn.functional.cross_entropy(
                logits.float(), torch.tensor([m.token_id for m in items])
            )
        else:
            q = torch.nn.functional.normalize(
                _pooled(h, _tok(h, [m.definition for m in items])).float(), dim=-1
            )
            assert s.targets is not None
            t = torch.nn.functional.normalize(
                s.targets[[s.target_index[m.name] for m in items]], dim=-1
            )
            loss = torch.nn.functional.cross_entropy(q @ t.T / tau, torch.arange(len(items)))
    a = ad.alphas().detach().reshape(len(s.layers), -1).mean(1)
    return loss, {f"alpha.{b}": float(v) for b, v in zip(s.layers, a, strict=True)}


def train_adapter(
    s: Setup, ad: Any, *, steps: int, batch_size: int, seed: int, lr: float, alpha_lr: float
) -> Any:
    """One run of the shared loop; alpha (``theta``) gets its own large rate and no decay."""
    cfg = TrainConfig(
        optimizer="adamw",
        lr=lr,
        weight_decay=0.01,
        param_lr={"theta": alpha_lr},
        no_decay=("theta",),
        schedule="constant",
        max_steps=steps,
        batch_size=batch_size,
        grad_clip=1.0,
        seed=seed,
        progress=False,
    )
    _mod(s.handle).requires_grad_(False)
    return fit(
        ad,
        lambda mod, batch: task_loss(s, mod, batch),
        s.train,
        cfg,
        frozen=_mod(s.handle),
        collate=lambda items: items,
    )


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(s: Setup, ad: Any, items: list[MatchedSynset], batch_size: int = 32) -> dict[str, Any]:
    """Held-out scores of one condition from ONE forward pass per batch (``ad=None``: plain).

    Returns ``reps`` (mean-pooled final hidden states of each item's text, ``[N, d]``
    float32: the definition embeddings the relational measures score) and per-item
    ``top1`` / ``top10`` correctness of the task (causal: the lemma's rank among the
    next-token logits at the prompt's last position; encoder: the definition embedding's
    rank of its lemma among all of ``items``' frozen lemma embeddings).
    """
    h = s.handle
    n = len(items)
    if not s.causal:
        reps = encode(h, [m.definition for m in items], ad, batch_size)
        q = torch.nn.functional.normalize(reps, dim=-1)
        assert s.targets is not None
        t = torch.nn.functional.normalize(
            s.targets[[s.target_index[m.name] for m in items]], dim=-1
        )
        sims = q @ t.T
        rank = (sims > sims.diagonal()[:, None]).sum(1)
        return {
            "reps": reps,
            "top1": (rank < 1).float().numpy(),
            "top10": (rank < 10).float().numpy(),
        }
    texts = [_text(m, True) for m in items]
    order = np.argsort([len(t) for t in texts])  # similar lengths per batch: less padding
    reps = torch.empty(n, h.hidden_size)
    rank = torch.empty(n, dtype=torch.long)
    stack = resolve_backbone(_mod(h)).stack
    head = _mod(h).get_output_embeddings()
    ctx = attach(_mod(h), ad) if ad is not None else _null()
    with ctx:
        for r in _batches(n, batch_size):
            idx = torch.as_tensor(order[r.start : r.stop])
            b = _tok(h, [texts[i] for i in idx])
            hid = stack(input_ids=b["input_ids"], attention_mask=b["attention_mask"])[0]
            m = b["attention_mask"].unsqueeze(-1).to(hid.dtype)
            reps[idx] = ((hid * m).sum(1) / m.sum(1).clamp_min(1.0)).float()
            last = b["attention_mask"].sum(1) - 1
            lg = head(hid[torch.arange(hid.shape[0]), last]).float()
            tgt = torch.tensor([items[i].token_id for i in idx])
            rank[idx] = (lg > lg[torch.arange(len(idx)), tgt][:, None]).sum(1)
    return {"reps": reps, "top1": (rank < 1).float().numpy(), "top10": (rank < 10).float().numpy()}


def relational_table(
    reps: dict[str, torch.Tensor],
    synsets: Sequence[Any],
    *,
    base: str,
    n_boot: int,
    seed: int,
    similarities: dict[str, np.ndarray] | None = None,
    n_perm: int = 199,
) -> tuple[
    dict[str, dict[str, dict[str, float]]], dict[str, dict[str, np.ndarray]], dict[str, Any]
]:
    """Score every condition with the relational probe on one shared set of resamples.

    :func:`hyperlens.probes.relational.align_representations` scores all of ``reps``
    (``{condition: [n, d]}``, rows aligned with ``synsets``) against path and Wu-Palmer
    similarity: Pearson / Spearman with a bootstrap over synsets (every condition on the
    same resamples), Mantel p-values, band means and hypernym-chain decay.

    Returns ``(table, raw, probe)``: ``table[measure][condition]`` holds ``pearson``,
    ``spearman``, their 95 % ``*_lo`` / ``*_hi``, and ``lift_*`` (condition minus ``base``,
    paired over the shared resamples) with intervals; ``raw[measure][condition]`` is
    ``[1 + n_boot, 2]`` (row 0 the full-sample Pearson / Spearman, then the replicates) for
    :func:`paired_diff` between any two conditions; ``probe`` the probe's own result.
    """
    from ..probes.relational import align_representations

    res = align_representations(
        {k: v.double().numpy() for k, v in reps.items()},
        [getattr(m, "synset", m) for m in synsets],
        measures=("path", "wup"),
        n_perm=n_perm,
        n_boot=n_boot,
        seed=seed,
        baseline=base,
        similarities=similarities,
        pentachoron=[],
        keep_replicates=True,
    )
    table: dict[str, dict[str, dict[str, float]]] = {}
    raw: dict[str, dict[str, np.ndarray]] = {}
    for meas in ("path", "wup"):
        table[meas], raw[meas] = {}, {}
        for k in reps:
            r = res["reps"][k][meas]
            rep_b = res["replicates"][k]
            raw[meas][k] = np.column_stack(
                [
                    np.r_[r["pearson"]["value"], rep_b[f"{meas}.pearson"]],
                    np.r_[r["spearman"]["value"], rep_b[f"{meas}.spearman"]],
                ]
            )
        for k in reps:
            row: dict[str, float] = {}
            for j, stat in enumerate(("pearson", "spearman")):
                e = res["reps"][k][meas][stat]
                row[stat], row[f"{stat}_lo"], row[f"{stat}_hi"] = e["value"], e["lo"], e["hi"]
                row[f"lift_{stat}"], row[f"lift_{stat}_lo"], row[f"lift_{stat}_hi"] = paired_diff(
                    raw[meas][k][:, j], raw[meas][base][:, j]
                )
            row["mantel_p_pearson"] = res["reps"][k][meas]["mantel_p_pearson"]
            table[meas][k] = row
    return table, raw, res


def paired_diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Point value and 95 % percentile interval of ``a - b`` from shared bootstrap draws
    (row 0 the full sample, rows 1.. the resamples), e.g. one column of
    ``relational_table``'s raw output."""
    from ..functional.stats import from_replicates

    d = np.asarray(a) - np.asarray(b)
    e = from_replicates(float(d[0]), d[1:], method="paired bootstrap over synsets")
    return e.value, e.lo, e.hi


def similarity_targets(test: list[MatchedSynset]) -> dict[str, np.ndarray]:
    """Path and Wu-Palmer similarity of the held-out synsets ``[n, n]`` (computed once and
    passed to every :func:`relational_table` call)."""
    syn = [m.synset for m in test]
    return {"wup": similarity_matrix(syn, "wup"), "path": similarity_matrix(syn, "path")}


@torch.no_grad()
def nll_per_text(
    h: ModelHandle, texts: Sequence[str], ad: Any = None, batch_size: int = 16
) -> np.ndarray:
    """Mean next-token negative log-likelihood of each text (causal LM), ``[N]``."""
    out = np.zeros(len(texts))
    ctx = attach(_mod(h), ad) if ad is not None else _null()
    with ctx:
        for r in _batches(len(texts), batch_size):
            b = _tok(h, texts[r.start : r.stop], max_length=64)
            logits = _mod(h)(**b).logits.float()
            lp = torch.log_softmax(logits[:, :-1], -1)
            tgt = b["input_ids"][:, 1:]
            m = b["attention_mask"][:, 1:].float()
            nll = -(lp.gather(-1, tgt[..., None]).squeeze(-1) * m).sum(1) / m.sum(1).clamp_min(1)
            out[r.start : r.stop] = nll.numpy()
    return out


@torch.no_grad()
def generate_pair(
    h: ModelHandle, prompt: str, ad: Any, max_new_tokens: int = 24
) -> tuple[str, str]:
    tok = h.tokenizer
    b = tok([prompt], return_tensors="pt")
    kw = dict(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        pad_token_id=tok.pad_token_id or tok.eos_token_id,
    )
    plain = _mod(h).generate(**b, **kw)
    with attach(_mod(h), ad):
        mod = _mod(h).generate(**b, **kw)
    n = b["input_ids"].shape[1]
    return tok.decode(plain[0, n:], skip_special_tokens=True), tok.decode(
        mod[0, n:], skip_special_tokens=True
    )


def logit(a: float) -> float:
    return math.log(a / (1 - a))
