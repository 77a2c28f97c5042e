"""The featurisation that keeps the last tokens exact, and training to a validation plateau."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tiny_setup import SMALL_STUDENT, small_features

from hyperlens.errors import ConfigError, InputError
from hyperlens.experiments.hft import HftTrainConfig
from hyperlens.hft.capture import Unembedding
from hyperlens.hft.features import FeatureConfig, Featurizer
from hyperlens.hft.generate import load_student, save_student
from hyperlens.hft.model import MLPStudent, log_unigram
from hyperlens.hft.train import (
    aux_stats,
    build_features,
    build_model,
    fit_rows,
    train_hyperfield,
    train_mlp,
)


def _ctx(n: int, window: int, vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ctx = rng.integers(0, vocab, (n, window)).astype(np.int32)
    ctx[: n // 4, window // 2:] = -1  # rows near the start of a text
    return ctx, rng.integers(0, 40, n).astype(np.int32)


def _featurizer(teacher, exact: int, ctx, pos) -> Featurizer:
    fc = replace(small_features(8), exact=exact)
    return Featurizer(teacher.token_embeddings(), fc).fit(ctx, pos)


def test_exact_block_is_the_z_scored_last_embeddings_beside_the_unchanged_sketch(tiny_teacher):
    ctx, pos = _ctx(300, 8, 100)
    plain = _featurizer(tiny_teacher, 0, ctx, pos)
    exact = _featurizer(tiny_teacher, 2, ctx, pos)
    d = exact.d
    assert exact.d1 == plain.d1 + 2 * d
    a, b = plain.stage1(ctx, pos), exact.stage1(ctx, pos)
    torch.testing.assert_close(b[:, : plain.d1], a)  # the seed's sketch is kept as it was
    emb = exact.emb[torch.from_numpy(ctx[:, :2].astype(np.int64))].reshape(len(ctx), 2 * d)
    want = (emb - emb.mean(0)) / emb.std(0, correction=0).clamp_min(1e-6)
    torch.testing.assert_close(b[:, plain.d1:], want, atol=1e-4, rtol=1e-4)
    # the exact block reads slots 0..exact-1 only
    far, near = ctx.copy(), ctx.copy()
    far[:, 2:] = (far[:, 2:] + 1) % 100
    near[:, 0] = (near[:, 0] + 1) % 100
    torch.testing.assert_close(exact.stage1(far, pos)[:, plain.d1:], b[:, plain.d1:])
    assert not torch.allclose(exact.stage1(near, pos)[:, plain.d1:], b[:, plain.d1:])



def test_the_sketch_is_the_composed_operator_on_the_whole_raw_vector(tiny_teacher):
    """The fused path (n-gram entries added into the CountSketch buckets, the dense block
    through the first columns) equals the operator applied to the explicit raw vector:
    the dense block beside the hashed n-grams, a repeated n-gram counted twice."""
    ctx, pos = _ctx(12, 8, 100)
    ctx[3] = 7  # one token over the whole window: every n-gram of the bag repeats
    feat = _featurizer(tiny_teacher, 0, ctx, pos)
    raw = torch.zeros(len(ctx), feat.d_raw)
    raw[:, : feat.d_dense] = feat._dense(ctx, pos)
    rows, cols, vals = feat._ngram_entries(ctx)
    raw.index_put_((torch.from_numpy(rows), torch.from_numpy(cols)), torch.from_numpy(vals),
                   accumulate=True)
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) < len(rows)  # repeats
    torch.testing.assert_close(feat.raw_sketch(ctx, pos), feat.sketch.apply(raw),
                               atol=1e-5, rtol=1e-5)


def test_a_non_finite_embedding_is_refused_before_any_sketch(tiny_teacher):
    emb = tiny_teacher.token_embeddings().detach().clone()
    emb[3, 0] = math.nan
    with pytest.raises(InputError, match="finite"):
        Featurizer(emb, small_features(8))


def test_track_b_state_statistics_stream_over_batches(tiny_teacher):
    ctx, pos = _ctx(300, 8, 100)
    d = tiny_teacher.token_embeddings().shape[1]
    state = (np.random.default_rng(1).standard_normal((300, d)) * 3 + 5).astype(np.float16)
    fc = replace(small_features(8), track="B")
    feat = Featurizer(tiny_teacher.token_embeddings(), fc).fit(ctx, pos, state, batch=64)
    st = torch.from_numpy(state.astype(np.float32))
    torch.testing.assert_close(feat.stats["state_mean"], st.mean(0))
    torch.testing.assert_close(feat.stats["state_std"], st.std(0))
    x = feat.stage1(ctx, pos, state)
    torch.testing.assert_close(x[:, -d:], (st - st.mean(0)) / st.std(0), atol=1e-4, rtol=1e-4)

def test_exact_tokens_beyond_the_window_are_refused():
    with pytest.raises(InputError, match="exact"):
        FeatureConfig(window=8, tail=4, exact=9).validate()
    with pytest.raises(ConfigError, match="--exact-tokens"):
        HftTrainConfig(window=16, exact_tokens=17)


def test_student_with_exact_features_saves_and_loads(tiny_teacher, small_capture, tmp_path):
    cap = small_capture
    fc = replace(small_features(cap.config["window"]), exact=3)
    feat = Featurizer(tiny_teacher.token_embeddings(), fc).fit(cap.train["ctx"],
                                                                 cap.train["pos"])
    U = Unembedding.from_model(tiny_teacher)
    lu = log_unigram(torch.from_numpy(np.asarray(cap.train["target"]).astype(np.int64)),
                     U.vocab_size)
    d_aux = int(aux_stats(cap.train)["mean"].numel())
    model = build_model(SMALL_STUDENT, feat.d1, fc.d_tail, tiny_teacher.hidden_size, d_aux, U,
                        lu)
    save_student(tmp_path / "student", feat, model, {
        "teacher": "tiny", "capture": str(cap.root), "student": asdict(SMALL_STUDENT),
        "d_aux": d_aux, "d_model": tiny_teacher.hidden_size, "capture_config": cap.config})
    st, _, _ = load_student(tmp_path / "student", tiny_teacher)
    he = cap.heldout
    torch.testing.assert_close(st.feat.stage1(he["ctx"][:16], he["pos"][:16]),
                               feat.stage1(he["ctx"][:16], he["pos"][:16]))


def test_validation_slice_is_the_last_training_texts(small_capture):
    tr = small_capture.train
    text = np.asarray(tr["text"])
    sc = replace(SMALL_STUDENT, val_share=0.25)
    n_fit = fit_rows(tr, sc)
    assert 0 < n_fit < len(tr)
    assert set(text[:n_fit]).isdisjoint(set(text[n_fit:]))  # whole texts on each side
    n_val_texts = len(set(text[n_fit:].tolist()))
    assert n_val_texts == max(1, round(len(set(text.tolist())) * 0.25))
    assert fit_rows(tr, replace(sc, patience=0)) == len(tr)  # the fixed schedule fits all
    head = tr.head(n_fit)
    assert len(head) == n_fit and head.n_texts == len(set(text[:n_fit].tolist()))
    with pytest.raises(InputError, match="val_share"):
        replace(sc, val_share=0.6).validate()


@pytest.fixture(scope="module")
def setup(tiny_teacher, small_capture):
    cap = small_capture
    fc = small_features(cap.config["window"])
    feat = Featurizer(tiny_teacher.token_embeddings(), fc).fit(cap.train["ctx"],
                                                                 cap.train["pos"])
    store = build_features(feat, cap, "train", show_progress=False)
    U = Unembedding.from_model(tiny_teacher)
    lu = log_unigram(torch.from_numpy(np.asarray(cap.train["target"]).astype(np.int64)),
                     U.vocab_size)
    return cap, feat, fc, store, U, lu


def _mlp(setup):
    cap, feat, fc, store, U, lu = setup
    return MLPStudent(feat.d1, fc.d_tail, 32, 24, U, lu, seed=0)


def test_mlp_trains_to_a_plateau_on_the_fitted_rows_only(setup):
    cap, feat, fc, store, U, lu = setup
    sc = replace(SMALL_STUDENT, batch_size=16, patience=1, max_epochs=6, val_share=0.25,
                 fast_unembed=False)
    h = train_mlp(_mlp(setup), store, cap.train, U, sc, show_progress=False)
    n_fit = fit_rows(cap.train, sc)
    per_epoch = math.ceil(n_fit / sc.batch_size)
    assert h["epochs"].count(0) == per_epoch  # an epoch covers the fitted rows, no more
    ev = h["evals"]
    assert ev[0]["step"] == 0 and all(math.isfinite(e["val_kl"]) for e in ev)
    assert len(ev) - 1 <= sc.max_epochs
    best = min(e["val_kl"] for e in ev)
    assert h["best"]["val_kl"] == best
    assert h["restored_step"] == next(e["step"] for e in ev if e["val_kl"] == best)
    if len(ev) - 1 < sc.max_epochs:  # stopped: the last `patience` epochs did not improve
        assert h["stopped_early"] and ev[-1]["val_kl"] >= best


def test_fixed_schedule_has_no_validation(setup):
    cap, feat, fc, store, U, lu = setup
    sc = replace(SMALL_STUDENT, batch_size=16, patience=0, stage2_epochs=2, e2e_epochs=1,
                 fast_unembed=False)
    h = train_mlp(_mlp(setup), store, cap.train, U, sc, show_progress=False)
    assert h["evals"] == [] and sorted(set(h["epochs"])) == [0, 1, 2]
    assert h["epochs"].count(0) == math.ceil(len(cap.train) / sc.batch_size)


def test_hyperfield_phases_each_keep_their_best_epoch(setup):
    cap, feat, fc, store, U, lu = setup
    sc = replace(SMALL_STUDENT, batch_size=32, patience=1, max_epochs=3, val_share=0.25,
                 fast_unembed=False)
    stats = aux_stats(cap.train)
    model = build_model(sc, feat.d1, fc.d_tail, 32, int(stats["mean"].numel()), U, lu)
    h = train_hyperfield(model, store, cap.train, stats, U, sc, show_progress=False)
    assert "val_aux" in h["stage1"]["evals"][0]
    for phase in ("stage2", "e2e"):
        ev = h[phase]["evals"]
        assert ev and h[phase]["best"]["val_kl"] == min(e["val_kl"] for e in ev)
    # end to end starts from the kept stage-2 weights, so its step-0 value is stage 2's best
    assert h["e2e"]["evals"][0]["val_kl"] == pytest.approx(h["stage2"]["best"]["val_kl"],
                                                           rel=1e-4)


def test_window_mlp_reads_only_the_unsketched_block(tiny_teacher):
    ctx, pos = _ctx(64, 8, 100)
    feat = _featurizer(tiny_teacher, 2, ctx, pos)
    a, b = feat.exact_columns
    assert (a, b) == (feat.cfg.d_sketch, feat.cfg.d_sketch + 2 * feat.d)
    assert _featurizer(tiny_teacher, 0, ctx, pos).exact_columns is None
    U = Unembedding.from_model(tiny_teacher)
    lu = torch.zeros(U.vocab_size)
    m = MLPStudent(feat.d1, 16, 32, 12, U, lu, seed=1, columns=(a, b))
    torch.nn.init.normal_(m.net[2].weight)  # zero at initialisation; make the output move
    x1, tail = feat.stage1(ctx, pos), torch.randn(64, 16)
    y, _ = m(x1, tail)
    other = x1.clone()
    other[:, :a] += 1.0
    torch.testing.assert_close(m(other, tail * 0)[0], y)  # sketch and tail are not read
    other[:, a] += 1.0
    assert not torch.allclose(m(other, tail)[0], y)


@pytest.mark.parametrize("shortlist", [0, 8])
def test_a_killed_student_resumes_to_the_same_weights_and_reseeds(setup, tmp_path,
                                                                  monkeypatch, shortlist):
    """Also on the shortlist target, whose negatives come from the loop's generator."""
    import hyperlens.hft.train as hft_train

    cap, feat, fc, store, U, lu = setup
    sc = replace(SMALL_STUDENT, batch_size=32, patience=2, max_epochs=3, val_share=0.25,
                 fast_unembed=False, reseed_every=3, shortlist=shortlist, negatives=16)
    stats = aux_stats(cap.train)

    def fresh():
        m = build_model(sc, feat.d1, fc.d_tail, 32, int(stats["mean"].numel()), U, lu)
        m.stage2.idle_fraction = 1.0  # a tiny run has no idle tensors: reseed the rarer half
        return m

    ref = fresh()
    h_ref = train_hyperfield(ref, store, cap.train, stats, U, sc, show_progress=False)
    steps2 = len(h_ref["stage2"]["train_loss"])
    per_epoch = h_ref["e2e"]["epochs"].count(0)
    assert h_ref["reseeds"] > 0 and len(h_ref["e2e"]["train_loss"]) > per_epoch + 2
    real, calls = hft_train._distill, iter(range(10**6))

    def dying(*a, **k):  # killed in the end-to-end phase, a few steps after its first epoch
        if next(calls) == steps2 + per_epoch + 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(hft_train, "_distill", dying)
    with pytest.raises(KeyboardInterrupt):
        train_hyperfield(fresh(), store, cap.train, stats, U, sc, show_progress=False,
                         checkpoint_dir=tmp_path / "ck")
    monkeypatch.setattr(hft_train, "_distill", real)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["e2e", "stage1", "stage2"]
    spent = sum(_checkpoint_seconds(d) for d in (tmp_path / "ck").iterdir())
    again = fresh()
    h = train_hyperfield(again, store, cap.train, stats, U, sc, show_progress=False,
                         checkpoint_dir=tmp_path / "ck")
    assert h["e2e"]["resumed_from"] > 0 and h["reseeds"] == h_ref["reseeds"]
    assert 0 < spent < h["seconds"]  # the killed sitting's training counts in the total
    for phase in ("stage1", "stage2", "e2e"):
        assert h[phase]["train_loss"] == h_ref[phase]["train_loss"]
    for (k, a), b in zip(ref.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    # the full-vocabulary validation KL falls under either target
    for phase in ("stage2", "e2e"):
        assert h[phase]["best"]["val_kl"] < h["stage2"]["evals"][0]["val_kl"]


def test_transformer_student_reads_ids_matches_parameters_and_learns(setup, tiny_teacher):
    from hyperlens.hft.cells import _ids
    from hyperlens.hft.model import (
        TransformerStudent,
        count_parameters,
        transformer_parameters,
        transformer_width_for,
    )

    cap, feat, fc, store, U, lu = setup
    W, d = fc.window, 32
    m = TransformerStudent(feat.emb, W, d, 64, U, lu, heads=4, seed=1)
    assert count_parameters(m) == transformer_parameters(64, feat.d, W, d, U.vocab_size)
    width = transformer_width_for(count_parameters(m) + 10, feat.d, W, d, U.vocab_size,
                                  heads=4)
    assert width == 64
    ids = torch.from_numpy(np.asarray(cap.train["ctx"][:40]).astype(np.int64))
    y, _ = m(ids.float())
    assert y.shape == (40, d) and torch.equal(y, torch.zeros_like(y))  # unigram at the start
    torch.nn.init.normal_(m.out.weight)
    y, _ = m(ids.float())
    pad = ids < 0
    assert bool(pad.any())
    # a slot before the text (id -1) is masked: the table row it reads never matters
    with torch.no_grad():
        m.tokens.table[0] += 5.0
    keep = ~(ids == 0).any(1)
    torch.testing.assert_close(m(ids.float())[0][keep], y[keep])
    with torch.no_grad():
        m.tokens.table[0] -= 5.0
    changed = ids.clone()
    changed[:, 0] = (changed[:, 0] + 1) % U.vocab_size
    assert not torch.allclose(m(changed.float())[0], y)  # the current token does
    # trained like the MLP on the same loss and validation slice, the validation KL falls
    sc = replace(SMALL_STUDENT, batch_size=32, patience=1, max_epochs=3, val_share=0.25,
                 fast_unembed=False, transformer_lr=3e-3)
    student = TransformerStudent(feat.emb, W, d, 64, U, lu, heads=4, seed=1)
    h = train_mlp(student, _ids(cap.train), cap.train, U, sc, show_progress=False)
    assert h["best"]["val_kl"] < h["evals"][0]["val_kl"]


def _checkpoint_seconds(folder: Path) -> float:
    """The training time a phase's checkpoint has recorded."""
    from safetensors import safe_open

    from hyperlens.train import CHECKPOINT_NAME

    with safe_open(str(folder / CHECKPOINT_NAME), "pt") as f:
        return float(json.loads(f.metadata()["meta"])["history"]["seconds"])



def test_a_killed_tuned_lens_resumes_and_a_finished_one_is_restored_untrained(
        setup, tiny_teacher, tmp_path):
    from hyperlens.hft.model import TunedLens
    from hyperlens.hft.train import train_tuned_lens
    from hyperlens.models.arch import resolve_backbone

    cap, feat, fc, store, U, lu = setup
    sc = replace(SMALL_STUDENT, batch_size=16, patience=3, max_epochs=4, val_share=0.25,
                 fast_unembed=False)
    norm = resolve_backbone(tiny_teacher.module).final_norm
    calls: list[bool] = []

    def lens(die_at: int = -1) -> TunedLens:
        m = TunedLens(int(cap.train["state"].shape[1]), norm, U)
        inner = m.A.forward

        def counted(h):  # count the training steps; die at the chosen one
            if torch.is_grad_enabled():
                calls.append(True)
                if len(calls) == die_at:
                    raise KeyboardInterrupt
            return inner(h)

        m.A.forward = counted
        return m

    ref = lens()
    h_ref = train_tuned_lens(ref, cap.train, U, sc, show_progress=False)
    steps, per_epoch = len(calls), h_ref["epochs"].count(0)
    assert steps > per_epoch + 2 and h_ref["best"]["val_kl"] < h_ref["evals"][0]["val_kl"]
    calls.clear()
    with pytest.raises(KeyboardInterrupt):  # killed a few steps into its second epoch
        train_tuned_lens(lens(per_epoch + 3), cap.train, U, sc, show_progress=False,
                         checkpoint_dir=tmp_path / "ck")
    spent = _checkpoint_seconds(tmp_path / "ck" / "lens")
    calls.clear()
    again = lens()
    h = train_tuned_lens(again, cap.train, U, sc, show_progress=False,
                         checkpoint_dir=tmp_path / "ck")
    assert len(calls) == steps - per_epoch and h["resumed_from"] > 0
    assert 0 < spent < h["seconds"]  # the killed sitting's training counts in the total
    assert h["train_loss"] == h_ref["train_loss"]
    torch.testing.assert_close(again.A.weight, ref.A.weight, rtol=0, atol=0)
    calls.clear()
    done = lens()  # the finished lens: restored from its checkpoint, not a step trained
    h2 = train_tuned_lens(done, cap.train, U, sc, show_progress=False,
                          checkpoint_dir=tmp_path / "ck")
    assert not calls and h2["train_loss"] == h_ref["train_loss"]
    torch.testing.assert_close(done.A.weight, ref.A.weight, rtol=0, atol=0)


def test_the_tuned_lens_trains_on_the_students_shortlist_target(setup, tiny_teacher):
    from hyperlens.errors import InputError
    from hyperlens.hft.model import TunedLens
    from hyperlens.hft.train import train_tuned_lens
    from hyperlens.models.arch import resolve_backbone

    cap, feat, fc, store, U, lu = setup
    sc = replace(SMALL_STUDENT, batch_size=16, patience=2, max_epochs=3, val_share=0.25,
                 fast_unembed=False)
    norm = resolve_backbone(tiny_teacher.module).final_norm
    d = int(cap.train["state"].shape[1])

    def trained(shortlist: int) -> tuple[TunedLens, dict]:
        lens = TunedLens(d, norm, U)
        h = train_tuned_lens(lens, cap.train, U, replace(sc, shortlist=shortlist, negatives=16),
                             show_progress=False, log_prior=lu)
        return lens, h

    with pytest.raises(InputError, match="log_prior"):
        train_tuned_lens(TunedLens(d, norm, U), cap.train, U, replace(sc, shortlist=2),
                         show_progress=False)
    full, h_full = trained(0)
    whole, _ = trained(U.vocab_size)  # the shortlist is the vocabulary: the exact KL
    torch.testing.assert_close(whole.A.weight, full.A.weight, rtol=1e-3, atol=1e-5)
    short, h = trained(8)  # eight tokens per row, the rest sampled: another path down
    assert not torch.allclose(short.A.weight, full.A.weight)
    assert h["best"]["val_kl"] < h["evals"][0]["val_kl"]  # validated on the full KL
    assert h["evals"][0]["val_kl"] == pytest.approx(h_full["evals"][0]["val_kl"])


@pytest.mark.parametrize("student", ["hyperfield", "mlp", "transformer"])
def test_bf16_autocast_trains_the_dense_students_in_float32_weights_not_hyperfield(
        setup, student):
    from hyperlens.hft.cells import _ids
    from hyperlens.hft.model import TransformerStudent

    cap, feat, fc, store, U, lu = setup
    stats = aux_stats(cap.train)
    runs = {}
    for bf16 in (False, True):
        sc = replace(SMALL_STUDENT, batch_size=32, patience=2, max_epochs=2, val_share=0.25,
                     fast_unembed=False, bf16=bf16)
        if student == "hyperfield":
            m = build_model(sc, feat.d1, fc.d_tail, 32, int(stats["mean"].numel()), U, lu)
            h = train_hyperfield(m, store, cap.train, stats, U, sc, show_progress=False)
            h = h["e2e"]
        elif student == "mlp":
            m = _mlp(setup)
            h = train_mlp(m, store, cap.train, U, sc, show_progress=False)
        else:
            m = TransformerStudent(feat.emb, fc.window, 32, 64, U, lu, heads=4, seed=1)
            h = train_mlp(m, _ids(cap.train), cap.train, U, sc, show_progress=False)
        assert all(p.dtype == torch.float32 for p in m.parameters())
        assert h["best"]["val_kl"] < h["evals"][0]["val_kl"]  # it learns in either precision
        runs[bf16] = h
    if student == "hyperfield":  # always float32: bf16 rounding would change its routing
        assert runs[True]["train_loss"] == runs[False]["train_loss"]
        return
    assert runs[True]["train_loss"] != runs[False]["train_loss"]  # the option is honoured
    # ... and bf16 steps track the float32 ones
    np.testing.assert_allclose(runs[True]["train_loss"][:3], runs[False]["train_loss"][:3],
                               rtol=0.05)


def test_student_keys_name_bf16_training_and_keep_the_float32_keys():
    from hyperlens.hft.cells import StudentSetup
    from hyperlens.hft.train import StudentConfig

    fc = small_features(8)
    key = {b: StudentSetup.of("t", "cap", fc, replace(StudentConfig(), bf16=b), 100).key
           for b in (False, True)}
    d = asdict(StudentSetup.of("t", "cap", fc, StudentConfig(), 100))
    assert "bf16" not in dict(d["student"]) and key[False] != key[True]


def test_student_keys_name_the_vocabulary_precision_as_the_cpu_resolves_it():
    """A CPU with native bf16 trains through bf16 vocabulary products unless told otherwise:
    its cells must not share a key with float32 ones (which keep the keys from before), and
    a setup carries the resolved choice, so its cells compute what the key says anywhere."""
    from hyperlens.functional import kernels
    from hyperlens.hft.cells import StudentSetup
    from hyperlens.hft.train import StudentConfig

    fc = small_features(8)

    def setup(**kw: Any) -> Any:
        return StudentSetup.of("t", "cap", fc, StudentConfig(bf16=False, **kw), 100)

    with kernels.force_kernels("avx2"):
        auto_avx2 = setup()
    with kernels.force_kernels("amx"):
        auto_amx, off_amx = setup(), setup(fast_unembed=False)
    assert auto_avx2.key == off_amx.key == setup(fast_unembed=False).key
    assert auto_amx.key != auto_avx2.key and auto_amx.key == setup(fast_unembed=True).key
    assert dict(auto_amx.student)["fast_unembed"] is True
    assert auto_amx.student_config().fast_unembed is True  # the cell is told, not re-resolved
    assert dict(auto_avx2.student)["fast_unembed"] is False


def test_student_keys_name_a_gpu_by_its_kind_and_keep_the_cpu_keys():
    from hyperlens.hft.cells import StudentRun, StudentSetup, cells_for
    from hyperlens.hft.train import StudentConfig

    fc, sc = small_features(8), StudentConfig(bf16=False, fast_unembed=False)
    cpu = StudentSetup.of("t", "cap", fc, sc, 100)
    # the key of this setup before the device option (keys of the committed ledgers)
    assert cpu.key == "bb39a71765890c629877"
    assert StudentSetup.of("t", "cap", fc, sc, 100, 500).key == "13548d4eb8902e7fdc39"
    gpu = {d: StudentSetup.of("t", "cap", fc, sc, 100, device=d).key
           for d in ("cuda", "cuda:0", "cuda:1")}
    assert len(set(gpu.values())) == 1 and gpu["cuda"] != cpu.key
    run = [StudentRun("mlp", 0, "m")]
    assert cells_for(cpu, run, "out", 2)[0].task.resources.num_gpus == 0
    cell = cells_for(StudentSetup.of("t", "cap", fc, sc, 100, device="cuda"), run, "out", 2)[0]
    assert cell.task.resources.num_gpus == 1 and cell.task.resources.num_cpus == 2
    assert cell.task.kwargs["setup"]["device"] == "cuda"


def test_min_improvement_reaches_the_loop_and_keeps_the_earlier_keys(setup):
    from hyperlens.hft.cells import StudentSetup
    from hyperlens.hft.train import StudentConfig, _cfg

    fc = small_features(8)
    before = StudentSetup.of("t", "cap", fc, StudentConfig(), 100)
    assert "min_improvement" not in dict(before.student)  # at 0 the keys stay as they were
    assert StudentSetup.of("t", "cap", fc, replace(StudentConfig(), min_improvement=1e-3),
                           100).key != before.key
    assert _cfg(replace(StudentConfig(), min_improvement=1e-3), 1, 0,
                False).early_stop_threshold == 1e-3
    with pytest.raises(InputError, match="min_improvement"):
        replace(StudentConfig(), min_improvement=1.5).validate()
    # a threshold no epoch can pass stops a phase after --patience epochs, at the start
    cap, feat, fc2, store, U, lu = setup
    sc = replace(SMALL_STUDENT, batch_size=16, patience=1, max_epochs=6, val_share=0.25,
                 fast_unembed=False, min_improvement=0.99)
    h = train_mlp(_mlp(setup), store, cap.train, U, sc, show_progress=False)
    assert h["stopped_early"] and len(h["evals"]) == 2 and h["restored_step"] == 0
