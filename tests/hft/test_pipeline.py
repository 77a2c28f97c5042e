"""Capture -> features -> HyperField training on a tiny random Llama: shards and resume,
teacher logits recomputed from the stored state, the window and cache properties, and a
student that learns (training KL falls) and survives save/load."""

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from tiny_setup import TEXTS, CharTokenizer

from hyperlens.errors import InputError
from hyperlens.hft.capture import (
    CaptureConfig,
    Unembedding,
    check_capture_dir,
    load_capture,
    run_capture,
)
from hyperlens.hft.checks import beyond_window, cached_vs_fresh, tail_toggle, token_ablation
from hyperlens.hft.features import FeatureConfig, Featurizer
from hyperlens.hft.generate import RollingBuffer, Student, load_student, save_student
from hyperlens.hft.model import HyperFieldModel, log_unigram
from hyperlens.hft.rows import RowArray
from hyperlens.hft.train import StudentConfig, aux_stats, build_features, train_hyperfield
from hyperlens.models.handle import from_module


@pytest.fixture(scope="module")
def cap(tiny_llama, tmp_path_factory):
    h = from_module(tiny_llama.eval(), CharTokenizer(), name="tiny", kind="decoder")
    cfg = CaptureConfig(model="tiny", train_tokens=600, heldout_tokens=200, layer=1,
                        heads=(0, 1), window=8, max_length=40, batch_size=4, shard_texts=6,
                        cut_fraction=1.0)
    root = tmp_path_factory.mktemp("cap")
    return h, cfg, run_capture(h, TEXTS, cfg, root, show_progress=False)


def test_capture_split_by_text_and_logits_recomputed(cap):
    h, cfg, c = cap
    assert len(c.train) >= 600 and len(c.heldout) >= 200
    man = json.loads((c.root / "manifest.json").read_text())
    assert set(man["texts"]["train"]).isdisjoint(man["texts"]["heldout"])
    assert len(man["shards"]["train"]) > 1 and c.train["final"].dtype == np.float16
    # recompute teacher logits from the stored final state for the first held-out text
    idx = man["texts"]["heldout"][0]
    ids = [1] + CharTokenizer()([TEXTS[idx]], max_length=39)["input_ids"][0]
    with torch.no_grad():
        ref = h.module(input_ids=torch.tensor([ids[:-1]])).logits[0]
    rows = np.flatnonzero(c.heldout["text"] == 0)
    U = Unembedding.from_model(h)
    got = U(torch.from_numpy(np.array(c.heldout["final"][rows])).float())
    torch.testing.assert_close(got, ref, atol=2e-2, rtol=1e-2)
    assert c.heldout["target"][rows].tolist() == ids[1:]
    # the cut-context teacher equals a fresh forward of the window alone
    p = int(np.flatnonzero(c.heldout["pos"][rows] >= cfg.window)[0])
    win = ids[p - cfg.window + 1:p + 1]
    with torch.no_grad():
        out = h.module(input_ids=torch.tensor([win]), output_hidden_states=True)
    torch.testing.assert_close(U(torch.from_numpy(np.array(c.heldout["final_w"][rows[p]]))[None]
                                 .float())[0], out.logits[0, -1], atol=2e-2, rtol=1e-2)
    assert c.train["qkv"].shape[1] == 3 * 2 * 8
    # the shards' states stay on disk, read as one array in shard order
    names = sorted(d["name"] for d in man["shards"]["train"])
    stored = np.concatenate([np.load(c.root / n / "final.npy") for n in names])
    assert isinstance(c.train["final"], RowArray) and isinstance(c.train["target"], np.ndarray)
    assert np.array_equal(np.asarray(c.train["final"]), stored)
    assert np.array_equal(c.train.head(50)["final"][:], stored[:50])


def test_cut_context_subsample_is_weighted(cap, tmp_path):
    h, cfg, c = cap
    half = CaptureConfig(**{**cfg.__dict__, "train_tokens": 50, "cut_fraction": 0.5})
    sub = run_capture(h, TEXTS, half, tmp_path / "half", show_progress=False).heldout
    past = np.asarray(sub["pos"]) >= cfg.window
    w = np.asarray(sub["w_weight"])
    fw = np.asarray(sub["final_w"], np.float32)
    assert (w[~past] == 1).all() and np.array_equal(fw[~past], np.asarray(sub["final"])[~past]
                                                    .astype(np.float32))
    ran = past & (w > 0)
    # about half of the rows past the window ran, and their weights restore the row count
    assert 0 < ran.sum() < past.sum() and np.isfinite(fw[ran]).all()
    assert np.isnan(fw[past & (w == 0)]).all()
    assert w[past].sum() == pytest.approx(past.sum(), rel=0.1)
    with pytest.raises(InputError, match="cut_fraction"):
        CaptureConfig(cut_fraction=0.0).validate()


