"""Hook sites: intervene on tiny random BERT, Llama, GPT-2, T5 (encoder), OPT and Gemma 3."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hyperlens.errors import InputError
from hyperlens.models import SiteContext, capture, intervene, sites
from hyperlens.models.arch import embedding_module, resolve_backbone

ARCHS = ["tiny_bert", "tiny_llama", "tiny_gpt2", "tiny_t5", "tiny_opt", "tiny_gemma3"]
CAUSAL = ["tiny_llama", "tiny_gpt2", "tiny_opt", "tiny_gemma3"]


def _inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, 120, (3, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def _run(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits for models with a head, else the backbone's last hidden state."""
    if model.get_output_embeddings() is not None:
        return model(**inputs).logits
    return resolve_backbone(model).stack(**inputs).last_hidden_state


def _n_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize("arch", ARCHS)
def test_identity_everywhere_is_bit_identical(arch, request):
    model = request.getfixturevalue(arch)
    x = _inputs()
    with torch.no_grad():
        plain = _run(model, x)
        seen: set[str] = set()

        def ident(act, ctx: SiteContext):
            seen.add(ctx.site)
            assert ctx.positions is not None and ctx.positions.shape == act.shape[:2]
            return act

        def ident_kw(kw, ctx):
            seen.add("inputs")
            return kw

        names = sites(model)
        fns = {n: (ident_kw if n == "inputs" else ident) for n in names}
        with intervene(model, fns):
            hooked = _run(model, x)
    assert torch.equal(plain, hooked)
    # every site was visited (T5/BERT have no head, so no unembed site is listed for them)
    assert seen == set(names)


@pytest.mark.parametrize("arch", ARCHS)
def test_intervene_reads_what_capture_reads(arch, request):
    model = request.getfixturevalue(arch)
    names = [n for n in sites(model) if n != "inputs"]
    x = _inputs()
    got: dict[str, torch.Tensor] = {}

    def keep(act, ctx):
        got[ctx.site] = act.detach().clone()
        return act

    with torch.no_grad():
        with capture(model, names) as acts:
            _run(model, x)
        with intervene(model, {n: keep for n in names}):
            _run(model, x)
    for n in names:
        assert torch.equal(acts[n], got[n]), n


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gpt2", "tiny_opt"])
def test_mlp_out_closes_the_residual(arch, request):
    """Pre-norm blocks: resid_post = resid_pre + attn.out + mlp.out."""
    model = request.getfixturevalue(arch)
    names = ["blocks.*.resid_pre", "blocks.*.resid_post", "blocks.*.attn.out", "blocks.*.mlp.out"]
    with torch.no_grad(), capture(model, names) as a:
        _run(model, _inputs())
    for i in range(2):
        total = a[f"blocks.{i}.resid_pre"] + a[f"blocks.{i}.attn.out"] + a[f"blocks.{i}.mlp.out"]
        torch.testing.assert_close(a[f"blocks.{i}.resid_post"], total, rtol=1e-5, atol=1e-5)


def test_embed_ln_final_unembed(tiny_llama, tiny_gemma3, tiny_gpt2):
    x = _inputs()
    for model in (tiny_llama, tiny_gemma3):
        with torch.no_grad(), capture(model, ["embed", "hidden.0", "ln_final", "unembed"]) as a:
            out = model(**x, output_hidden_states=True)
        torch.testing.assert_close(a["embed"], a["hidden.0"], rtol=0, atol=0)
        torch.testing.assert_close(a["ln_final"], out.hidden_states[-1], rtol=0, atol=0)
        torch.testing.assert_close(a["unembed"], out.logits, rtol=0, atol=0)
    # Gemma's embedding output carries the sqrt(d_model) scale
    w = tiny_gemma3.get_input_embeddings().weight
    with torch.no_grad(), capture(tiny_gemma3, ["embed"]) as a:
        tiny_gemma3(**x)
    torch.testing.assert_close(a["embed"], w[x["input_ids"]] * 32**0.5, rtol=1e-6, atol=1e-6)
    # GPT-2: embed is the token table alone (positions are added after it)
    with torch.no_grad(), capture(tiny_gpt2, ["embed"]) as a:
        tiny_gpt2(**x)
    wte = tiny_gpt2.transformer.wte.weight
    torch.testing.assert_close(a["embed"], wte[x["input_ids"]], rtol=0, atol=0)
    # writing the logits
    zero = {"unembed": lambda act, ctx: torch.zeros_like(act)}
    with torch.no_grad(), intervene(tiny_llama, zero):
        assert torch.count_nonzero(tiny_llama(**x).logits) == 0


