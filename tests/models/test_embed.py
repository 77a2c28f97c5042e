"""Embedding: pooling, layers, early exit, cache and bad input on tiny random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperlens.errors import InputError
from hyperlens.models import embed, embed_layers, from_module
from hyperlens.models.arch import resolve_backbone

ARCHS = ["tiny_bert", "tiny_llama", "tiny_gpt2", "tiny_t5", "tiny_opt"]


def _reference(model, tok, texts, pooling, layer):
    """Naive oracle: one text at a time, no padding, Hugging Face hidden_states."""
    stack = resolve_backbone(model).stack
    rows = []
    with torch.no_grad():
        for t in texts:
            ids = tok([t], return_tensors="pt")["input_ids"]
            hs = stack(input_ids=ids, output_hidden_states=True).hidden_states[layer][0]  # [pos, d]
            rows.append({"mean": hs.mean(0), "cls": hs[0], "last": hs[-1]}[pooling])
    return torch.stack(rows).numpy()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_matches_one_text_at_a_time(arch, pooling, request, tiny_tokenizer, tiny_texts):
    model = request.getfixturevalue(arch)
    h = from_module(model, tiny_tokenizer)
    got = embed(tiny_texts, h, pooling=pooling, batch_size=5)
    assert got.dtype == np.float32 and got.shape == (len(tiny_texts), 32)
    ref = _reference(model, tiny_tokenizer, tiny_texts, pooling, -1)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_embed_layers_one_pass_matches_embed(arch, request, tiny_tokenizer, tiny_texts):
    h = from_module(request.getfixturevalue(arch), tiny_tokenizer)
    allv = embed_layers(tiny_texts, h, pooling="mean", batch_size=4)
    assert allv.shape == (3, len(tiny_texts), 32) and allv.dtype == np.float32
    for li in range(3):
        np.testing.assert_allclose(
            embed(tiny_texts, h, layer=li, batch_size=4), allv[li], rtol=1e-5, atol=1e-6
        )
    sub = embed_layers(tiny_texts, h, layers=[1, -1])
    np.testing.assert_allclose(sub, allv[[1, 2]], rtol=1e-5, atol=1e-6)
    ref = _reference(h.module, tiny_tokenizer, tiny_texts, "mean", 1)
    np.testing.assert_allclose(allv[1], ref, rtol=1e-4, atol=1e-5)


def test_earlier_layer_stops_the_forward(tiny_llama, tiny_tokenizer, tiny_texts):
    h = from_module(tiny_llama, tiny_tokenizer)
    n_before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in tiny_llama.modules())
    calls: list[int] = []
    norm_calls: list[int] = []
    hooks = [blk.register_forward_pre_hook(lambda m, a, i=i: calls.append(i))
             for i, blk in enumerate(tiny_llama.model.layers)]
    hooks.append(tiny_llama.model.norm.register_forward_pre_hook(lambda m, a: norm_calls.append(1)))
    try:
        embed(tiny_texts, h, layer=1, batch_size=100)
        assert calls == [0] and norm_calls == []
        calls.clear()
        embed(tiny_texts, h, layer=0, batch_size=100)
        assert calls == []
        embed(tiny_texts, h, layer=-1, batch_size=100)
        assert calls == [0, 1] and norm_calls == [1]
    finally:
        for hk in hooks:
            hk.remove()
    # the model is left as it was: no hook of ours remains, eval mode kept
    assert (
        sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in tiny_llama.modules())
        == n_before
    )
    assert not tiny_llama.training


def test_order_and_batch_size_do_not_change_results(tiny_bert, tiny_tokenizer, tiny_texts):
    h = from_module(tiny_bert, tiny_tokenizer)
    a = embed(tiny_texts, h, batch_size=1)
    b = embed(tiny_texts, h, batch_size=64)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    perm = np.random.default_rng(3).permutation(len(tiny_texts))
    c = embed([tiny_texts[i] for i in perm], h, batch_size=3)
    np.testing.assert_allclose(c, a[perm], rtol=1e-5, atol=1e-6)


def test_cache_roundtrip(tiny_gpt2, tiny_tokenizer, tiny_texts, tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERLENS_CACHE", str(tmp_path))
    h = from_module(tiny_gpt2, tiny_tokenizer, name="tiny-gpt2")
    first = embed(tiny_texts, h, pooling="last", layer=1, cache=True)
    files = list((tmp_path / "embeddings").rglob("*.npy"))
    assert len(files) == 1
    again = embed(tiny_texts, h, pooling="last", layer=1, cache=True)
    np.testing.assert_array_equal(first, again)
    # a different pooling / layer / text set is a different entry
    embed(tiny_texts, h, pooling="mean", layer=1, cache=True)
    embed(tiny_texts, h, pooling="last", layer=2, cache=True)
    embed(tiny_texts[:-1], h, pooling="last", layer=1, cache=True)
    assert len(list((tmp_path / "embeddings").rglob("*.npy"))) == 4
    # the cached entry is what is returned (poison it to prove it is read)
    np.save(files[0], np.zeros_like(first))
    assert not embed(tiny_texts, h, pooling="last", layer=1, cache=True).any()


@pytest.mark.parametrize(
    "texts, match",
    [
        ([], "empty"),
        ("just one string", "single str"),
        (["ok", 3], "item 1 is int"),
        ([None], "item 0"),
    ],
)
def test_bad_texts(tiny_bert, tiny_tokenizer, texts, match):
    h = from_module(tiny_bert, tiny_tokenizer)
    with pytest.raises(InputError, match=match):
        embed(texts, h)


def test_bad_arguments(tiny_bert, tiny_tokenizer):
    h = from_module(tiny_bert, tiny_tokenizer)
    with pytest.raises(InputError, match="pooling"):
        embed(["w5"], h, pooling="max")
    with pytest.raises(InputError, match="layer must be in"):
        embed(["w5"], h, layer=3)
    with pytest.raises(InputError, match="layers must hold"):
        embed_layers(["w5"], h, layers=[0, 7])
    with pytest.raises(InputError, match="batch_size"):
        embed(["w5"], h, batch_size=0)
    with pytest.raises(InputError, match="from_module"):
        embed(["w5"], tiny_bert)
