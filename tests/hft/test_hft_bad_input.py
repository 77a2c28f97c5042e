"""The hft library refuses bad input with named errors, before any heavy work and without
leaving anything half-written: captures, saved students, Kneser-Ney, the HyperTensor layer,
the student config and generation; and its constructors leave the global generator alone."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_setup import SMALL, SMALL_STUDENT, TEXTS, CharTokenizer

from hyperlens.errors import InputError, NotFittedError, ShapeError
from hyperlens.hft.capture import CaptureConfig, check_texts, load_capture, run_capture
from hyperlens.hft.generate import (
    check_student_capture,
    load_student,
    load_student_state,
    student_folder,
)
from hyperlens.hft.layer import HyperTensorLayer
from hyperlens.hft.model import HyperFieldModel, MLPStudent
from hyperlens.hft.ngram import KneserNey
from hyperlens.hft.train import StudentConfig
from hyperlens.models.handle import from_module


def _cfg(**kw):
    return CaptureConfig(**{**SMALL.__dict__, **kw})


# ------------------------------------------------------------------------------ capture
@pytest.mark.parametrize("heads, match", [((-1,), "heads must be attention-head indices"),
                                          ((0, 0), "must not repeat"),
                                          ((), "at least one")])
def test_capture_config_refuses_bad_heads(heads, match):
    with pytest.raises(InputError, match=match):
        _cfg(heads=heads).validate()


def test_capture_config_refuses_negative_layer():
    with pytest.raises(InputError, match="layer must be an int >= 0"):
        _cfg(layer=-1).validate()


def test_head_beyond_the_teacher_is_refused_before_anything_is_written(tiny_teacher, tmp_path):
    with pytest.raises(InputError, match=r"heads \[99\]: tiny has 4 attention heads"):
        run_capture(tiny_teacher, TEXTS, _cfg(heads=(99,)), tmp_path / "c", show_progress=False)
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("texts", [[], ["", "   "]])
def test_empty_corpus_is_refused(tiny_teacher, tmp_path, texts):
    with pytest.raises(InputError, match="holds no text"):
        run_capture(tiny_teacher, texts, SMALL, tmp_path / "c", show_progress=False)
    assert not (tmp_path / "c").exists()
    with pytest.raises(InputError, match="--dataset x.txt holds no text"):
        check_texts(texts, "--dataset x.txt")


def test_budget_beyond_the_corpus_is_refused_before_any_shard(tiny_teacher, tmp_path):
    with pytest.raises(InputError, match=r"the corpus holds [\d,]+ prediction positions in 40 "
                                         r"texts.*lower --train-tokens"):
        run_capture(tiny_teacher, TEXTS, _cfg(train_tokens=100_000), tmp_path / "c",
                    show_progress=False)
    assert not (tmp_path / "c").exists()


def test_capture_dir_that_is_a_file_is_refused(tiny_teacher, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(InputError, match="is an existing file.*--capture-dir"):
        run_capture(tiny_teacher, TEXTS, SMALL, f, show_progress=False)
    with pytest.raises(InputError, match="is an existing file"):
        load_capture(f)


def test_capture_of_other_settings_is_refused_naming_each_difference(small_capture, tiny_teacher):
    other = _cfg(dataset="sst2", train_tokens=200, window=4)
    msg = (r"dataset \(--dataset\): 'agnews' in the capture, 'sst2' asked; "
           r"train_tokens \(--train-tokens\): 300 in the capture, 200 asked; "
           r"window \(--window\): 8 in the capture, 4 asked\. Pass another --capture-dir")
    with pytest.raises(InputError, match=msg):
        load_capture(small_capture.root, expect=other)
    with pytest.raises(InputError, match=msg):
        run_capture(tiny_teacher, TEXTS, other, small_capture.root, show_progress=False)
    assert load_capture(small_capture.root, expect=SMALL).config == SMALL.as_manifest()


def test_missing_capture_names_the_capture_dir_option(tmp_path):
    with pytest.raises(InputError, match="hft capture --capture-dir"):
        load_capture(tmp_path)


def test_rerun_removes_the_shard_folder_a_killed_run_left(tiny_teacher, tmp_path):
    root = tmp_path / "c"
    c = run_capture(tiny_teacher, TEXTS, SMALL, root, show_progress=False)
    # what a kill inside atomic_path leaves: a half-written shard in its temporary folder,
    # and the manifest not yet listing that shard
    man = json.loads((root / "manifest.json").read_text())
    gone = man["shards"]["train"].pop()
    man["complete"] = False
    (root / "manifest.json").write_text(json.dumps(man))
    shutil.rmtree(root / gone["name"])
    left = Path(tempfile.mkdtemp(prefix=f".{gone['name']}.", suffix=".tmp", dir=root))
    (left / gone["name"]).mkdir()
    (left / gone["name"] / "final.npy").write_bytes(b"half")
    again = run_capture(tiny_teacher, TEXTS, SMALL, root, show_progress=False)
    assert not list(root.glob(".*.tmp"))
    assert len(again.train) == len(c.train)


# ------------------------------------------------------------------------------ students
def _copy(saved_student, tmp_path):
    dst = tmp_path / "student"
    shutil.copytree(saved_student / "student", dst)
    return dst


def test_student_loads_from_the_train_out_folder_and_its_student_folder(saved_student,
                                                                       tiny_teacher):
    assert student_folder(saved_student) == saved_student / "student"
    assert student_folder(saved_student / "student") == saved_student / "student"
    st, teacher, meta = load_student(saved_student, tiny_teacher)
    assert meta["teacher"] == "tiny" and teacher is tiny_teacher
    lp = st.logprobs(np.full((2, 8), 5), np.array([0, 3]))
    assert lp.shape == (2, 120) and torch.isfinite(lp).all()


def test_saved_student_files_follow_the_umask(saved_student):
    want = 0o666 & ~_umask()
    for name in ("student.safetensors", "student.json"):
        assert stat.S_IMODE((saved_student / "student" / name).stat().st_mode) == want


def _umask():
    m = os.umask(0o022)
    os.umask(m)
    return m


def test_folder_without_a_student_names_the_fix(tmp_path):
    with pytest.raises(InputError, match="holds no saved student.*--out folder of"):
        load_student_state(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        load_student_state(tmp_path / "nope")


@pytest.mark.parametrize("damage, match", [
    ("truncate", "student.safetensors cannot be read"),
    ("bad json", "student.json is not valid JSON"),
    ("no weights", "has no weights"),
    ("header lacks keys", "student.json lacks d_model"),
    ("bad features", "invalid 'features' entry"),
])
def test_damaged_student_is_refused_by_name(saved_student, tmp_path, damage, match):
    d = _copy(saved_student, tmp_path)
    w, h = d / "student.safetensors", d / "student.json"
    if damage == "truncate":
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    elif damage == "bad json":
        h.write_text("{not json")
    elif damage == "no weights":
        w.unlink()
    elif damage == "header lacks keys":
        meta = json.loads(h.read_text())
        del meta["d_model"]
        h.write_text(json.dumps(meta))
    else:
        meta = json.loads(h.read_text())
        meta["features"]["no_such_setting"] = 1
        h.write_text(json.dumps(meta))
    with pytest.raises(InputError, match=match):
        load_student_state(d)


def _rewrite_weights(folder, edit):
    from safetensors.torch import load_file, save_file

    t = load_file(str(folder / "student.safetensors"))
    edit(t)
    save_file(t, str(folder / "student.safetensors"))


def test_student_missing_a_tensor_is_refused_listing_it(saved_student, tiny_teacher, tmp_path):
    d = _copy(saved_student, tmp_path)
    _rewrite_weights(d, lambda t: [t.pop("model.stage2.c_mid"), t.pop("model.aux.bias")])
    with pytest.raises(InputError, match=r"missing aux\.bias, stage2\.c_mid"):
        load_student(d, tiny_teacher)


def test_student_with_a_tensor_of_another_shape_is_refused(saved_student, tiny_teacher,
                                                           tmp_path):
    d = _copy(saved_student, tmp_path)

    def edit(t):
        t["model.stage1.centre"] = torch.zeros(3, 3)
        t["feat.tail_std"] = torch.ones(7)
        t["model.extra"] = torch.ones(1)

    _rewrite_weights(d, edit)
    with pytest.raises(InputError, match=r"featuriser statistics.*other shape tail_std \(7,\) "
                                         r"\(expected \(32,\)\)"):
        load_student(d, tiny_teacher)
    _rewrite_weights(d, lambda t: t.__setitem__("feat.tail_std", torch.ones(32)))
    with pytest.raises(InputError, match=r"other shape stage1\.centre \(3, 3\) \(expected "
                                         r"\(8, 4\)\); unexpected extra"):
        load_student(d, tiny_teacher)


def test_student_of_another_teacher_is_refused(saved_student):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    other = LlamaForCausalLM(LlamaConfig(
        vocab_size=90, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=32, max_position_embeddings=64)).eval()
    h = from_module(other, CharTokenizer(), name="other", kind="decoder")
    with pytest.raises(InputError, match=r"this student was trained on teacher 'tiny' \(hidden "
                                         r"32, vocab 120\), window 8, capture .*; the teacher "
                                         r"given, 'other', has hidden 16 and vocab 90"):
        load_student(saved_student, h)


def test_capture_of_another_teacher_or_window_is_refused(saved_student, small_capture):
    fc, meta, state, _ = load_student_state(saved_student)
    V = int(state["unigram"].numel())
    check_student_capture(meta, fc, V, small_capture.manifest, small_capture.root)  # its own
    other = json.loads(json.dumps(small_capture.manifest))
    other["config"].update(model="smollm2", window=16)
    other["hidden_size"] = 576
    with pytest.raises(InputError, match=r"this student was trained on teacher 'tiny'.*; the "
                                         r"capture in X has teacher 'smollm2', hidden 576, "
                                         r"window 16\. Pass the capture the student was "
                                         r"trained on as --capture-dir"):
        check_student_capture(meta, fc, V, other, "X")


def test_student_trained_with_pca_is_refused(saved_student, tmp_path):
    d = _copy(saved_student, tmp_path)
    meta = json.loads((d / "student.json").read_text())
    meta["features"]["pca"] = 64
    (d / "student.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="--pca 64"):
        load_student_state(d)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_generate_refuses_a_token_count_below_one(saved_student, tiny_teacher, n):
    st, _, _ = load_student(saved_student, tiny_teacher)
    with pytest.raises(InputError, match="n_tokens must be an int >= 1"):
        st.generate([5, 6], n, start_token=1)
    assert len(st.generate([5, 6], 2, start_token=1)) == 2


# ------------------------------------------------------------------------------ Kneser-Ney
@pytest.mark.parametrize("args, match", [
    (("3", 10, 0), "order must be an int, got str '3'"),
    ((3.0, 10, 0), "order must be an int"),
    ((0, 10, 0), r"order must be in 1\.\.8"),
    ((3, -5, 0), "vocab_size must be >= 1"),
    ((3, "10", 0), "vocab_size must be an int"),
    ((3, 10, 10), r"start_token must be a token id in \[0, 10\)"),
])
def test_kneser_ney_refuses_bad_parameters(args, match):
    with pytest.raises(InputError, match=match):
        KneserNey(*args)


def test_kneser_ney_distribution_before_fit_and_bad_histories():
    kn = KneserNey(3, 10, 0)
    with pytest.raises(NotFittedError, match="call fit"):
        kn.distribution(np.zeros((2, 2), int))
    kn.fit([np.array([1, 2, 3, 4])])
    with pytest.raises(ShapeError, match=r"hist must be \[B, 2\]"):
        kn.distribution(np.zeros((2, 3), int))
    with pytest.raises(InputError, match=r"token ids must lie in \[0, 10\)"):
        kn.distribution(np.array([[0, 12]]))


# ------------------------------------------------------------------------------ layer
@pytest.mark.parametrize("x, err, match", [
    (torch.zeros(0, 8), InputError, "holds no rows"),
    (torch.zeros(10, 5), ShapeError, r"x must be \[n, d_in=8\].*got \(10, 5\)"),
    (torch.zeros(8), ShapeError, r"got \(8,\)"),
    (torch.full((4, 8), float("nan")), InputError, "NaN"),
])
def test_init_from_data_refuses_bad_data(x, err, match):
    layer = HyperTensorLayer(8, 4, 8, 2)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    with pytest.raises(err, match=match):
        layer.init_from_data(x)
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize("kw, match", [
    ({"stage1_epochs": 0}, "stage1_epochs must be an int >= 1"),
    ({"lr": 0.0}, "lr must be a finite number > 0"),
    ({"hard": -1.0}, "hard must be a finite number >= 0"),
    ({"k1": 12, "heads1": 8}, r"k1 \(12\) must be a multiple"),
])
def test_student_config_refuses_bad_settings(kw, match):
    with pytest.raises(InputError, match=match):
        StudentConfig(**kw).validate()
    StudentConfig().validate()
    SMALL_STUDENT.validate()


# ------------------------------------------------------------------------------ randomness
def test_student_constructors_leave_the_global_generator_alone():
    from hyperlens.hft.capture import Unembedding

    U = Unembedding(torch.randn(20, 6))
    lu = torch.zeros(20)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = MLPStudent(5, 3, 6, 7, U, lu, seed=4)
    b = HyperFieldModel(5, 3, 6, 2, U, lu, d_embed=8, k1=4, top1=2, k2=4, top2=2, d_route=2,
                        seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    # the same seed gives the same weights whatever the global generator's state
    torch.manual_seed(999)
    a2 = MLPStudent(5, 3, 6, 7, U, lu, seed=4)
    b2 = HyperFieldModel(5, 3, 6, 2, U, lu, d_embed=8, k1=4, top1=2, k2=4, top2=2, d_route=2,
                         seed=4)
    for m, m2 in ((a, a2), (b, b2)):
        for (k, v), v2 in zip(m.state_dict().items(), m2.state_dict().values(), strict=True):
            assert torch.equal(v, v2), k
