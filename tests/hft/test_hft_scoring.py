"""Held-out scoring: every metric against a plain computation, and several predictors in one
pass giving each one's figures bit for bit."""

import numpy as np
import pytest
import torch

from hyperlens.hft.capture import CapturedSplit, Unembedding
from hyperlens.hft.evaluate import score, score_many


def _split(n: int = 300, d: int = 8, vocab: int = 40, seed: int = 0
           ) -> tuple[CapturedSplit, Unembedding]:
    g = torch.Generator().manual_seed(seed)
    final = torch.randn(n, d, generator=g).numpy().astype(np.float16)
    target = torch.randint(0, vocab, (n,), generator=g).numpy().astype(np.int32)
    sp = CapturedSplit({"final": final, "target": target,
                        "text": (np.arange(n) // 7).astype(np.int32)}, n // 7 + 1)
    return sp, Unembedding(torch.randn(vocab, d, generator=g))


def _predictor(sp: CapturedSplit, vocab: int, seed: int):
    logits = torch.randn(len(sp), vocab, generator=torch.Generator().manual_seed(seed))
    logq = torch.log_softmax(logits, -1)
    return logq, (lambda r: logq[r])


def test_metrics_match_a_plain_computation():
    sp, U = _split()
    logq, fn = _predictor(sp, 40, 1)
    got = score(fn, sp, U, batch=64)  # batches that do not divide the rows
    logp = torch.log_softmax(U(torch.from_numpy(sp["final"].astype(np.float32))).double(), -1)
    q = logq.double()
    tgt = torch.from_numpy(sp["target"]).long()
    np.testing.assert_allclose(got["nll"], -q[torch.arange(len(sp)), tgt].numpy())
    np.testing.assert_allclose(got["kl"], (logp.exp() * (logp - q)).sum(-1).numpy(),
                               atol=1e-12)
    np.testing.assert_array_equal(got["agree"], (q.argmax(1) == logp.argmax(1)).numpy())
    np.testing.assert_array_equal(got["top1"], (q.argmax(1) == tgt).numpy())
    np.testing.assert_array_equal(got["top5"],
                                  (q.topk(5, 1).indices == tgt[:, None]).any(1).numpy())


def test_several_predictors_in_one_pass_give_each_ones_figures():
    sp, U = _split()
    fns = {f"p{s}": _predictor(sp, 40, s)[1] for s in range(3)}
    together = score_many(fns, sp, U, batch=64)
    assert list(together) == list(fns)
    for name, fn in fns.items():
        alone = score(fn, sp, U, batch=64)
        for k, v in alone.items():
            np.testing.assert_array_equal(together[name][k], v)
    # the teacher scored against itself: no divergence, full agreement
    logp = torch.log_softmax(U(torch.from_numpy(sp["final"].astype(np.float32))), -1)
    own = score(lambda r: logp[r], sp, U)
    assert own["kl"].max() < 1e-6 and own["agree"].all()


def test_a_predictor_inside_its_mixture_is_computed_once_per_batch():
    from hyperlens.hft.evaluate import last_batch, mix_fn

    sp, U = _split()
    logq, fn = _predictor(sp, 40, 1)
    other = _predictor(sp, 40, 2)[1]
    calls: list[slice] = []

    def counted(r: slice):
        calls.append(r)
        return fn(r)

    once = last_batch(counted)
    got = score_many({"p": once, "mix": mix_fn(once, other)}, sp, U, batch=64)
    assert len(calls) == 5  # 300 rows in batches of 64
    np.testing.assert_array_equal(got["p"]["kl"], score(fn, sp, U, batch=64)["kl"])
    np.testing.assert_array_equal(got["mix"]["nll"],
                                  score(mix_fn(fn, other), sp, U, batch=64)["nll"])


def test_each_target_states_what_its_comparison_could_see():
    """The targets table gives every ratio its detectable change: positive, about 2.8
    bootstrap standard errors of the log ratio, and smaller with more held-out texts."""
    from hyperlens.hft.sections import target_rows

    def rows(n_texts: int) -> list:
        rng = np.random.default_rng(0)
        text = np.repeat(np.arange(n_texts), 20)
        base = rng.gamma(4.0, 1.5, size=text.size)
        results = {"B: HyperField": {"nll": base + rng.normal(0.1, 0.3, text.size)},
                   "B: tuned lens": {"nll": base},
                   "unigram": {"nll": base + 2.0}}
        return target_rows({}, results, text)

    small, large = rows(40), rows(640)
    assert [r[0] for r in small] == ["B: ppl / unigram ppl <= 0.5",
                                     "B: ppl / tuned-lens ppl <= 0.85"]
    for r in small + large:
        value, lo, hi, see, met = r[1:]
        assert lo <= value <= hi and see > 0
        # 2.8 standard errors, the interval being about 3.9 of them
        assert 0.4 < see / np.log(hi / lo) < 1.0
        assert met == (hi <= (0.5 if "unigram" in r[0] else 0.85))
    assert large[1][4] < small[1][4] / 2  # 16x the texts: about a quarter of the change


def test_track_a_targets_split_the_gap_into_the_layer_and_the_input():
    """With the window MLP trained, the targets table adds two context rows: the MLP on the
    sketched features against the window MLP (the input), and HyperField against it."""
    from hyperlens.functional.stats import Estimate
    from hyperlens.hft.sections import INPUT_ROW, target_rows

    rng = np.random.default_rng(1)
    text = np.repeat(np.arange(200), 20)
    base = rng.gamma(4.0, 1.5, size=text.size)
    nll = {"A: HyperField": 0.3, "A: MLP (same parameters)": 0.2, "KN-5": 0.1,
           "teacher, context cut to W": -0.5, "unigram": 2.0,
           "A: window MLP (last 4 tokens, unsketched)": 0.0,
           "A: window MLP (last 4 tokens, unsketched) [sketch]": 5.0}
    results = {k: {"nll": base + v + rng.normal(0, 0.01, text.size)} for k, v in nll.items()}
    summ = {k: {"ppl": Estimate(float(np.exp(r["nll"].mean())), 0.0, 0.0),
                "agree": Estimate(0.3, 0.25, 0.35, std=0.02)} for k, r in results.items()}
    rows = {r[0]: r[1:] for r in target_rows(summ, results, text)}
    value, lo, hi, see = rows[INPUT_ROW][:4]
    assert value == pytest.approx(np.exp(0.2), rel=1e-3) and lo <= value <= hi
    assert see > 0
    hf = rows["A (context, not a target): ppl / window MLP ppl"]
    assert hf[0] == pytest.approx(np.exp(0.3), rel=1e-3)  # the main featurisation's window MLP
    assert rows["A: ppl / MLP ppl < 1 (ambitious)"][0] == pytest.approx(np.exp(0.1), rel=1e-3)
    del results["A: window MLP (last 4 tokens, unsketched)"]
    assert INPUT_ROW not in {r[0] for r in target_rows(summ, results, text)}


def test_speed_rows_show_batch_one_bfloat16_where_batch_512_was_not_timed_in_it():
    """A CPU without native bfloat16 times the bfloat16 copies at batch 1 only: the rows say
    so and the fastest-of-each row compares what was timed; float16 copies, timed at batch 1
    only, add their own rows."""
    from hyperlens.hft.sections import speed_rows

    base = {"student_batch1": 50.0, "teacher_batch1": 14.0, "student_batch": 500.0,
            "teacher_batch": 200.0, "speedup_batch1": 50 / 14, "speedup_batch": 2.5}
    one = base | {"student_batch1_bf16": 70.0, "teacher_batch1_bf16": 18.0,
                  "speedup_batch1_bf16": 70 / 18, "speedup_batch1_fastest": 70 / 18,
                  "speedup_batch_fastest": 2.5}
    rows = {r[0]: r[1:] for r in speed_rows(one, 100, 1000)}
    assert rows["speed-up batch 1, bfloat16"] == [round(70 / 18, 2), ""]
    assert "tokens/s batch 512, bfloat16: student / teacher" not in rows
    assert rows["speed-up batch 1 / batch 512, fastest of each (target >= 5 at batch 1)"] == [
        round(70 / 18, 2), 2.5]
    both = one | {"student_batch_bf16": 900.0, "teacher_batch_bf16": 300.0,
                  "speedup_batch_bf16": 3.0, "speedup_batch_fastest": 3.0}
    rows = {r[0]: r[1:] for r in speed_rows(both, 100, 1000)}
    assert rows["tokens/s batch 512, bfloat16: student / teacher"] == [900.0, 300.0]
    assert "speed-up batch 1, bfloat16" not in rows
    assert len(speed_rows(base, 100, 1000)) == 5  # float32 only: no bfloat16 rows
    half = one | {"student_batch1_fp16": 80.0, "teacher_batch1_fp16": 25.0,
                  "speedup_batch1_fp16": 3.2, "speedup_batch1_fastest": 80 / 25,
                  "agree_student_fp16": 1.0, "agree_teacher_fp16": 0.99,
                  "maxdiff_student_fp16": 0.01, "maxdiff_teacher_fp16": 0.02}
    rows = {r[0]: r[1:] for r in speed_rows(half, 100, 1000)}
    assert rows["tokens/s batch 1, float16: student / teacher"] == [80.0, 25.0]
    assert rows["speed-up batch 1, float16"] == [3.2, ""]
    assert rows["float16 copy against float32, top-1 agreement: student / teacher"] == [
        1.0, 0.99]
    assert "bfloat16 copy against float32, top-1 agreement: student / teacher" not in rows