def test_t5_embed_only_on_the_encoder(tiny_t5):
    """T5 shares its embedding table with the decoder; 'embed' acts on the encoder's call only."""
    x = _inputs()
    calls: list[tuple[int, ...]] = []

    def count(act, ctx):
        calls.append(tuple(act.shape))
        return act

    dec = torch.randint(4, 120, (3, 4), generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), intervene(tiny_t5, {"embed": count}):
        tiny_t5(**x, decoder_input_ids=dec)
    assert calls == [(3, 7, 32)]


def test_heads_view_writes_back(tiny_bert, tiny_gpt2):
    x = _inputs()

    def drop_head0(act, ctx):
        act = act.clone()
        act[:, :, 0] = 0
        return act

    dense = tiny_bert.encoder.layer[1].attention.output.dense
    with torch.no_grad(), intervene(tiny_bert, {"blocks.1.attn.z": drop_head0}):
        with capture(tiny_bert, ["blocks.1.attn.z", "blocks.1.attn.out"]) as a:
            _run(tiny_bert, x)
    z = drop_head0(a["blocks.1.attn.z"], None).reshape(3, 7, 32)  # capture read z before the write
    torch.testing.assert_close(a["blocks.1.attn.out"], dense(z), rtol=1e-5, atol=1e-6)
    # GPT-2's fused projection: writing q leaves k and v alone
    with torch.no_grad():
        with capture(tiny_gpt2, ["blocks.0.attn.k", "blocks.0.attn.v"]) as plain:
            _run(tiny_gpt2, x)
        with intervene(tiny_gpt2, {"blocks.0.attn.q": lambda act, ctx: torch.zeros_like(act)}):
            with capture(tiny_gpt2, ["blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v"]) as a:
                _run(tiny_gpt2, x)
    assert torch.count_nonzero(a["blocks.0.attn.q"]) == 0
    for nm in ("k", "v"):
        assert torch.equal(a[f"blocks.0.attn.{nm}"], plain[f"blocks.0.attn.{nm}"])


@pytest.mark.parametrize("arch", CAUSAL)
def test_generate_with_cache_matches_full_recompute(arch, request):
    """A position-dependent write gives the same tokens with the KV cache as without it."""
    model = request.getfixturevalue(arch)
    ids = torch.randint(4, 120, (2, 5), generator=torch.Generator().manual_seed(2))
    v = torch.randn(32, generator=torch.Generator().manual_seed(4)) * 4
    steps: list[torch.Tensor] = []

    def steer(act, ctx):
        steps.append(ctx.positions.clone())
        hit = (ctx.positions % 3 == 1).unsqueeze(-1).to(act.dtype)  # [batch, pos, 1]
        return act + hit * v

    kw = {"max_new_tokens": 4, "do_sample": False, "pad_token_id": 0, "output_scores": True,
          "return_dict_in_generate": True}
    with torch.no_grad(), intervene(model, {"blocks.0.resid_post": steer}):
        mask = torch.ones_like(ids)
        cached = model.generate(input_ids=ids, attention_mask=mask, use_cache=True, **kw)
        n_cached = len(steps)
        full = model.generate(input_ids=ids, attention_mask=mask, use_cache=False, **kw)
    with torch.no_grad():
        plain = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kw)
    assert torch.equal(cached.sequences, full.sequences)
    for a, b in zip(cached.scores, full.scores, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert not all(torch.equal(a, b) for a, b in zip(cached.scores, plain.scores, strict=True))
    # with the cache, each step sees only its new position, with its absolute index
    assert n_cached == 4
    assert steps[0].tolist() == [[0, 1, 2, 3, 4]] * 2
    assert [s.tolist() for s in steps[1:n_cached]] == [[[5], [5]], [[6], [6]], [[7], [7]]]


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_gemma3"])
def test_inputs_site_adds_prefix_tokens_under_generate(arch, request):
    model = request.getfixturevalue(arch)
    k, d = 3, 32
    prefix = torch.randn(k, d, generator=torch.Generator().manual_seed(5)) * 2
    emb = model.get_input_embeddings()
    ids = torch.randint(4, 120, (2, 5), generator=torch.Generator().manual_seed(6))

    def add_prefix(kw, ctx):
        kw = dict(kw)
        x = emb(kw.pop("input_ids"))  # [batch, pos, d]
        B = x.shape[0]
        first = kw["cache"] is None or kw["cache"].get_seq_length() == 0
        if first:
            x = torch.cat([prefix.expand(B, k, d).to(x.dtype), x], 1)
        kw["inputs_embeds"] = x
        mask = kw.get("attention_mask")  # generate() may drop an all-ones mask
        if mask is not None:
            kw["attention_mask"] = torch.cat([mask.new_ones(B, k), mask], 1)
        pid = kw["position_ids"] + k
        kw["position_ids"] = torch.cat([torch.arange(k).expand(B, k), pid], 1) if first else pid
        return kw

    with torch.no_grad(), intervene(model, {"inputs": add_prefix}):
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=4,
                             do_sample=False, pad_token_id=0, output_scores=True,
                             return_dict_in_generate=True)
    # reference: greedy decoding without a cache on [prefix; embed(tokens so far)]
    seq = ids.clone()
    with torch.no_grad():
        for step in range(4):
            x = torch.cat([prefix.expand(2, k, d), emb(seq)], 1)
            logits = model(inputs_embeds=x, use_cache=False).logits[:, -1]
            torch.testing.assert_close(out.scores[step], logits, rtol=1e-4, atol=1e-4)
            seq = torch.cat([seq, logits.argmax(-1, keepdim=True)], 1)
    assert torch.equal(out.sequences, seq)


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_reach_the_fn_module_only(arch, request):
    model = request.getfixturevalue(arch)
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        delta = nn.Parameter(torch.zeros(32))
        with intervene(model, {"blocks.0.resid_post": lambda act, ctx: act + delta}):
            out = _run(model, _inputs())
        out.pow(2).mean().backward()
        assert delta.grad is not None and delta.grad.abs().sum() > 0
        assert all(p.grad is None for p in model.parameters())
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)