def test_capture_resumes_and_rejects_other_config(cap, tmp_path):
    h, cfg, c = cap
    stamp = {p: p.stat().st_mtime_ns for p in c.root.glob("*/final.npy")}
    again = run_capture(h, TEXTS, cfg, c.root, show_progress=False)
    assert {p: p.stat().st_mtime_ns for p in again.root.glob("*/final.npy")} == stamp
    other = CaptureConfig(**{**cfg.__dict__, "window": 4})
    with pytest.raises(InputError):
        run_capture(h, TEXTS, other, c.root, show_progress=False)
    with pytest.raises(InputError):
        load_capture(tmp_path)


def test_bfloat16_capture_is_recorded_and_close_to_float32(cap, tmp_path):
    """``dtype="bfloat16"`` forwards a bfloat16 copy of the teacher (the caller's stays
    float32); the manifest records it, so the two precisions never share a folder, and a
    manifest from before the field existed reads as float32."""
    h, cfg, c = cap
    low_cfg = CaptureConfig(**{**cfg.__dict__, "dtype": "bfloat16"})
    low = run_capture(h, TEXTS, low_cfg, tmp_path / "bf16", show_progress=False)
    assert next(h.module.parameters()).dtype == torch.float32
    assert json.loads((low.root / "manifest.json").read_text())["config"]["dtype"] == "bfloat16"
    a = np.asarray(c.heldout["final"], np.float32)
    b = np.asarray(low.heldout["final"], np.float32)
    assert a.shape == b.shape and not np.array_equal(a, b)
    assert np.abs(a - b).max() <= 0.05 * np.abs(a).max()
    with pytest.raises(InputError, match=r"dtype \(--dtype\): 'bfloat16' in the capture"):
        load_capture(low.root, expect=cfg)
    old = tmp_path / "old"
    old.mkdir()
    man = json.loads((c.root / "manifest.json").read_text())
    del man["config"]["dtype"]
    (old / "manifest.json").write_text(json.dumps(man))
    assert check_capture_dir(old, cfg) is not None
    with pytest.raises(InputError, match="'float32' in the capture, 'bfloat16' asked"):
        check_capture_dir(old, low_cfg)
    with pytest.raises(InputError, match="dtype must be"):
        CaptureConfig(dtype="float16").validate()


@pytest.fixture(scope="module")
def trained(cap):
    h, cfg, c = cap
    fc = FeatureConfig(window=8, tail=4, hash_bits=12, d_count=2048, d_sketch=512, d_tail=64)
    feat = Featurizer(h.token_embeddings(), fc).fit(c.train["ctx"], c.train["pos"])
    ftr = build_features(feat, c, "train", show_progress=False)
    U = Unembedding.from_model(h)
    lu = log_unigram(torch.from_numpy(np.array(c.train["target"])), U.vocab_size)
    stats = aux_stats(c.train)
    model = HyperFieldModel(feat.d1, fc.d_tail, 32, int(stats["mean"].numel()), U, lu,
                            d_embed=64, k1=32, top1=4, k2=64, top2=4, d_route=8, heads2=2)
    sc = StudentConfig(stage1_epochs=2, stage2_epochs=4, e2e_epochs=2, batch_size=64,
                       lr=3e-3, reseed_every=5, fast_unembed=False)
    hist = train_hyperfield(model, ftr, c.train, stats, U, sc, show_progress=False)
    return h, c, feat, model, U, hist


def test_hyperfield_learns(trained):
    *_, hist = trained
    s2 = hist["stage2"]["train_loss"]
    assert np.mean(s2[-3:]) < np.mean(s2[:3])
    s1 = hist["stage1"]["train_loss"]
    assert s1[-1] < s1[0]


def test_window_cache_ablation_and_tail(trained):
    h, c, feat, model, U, _ = trained
    st = Student(feat, model)
    assert beyond_window(st, 100, 1, n_pairs=3)["max_abs_logprob_diff"] == 0.0
    fhe = build_features(feat, c, "heldout", show_progress=False)
    n = 32
    cv = cached_vs_fresh(st, fhe.x1[:n], fhe.tail[:n],
                         c.heldout, slice(0, n))
    assert cv["max_abs_logprob_diff"] < 0.05 and cv["top1_same"] > 0.9
    ab = token_ablation(st, c.heldout, n_rows=64)
    assert ab["kl"][0] > 0
    tt = tail_toggle(model, fhe.x1[:n].float(),
                     fhe.tail[:n].float(),
                     c.heldout.tensor("final", slice(0, n)), U)
    assert tt["kl_with_tail"] != tt["kl_without_tail"]


