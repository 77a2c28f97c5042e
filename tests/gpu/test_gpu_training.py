"""Training on the device: :func:`hyperlens.train.fit` and the HyperField student.

The same seed builds the same initial weights on every device (they are drawn on the CPU),
so one step on the GPU equals one step on the CPU to :data:`gpu_support.STEPS`. Longer runs
are only checked to stay on the device and learn: the student routes by top-k choices,
which a rounding difference can flip, after which the two runs follow different paths.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from gpu_support import F32, STEPS, assert_on, moved
from tiny_setup import SMALL, SMALL_STUDENT, TEXTS, CharTokenizer, small_features
from torch import nn

from hyperlens.hft.capture import Unembedding, run_capture
from hyperlens.hft.features import Featurizer
from hyperlens.hft.model import distill_loss, log_unigram
from hyperlens.hft.train import aux_stats, build_features, build_model, train_hyperfield
from hyperlens.models.handle import from_module
from hyperlens.train import TrainConfig, fit

pytestmark = pytest.mark.cuda


def _regression(n: int = 256, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    return {"x": x, "y": x @ torch.randn(16, 3, generator=g) + 0.1 * torch.randn(n, 3,
                                                                                  generator=g)}


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 3))


def _loss(m: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
    return ((m(b["x"]) - b["y"]) ** 2).mean()


def test_fit_on_the_device_follows_the_cpu(device):
    data = _regression()
    cfg = TrainConfig(optimizer="adamw", lr=1e-2, epochs=3, batch_size=32, seed=5,
                      schedule="cosine", warmup_steps=2, grad_clip=1.0, progress=False)
    torch.manual_seed(0)
    cpu = _mlp()
    dev = moved(cpu, device)
    frozen = moved(nn.Linear(4, 4), device)
    h_cpu = fit(cpu, _loss, data, cfg)
    h_dev = fit(dev, _loss, {k: v.to(device) for k, v in data.items()}, cfg, frozen=frozen)
    assert_on(device, dev)
    assert h_dev.train_loss[-1] < h_dev.train_loss[0]
    np.testing.assert_allclose(h_dev.train_loss, h_cpu.train_loss, **STEPS)
    for a, b in zip(dev.parameters(), cpu.parameters(), strict=True):
        torch.testing.assert_close(a.detach().cpu(), b.detach(), **STEPS)


@pytest.fixture(scope="module")
def capture_and_features(tiny_llama, tmp_path_factory):
    """A small capture of the tiny Llama teacher (on the CPU) and its Stage-1 features."""
    teacher = from_module(tiny_llama.eval(), CharTokenizer(), name="tiny", kind="decoder")
    cap = run_capture(teacher, TEXTS, SMALL, tmp_path_factory.mktemp("gpu-cap"),
                      show_progress=False)
    fc = small_features(SMALL.window)
    feat = Featurizer(teacher.token_embeddings(), fc).fit(cap.train["ctx"], cap.train["pos"])
    return teacher, cap, feat, build_features(feat, cap, "train", show_progress=False)


def _student(teacher, cap, feat):
    U = Unembedding.from_model(teacher)
    lu = log_unigram(torch.from_numpy(np.asarray(cap.train["target"]).astype(np.int64)),
                     U.vocab_size)
    d_aux = int(aux_stats(cap.train)["mean"].numel())
    return build_model(SMALL_STUDENT, feat.d1, feat.cfg.d_tail, teacher.hidden_size, d_aux, U,
                       lu)


def test_student_initialises_and_steps_on_the_device_as_on_the_cpu(device,
                                                                     capture_and_features):
    teacher, cap, feat, store = capture_and_features
    cpu = _student(teacher, cap, feat)
    dev = moved(cpu, device)
    stats = aux_stats(cap.train)
    x1 = store.x1[:200].float()
    tail = torch.from_numpy(np.asarray(store.tail[:200])).float()
    final = torch.from_numpy(np.asarray(cap.train["final"][:200])).float()
    aux = (torch.from_numpy(np.concatenate([cap.train["state"][:200], cap.train["qkv"][:200]],
                                           axis=1)).float() - stats["mean"]) / stats["std"]
    for model, to in ((cpu, torch.device("cpu")), (dev, device)):
        model.init_stage1(x1.to(to), aux.to(to), seed=0)
        model.init_stage2(x1.to(to), tail.to(to), final.to(to), seed=0)
    assert_on(device, dev)
    # Stage 1's planes and centres come from sampled inputs: equal up to rounding. Region
    # means average the inputs routed nearest to each tensor, and a last-bit difference in
    # a routing distance may move an input to another region, so the devices must agree on
    # the routing of (nearly) every input; the step then starts from one initialisation.
    for name in ("router", "centre", "normal", "offset", "band_scale"):
        torch.testing.assert_close(getattr(dev.stage1, name).cpu(), getattr(cpu.stage1, name),
                                   **F32, msg=name)
    with torch.no_grad():
        same = (dev.stage1.nearest(x1.to(device)).cpu() == cpu.stage1.nearest(x1))
    assert same.double().mean() >= 0.99
    dev.load_state_dict(cpu.state_dict())
    target = torch.from_numpy(np.asarray(cap.train["target"][:200]).astype(np.int64))

    def loss(m, b):
        y, _ = m(b["x1"], b["tail"])
        with torch.no_grad():
            t = m.unembed(b["final"])
        return distill_loss(m.logits(y), t, b["target"], 0.5)[0]

    cfg = TrainConfig(optimizer="sgd", lr=0.1, max_steps=1, batch_size=64, seed=1,
                      progress=False)  # SGD: see test_gpu_inject's docstring
    data = {"x1": x1, "tail": tail, "final": final, "target": target}
    h_cpu = fit(cpu, loss, data, cfg)
    h_dev = fit(dev, loss, {k: v.to(device) for k, v in data.items()}, cfg)
    assert math.isclose(h_dev.train_loss[0], h_cpu.train_loss[0], rel_tol=1e-4)
    for (name, a), b in zip(dev.named_parameters(), cpu.parameters(), strict=True):
        torch.testing.assert_close(a.detach().cpu(), b.detach(), **STEPS, msg=name)
    with torch.no_grad():
        y_dev, _ = dev(x1[:50].to(device), tail[:50].to(device))
        y_cpu, _ = cpu(x1[:50], tail[:50])
    torch.testing.assert_close(y_dev.cpu(), y_cpu, **STEPS)


def test_train_hyperfield_runs_on_the_device(device, capture_and_features):
    teacher, cap, feat, store = capture_and_features
    model = moved(_student(teacher, cap, feat), device)
    sc = replace(SMALL_STUDENT, stage1_epochs=1, stage2_epochs=2, e2e_epochs=1,
                 batch_size=64, reseed_every=3, fast_unembed=False)
    hist = train_hyperfield(model, store, cap.train, aux_stats(cap.train), model.unembed, sc,
                            show_progress=False)
    assert_on(device, model)
    losses = hist["stage2"]["train_loss"]
    assert all(math.isfinite(v) for v in losses)
    # the distillation term falls step by step; the cross-entropy of ten batches of 64 is
    # too noisy to order the first and last step
    kl = [m["kl"] for m in hist["stage2"]["train_metrics"]]
    assert kl[-1] < kl[0]