@pytest.mark.parametrize("arch", ARCHS)
def test_hooks_removed_on_exit_and_error(arch, request):
    model = request.getfixturevalue(arch)
    before = _n_hooks(model)
    fns = {n: (lambda a, c: a) for n in sites(model)}
    with intervene(model, fns):
        assert _n_hooks(model) > before
    assert _n_hooks(model) == before

    def boom(act, ctx):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        with intervene(model, {"blocks.-1.attn.v": boom}):
            _run(model, _inputs())
    assert _n_hooks(model) == before
    with pytest.raises(InputError, match="shape"):
        with intervene(model, {"blocks.0.resid_pre": lambda a, c: a[:, :1]}):
            _run(model, _inputs())
    assert _n_hooks(model) == before


def test_bad_sites_and_functions(tiny_bert, tiny_t5, tiny_llama):
    with pytest.raises(InputError, match="unknown site"):
        with intervene(tiny_llama, {"blocks.0.mlp.in": lambda a, c: a}):
            pass
    with pytest.raises(InputError, match="index 5"):
        with intervene(tiny_llama, {"blocks.5.resid_post": lambda a, c: a}):
            pass
    with pytest.raises(InputError, match="callable"):
        with intervene(tiny_llama, {"embed": 3}):
            pass
    with pytest.raises(InputError, match="named twice"):
        twice = {"blocks.*.resid_pre": lambda a, c: a, "blocks.-1.resid_pre": lambda a, c: a}
        with intervene(tiny_llama, twice):
            pass
    with pytest.raises(InputError, match="non-empty dict"):
        with intervene(tiny_llama, {}):
            pass
    with pytest.raises(InputError, match="no final norm"):
        with intervene(tiny_bert, {"ln_final": lambda a, c: a}):
            pass
    with pytest.raises(InputError, match="no language-model head"):
        with capture(tiny_t5, ["unembed"]):
            pass
    with pytest.raises(InputError, match="captured"):
        with capture(tiny_llama, ["inputs"]):
            pass
    assert "ln_final" not in sites(tiny_bert) and "unembed" not in sites(tiny_bert)
    assert {"ln_final", "unembed", "embed", "inputs", "blocks.1.mlp.out"} <= set(sites(tiny_llama))


def test_embedding_module_reads_what_the_model_has(tiny_llama, tiny_t5, monkeypatch):
    assert embedding_module(tiny_llama, "input") is tiny_llama.get_input_embeddings()
    assert embedding_module(tiny_llama, "output") is tiny_llama.get_output_embeddings()
    assert embedding_module(tiny_t5, "output") is None  # encoder only: no head
    assert embedding_module(nn.Linear(2, 2), "output") is None  # no such method

    def unfinished() -> nn.Module:
        raise NotImplementedError

    monkeypatch.setattr(tiny_llama, "get_output_embeddings", unfinished)
    assert embedding_module(tiny_llama, "output") is None
    with pytest.raises(InputError, match="has no language-model head"):
        with capture(tiny_llama, ["unembed"]):
            pass


def test_intervene_is_exported_from_the_package():
    import hyperlens.models as hm

    assert hm.intervene is intervene
