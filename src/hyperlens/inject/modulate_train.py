"""Training and scoring residual modulators on a frozen model's WordNet task.

- :func:`prepare`: match WordNet nouns to the model's tokenizer, split by hypernym
  subtree, fit the WordNet geometry on training anchors only, build the controls, the
  Procrustes initial projection and the residual norms.
- Tasks (the frozen model never changes): a causal LM (SmolLM2) predicts the lemma as the
  next token after ``"Definition: <gloss>\\nWord:"`` (cross-entropy at the last prompt
  position, which is the position whose logits predict the lemma); an encoder (MiniLM)
  does a contrastive reverse dictionary: the pooled definition embedding against the
  frozen, unmodulated embedding of the lemma (in-batch InfoNCE, temperature 0.05), scored
  by recall@1/10 among all held-out lemmas.
- :func:`plan_runs` and :func:`train_run`: the runs of an experiment (modulator, geometry,
  starting alpha, replicate seed) and one run of the shared training loop, the adapter
  initialised inside the loop's generator forked from the replicate seed.
- :func:`relational_table`: Pearson / Spearman of pairwise cosines of held-out definition
  embeddings against Wu-Palmer and path similarity, with percentile-bootstrap intervals
  over held-out synsets, every condition scored on the same resamples so lifts are paired.

Every forward pass runs where the model lives (``handle.device``); scores come back as
CPU tensors and NumPy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data.synsets import MatchedSynset, match_synsets, subtree_split
from ..data.wordnet import similarity_matrix
from ..errors import ConfigError
from ..models.arch import resolve_backbone
from ..models.handle import ModelHandle
from ..train import TrainConfig, fit_module
from .base import attach, make_adapter
from .geometry import TokenGeometry, make_control, procrustes_projection, wordnet_geometry

__all__ = [
    "PROMPT",
    "Setup",
    "RunSpec",
    "default_layers",
    "prepare",
    "encode",
    "build_adapter",
    "plan_runs",
    "plan_alpha_lr",
    "plan_lowrank_lr",
    "block_alphas",
    "GEOMETRY_CONTROLS",
    "ADAPTER_CONTROLS",
    "train_run",
    "task_loss",
    "evaluate",
    "alpha_drift",
    "validation_loss",
    "evaluate_at_alphas",
    "relational_table",
    "paired_diff",
    "similarity_targets",
    "nll_per_text",
    "generate_pair",
]

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
    targets: torch.Tensor | None = None  # encoder: frozen lemma embeddings [n_items, d], CPU
    target_index: dict[str, int] = field(default_factory=dict)
    lerp_target: str = "subspace"  # LerpConfig.target_norm ("residual": the seed's)
    field_gates: str = "zero"  # "zero": field's gates start at 1 ("random": the seed's)
    val: list[MatchedSynset] = field(default_factory=list)  # training-side, not anchors
    coverage: dict[str, Any] = field(default_factory=dict)  # token_coverage of the test texts
    # lerp's subspace: the residual coordinates it may use ([d_model] bool; None: all)
    lerp_dims: torch.Tensor | None = None


# --------------------------------------------------------------------------- forward helpers
def _mod(h: ModelHandle) -> Any:
    """The handle's module (the experiment refuses static models before it gets here)."""
    return h.module


def _tok(h: ModelHandle, texts: Sequence[str], max_length: int = 64) -> dict[str, torch.Tensor]:
    """Right-padded token batch on the model's device."""
    tok = h.tokenizer
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    batch = tok(list(texts), return_tensors="pt", padding=True, truncation=True,
                max_length=max_length)
    return {k: v.to(h.device) for k, v in batch.items()}


