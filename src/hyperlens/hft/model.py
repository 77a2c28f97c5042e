"""Two-stage HyperField student, the equal-size MLP, and the tuned lens.

:class:`HyperFieldModel`
    Stage 1: a :class:`HyperTensorLayer` from the sketched context ``x1 [B, d1]`` to a
    ``d_embed`` (1k) context embedding, supervised through a linear ``aux`` head by the
    teacher's layer-``l`` state and the q/k/v of chosen heads (all z-scored).
    Stage 2: a second HyperTensor mixture from ``[LayerNorm(z1), tail]`` (the tail is the
    sketch of the last 16 token embeddings) to a vector ``y`` in the teacher's final-state
    space; ``logits = W_U y + b`` through the teacher's frozen unembedding ``W_U`` plus a
    trainable unigram bias ``b`` (initialised to the log unigram distribution).
:class:`MLPStudent`
    The same inputs, output map and loss with a two-layer MLP of matched parameter count.
:class:`TunedLens`
    Track B baseline: an affine map of the layer-``l`` state, the teacher's final norm and
    ``W_U`` (identity init, so it starts as the logit lens).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..utils import derive_seed, make_generator
from .capture import Unembedding
from .layer import HyperTensorLayer

__all__ = [
    "HyperFieldModel", "MLPStudent", "TransformerStudent", "TunedLens", "count_parameters",
    "mlp_hidden_for", "transformer_parameters", "transformer_width_for", "kl_and_ce",
    "distill_loss", "log_unigram",
]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class HyperFieldModel(nn.Module):
    """Shapes: ``forward(x1 [B, d1], tail [B, d_tail]) -> (y [B, d], z1 [B, d_embed])``."""

    def __init__(self, d1: int, d_tail: int, d_model: int, d_aux: int, unembed: Unembedding,
                 log_unigram: torch.Tensor, *, d_embed: int = 1024, k1: int = 1024,
                 top1: int = 16, tau1: float = 1.0, k2: int = 2048, top2: int = 16,
                 tau2: float = 0.8, d_route: int = 64, heads1: int = 1, heads2: int = 1,
                 seed: int = 0) -> None:
        super().__init__()
        self.stage1 = HyperTensorLayer(d1, d_embed, k1, top1, tau1, d_route, heads=heads1,
                                       seed=seed)
        self.norm1 = nn.LayerNorm(d_embed)
        with torch.random.fork_rng(devices=[]):  # seeded here; the global generator untouched
            torch.manual_seed(seed)
            self.aux = nn.Linear(d_embed, d_aux)  # init_stage1 sets it from data
        self.stage2 = HyperTensorLayer(d_embed + d_tail, d_model, k2, top2, tau2, d_route,
                                       heads=heads2, seed=derive_seed(seed, "stage2"))
        self.unigram = nn.Parameter(log_unigram.detach().float().clone())
        self.unembed = unembed  # buffers only: frozen
        self.d_embed = d_embed
        self.use_tail = True

    def embed(self, x1: torch.Tensor) -> torch.Tensor:
        return self.stage1(x1)

    def stage2_input(self, z1: torch.Tensor, tail: torch.Tensor) -> torch.Tensor:
        t = tail if self.use_tail else torch.zeros_like(tail)
        return torch.cat([self.norm1(z1), t], dim=1)

    def forward(self, x1: torch.Tensor, tail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z1 = self.embed(x1)
        return self.stage2(self.stage2_input(z1, tail)), z1

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        return self.unembed(y) + self.unigram

    @torch.no_grad()
    def init_stage1(self, x1: torch.Tensor, aux: torch.Tensor, seed: int = 0) -> None:
        """Seed Stage 1 at training inputs; controls start at the mean aux target of each
        tensor's region, mapped into the embedding by a random orthonormal map that the aux
        head starts as the inverse of."""
        self.stage1.init_from_data(x1, seed)
        g = make_generator(seed)  # drawn on the CPU: the same map on every device
        q, _ = torch.linalg.qr(torch.randn(max(aux.shape[1], self.d_embed), self.d_embed,
                                           generator=g))
        # [d_aux, d_embed], orthonormal columns when d_aux >= d_embed
        P = q[: aux.shape[1]].to(x1.device)
        means = _region_means(self.stage1, x1, aux)  # [K, d_aux]
        for c in (self.stage1.c_neg, self.stage1.c_mid, self.stage1.c_pos):
            c.copy_(means @ P)
        self.aux.weight.copy_(P)
        self.aux.bias.zero_()

    @torch.no_grad()
    def init_stage2(self, x1: torch.Tensor, tail: torch.Tensor, final: torch.Tensor,
                    seed: int = 0) -> None:
        """Seed Stage 2 at training inputs (after Stage 1 is trained); controls start at the
        mean teacher final state of each region minus the global mean (the unigram bias
        carries the rest)."""
        # chunk by chunk in float32: ``x1`` and ``tail`` may be the stored half-precision rows
        x2 = torch.cat([self.stage2_input(self.embed(c.float()), t.float()) for c, t in
                        zip(x1.split(2048), tail.split(2048), strict=True)])
        self.stage2.init_from_data(x2, derive_seed(seed, "stage2"))
        final = final.float()
        means = _region_means(self.stage2, x2, final - final.mean(0))
        for c in (self.stage2.c_neg, self.stage2.c_mid, self.stage2.c_pos):
            c.copy_(means)


@torch.no_grad()
def _region_means(layer: HyperTensorLayer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean of ``y`` over the inputs routed nearest to each tensor (global mean if none),
    divided by the number of heads (the heads' outputs add up)."""
    K, H = layer.n_tensors, layer.heads
    near = torch.cat([layer.nearest(c) for c in x.split(2048)])  # [n, H]
    y = y.float()
    # head by head: every tensor belongs to one head, so each row of ``sums`` adds its
    # inputs in row order as one pass over all heads would, without H copies of ``y``
    sums = torch.zeros(K, y.shape[1], device=y.device)
    for h in range(H):
        sums.index_add_(0, near[:, h], y)
    cnt = torch.bincount(near.reshape(-1), minlength=K).float()[:, None]
    glob = y.mean(0, keepdim=True)
    return torch.where(cnt > 0, sums / cnt.clamp_min(1), glob) / H


