"""`hyperlens hft eval` / `generate` on the tiny setup: a saved student is scored and
continues a prompt; a capture it cannot be scored on is refused before the teacher loads."""

from __future__ import annotations

import json

import pytest
from tiny_setup import SMALL, TEXTS

from hyperlens.config import RunContext
from hyperlens.errors import InputError
from hyperlens.experiments.hft_saved import HftEvalConfig, HftGenerateConfig, run_eval, run_generate
from hyperlens.hft.capture import CaptureConfig, run_capture


def _ctx(tmp_path):
    return RunContext(out=tmp_path / "report", progress=False)


def test_eval_and_generate_a_saved_student(saved_student, tiny_teacher, tmp_path, monkeypatch):
    import hyperlens.models as hm

    monkeypatch.setattr(hm, "load", lambda name, **k: tiny_teacher)
    out = run_eval(HftEvalConfig(student=saved_student, n_boot=20),
                       _ctx(tmp_path)).out_dir
    res = json.loads((out / "results.json").read_text())
    assert "A: HyperField (saved)" in res["data"]["summary"]
    tp = res["data"]["throughput"]  # timed against the teacher, fastest against fastest
    assert tp["student_batch1"] > 0 and tp["teacher_batch1"] > 0
    speed = next(s for s in res["sections"] if s["title"] == "Speed")["tables"][0]["rows"]
    assert speed[0][0] == "tokens/s batch 1: student / teacher" and speed[-1][1] > 0
    out = run_generate(HftGenerateConfig(student=saved_student / "student", n_tokens=3),
                           _ctx(tmp_path / "g")).out_dir
    assert (out / "results.json").exists()


def test_eval_on_a_capture_of_another_window_is_refused_before_the_teacher(
        saved_student, tiny_teacher, tmp_path, monkeypatch):
    import hyperlens.models as hm

    other = run_capture(tiny_teacher, TEXTS, CaptureConfig(**{**SMALL.__dict__, "window": 4}),
                        tmp_path / "w4", show_progress=False)
    monkeypatch.setattr(hm, "load", lambda *a, **k: pytest.fail("teacher loaded before checks"))
    with pytest.raises(InputError, match=r"this student was trained on teacher 'tiny' \(hidden "
                                         r"32, vocab 120\), window 8, capture .*, dataset agnews, "
                                         r"layer 1; the capture in .*w4 has window 4"):
        run_eval(HftEvalConfig(student=saved_student, capture_dir=other.root),
                     _ctx(tmp_path))
    with pytest.raises(InputError, match="holds no capture"):
        run_eval(HftEvalConfig(student=saved_student, capture_dir=tmp_path / "none"),
                     _ctx(tmp_path))