def _pooled(h: ModelHandle, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean of the final hidden states over real tokens ``[B, d]`` (gradients kept)."""
    stack = resolve_backbone(_mod(h)).stack
    hid = stack(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    m = batch["attention_mask"].unsqueeze(-1).to(hid.dtype)
    return (hid * m).sum(1) / m.sum(1).clamp_min(1.0)


def _at_last(hid: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each row's hidden state at its last real token ``[B, d]``."""
    last = mask.sum(1) - 1
    return hid[torch.arange(hid.shape[0], device=hid.device), last]


def _last_logits(h: ModelHandle, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits at each row's last real token ``[B, vocab]``: the prediction of the next token."""
    stack = resolve_backbone(_mod(h)).stack
    hid = stack(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])[0]
    return _mod(h).get_output_embeddings()(_at_last(hid, batch["attention_mask"]))


def _batches(n: int, size: int) -> list[range]:
    return [range(s, min(n, s + size)) for s in range(0, n, size)]


def _attached(h: ModelHandle, adapter: Any) -> Any:
    """``attach(model, adapter)``, or nothing for the plain model (``adapter=None``)."""
    return attach(_mod(h), adapter) if adapter is not None else nullcontext()


@torch.no_grad()
def encode(
    h: ModelHandle, texts: Sequence[str], adapter: Any = None, batch_size: int = 32
) -> torch.Tensor:
    """Mean-pooled final hidden states ``[N, d]`` float32 on the CPU, with the adapter
    attached if given."""
    order = np.argsort([len(t) for t in texts])
    out = torch.empty(len(texts), h.hidden_size)
    with _attached(h, adapter):
        for r in _batches(len(texts), batch_size):
            idx = order[r.start : r.stop]
            pooled = _pooled(h, _tok(h, [texts[i] for i in idx]))
            out[torch.as_tensor(idx)] = pooled.float().cpu()
    return out


def _text(m: MatchedSynset, causal: bool) -> str:
    return PROMPT.format(d=m.definition) if causal else m.definition


# --------------------------------------------------------------------------- set-up
def token_coverage(handle: ModelHandle, texts: Sequence[str], geo: TokenGeometry
                   ) -> dict[str, Any]:
    """How the tokens of ``texts`` (the held-out prompts the model reads) get their
    geometry: the share that are anchors (a row of the WordNet eigendecomposition), the
    share placed by a kNN mix of anchor rows, and the share with no vector (untouched)."""
    tok = handle.tokenizer
    ids = [i for t in texts for i in tok(t, add_special_tokens=False)["input_ids"]]
    if not ids:
        return {"tokens": 0, "anchor": 0.0, "knn_mix": 0.0, "none": 0.0}
    t = torch.tensor(ids)
    anchor = torch.isin(t, geo.anchor_ids.to(t.dtype))
    has = geo.mask[t].bool()
    n = float(len(ids))
    return {"tokens": len(ids), "anchor": float(anchor.sum()) / n,
            "knn_mix": float((has & ~anchor).sum()) / n, "none": float((~has).sum()) / n}


def default_layers(n_layers: int, causal: bool) -> list[int]:
    """Every block of a small encoder; every third block of a deeper decoder."""
    return list(range(n_layers)) if n_layers <= 12 else list(range(0, n_layers, 3))


def _draw(items: Sequence[MatchedSynset], n: int, rng: np.random.Generator) -> list[MatchedSynset]:
    """``min(n, len(items))`` items drawn without replacement, in their original order."""
    return [items[i] for i in sorted(rng.choice(len(items), min(n, len(items)), replace=False))]


def prepare(
    name: str,
    handle: ModelHandle,
    wn: Any,
    *,
    n_anchors: int,
    n_test: int,
    layers: Sequence[int] | None,
    split_seed: int = 0,
    split_paths: str = "all",
    control_seeds: Mapping[str, int] | None = None,
    lerp_target: str = "subspace",
    field_gates: str = "zero",
    n_val: int = 0,
    dim: int = 64,
    lerp_subspace: str = "no-massive",
) -> Setup:
    """The shared set-up of one model's runs.

    ``split_seed`` draws the subtree split and the anchors and held-out synsets within it;
    ``split_paths`` says which hypernym paths define a subtree
    (:func:`~hyperlens.data.synsets.subtree_split`: ``"all"``, leak-free, or the seed's
    ``"first"``); ``lerp_target`` and ``field_gates`` choose the modulators' designs
    (:func:`build_adapter`); ``lerp_subspace`` where lerp's projection may live:
    ``"no-massive"`` leaves out the residual coordinates with massive activations
    (:meth:`~hyperlens.inject.modulator.LerpModulator.massive_dims`, a decoder's first token
    not counted) and fits the Procrustes map on definitions pooled past a decoder's first
    token, ``"all"`` fits it on every coordinate of plainly mean-pooled definitions (where a
    decoder's sink and massive coordinates can take most of the subspace); ``n_val``
    training-side synsets that are not anchors form the
    validation slice that early stopping watches (:func:`train_run`);
    ``control_seeds`` (``{control: seed}``) draws each control geometry (the ``pca``
    control draws nothing). Fewer than ``n_anchors`` / ``n_test`` synsets are taken when the
    split offers fewer (``len(setup.train)``, ``len(setup.test)`` say how many).
    """
    causal = handle.kind == "decoder"
    matched = match_synsets(handle.tokenizer, wn)
    split = subtree_split(matched, test_fraction=0.25, depth=4, seed=split_seed,
                          paths=split_paths)
    rng = np.random.default_rng(split_seed)
    train = _draw(split.train, n_anchors, rng)
    test = _draw(split.test, n_test, rng)
    # the validation slice for early stopping: training-side synsets that are not anchors
    # (they never touch the held-out subtrees, and the geometry is not fitted on them)
    anchors = {m.name for m in train}
    val = _draw([m for m in split.train if m.name not in anchors], n_val, rng) if n_val else []
    E = handle.token_embeddings()
    geo = wordnet_geometry(E, train, matched, dim=dim)
    seeds = dict(control_seeds or {})
    geometries = {"wordnet": geo} | {
        c: make_control(c, geo, E, seed=s) for c, s in seeds.items()
    }
    chosen = list(layers) if layers is not None else default_layers(handle.num_layers, causal)
    # residual norms and the Procrustes projection, from the anchors' definitions only
    texts = [_text(m, causal) for m in train]
    probe: Any = make_adapter(
        "lerp", d_model=handle.hidden_size, vocab_size=E.shape[0], n_layers=handle.num_layers,
        layers=chosen, dim=dim, alpha=0.0,
    )
    batches = [_tok(handle, texts[r.start : r.stop]) for r in _batches(min(len(texts), 128), 32)]
    norms = probe.calibrate(_mod(handle), batches)
    if lerp_subspace not in ("no-massive", "all"):
        raise ConfigError(f"lerp_subspace must be 'no-massive' or 'all', got {lerp_subspace!r}.")
    keep = None
    if lerp_subspace == "no-massive":
        keep = ~probe.massive_dims(_mod(handle), batches, skip_first=causal)
    from ..models import embed

    mid = chosen[len(chosen) // 2]
    pooling = "mean_after_first" if causal and keep is not None else "mean"
    reps = torch.from_numpy(embed(texts, handle, pooling=pooling, layer=mid, progress=False))
    ids = torch.tensor([m.token_id for m in train])
    if keep is None:
        proj0 = procrustes_projection(geo, ids, reps)
    else:
        proj0 = procrustes_projection(geo, ids, reps * keep.to(reps.dtype))
        proj0[~keep] = 0
        u, _, vh = torch.linalg.svd(proj0.double(), full_matrices=False)
        proj0 = (u @ vh).float()  # the orthonormal map nearest the fitted one
    s = Setup(name, handle, causal, chosen, train, test, geometries, proj0, norms, split.summary(),
              lerp_target=lerp_target, field_gates=field_gates, val=val,
              coverage=token_coverage(handle, [_text(m, causal) for m in test], geo),
              lerp_dims=keep)
    if not causal:
        items = train + test + val  # the lemmas the contrastive task reads
        s.targets = encode(handle, [m.word for m in items])
        s.target_index = {m.name: i for i, m in enumerate(items)}
    return s


# --------------------------------------------------------------------------- runs
#: geometry controls (a modulator with another geometry) and adapter controls (no
#: geometry: :mod:`hyperlens.inject.modulate_controls`), in their report order
GEOMETRY_CONTROLS = ("random", "shuffled", "pca")
ADAPTER_CONTROLS = ("lowrank", "meandiff")
#: kinds without alpha: the adapter controls (their runs have geometry ``"none"``)
NO_ALPHA = ADAPTER_CONTROLS


@dataclass(frozen=True)
class RunSpec:
    """One run: modulator (or adapter control), geometry, starting alpha, alpha's learning
    rate and replicate seed (the adapter controls have geometry ``"none"`` and no alpha;
    ``meandiff`` is not trained and has no seed)."""

    kind: str
    geometry: str
    alpha0: float
    seed: int
    alpha_lr: float = 0.3
    subspace: str = "all"  # lerp's: the set-up's lerp_subspace (named in the key unless "all")
    lr: float | None = None  # the run's own learning rate (lowrank's, chosen); None: --lr

    @property
    def key(self) -> str:
        if self.kind == "meandiff":
            return "meandiff/none"
        if self.kind in NO_ALPHA:
            rate = "" if self.lr is None else f"lr={self.lr:g}/"
            return f"{self.kind}/none/{rate}seed={self.seed}"
        sub = f"sub={self.subspace}/" if self.kind == "lerp" and self.subspace != "all" else ""
        return (f"{self.kind}/{self.geometry}/a0={self.alpha0:g}/alr={self.alpha_lr:g}/"
                f"{sub}seed={self.seed}")

    @property
    def control(self) -> str:
        """The name the report gives this run's condition: its geometry, or the adapter
        control's name."""
        return self.kind if self.kind in NO_ALPHA else self.geometry


def plan_runs(
    kinds: Sequence[str],
    *,
    seeds: Sequence[int],
    controls: Sequence[str],
    control_seeds: Sequence[int],
    alpha0: Mapping[str, float],
    alpha_starts: Mapping[str, Sequence[float]],
    alpha_lr: Mapping[str, float] | None = None,
    lowrank_lr: float | None = None,
) -> list[RunSpec]:
    """Per modulator: the WordNet geometry once per replicate seed, each geometry control
    once per control seed (both from ``alpha0[kind]`` with ``alpha_lr[kind]``), and the
    further starting alphas of ``alpha_starts[kind]`` with the WordNet geometry and the
    first replicate seed; then the adapter controls: ``lowrank`` once per control seed (at
    ``lowrank_lr``; ``None``: the command's rate) and ``meandiff`` once."""
    lrs = dict(alpha_lr or {})
    plan: list[RunSpec] = []
    for kind in kinds:
        a0, alr = alpha0[kind], lrs.get(kind, 0.3)
        plan += [RunSpec(kind, "wordnet", a0, sd, alr) for sd in seeds]
        plan += [RunSpec(kind, c, a0, sd, alr) for c in controls if c in GEOMETRY_CONTROLS
                 for sd in control_seeds]
        plan += [RunSpec(kind, "wordnet", a, seeds[0], alr)
                 for a in alpha_starts.get(kind, ()) if a != a0]
    if "lowrank" in controls:
        plan += [RunSpec("lowrank", "none", 0.0, sd, lr=lowrank_lr) for sd in control_seeds]
    if "meandiff" in controls:
        plan += [RunSpec("meandiff", "none", 0.0, control_seeds[0] if control_seeds else 0)]
    return plan


def plan_alpha_lr(kinds: Sequence[str], *, seed: int, alpha0: Mapping[str, float],
                  grid: Sequence[float]) -> list[RunSpec]:
    """The runs that choose alpha's learning rate: each modulator with the WordNet geometry,
    the first replicate seed and its default starting alpha, once per rate of ``grid``."""
    return [RunSpec(kind, "wordnet", alpha0[kind], seed, float(a)) for kind in kinds
            for a in grid]


def plan_lowrank_lr(*, seed: int, grid: Sequence[float]) -> list[RunSpec]:
    """The runs that choose the ``lowrank`` control's learning rate: one per rate of
    ``grid`` at ``seed`` (the first control seed), so the control is tuned on the same
    validation slice as the modulators' alpha."""
    return [RunSpec("lowrank", "none", 0.0, seed, lr=float(x)) for x in grid]


def build_adapter(s: Setup, kind: str, geometry: str, alpha: float, seed: int = 0) -> Any:
    """A ``lerp`` / ``field`` adapter on the model's device with the named geometry (lerp:
    the Procrustes projection, the measured residual norms and ``s.lerp_target``; field:
    gates that start at 1 when ``s.field_gates`` is ``"zero"``), or the ``lowrank`` control
    (rank = the geometry's dimension, at the same sites, its random factor drawn from
    ``seed``). Parameters a modulator draws at random come from torch's default generator:
    build it inside a seeded scope (:func:`train_run` builds it inside the training loop's
    forked generator)."""
    h = s.handle
    if kind == "lowrank":
        low: Any = make_adapter("lowrank", d_model=h.hidden_size, layers=tuple(s.layers),
                                site="resid_pre", rank=int(s.proj0.shape[1]), seed=seed)
        return low.to(h.device)
    design: dict[str, Any] = ({"target_norm": s.lerp_target} if kind == "lerp"
                              else {"zero_init": s.field_gates == "zero"})
    ad: Any = make_adapter(
        kind, alpha=alpha, d_model=h.hidden_size, vocab_size=h.token_embeddings().shape[0],
        n_layers=h.num_layers, layers=s.layers, dim=s.proj0.shape[1], **design,
    )
    g = s.geometries[geometry]
    ad.set_geometry(g.vectors, g.mask)
    if kind == "lerp":
        with torch.no_grad():
            ad.proj.copy_(s.proj0)
            ad.resid_norm.copy_(s.resid_norm)
        if s.lerp_dims is not None:
            ad.restrict(s.lerp_dims)
    return ad.to(h.device)


def block_alphas(s: Setup, ad: Any) -> list[float]:
    """alpha per modulated block (mean over a field's experts); empty for an adapter
    without alpha (the controls)."""
    if not hasattr(ad, "alphas"):
        return []
    return [float(v) for v in ad.alphas().detach().reshape(len(s.layers), -1).mean(1)]


def task_loss(
    s: Setup, ad: Any, items: list[MatchedSynset], tau: float = 0.05
) -> tuple[torch.Tensor, dict[str, float]]:
    """The task's loss on ``items`` with ``ad`` attached, and alpha per modulated block."""
    h = s.handle
    with attach(_mod(h), ad):
        if s.causal:
            logits = _last_logits(h, _tok(h, [_text(m, True) for m in items]))
            target = torch.tensor([m.token_id for m in items], device=logits.device)
            loss = torch.nn.functional.cross_entropy(logits.float(), target)
        else:
            q = torch.nn.functional.normalize(
                _pooled(h, _tok(h, [m.definition for m in items])).float(), dim=-1
            )
            if s.targets is None:
                raise RuntimeError("an encoder set-up needs its lemma targets (see prepare).")
            rows = s.targets[[s.target_index[m.name] for m in items]].to(q.device)
            t = torch.nn.functional.normalize(rows, dim=-1)
            target = torch.arange(len(items), device=q.device)
            loss = torch.nn.functional.cross_entropy(q @ t.T / tau, target)
    a = block_alphas(s, ad)
    return loss, {f"alpha.{b}": v for b, v in zip(s.layers, a, strict=False)}


def train_run(
    s: Setup, spec: RunSpec, *, steps: int, batch_size: int, lr: float,
    eval_every: int | None = None, patience: int | None = None,
) -> tuple[Any, Any]:
    """Build and train one run's adapter; returns ``(adapter, history)``.

    The adapter is built and trained inside :func:`hyperlens.train.fit_module`'s generator
    forked from ``spec.seed`` (nothing outside is reseeded). alpha (``theta``) gets its own
    rate (``spec.alpha_lr``) and no weight decay; ``spec.lr``, when set, replaces ``lr``
    (the ``lowrank`` control's chosen rate). With a validation slice (``s.val``) and
    ``eval_every``, the task loss on that slice is measured every ``eval_every`` steps;
    training stops once it has not improved for ``patience`` measurements (a plateau) or
    after ``steps`` steps (the cap), and the adapter returns to its best measured state
    (its starting state, measured at step 0, included). Without them it trains exactly
    ``steps`` steps (the seed's fixed budget).
    """
    plateau = bool(s.val) and eval_every is not None
    epochs = max(1, math.ceil(steps * batch_size / max(1, len(s.train))) + 1)
    cfg = TrainConfig(
        optimizer="adamw", lr=lr if spec.lr is None else spec.lr, weight_decay=0.01,
        no_decay=("theta",),
        param_lr={} if spec.kind in NO_ALPHA else {"theta": spec.alpha_lr},
        schedule="constant", max_steps=steps, epochs=epochs, batch_size=batch_size,
        grad_clip=1.0, seed=spec.seed, progress=False,
        eval_every=eval_every if plateau else None,
        early_stop_patience=patience if plateau else None,
        early_stop_metric="val_loss" if plateau else "train_loss", restore_best=plateau,
        eval_at_start=plateau,  # the starting adapter is a candidate: kept step 0 = no gain
    )
    _mod(s.handle).requires_grad_(False)
    def val_loss(mod: Any) -> dict[str, float]:
        return {"val_loss": validation_loss(s, mod, 2 * batch_size)}

    return fit_module(
        lambda: build_adapter(s, spec.kind, spec.geometry, spec.alpha0, spec.seed),
        lambda mod, batch: task_loss(s, mod, batch),
        s.train,
        cfg,
        frozen=_mod(s.handle),
        collate=lambda items: items,
        eval_fn=val_loss if plateau else None,
    )


@torch.no_grad()
def validation_loss(s: Setup, ad: Any, batch_size: int) -> float:
    """The task loss on the validation slice ``s.val`` with ``ad`` attached, averaged over
    its synsets (batches of ``batch_size``)."""
    parts = [s.val[i : i + batch_size] for i in range(0, len(s.val), batch_size)]
    return sum(float(task_loss(s, ad, p)[0]) * len(p) for p in parts) / len(s.val)


def alpha_drift(history: Sequence[Mapping[str, float]], layers: Sequence[int]) -> float:
    """Largest change of any block's alpha over the last quarter of training: near 0 when
    alpha has settled, large when the run ended while alpha was still moving."""
    if len(history) < 2 or not layers or f"alpha.{layers[0]}" not in history[-1]:
        return float("nan")  # too short, or an adapter without alpha
    q = history[max(0, (3 * len(history)) // 4 - 1)]
    return max(abs(history[-1][f"alpha.{b}"] - q[f"alpha.{b}"]) for b in layers)


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(s: Setup, ad: Any, items: list[MatchedSynset], batch_size: int = 32) -> dict[str, Any]:
    """Held-out scores of one condition from ONE forward pass per batch (``ad=None``: plain).

    Returns ``reps`` (mean-pooled final hidden states of each item's text, ``[N, d]``
    float32 on the CPU: the definition embeddings the relational measures score), for a
    decoder also ``reps_last`` (the final hidden state at the prompt's last token, where
    the lemma would come next: how ``hyperlens relational`` reads a decoder), and
    per-item ``top1`` / ``top10`` correctness of the task (causal: the lemma's rank among
    the next-token logits at the prompt's last position; encoder: the definition
    embedding's rank of its lemma among all of ``items``' frozen lemma embeddings).
    """
    h = s.handle
    n = len(items)
    if not s.causal:
        reps = encode(h, [m.definition for m in items], ad, batch_size)
        q = torch.nn.functional.normalize(reps, dim=-1)
        if s.targets is None:
            raise RuntimeError("an encoder set-up needs its lemma targets (see prepare).")
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
    last = torch.empty(n, h.hidden_size)
    rank = torch.empty(n, dtype=torch.long)
    stack = resolve_backbone(_mod(h)).stack
    head = _mod(h).get_output_embeddings()
    with _attached(h, ad):
        for r in _batches(n, batch_size):
            idx = torch.as_tensor(order[r.start : r.stop])
            b = _tok(h, [texts[i] for i in idx])
            hid = stack(input_ids=b["input_ids"], attention_mask=b["attention_mask"])[0]
            m = b["attention_mask"].unsqueeze(-1).to(hid.dtype)
            reps[idx] = ((hid * m).sum(1) / m.sum(1).clamp_min(1.0)).float().cpu()
            at_last = _at_last(hid, b["attention_mask"])
            last[idx] = at_last.float().cpu()
            lg = head(at_last).float()
            tgt = torch.tensor([items[i].token_id for i in idx], device=lg.device)
            rows = torch.arange(len(idx), device=lg.device)
            rank[idx] = (lg > lg[rows, tgt][:, None]).sum(1).cpu()
    return {"reps": reps, "reps_last": last, "top1": (rank < 1).float().numpy(),
            "top10": (rank < 10).float().numpy()}


@contextmanager
def _alpha_restored(ad: Any) -> Iterator[None]:
    """Restore the adapter's trained ``theta`` on exit."""
    trained = ad.theta.detach().clone()
    try:
        yield
    finally:
        with torch.no_grad():
            ad.theta.copy_(trained)


def evaluate_at_alphas(
    s: Setup, ad: Any, alphas: Sequence[float]
) -> dict[str, dict[str, Any]]:
    """:func:`evaluate` with every block of ``ad`` at each fixed alpha (``{f"{a:g}": ...}``);
    the trained alphas are restored afterwards."""
    out: dict[str, dict[str, Any]] = {}
    with _alpha_restored(ad):
        for a in alphas:
            ad.set_alpha(a)
            out[f"{a:g}"] = evaluate(s, ad, s.test)
    return out


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
    same resamples, drawn from ``seed``), Mantel p-values, band means and hypernym-chain
    decay.

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
    with _attached(h, ad):
        for r in _batches(len(texts), batch_size):
            b = _tok(h, texts[r.start : r.stop], max_length=64)
            logits = _mod(h)(**b).logits.float()
            lp = torch.log_softmax(logits[:, :-1], -1)
            tgt = b["input_ids"][:, 1:]
            m = b["attention_mask"][:, 1:].float()
            nll = -(lp.gather(-1, tgt[..., None]).squeeze(-1) * m).sum(1) / m.sum(1).clamp_min(1)
            out[r.start : r.stop] = nll.cpu().numpy()
    return out


@torch.no_grad()
def generate_pair(
    h: ModelHandle, prompt: str, ad: Any, max_new_tokens: int = 24
) -> tuple[str, str]:
    """Greedy continuations of ``prompt`` by the plain model and with ``ad`` attached."""
    tok = h.tokenizer
    b = {k: v.to(h.device) for k, v in tok([prompt], return_tensors="pt").items()}
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