def test_bfloat16_copy_and_the_speed_check_compare_it_with_float32(trained):
    from hyperlens.hft.checks import throughput

    h, c, feat, model, U, _ = trained
    st = Student(feat, model)
    low = st.with_vocab_dtype(torch.bfloat16)
    assert low.model.unembed.compute_dtype == torch.bfloat16
    assert model.unembed.compute_dtype == torch.float32  # the original is left as it was
    rows = slice(0, 16)
    ctx, pos = np.array(c.heldout["ctx"][rows]), np.array(c.heldout["pos"][rows])
    a, b = st.logprobs(ctx, pos), low.logprobs(ctx, pos)
    assert b.dtype == torch.float32 and not torch.equal(a, b)  # it did run in bfloat16
    torch.testing.assert_close(b.exp().sum(1), torch.ones(16))
    assert float((a.argmax(1) == b.argmax(1)).double().mean()) >= 0.75
    tp = throughput(st, h, c.heldout, steps=2, batch=16, repeats=1, bf16=True)
    assert 0.75 <= tp["agree_student_bf16"] <= 1 and 0 < tp["maxdiff_student_bf16"] < 1
    assert 0.5 <= tp["agree_teacher_bf16"] <= 1
    # the float16 copies too, at batch 1 only: on some CPUs they are the fastest
    assert 0.75 <= tp["agree_student_fp16"] <= 1 and 0.5 <= tp["agree_teacher_fp16"] <= 1
    assert "student_batch_fp16" not in tp and "speedup_batch_fp16" not in tp
    assert tp["speedup_batch1_fp16"] == pytest.approx(
        tp["student_batch1_fp16"] / tp["teacher_batch1_fp16"])
    assert tp["speedup_batch1_fastest"] == pytest.approx(
        max(tp["student_batch1"], tp["student_batch1_bf16"], tp["student_batch1_fp16"])
        / max(tp["teacher_batch1"], tp["teacher_batch1_bf16"], tp["teacher_batch1_fp16"]))
    # batch 512 in bfloat16 only where it is native (emulated, it is slower than float32)
    from hyperlens.functional import kernels

    native = kernels.features().bf16
    assert ("student_batch_bf16" in tp) == ("speedup_batch_bf16" in tp) == native
    assert tp["speedup_batch_fastest"] == pytest.approx(
        max(tp["student_batch"], tp.get("student_batch_bf16", 0.0))
        / max(tp["teacher_batch"], tp.get("teacher_batch_bf16", 0.0)))


def test_rolling_buffer_and_save_load(trained, tmp_path):
    h, c, feat, model, U, _ = trained
    buf = RollingBuffer(4, start_token=1)
    for t in (5, 6, 7, 8, 9):
        buf.push(t)
    ctx, pos = buf.row()
    assert ctx.tolist() == [[9, 8, 7, 6]] and pos.tolist() == [5]
    st = Student(feat, model)
    sc = StudentConfig(d_embed=64, k1=32, top1=4, k2=64, top2=4, d_route=8, heads1=1, heads2=2)
    save_student(tmp_path / "s", feat, model, {
        "teacher": "tiny", "capture": str(c.root), "student": asdict(sc),
        "d_aux": model.aux.out_features, "d_model": 32})
    st2, teacher, meta = load_student(tmp_path / "s", h)
    assert teacher is h and meta["teacher"] == "tiny"
    rows = slice(0, 16)
    a = st.logprobs(np.array(c.heldout["ctx"][rows]), np.array(c.heldout["pos"][rows]))
    b = st2.logprobs(np.array(c.heldout["ctx"][rows]),
                                    np.array(c.heldout["pos"][rows]))
    torch.testing.assert_close(a, b)
    out = st.generate([5, 6, 7], 5, start_token=1)
    assert len(out) == 5 and all(0 <= t < 120 for t in out)


def test_capture_keeps_values_beyond_float16(tiny_llama, tmp_path):
    """A state above float16's range (Gemma 3's start-token activations) is stored as
    float32 in its shard, exactly, instead of overflowing to inf; shards that fit stay
    float16 and the split loads as float32."""
    from hyperlens.hft.capture import half_or_single

    small = np.array([[1.5, -2.0]], np.float32)
    big = np.array([[1.0e5, -3.0]], np.float32)
    assert half_or_single(small).dtype == np.float16
    assert half_or_single(big).dtype == np.float32 and half_or_single(big)[0, 0] == 1.0e5

    model = tiny_llama.eval()
    h = from_module(model, CharTokenizer(), name="tiny", kind="decoder")
    cfg = CaptureConfig(model="tiny", train_tokens=300, heldout_tokens=100, layer=1,
                        heads=(0,), window=8, max_length=40, batch_size=4, shard_texts=6)

    def boost(module, args, output):  # block 0's output: a huge start-token activation
        hidden = output[0] if isinstance(output, tuple) else output
        hidden[:, 0, 0] = 1.0e5
        return output

    handle = model.model.layers[0].register_forward_hook(boost)
    try:
        c = run_capture(h, TEXTS, cfg, tmp_path, show_progress=False)
    finally:
        handle.remove()
    state = c.train["state"]
    assert np.isfinite(state).all() and state.dtype == np.float32
    assert state[c.train["pos"] == 0, 0].min() > 9.0e4
    assert c.train["final"].dtype == np.float16