def mlp_hidden_for(n_params: int, d_in: int, d_out: int) -> int:
    """Hidden width whose two-layer MLP ``d_in -> h -> d_out`` has about ``n_params``."""
    return max(1, int(round((n_params - d_out) / (d_in + d_out + 1))))


class MLPStudent(nn.Module):
    """``[x1, tail] -> GELU MLP -> y``; ``logits = W_U y + b``.

    With ``columns=(a, b)`` it reads only ``x1[:, a:b]`` and no tail: on the block of the
    last token embeddings passed unsketched, that is the classic window neural LM.

    Shapes: ``forward(x1 [B, d1], tail [B, d_tail]) -> (y [B, d], None)``.
    """

    def __init__(self, d1: int, d_tail: int, d_model: int, hidden: int, unembed: Unembedding,
                 log_unigram: torch.Tensor, seed: int = 0,
                 columns: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.columns = columns
        d_in = d1 + d_tail if columns is None else columns[1] - columns[0]
        with torch.random.fork_rng(devices=[]):  # seeded here; the global generator untouched
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(),
                                     nn.Linear(hidden, d_model))
        last = self.net[2]
        assert isinstance(last, nn.Linear)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.unigram = nn.Parameter(log_unigram.detach().float().clone())
        self.unembed = unembed
        self.use_tail = True

    def forward(self, x1: torch.Tensor, tail: torch.Tensor) -> tuple[torch.Tensor, None]:
        if self.columns is not None:
            return self.net(x1[:, self.columns[0]:self.columns[1]]), None
        t = tail if self.use_tail else torch.zeros_like(tail)
        return self.net(torch.cat([x1, t], dim=1)), None

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        return self.unembed(y) + self.unigram


class _Frozen(nn.Module):
    """A frozen table held as a buffer by a module without parameters (checkpoints of the
    training loop leave such buffers out)."""

    table: torch.Tensor

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)


