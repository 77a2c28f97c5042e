"""Integration tests on the real offline MiniLM, SmolLM2 and Gemma 3 (each a few seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperlens.models import capture, embed, embed_layers, list_models, load
from hyperlens.models.arch import resolve_backbone

TEXTS = [
    "A gripping, beautifully acted film.",
    "Dull.",
    "The plot wanders off and never comes back, which is a shame given the cast.",
    "I laughed, I cried, I bought the soundtrack.",
]


def _available(name: str) -> None:
    row = next(r for r in list_models() if r["name"] == name)
    if not row["available"]:
        pytest.skip(f"{name} is not available here: {row['detail']}")


@pytest.fixture(scope="module")
def minilm():
    _available("minilm")
    return load("minilm", device="cpu")


@pytest.fixture(scope="module")
def smollm2():
    _available("smollm2")
    return load("smollm2", device="cpu")


@pytest.fixture(scope="module")
def gemma3():
    _available("gemma3")
    return load("gemma3", device="cpu")


@pytest.mark.integration
def test_minilm_matches_sentence_transformers(minilm):
    assert (minilm.kind, minilm.hidden_size, minilm.num_layers) == ("encoder", 384, 6)
    assert minilm.path is not None and (minilm.path / "config.json").exists()
    assert minilm.token_embeddings().shape == (30522, 384) and len(minilm.vocab()) == 30522
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm.path), device="cpu")
    ref = model.encode(TEXTS, convert_to_numpy=True)  # mean pooling + L2 normalisation
    got = embed(TEXTS, minilm)
    got = got / np.linalg.norm(got, axis=1, keepdims=True)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.integration
def test_minilm_capture_leaves_outputs_unchanged(minilm):
    batch = minilm.tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        plain = minilm.module(**batch).last_hidden_state
        with capture(minilm, ["hidden.*", "blocks.*.attn.q", "blocks.2.attn.z"]) as acts:
            hooked = minilm.module(**batch).last_hidden_state
    assert torch.equal(plain, hooked)
    assert acts["blocks.0.attn.q"].shape == (4, batch["input_ids"].shape[1], 12, 32)
    torch.testing.assert_close(acts["hidden.6"], plain, rtol=0, atol=0)


@pytest.mark.integration
def test_smollm2_handle_and_gqa(smollm2):
    assert (smollm2.kind, smollm2.hidden_size, smollm2.num_layers) == ("decoder", 576, 30)
    assert smollm2.tokenizer.pad_token == "<|im_end|>"
    assert smollm2.path is not None and (smollm2.path / "model.safetensors").exists()
    assert smollm2.token_embeddings().shape == (49152, 576)
    bb = resolve_backbone(smollm2.module)
    assert (bb.n_heads, bb.n_kv_heads, bb.d_head) == (9, 3, 64)
    ids = smollm2.tokenizer(TEXTS[:1], return_tensors="pt")
    with torch.no_grad():
        plain = smollm2.module(**ids).logits
        with capture(smollm2, ["blocks.-1.attn.k", "blocks.0.attn.q"]) as acts:
            hooked = smollm2.module(**ids).logits
    assert torch.equal(plain, hooked)
    T = ids["input_ids"].shape[1]
    assert acts["blocks.29.attn.k"].shape == (1, T, 3, 64)
    assert acts["blocks.0.attn.q"].shape == (1, T, 9, 64)


@pytest.mark.integration
def test_smollm2_early_layer_matches_hidden_states(smollm2):
    ran: list[int] = []
    hooks = [b.register_forward_pre_hook(lambda m, a, i=i: ran.append(i))
             for i, b in enumerate(smollm2.module.model.layers)]
    try:
        got = embed(TEXTS, smollm2, layer=6, pooling="last")
    finally:
        for hk in hooks:
            hk.remove()
    assert sorted(set(ran)) == list(range(6))  # blocks 6..29 never ran
    with torch.no_grad():
        rows = []
        for t in TEXTS:
            b = smollm2.tokenizer([t], return_tensors="pt")
            rows.append(smollm2.module.model(**b, output_hidden_states=True).hidden_states[6][0, -1])
    np.testing.assert_allclose(got, torch.stack(rows).numpy(), rtol=1e-4, atol=1e-4)
    layers = embed_layers(TEXTS, smollm2, pooling="last", layers=[0, 6])
    np.testing.assert_allclose(layers[1], got, rtol=1e-5, atol=1e-5)


@pytest.mark.integration
def test_gemma3_handle_generate_and_sites(gemma3):
    from hyperlens.models import intervene

    assert (gemma3.kind, gemma3.hidden_size, gemma3.num_layers) == ("decoder", 640, 18)
    assert type(gemma3.module).__name__ == "Gemma3ForCausalLM"
    assert gemma3.token_embeddings().shape == (262144, 640)
    bb = resolve_backbone(gemma3.module)
    assert (bb.n_heads, bb.n_kv_heads, bb.d_head) == (4, 1, 256)
    cfg = gemma3.module.config
    assert cfg.tie_word_embeddings and "sliding_attention" in cfg.layer_types
    ids = gemma3.tokenizer(["The capital of France is"], return_tensors="pt")
    with torch.no_grad():
        out = gemma3.module.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "France" in gemma3.tokenizer.decode(out[0, ids["input_ids"].shape[1]:])
    with torch.no_grad():
        plain = gemma3.module(**ids, output_hidden_states=True)
        fns = {"blocks.*.resid_post": lambda a, c: a, "embed": lambda a, c: a}
        names = ["embed", "hidden.18", "blocks.5.attn.k"]
        with intervene(gemma3, fns), capture(gemma3, names) as a:
            hooked = gemma3.module(**ids).logits
    assert torch.equal(plain.logits, hooked)
    w = gemma3.module.get_input_embeddings().weight
    # the embedding output is the table row times sqrt(640), and is hidden_states[0]
    torch.testing.assert_close(a["embed"], w[ids["input_ids"]] * 640**0.5, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a["embed"], plain.hidden_states[0], rtol=0, atol=0)
    torch.testing.assert_close(a["hidden.18"], plain.hidden_states[18], rtol=0, atol=0)
    assert a["blocks.5.attn.k"].shape == (1, ids["input_ids"].shape[1], 1, 256)


@pytest.mark.integration
def test_gemma3_checkpoint_fully_classified(gemma3):
    import json

    from safetensors import safe_open

    from hyperlens.models.roles import classify_tensors, unclassified

    assert gemma3.path is not None
    with safe_open(str(gemma3.path / "model.safetensors"), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    roles = classify_tensors(shapes, json.loads((gemma3.path / "config.json").read_text()))
    assert unclassified(roles) == [] and len(roles) == 236
