"""Adapters and the semantic header on the device: every registered adapter is the
identity at initialisation there, takes one training step equal to the CPU's and leaves the
frozen model unchanged; the prefix cache computes on the model's device and matches the
CPU's cache, and a header trained through it takes the CPU's step.

The steps are plain SGD: its update is the gradient times the rate, so the two devices'
updates differ by their gradients' rounding. Adam divides by the gradient's own size, which
turns a rounding-sized gradient (a cancellation, zero on one device) into a full step.
"""

from __future__ import annotations

import copy

import pytest
import torch
from gpu_support import F32, STEPS, assert_on, moved
from torch import nn

from hyperlens.inject import adapter_class, attach, available_adapters, make_adapter
from hyperlens.inject.header import HeaderConfig, SemanticHeader
from hyperlens.inject.prefix_cache import PrefixCache
from hyperlens.models.arch import resolve_backbone
from hyperlens.train import TrainConfig, checksum, fit

pytestmark = pytest.mark.cuda

PRE = [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16], [3, 4, 17, 18, 19]]
CUE = [20, 21]


def _batch(device: torch.device) -> dict[str, torch.Tensor]:
    ids = torch.randint(4, 120, (3, 6), generator=torch.Generator().manual_seed(11))
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def _out(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    if model.get_output_embeddings() is not None:
        y = model(**batch).logits
    else:
        y = resolve_backbone(model).stack(**batch).last_hidden_state
    return y[:, -batch["input_ids"].shape[1]:]


def _step(model: nn.Module, adapter: nn.Module, device: torch.device) -> torch.Tensor:
    """One training step of ``adapter`` on ``model`` toward a fixed target; the outputs."""
    batch = _batch(device)
    with torch.no_grad():
        plain = _out(model, batch)
        with attach(model, adapter):
            init = _out(model, batch)
    torch.testing.assert_close(init, plain, rtol=0, atol=1e-5)  # identity at initialisation
    target = torch.randn(plain.shape, generator=torch.Generator().manual_seed(3)).to(device)

    def loss(ad, b):
        with attach(model, ad):
            return (_out(model, b) - target).pow(2).mean()

    before = checksum(model)
    fit(adapter, loss, batch, TrainConfig(optimizer="sgd", lr=0.1, max_steps=1,
                                          batch_size=None, progress=False), frozen=model)
    assert checksum(model) == before
    with torch.no_grad(), attach(model, adapter):
        return _out(model, batch)


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2", "tiny_bert"])
@pytest.mark.parametrize("name", available_adapters())
def test_adapter_steps_on_the_device_as_on_the_cpu(name, arch, request, device):
    model = request.getfixturevalue(arch)
    torch.manual_seed(0)
    adapter = make_adapter(name, **adapter_class(name).example_config(model).as_dict())
    gpu_model, gpu_adapter = moved(model, device), moved(adapter, device)
    ref = _step(model, adapter, torch.device("cpu"))
    got = _step(gpu_model, gpu_adapter, device)
    assert_on(device, gpu_adapter)
    assert got.device.type == device.type
    torch.testing.assert_close(got.cpu(), ref, **STEPS)
    for (pname, a), b in zip(gpu_adapter.state_dict().items(), adapter.state_dict().values(),
                             strict=True):
        torch.testing.assert_close(a.cpu(), b, **STEPS, msg=pname)


def _header() -> SemanticHeader:
    torch.manual_seed(1)
    return SemanticHeader(HeaderConfig(code_dim=10, d_model=32, k=3, placement="cue",
                                       cue_len=2, dropout=0.0))


@pytest.mark.parametrize("layer", [0, 1])
def test_prefix_cache_and_a_header_step_on_the_device(tiny_llama, layer, device):
    caches = {}
    for key, dv in (("cpu", torch.device("cpu")), ("dev", device)):
        lm = moved(tiny_llama, dv).requires_grad_(False)  # a copy: the fixture stays as it is
        caches[key] = PrefixCache(lm, PRE, CUE, [30, 31], kv_dtype=torch.float32, batch_size=2,
                                  layer=layer, extra_tokens=3)
    cpu, dev = caches["cpu"], caches["dev"]
    assert dev.device.type == device.type
    for name in ("keys", "values", "states", "verb_logits", "cue_states"):
        torch.testing.assert_close(getattr(dev, name), getattr(cpu, name), **F32, msg=name)
    rows = torch.tensor([2, 0, 3, 1])
    plain = dev.suffix_forward(rows, None)
    assert plain.device.type == device.type
    torch.testing.assert_close(plain.cpu(), cpu.suffix_forward(rows, None), **F32)
    codes = torch.randn(4, 10, generator=torch.Generator().manual_seed(5))
    labels = torch.tensor([0, 1, 1, 0])
    h_cpu = _header()
    h_dev = moved(copy.deepcopy(h_cpu), device)
    losses = []
    for pc, h, dv in ((cpu, h_cpu, torch.device("cpu")), (dev, h_dev, device)):
        def loss(m, b, pc=pc, dv=dv):
            z = pc.label_logits(pc.suffix_forward(b, m(codes[b].to(dv))))
            return nn.functional.cross_entropy(z, labels[b].to(dv))

        hist = fit(h, loss, torch.arange(4), TrainConfig(optimizer="sgd", lr=0.1, max_steps=1,
                                                          batch_size=None, progress=False))
        losses.append(hist.train_loss[0])
    assert_on(device, h_dev)
    assert abs(losses[1] - losses[0]) <= 1e-4 * abs(losses[0]) + 1e-6
    for (name, a), b in zip(h_dev.state_dict().items(), h_cpu.state_dict().values(),
                            strict=True):
        torch.testing.assert_close(a.cpu(), b, **STEPS, msg=name)
