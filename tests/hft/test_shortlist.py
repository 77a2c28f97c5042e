"""The shortlist distillation target: exact where it claims to be, close where it samples."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hyperlens.errors import InputError
from hyperlens.hft.capture import Unembedding
from hyperlens.hft.model import distill_loss
from hyperlens.hft.shortlist import Shortlist, shortlist_loss, target_error, teacher_targets

V, D, B = 300, 16, 24


class _Student(nn.Module):
    def __init__(self, U: Unembedding, prior: torch.Tensor) -> None:
        super().__init__()
        self.unembed = U
        self.unigram = nn.Parameter(prior.clone())

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        return self.unembed(y) + self.unigram


def _setup(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    U = Unembedding(torch.randn(V, D, generator=g), torch.randn(V, generator=g) * 0.1)
    prior = torch.log_softmax(torch.randn(V, generator=g) * 2, -1)
    final = torch.randn(B, D, generator=g) * 1.5
    y = (final + 0.5 * torch.randn(B, D, generator=g)).requires_grad_(True)
    target = torch.multinomial(torch.softmax(U(final), -1), 1, generator=g).squeeze(1)
    return U, prior, final, y, target


def test_a_shortlist_of_the_whole_vocabulary_is_the_full_loss_and_gradient():
    U, prior, final, y, target = _setup()
    m = _Student(U, prior)
    tt = teacher_targets(final, U, V)
    sl = Shortlist(U, prior, negatives=8)
    loss, kl, ce = shortlist_loss(m, y, final, tt["topk"], tt["lse"], target, sl, 0.3,
                                  torch.Generator().manual_seed(0))
    (gy,) = torch.autograd.grad(loss, y)
    ref_loss, ref_kl, ref_ce = distill_loss(m.logits(y), U(final), target, 0.3)
    (ry,) = torch.autograd.grad(ref_loss, y)
    torch.testing.assert_close(kl, ref_kl, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ce, ref_ce, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(gy, ry, atol=1e-5, rtol=1e-4)


def test_a_short_list_is_exact_on_the_teacher_side_and_close_on_the_student_side():
    U, prior, final, y, target = _setup(1)
    m = _Student(U, prior)
    tt = teacher_targets(final, U, 5)
    assert tt["topk"].shape == (B, 5) and tt["topk"].dtype == torch.int32
    torch.testing.assert_close(tt["lse"], torch.logsumexp(U(final), -1))
    assert torch.equal(tt["topk"][:, 0].long(), U(final).argmax(-1))
    sl = Shortlist(U, prior, negatives=4000)
    err = target_error(m, y.detach(), final, target, sl, 5, batch=B)
    assert 0 < err["teacher_mass_outside"] < 1 and 5 <= err["shortlist_size"] <= V
    # grouping the tail into one outcome can only lose divergence
    assert err["kl_grouped"] <= err["kl_full"] + 1e-6
    # with many negatives the estimate is close to the full KL (the tail included)
    assert err["sampling_abs_error"] < 0.05 * err["kl_full"]
    assert abs(err["kl_shortlist"] - err["kl_full"]) < abs(err["kl_grouped"] - err["kl_full"])
    few = target_error(m, y.detach(), final, target, Shortlist(U, prior, 2), 5, batch=B)
    assert few["sampling_abs_error"] > err["sampling_abs_error"]  # the sample size matters


def test_negatives_come_from_outside_the_shortlist_and_the_loop_generator():
    U, prior, *_ = _setup()
    sl = Shortlist(U, prior, negatives=500)
    S = torch.arange(0, V, 2)
    neg, log_pi = sl.draw(S, torch.Generator().manual_seed(3))
    assert len(neg) == 500 and bool((neg % 2 == 1).all()) and bool((log_pi < 0).all())
    again, _ = sl.draw(S, torch.Generator().manual_seed(3))
    assert torch.equal(neg, again)
    whole, _ = sl.draw(torch.arange(V), torch.Generator())
    assert len(whole) == 0
    with pytest.raises(InputError, match="inside a loss_fn"):
        sl.draw(S)  # outside fit there is no step generator
    with pytest.raises(InputError, match="negatives"):
        Shortlist(U, prior, 0)
    with pytest.raises(InputError, match="shortlist k"):
        teacher_targets(torch.zeros(2, D), U, V + 1)


def test_bf16_products_read_the_same_rows():
    U, prior, final, y, target = _setup(2)
    U.compute_dtype = torch.bfloat16
    sl = Shortlist(U, prior, negatives=8)
    ids = torch.tensor([3, 7, 299])
    torch.testing.assert_close(sl.logits(final, ids), U(final)[:, ids], atol=1e-2, rtol=1e-2)
    U.compute_dtype = torch.float16
    assert U.low_weight().dtype == torch.float16  # a cached copy follows the dtype


def test_the_gradient_is_the_full_gradient_on_average_over_draws():
    U, prior, final, y, target = _setup(4)
    m = _Student(U, prior)
    k = 10
    tt = teacher_targets(final, U, k)
    ref, _, _ = distill_loss(m.logits(y), U(final), target, 0.0)
    (full,) = torch.autograd.grad(ref, y)
    sl = Shortlist(U, prior, negatives=200)
    gen = torch.Generator().manual_seed(0)
    grads = []
    for _ in range(60):
        loss, _, _ = shortlist_loss(m, y, final, tt["topk"], tt["lse"], target, sl, 0.0, gen)
        grads.append(torch.autograd.grad(loss, y)[0])
    mean = torch.stack(grads).mean(0)
    assert float((mean - full).norm() / full.norm()) < 0.1


def test_teacher_targets_are_kept_in_the_cache_and_read_back(tmp_path, monkeypatch):
    import hyperlens.hft.shortlist as S

    U, _, final, _, _ = _setup(3)
    first = teacher_targets(final, U, 5, cache=tmp_path)
    (folder,) = tmp_path.iterdir()
    assert folder.name == f"teacher-top5-{B}-v{V}-bias-float32"
    calls = []
    real = S._teacher_targets
    monkeypatch.setattr(S, "_teacher_targets", lambda *a: calls.append(a) or real(*a))
    again = teacher_targets(final, U, 5, cache=tmp_path)  # read back, not recomputed
    assert not calls
    assert torch.equal(again["topk"], first["topk"]) and torch.equal(again["lse"], first["lse"])
    assert torch.equal(first["topk"], teacher_targets(final, U, 5)["topk"])
    # fewer leading rows is another entry, computed once
    head = teacher_targets(final[:10], U, 5, cache=tmp_path)
    assert len(calls) == 2 and len(list(tmp_path.iterdir())) == 2
    assert torch.equal(head["topk"], first["topk"][:10])

def test_a_capture_split_and_its_leading_rows_share_one_cache(tmp_path):
    import numpy as np

    from hyperlens.hft.capture import CapturedSplit

    sp = CapturedSplit({"target": np.arange(6), "text": np.array([0, 0, 1, 1, 2, 2])}, 3,
                       tmp_path / "cache" / "train")
    assert sp.head(4).cache == sp.cache and len(sp.head(4)) == 4
    assert CapturedSplit({"target": np.arange(2)}, 1).cache is None
