"""The semantic header: splicing under padding, the prefix cache, variants, I/O, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hyperlens.errors import ConfigError, InputError, ShapeError
from hyperlens.hdc import PackedCodes
from hyperlens.inject import attach, load_adapter, make_adapter, save_adapter
from hyperlens.inject.header import (
    HeaderConfig,
    SemanticHeader,
    add_at,
    embedding_norm,
    insert_index,
    splice,
)
from hyperlens.inject.prefix_cache import PrefixCache

PRE = [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16]]
SHARED = [[3, 4, 5, 6, 7, 8], [3, 4, 9, 10], [3, 4, 11, 12, 13, 14, 15, 16]]
CUE = [20, 21]


def _header(k: int = 3, placement: str = "cue", **kw) -> SemanticHeader:
    torch.manual_seed(1)
    cue_len = 2 if placement == "cue" else 0
    return SemanticHeader(HeaderConfig(code_dim=10, d_model=32, k=k, placement=placement,
                                       cue_len=cue_len, **kw))


def _last_hidden(model, ids, mask=None):
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    return out.hidden_states[-1]


@pytest.mark.parametrize("placement", ["cue", "prefix"])
def test_padding_does_not_change_the_answer(tiny_llama, placement):
    h = _header(placement=placement)
    codes = torch.randn(2, 10)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [0, 0, 0, 11, 12, 13]])
    mask = torch.tensor([[1] * 6, [0, 0, 0, 1, 1, 1]])
    with attach(tiny_llama, h), h.use_codes(codes):
        left = _last_hidden(tiny_llama, ids, mask)[:, -1]
    with attach(tiny_llama, h), h.use_codes(codes[1:]):
        alone = _last_hidden(tiny_llama, ids[1:, 3:])[0, -1]
        right = _last_hidden(tiny_llama, torch.tensor([[11, 12, 13, 0, 0, 0]]),
                             torch.tensor([[1, 1, 1, 0, 0, 0]]))[0, 5]
    torch.testing.assert_close(left[1], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(right, alone, atol=1e-5, rtol=1e-5)
    # and the header does change the answer
    plain = _last_hidden(tiny_llama, ids[1:, 3:])[0, -1]
    assert (plain - alone).abs().max() > 1e-3


def test_splice_places_tokens_and_positions():
    emb = torch.arange(2 * 4 * 1, dtype=torch.float32).view(2, 4, 1)
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    pseudo = torch.full((2, 2, 1), -1.0)
    at = insert_index(mask, HeaderConfig(code_dim=1, d_model=1, k=2, placement="cue",
                                         cue_len=1))
    assert at.tolist() == [3, 3]
    out, m, pos = splice(emb, mask, pseudo, at)
    assert out[0, :, 0].tolist() == [0, 1, 2, -1, -1, 3]
    assert m.tolist() == [[0, 1, 1, 1, 1, 1], [1] * 6]
    assert pos.tolist() == [[0, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]]
    at = insert_index(mask, HeaderConfig(code_dim=1, d_model=1, k=2, placement="prefix",
                                         sink_tokens=1))
    assert at.tolist() == [2, 1]


def test_generate_under_attach_matches_greedy_by_hand(tiny_llama):
    h = _header(placement="cue")
    codes = torch.randn(1, 10)
    ids = torch.tensor([[11, 12, 13, 14]])
    with attach(tiny_llama, h), h.use_codes(codes):
        gen = tiny_llama.generate(input_ids=ids, max_new_tokens=4, do_sample=False)
    emb = tiny_llama.get_input_embeddings()
    with torch.no_grad():
        seq = torch.cat([emb(ids[:, :2]), h(codes), emb(ids[:, 2:])], 1)
        want = []
        for _ in range(4):
            nxt = tiny_llama(inputs_embeds=seq).logits[:, -1].argmax(-1)
            want.append(int(nxt))
            seq = torch.cat([seq, emb(nxt)[:, None]], 1)
    assert gen[0, 4:].tolist() == want


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gemma3_wide"])
@pytest.mark.parametrize(("layer", "prefixes"), [(0, PRE), (1, PRE), (0, SHARED), (1, SHARED)])
def test_prefix_cache_equals_the_full_forward(request, arch, layer, prefixes):
    PRE = prefixes
    tiny_llama = request.getfixturevalue(arch)  # Gemma 3: every prompt inside its window
    for p in tiny_llama.parameters():
        p.requires_grad_(False)
    before = [p.clone() for p in tiny_llama.parameters()]
    pc = PrefixCache(tiny_llama, PRE, CUE, [30, 31], kv_dtype=torch.float32, batch_size=2,
                     layer=layer, extra_tokens=3)
    assert pc.shared_tokens == (2 if PRE is SHARED else 0)
    rows = torch.tensor([2, 0, 1])
    plain = pc.suffix_forward(rows, None)
    torch.testing.assert_close(plain, pc.states[-1, rows], atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        full = tiny_llama(input_ids=torch.tensor([PRE[0] + CUE])).logits[0, -1, [30, 31]]
    torch.testing.assert_close(pc.verb_logits[0], full, atol=1e-5, rtol=1e-5)
    h = _header()
    codes = torch.randn(3, 10)
    out = pc.suffix_forward(rows, h(codes[rows]))
    out.sum().backward()
    assert h.net[0].weight.grad.abs().sum() > 0
    if layer == 0:
        for r, j in enumerate(rows.tolist()):
            with attach(tiny_llama, h), h.use_codes(codes[j: j + 1]), torch.no_grad():
                ref = _last_hidden(tiny_llama, torch.tensor([PRE[j] + CUE]))[0, -1]
            torch.testing.assert_close(out[r].detach(), ref, atol=1e-5, rtol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_llama.parameters(), strict=True))


def test_added_header_starts_at_the_plain_model(tiny_llama):
    h = _header(variant="gated", placement="add")
    codes = torch.randn(2, 10)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [0, 0, 11, 12, 13, 14]])
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        plain = _last_hidden(tiny_llama, ids, mask)
        with attach(tiny_llama, h), h.use_codes(codes):
            same = _last_hidden(tiny_llama, ids, mask)
        h.gate.fill_(1.0)
        with attach(tiny_llama, h), h.use_codes(codes):
            moved = _last_hidden(tiny_llama, ids, mask)
    torch.testing.assert_close(same, plain)
    assert (moved[:, -1] - plain[:, -1]).abs().max() > 1e-4
    e = add_at(torch.zeros(1, 5, 1), torch.ones(1, 2, 1), torch.tensor([2]))
    assert e[0, :, 0].tolist() == [0, 0, 1, 1, 0]


def test_variants():
    codes = torch.randint(-1, 2, (5, 10)).float()
    g = _header(variant="gated")
    torch.testing.assert_close(g(codes), g.prompt.expand(5, -1, -1))  # starts at the prompt
    p = _header(variant="projector", target_norm=2.5)
    torch.testing.assert_close(p(codes).norm(dim=-1), torch.full((5, 3), 2.5))
    m = _header(variant="mlp")
    assert m(codes).shape == (5, 3, 32) and m.net[0].out_features == 128
    s = _header(variant="static")
    assert s(codes).shape == (5, 3, 32) and torch.equal(s(codes)[0], s(codes)[4])
    packed = PackedCodes.from_dense(codes.to(torch.int8), scheme="base3")
    torch.testing.assert_close(p(packed), p(codes))


def test_save_load_round_trip(tmp_path, tiny_llama):
    h = _header(variant="gated")
    with torch.no_grad():
        h.gate.fill_(0.5)
    path = save_adapter(h, tmp_path / "h.safetensors", model=tiny_llama)
    back = load_adapter(path, model=tiny_llama)
    assert isinstance(back, SemanticHeader) and back.config == h.config
    x = torch.randn(4, 10)
    torch.testing.assert_close(back(x), h(x))


def test_bad_input():
    with pytest.raises(ConfigError, match="k must be a positive int"):
        make_adapter("header", code_dim=10, d_model=32, k=0, cue_len=1)
    with pytest.raises(ConfigError, match="cue_len"):
        HeaderConfig(code_dim=10, d_model=32, k=2, placement="cue", cue_len=0)
    h = _header()
    with pytest.raises(ShapeError, match=r"takes \[n, 10\]"):
        h(torch.zeros(2, 12))
    with pytest.raises(InputError, match="no input embedding"):
        with attach(nn.Linear(3, 3), h):
            pass


def test_header_width_must_match_the_model(tiny_llama):
    h = SemanticHeader(HeaderConfig(code_dim=10, d_model=64, k=2, cue_len=1))
    with pytest.raises(InputError, match="d_model=32"):
        with attach(tiny_llama, h):
            pass


def test_experiment_checks_come_before_models():
    from hyperlens.experiments.header import HeaderRunConfig, verbalizer_words

    with pytest.raises(ConfigError, match="--k"):
        HeaderRunConfig(k=0).validate()
    with pytest.raises(ConfigError, match="not the verbaliser's"):
        verbalizer_words(HeaderRunConfig(), ["bad", "good"])
    with pytest.raises(ConfigError, match="one each"):
        verbalizer_words(HeaderRunConfig(verbalizer=["yes"]), ["a", "b"])
    assert verbalizer_words(HeaderRunConfig(dataset="agnews"),
                            ["World", "Sports", "Business", "Sci/Tech"])[3] == " Science"


def test_prefix_cache_refuses_prompts_longer_than_the_sliding_window(tiny_gemma3):
    # window 4: a 6-token prefix + 2 cue tokens would lose its start in the sliding layers
    with pytest.raises(InputError, match=r"sliding-window layers \(window 4\)"):
        PrefixCache(tiny_gemma3, PRE, CUE, [30, 31], kv_dtype=torch.float32)
    with pytest.raises(InputError, match="header 3"):
        PrefixCache(tiny_gemma3, [[5], [6]], [7], [30, 31], extra_tokens=3)
    pc = PrefixCache(tiny_gemma3, [[5], [6, 7]], [8], [30, 31], kv_dtype=torch.float32)
    with pytest.raises(InputError, match="exceed the sliding window"):
        pc.suffix_forward(torch.tensor([0, 1]), torch.zeros(2, 2, 32))


def test_prefix_cache_with_eager_attention_matches_sdpa(tiny_gemma3_wide):
    pc = PrefixCache(tiny_gemma3_wide, PRE, CUE, [30, 31], kv_dtype=torch.float32, layer=1)
    rows, pseudo = torch.tensor([0, 2]), torch.randn(2, 3, 32)
    with torch.no_grad():
        sdpa = pc.suffix_forward(rows, pseudo)
        cfg = tiny_gemma3_wide.config
        before = cfg._attn_implementation
        try:
            cfg._attn_implementation = "eager"
            eager = pc.suffix_forward(rows, pseudo)
        finally:
            cfg._attn_implementation = before
    torch.testing.assert_close(eager, sdpa, atol=1e-5, rtol=1e-5)


def test_prefix_cache_save_load(tmp_path, tiny_gemma3_wide):
    pc = PrefixCache(tiny_gemma3_wide, PRE, CUE, [30, 31], kv_dtype=torch.float32, layer=1)
    pc.save(tmp_path / "pc.safetensors")
    back = PrefixCache.load(tmp_path / "pc.safetensors", tiny_gemma3_wide, CUE, [30, 31], layer=1)
    rows = torch.tensor([1, 2])
    pseudo = torch.randn(2, 3, 32)
    with torch.no_grad():
        torch.testing.assert_close(back.suffix_forward(rows, pseudo),
                                   pc.suffix_forward(rows, pseudo))
    with pytest.raises(InputError, match="layers of keys"):
        PrefixCache.load(tmp_path / "pc.safetensors", tiny_gemma3_wide, CUE, [30, 31], layer=2)


def test_header_on_gemma3_under_padding(tiny_gemma3):
    h = SemanticHeader(HeaderConfig(code_dim=10, d_model=32, k=2, cue_len=2))
    codes = torch.randn(2, 10)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [0, 0, 0, 11, 12, 13]])
    mask = torch.tensor([[1] * 6, [0, 0, 0, 1, 1, 1]])
    with torch.no_grad(), attach(tiny_gemma3, h):
        with h.use_codes(codes):
            both = _last_hidden(tiny_gemma3, ids, mask)[:, -1]
        with h.use_codes(codes[1:]):
            alone = _last_hidden(tiny_gemma3, ids[1:, 3:])[0, -1]
    torch.testing.assert_close(both[1], alone, atol=1e-5, rtol=1e-5)


def test_embedding_norm_is_what_the_lm_sees(tiny_gemma3, tiny_llama):
    # Gemma 3 scales its embedding table by sqrt(d_model) inside the embedding layer
    ids = torch.tensor([5, 6, 7])
    table = tiny_gemma3.get_input_embeddings().weight[ids].norm(dim=-1).mean()
    seen = {}

    def grab(_m, a, kw):  # the input of the first block: the embeddings the LM uses
        seen["x"] = (a[0] if a else kw["hidden_states"]).detach()

    hook = tiny_gemma3.model.layers[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            tiny_gemma3(input_ids=ids[None])
    finally:
        hook.remove()
    want = float(seen["x"][0].norm(dim=-1).mean())
    assert embedding_norm(tiny_gemma3, ids) == pytest.approx(want, rel=1e-5)
    assert want == pytest.approx(float(table) * 32 ** 0.5, rel=1e-4)
    llama = tiny_llama.get_input_embeddings().weight.norm(dim=-1).mean()
    assert embedding_norm(tiny_llama) == pytest.approx(float(llama), rel=1e-5)
    p = SemanticHeader(HeaderConfig(code_dim=10, d_model=32, k=2, cue_len=2,
                                    target_norm=embedding_norm(tiny_gemma3, ids)))
    torch.testing.assert_close(p(torch.randn(3, 10)).norm(dim=-1), torch.full((3, 2), want))
    with pytest.raises(InputError, match="no input embedding"):
        embedding_norm(nn.Linear(2, 2))