class _Block(nn.Module):
    """Pre-norm transformer block; ``first_only`` computes the output at slot 0 alone."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(),
                                nn.Linear(4 * width, width))

    def forward(self, h: torch.Tensor, pad: torch.Tensor, first_only: bool = False
                ) -> torch.Tensor:
        x = self.ln1(h)
        q = x[:, :1] if first_only else x
        a, _ = self.attn(q, x, x, key_padding_mask=pad, need_weights=False)
        h = (h[:, :1] if first_only else h) + a
        return h + self.ff(self.ln2(h))


def transformer_parameters(width: int, d_embed: int, window: int, d_model: int, vocab: int,
                           layers: int = 2) -> int:
    """Trainable parameters of :class:`TransformerStudent` (the frozen embedding excluded)."""
    block = 4 * width * width + 4 * width + 8 * width * width + 5 * width + 4 * width
    return (d_embed * width + width + window * width + layers * block + 2 * width
            + width * d_model + d_model + vocab)


def transformer_width_for(n_params: int, d_embed: int, window: int, d_model: int, vocab: int,
                          heads: int = 8, layers: int = 2) -> int:
    """The width (a multiple of ``8 * heads``) whose student has the parameter count
    nearest ``n_params``."""
    step = 8 * heads
    widths = range(step, 64 * step + 1, step)
    return min(widths, key=lambda w: abs(transformer_parameters(w, d_embed, window, d_model,
                                                                vocab, layers) - n_params))


class TransformerStudent(nn.Module):
    """A small transformer over the window's token ids, the neural anchor with attention.

    The window's tokens (slot 0 = the current token; id -1 before the text, masked) enter
    through the teacher's frozen input embedding (the same scaled table the featuriser
    reads) and a trainable projection, plus a learned embedding per slot; ``layers``
    pre-norm blocks attend over the window (every slot is past context, so no causal mask),
    the last one at slot 0 only; a zero-initialised map takes slot 0 to the teacher's final
    state space, so at initialisation the prediction is the unigram. ``logits = W_U y + b``
    as for the other students, so the loss and the target are theirs.

    Shapes: ``forward(ids [B, W] (floats or ints), tail [B, *] unused) -> (y [B, d], None)``.
    """

    def __init__(self, embedding: torch.Tensor, window: int, d_model: int, width: int,
                 unembed: Unembedding, log_unigram: torch.Tensor, *, heads: int = 8,
                 layers: int = 2, seed: int = 0) -> None:
        super().__init__()
        self.tokens = _Frozen(embedding.detach().float().clone())
        with torch.random.fork_rng(devices=[]):  # seeded here; the global generator untouched
            torch.manual_seed(seed)
            self.inp = nn.Linear(int(embedding.shape[1]), width)
            self.slot = nn.Parameter(0.02 * torch.randn(window, width))
            self.blocks = nn.ModuleList([_Block(width, heads) for _ in range(layers)])
            self.norm = nn.LayerNorm(width)
            self.out = nn.Linear(width, d_model)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.unigram = nn.Parameter(log_unigram.detach().float().clone())
        self.unembed = unembed
        self.window = window
        self.use_tail = False

    def forward(self, ids: torch.Tensor, tail: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, None]:
        ids = ids.long()
        pad = ids < 0
        h = self.inp(self.tokens.table[ids.clamp_min(0)]) + self.slot[: ids.shape[1]]
        for i, blk in enumerate(self.blocks):
            h = blk(h, pad, first_only=i == len(self.blocks) - 1)
        return self.out(self.norm(h[:, 0])), None

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        return self.unembed(y) + self.unigram


class TunedLens(nn.Module):
    """``logits = W_U norm(h + A h + b)``, ``A`` and ``b`` zero-initialised (logit lens at
    start); ``norm`` is the teacher's final norm (frozen copy).

    Shapes: ``forward(h [B, d]) -> logits [B, vocab]``.
    """

    def __init__(self, d_model: int, final_norm: nn.Module, unembed: Unembedding) -> None:
        super().__init__()
        self.A = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.A.weight)
        nn.init.zeros_(self.A.bias)
        self.final_norm = final_norm
        for p in self.final_norm.parameters():
            p.requires_grad_(False)
        self.unembed = unembed

    def state(self, h: torch.Tensor) -> torch.Tensor:
        """The translated state the unembedding reads, ``norm(h + A h)`` ``[B, d]``."""
        return self.final_norm(h + self.A(h))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.unembed(self.state(h))


def kl_and_ce(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
              target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row ``KL(teacher || student)`` over the full vocabulary, the hard-label cross
    entropy and the student's log-probabilities. Shapes: ``[B, V], [B, V], [B] -> [B], [B],
    [B, V]``."""
    logq = F.log_softmax(student_logits.float(), dim=-1)
    logp = F.log_softmax(teacher_logits.float(), dim=-1)
    kl = (logp.exp() * (logp - logq)).sum(-1)
    ce = -logq.gather(1, target[:, None].long()).squeeze(1)
    return kl, ce, logq


class _DistillLoss(torch.autograd.Function):
    """``mean KL(p || q) + hard * mean CE`` with its gradient formed in the forward pass.

    The gradient with respect to the student logits is ``((1 + hard) q - p - hard e_y) / B``,
    so one ``[B, V]`` tensor is kept for the backward pass instead of the several that
    autograd would keep through two log-softmaxes.
    """

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, t: torch.Tensor, target: torch.Tensor,
                hard: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B = z.shape[0]
        logq = torch.log_softmax(z.float(), -1)
        logp = torch.log_softmax(t.float(), -1)
        p = logp.exp()
        kl = (p * (logp - logq)).sum(-1)
        tg = target[:, None].long()
        ce = -logq.gather(1, tg).squeeze(1)
        grad = logq.exp_().mul_(1.0 + hard).sub_(p)
        grad.scatter_add_(1, tg, torch.full_like(ce[:, None], -hard))
        ctx.save_for_backward(grad.div_(B))
        loss = kl.mean() + hard * ce.mean()
        ctx.mark_non_differentiable(kl, ce)
        return loss, kl, ce

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor, *_: Any) -> tuple[Any, ...]:
        (grad,) = ctx.saved_tensors
        return grad * g, None, None, None


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                 target: torch.Tensor, hard: float = 0.0
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean KL(teacher || student) + hard * mean CE, per-row KL, per-row CE)`` over the
    full vocabulary; the same values and gradient as :func:`kl_and_ce`, in less memory and
    time. Shapes: ``[B, V], [B, V], [B] -> [], [B], [B]``."""
    out: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = _DistillLoss.apply(
        student_logits, teacher_logits.detach(), target, float(hard))
    return out


def log_unigram(targets: torch.Tensor, vocab: int, alpha: float = 0.1) -> torch.Tensor:
    """Add-``alpha`` smoothed log unigram distribution of ``targets`` ``[V]``."""
    c = torch.bincount(targets.long().flatten(), minlength=vocab).float() + alpha
    return (c / c.sum()).log()

