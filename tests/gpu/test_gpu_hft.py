"""``hyperlens hft`` on the device: the teacher's capture and the student cells.

``hft capture`` / ``hft train`` / ``hft scale --device cuda`` forward the teacher on the GPU
while capturing, and train each student cell there; the held-out scoring, the checks and
the speed stay on the CPU. A capture made on the GPU holds the CPU's rows (the token
arrays exactly, the states to float16 storage and float32 kernel rounding). A student cell
on the GPU trains there, scores on the CPU and keeps its weights for a CPU reader; its
held-out figures are the CPU cell's within the spread that routing flips allow (a rounding
difference can change a top-k choice, after which the two runs take different paths:
:mod:`test_gpu_training`).
"""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from gpu_support import assert_on, moved
from tiny_setup import SMALL, SMALL_STUDENT, TEXTS, CharTokenizer, small_features

from hyperlens.hft.capture import run_capture
from hyperlens.hft.cells import (
    StudentRun,
    StudentSetup,
    load_metrics,
    load_student_model,
    prepare,
    register,
    student_cell,
)
from hyperlens.hft.train import fit_rows
from hyperlens.models.handle import from_module

pytestmark = pytest.mark.cuda

_FLOAT16 = {"rtol": 5e-3, "atol": 5e-3}  # two float16 roundings of float32 states


@pytest.fixture(scope="module")
def cpu_capture(tiny_llama, tmp_path_factory):
    """The tiny Llama teacher on the CPU and its capture of the small corpus."""
    teacher = from_module(tiny_llama.eval(), CharTokenizer(), name="tiny", kind="decoder")
    cap = run_capture(teacher, TEXTS, SMALL, tmp_path_factory.mktemp("hft-cpu-cap"),
                      show_progress=False)
    return teacher, cap


def test_a_capture_on_the_device_holds_the_cpu_rows(device, cpu_capture, tmp_path):
    teacher, cap = cpu_capture
    gpu = from_module(moved(teacher.module, device), CharTokenizer(), name="tiny",
                      kind="decoder")
    assert gpu.device.type == device.type
    got = run_capture(gpu, TEXTS, SMALL, tmp_path / "device-cap", show_progress=False)
    assert_on(device, gpu.module)
    for split in ("train", "heldout"):
        a, b = getattr(got, split), getattr(cap, split)
        assert len(a) == len(b)
        for key in ("text", "pos", "ctx", "target"):
            np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
        for key in ("final", "state", "qkv"):
            np.testing.assert_allclose(np.asarray(a[key], np.float32),
                                       np.asarray(b[key], np.float32), **_FLOAT16, err_msg=key)
    # the held-out rows cut to the window: the same rows drawn, the same states
    np.testing.assert_array_equal(np.asarray(got.heldout["w_weight"]),
                                  np.asarray(cap.heldout["w_weight"]))
    np.testing.assert_allclose(np.asarray(got.heldout["final_w"], np.float32),
                               np.asarray(cap.heldout["final_w"], np.float32), equal_nan=True,
                               **_FLOAT16)


@pytest.mark.parametrize("model", ["hyperfield", "mlp", "online"])
def test_a_student_cell_trains_on_the_device_and_scores_on_the_cpu(model, device, cpu_capture,
                                                                    tmp_path):
    teacher, cap = cpu_capture
    fc = small_features(SMALL.window)
    # the shortlist target, as the studies train: its teacher top-k pass runs on the device
    sc = replace(SMALL_STUDENT, batch_size=32, patience=1, max_epochs=3, shortlist=8,
                 negatives=16, fast_unembed=False, bf16=False)
    n_fit = fit_rows(cap.train, sc)
    run = StudentRun(model, 0, f"{model} student", keep=model == "hyperfield")
    got = {}
    for where in ("cpu", str(device)):
        setup = StudentSetup.of("tiny", cap.root, fc, sc, n_fit, device=where)
        prep = prepare(setup, teacher, cap)
        register(setup, prep)
        out = tmp_path / where.replace(":", "-")
        res = student_cell(asdict(setup), asdict(run), str(out), 1)
        rows = load_metrics(out, setup, run)
        assert all(np.isfinite(v).all() for v in rows.values())
        assert prep.unembed.weight.device.type == "cpu"  # the driver's copy stays put
        if run.keep:  # read back on the CPU for the checks, the mixture and saving
            kept = load_student_model(out, setup, run)
            assert_on(torch.device("cpu"), kept)
        got[where] = res["summary"]
    a, b = got[str(device)], got["cpu"]
    assert a["ppl"] == pytest.approx(b["ppl"], rel=0.1)
    assert a["kl"] == pytest.approx(b["kl"], rel=0.1, abs=0.05)
