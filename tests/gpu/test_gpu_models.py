"""Models on the device: loading a saved folder there, the run context's device and
precision, embedding, capture (hooks reading) and intervene (hooks writing), each equal to
the CPU's result within :data:`gpu_support.F32`."""

from __future__ import annotations

import pytest
import torch
from gpu_support import F32, assert_on, moved, word_texts, word_tokenizer

from hyperlens import models as hmodels
from hyperlens.config import RunContext
from hyperlens.models import capture, embed, embed_layers, from_module, intervene

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def bert_folder(tiny_bert, tmp_path_factory):
    """The tiny random BERT saved with its tokenizer, as a local model folder."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    tiny_bert.save_pretrained(folder)
    word_tokenizer(120, 60).save_pretrained(folder)
    return folder


def test_run_context_resolves_the_device_and_its_precision(device):
    ctx = RunContext(device=str(device))
    assert ctx.torch_device.type == device.type
    assert RunContext(device="auto").torch_device.type == device.type  # auto takes the GPU
    if device.type == "cuda":
        assert ctx.resolve_dtype() == "bfloat16"
        assert RunContext(device="cuda:0").torch_device == torch.device("cuda", 0)
    assert RunContext(device=str(device), dtype="float32").resolve_dtype() == "float32"
    assert ctx.record()["device"].startswith(device.type)
    assert ctx.generator("x", device=ctx.torch_device).device.type == device.type
    ctx.check()


def test_load_puts_weights_on_the_device_in_the_context_precision(bert_folder, device):
    ctx = RunContext(device=str(device))
    dtype = ctx.resolve_dtype()
    h = hmodels.load(str(bert_folder), device=ctx.torch_device, dtype=dtype)
    assert h.device.type == device.type and h.module is not None
    assert_on(device, h.module)
    assert {p.dtype for p in h.module.parameters()} == {getattr(torch, dtype)}
    assert h.token_embeddings().device.type == device.type


def test_embed_on_the_device_equals_the_cpu(bert_folder, device):
    texts = word_texts(40, max_words=25, seed=1)
    cpu = hmodels.load(str(bert_folder), device="cpu")
    dev = hmodels.load(str(bert_folder), device=device)
    for pooling in ("mean", "cls"):
        ref = embed(texts, cpu, pooling=pooling, batch_size=8)
        got = embed(texts, dev, pooling=pooling, batch_size=8)
        torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(ref), **F32)
    ref_l = embed_layers(texts, cpu, layers=[0, 1, 2], batch_size=8)
    got_l = embed_layers(texts, dev, layers=[0, 1, 2], batch_size=8)
    torch.testing.assert_close(torch.from_numpy(got_l), torch.from_numpy(ref_l), **F32)
    # a handle moved by embed(device=...) computes there too
    moved_h = hmodels.load(str(bert_folder), device="cpu")
    got_m = embed(texts, moved_h, batch_size=8, device=device)
    assert moved_h.device.type == device.type
    assert_on(device, moved_h.module)
    torch.testing.assert_close(torch.from_numpy(got_m), torch.from_numpy(embed(texts, cpu)),
                               **F32)


def test_decoder_embedding_with_last_token_pooling(tiny_llama, device):
    tok = word_tokenizer(120, 60)
    texts = word_texts(24, seed=2)
    cpu = from_module(tiny_llama, tok, kind="decoder")
    dev = from_module(moved(tiny_llama, device), tok, kind="decoder")
    assert dev.device.type == device.type
    for pooling in ("last", "mean_after_first"):
        torch.testing.assert_close(
            torch.from_numpy(embed(texts, dev, pooling=pooling, batch_size=5)),
            torch.from_numpy(embed(texts, cpu, pooling=pooling, batch_size=5)), **F32)


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_bert", "tiny_gpt2"])
def test_capture_reads_the_device_activations(arch, request, device):
    model = request.getfixturevalue(arch)
    gpu = moved(model, device)
    ids = torch.randint(4, 120, (3, 9), generator=torch.Generator().manual_seed(3))
    names = ["hidden.1", "blocks.0.attn.q", "blocks.1.mlp.out", "blocks.1.resid_post"]
    with torch.no_grad(), capture(model, names) as ref:
        model(input_ids=ids)
    with torch.no_grad(), capture(gpu, names) as got:
        gpu(input_ids=ids.to(device))
    for name in names:
        assert got[name].device.type == device.type, name
        torch.testing.assert_close(got[name].cpu(), ref[name], **F32)


def test_intervene_writes_on_the_device(tiny_llama, device):
    gpu = moved(tiny_llama, device)
    ids = torch.randint(4, 120, (2, 7), generator=torch.Generator().manual_seed(4))
    shift = torch.linspace(-1, 1, 32)
    seen: list[torch.device] = []

    def add(act, ctx):
        seen.append(act.device)
        return act + shift.to(act)

    outs = []
    for model, x in ((tiny_llama, ids), (gpu, ids.to(device))):
        with torch.no_grad(), intervene(model, {"blocks.0.resid_post": add}):
            outs.append(model(input_ids=x).logits)
    assert seen[-1].type == device.type and outs[1].device.type == device.type
    torch.testing.assert_close(outs[1].cpu(), outs[0], **F32)
    with torch.no_grad():
        plain = gpu(input_ids=ids.to(device)).logits
    assert (plain - outs[1]).abs().max() > 1e-3  # the write did change the output
