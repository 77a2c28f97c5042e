"""Adapter registry, configs, files and the two residual adapters."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hyperlens.errors import ConfigError, InputError
from hyperlens.inject import (
    Adapter,
    AdapterConfig,
    FieldConfig,
    LowRankAdapter,
    SteerAdapter,
    attach,
    available_adapters,
    load_adapter,
    make_adapter,
    register_adapter,
    save_adapter,
)
from hyperlens.inject.base import _REGISTRY
from hyperlens.models import capture


def test_registry_and_make():
    assert {"steer", "lowrank"} <= set(available_adapters())
    assert isinstance(make_adapter("steer", d_model=32, layers=[1]), SteerAdapter)
    with pytest.raises(ConfigError, match="available"):
        make_adapter("nope")
    with pytest.raises(ConfigError, match="unknown field"):
        make_adapter("steer", d_model=32, width=3)
    with pytest.raises(ConfigError, match="layers"):
        make_adapter("steer", d_model=32, layers=(1, 1))
    with pytest.raises(ConfigError, match="site"):
        make_adapter("lowrank", d_model=32, site="attn.q")
    with pytest.raises(ConfigError, match="rank"):
        make_adapter("lowrank", d_model=4, rank=8)
    with pytest.raises(ConfigError, match="decorates Adapter"):
        register_adapter("not_an_adapter")(dict)

    @register_adapter("test_noop")
    class Noop(Adapter):
        def interventions(self, model):
            return {"embed": lambda a, c: a}

    try:
        assert "test_noop" in available_adapters() and Noop.name == "test_noop"
        with pytest.raises(ConfigError, match="already registered"):
            register_adapter("test_noop")(SteerAdapter)
        assert isinstance(make_adapter("test_noop").config, AdapterConfig)
    finally:
        _REGISTRY.pop("test_noop", None)


def test_config_validate_runs_on_tuples_and_chains_to_the_base_checks():
    seen = []

    @dataclasses.dataclass
    class Cfg(AdapterConfig):
        layers: tuple[int, ...] = (0,)

        def validate(self) -> None:
            seen.append(self.layers)
            if not self.layers:
                raise ConfigError("layers is empty; pass at least one block index.")

    assert Cfg(layers=[1, 2]).layers == (1, 2) and seen == [(1, 2)]  # JSON lists -> tuples
    with pytest.raises(ConfigError, match="layers is empty"):
        Cfg(layers=[])
    # a field config runs the shared geometry checks before its own
    with pytest.raises(ConfigError, match="d_model must be a positive int"):
        FieldConfig(d_model=0, vocab_size=10, n_layers=2, layers=[0], alpha_max=2.0)
    with pytest.raises(ConfigError, match="alpha_max"):
        FieldConfig(d_model=8, vocab_size=10, n_layers=2, layers=[0], alpha_max=2.0)


def test_steer_adds_its_vector_and_checks_the_model(tiny_llama):
    ad = make_adapter("steer", d_model=32, layers=(1,), site="mlp.out")
    with torch.no_grad():
        ad.vectors.fill_(0.5)
    ids = torch.randint(4, 120, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), capture(tiny_llama, ["blocks.1.mlp.out"]) as plain:
        tiny_llama(input_ids=ids)
    with torch.no_grad(), attach(tiny_llama, ad), capture(tiny_llama, ["blocks.1.mlp.out"]) as a:
        tiny_llama(input_ids=ids)
    torch.testing.assert_close(a["blocks.1.mlp.out"], plain["blocks.1.mlp.out"] + 0.5)
    narrow = make_adapter("steer", d_model=8)
    with pytest.raises(InputError, match="d_model=32"), attach(tiny_llama, narrow):
        pass
    deep = make_adapter("steer", d_model=32, layers=(5,))
    with pytest.raises(InputError, match="blocks"), attach(tiny_llama, deep):
        pass


def test_steer_last_position_under_generate(tiny_llama):
    ad = make_adapter("steer", d_model=32, layers=(0,), positions="last")
    with torch.no_grad():
        ad.vectors.normal_(generator=torch.Generator().manual_seed(1))
    ids = torch.randint(4, 120, (1, 4), generator=torch.Generator().manual_seed(2))
    kw = {"max_new_tokens": 3, "do_sample": False, "pad_token_id": 0, "output_scores": True,
          "return_dict_in_generate": True}
    with torch.no_grad(), attach(tiny_llama, ad):
        out = tiny_llama.generate(input_ids=ids, **kw)
    # the first step's logits are those of one steered forward over the prompt
    with torch.no_grad(), attach(tiny_llama, ad):
        first = tiny_llama(input_ids=ids).logits[:, -1]
    with torch.no_grad():
        unsteered = tiny_llama(input_ids=ids).logits[:, -1]
    torch.testing.assert_close(out.scores[0], first, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(first, unsteered)
    assert out.sequences.shape == (1, 7)


def test_lowrank_matches_its_formula(tiny_gpt2):
    ad = make_adapter("lowrank", d_model=32, layers=(0,), rank=3, alpha=2.0, seed=5)
    assert isinstance(ad, LowRankAdapter) and ad.A.shape == (1, 3, 32) and not ad.B.any()
    again = make_adapter("lowrank", d_model=32, layers=(0,), rank=3, alpha=2.0, seed=5)
    assert torch.equal(ad.A, again.A)  # seeded, global RNG not used
    with torch.no_grad():
        ad.B.normal_(generator=torch.Generator().manual_seed(0))
    ids = torch.randint(4, 120, (2, 5), generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), capture(tiny_gpt2, ["blocks.0.resid_post"]) as plain:
        tiny_gpt2(input_ids=ids)
    h = plain["blocks.0.resid_post"]
    with torch.no_grad(), attach(tiny_gpt2, ad), capture(tiny_gpt2, ["blocks.0.resid_post"]) as a:
        tiny_gpt2(input_ids=ids)
    ref = h + 2.0 * (h @ ad.A[0].T) @ ad.B[0].T
    torch.testing.assert_close(a["blocks.0.resid_post"], ref, rtol=1e-5, atol=1e-5)


def test_files_refuse_other_models_and_foreign_files(tiny_llama, tiny_gpt2, tmp_path):
    ad = make_adapter("steer", d_model=32, layers=(0, 1))
    path = save_adapter(ad, tmp_path / "a.safetensors", model=tiny_llama)
    with pytest.raises(InputError, match="trained on model"):
        load_adapter(path, model=tiny_gpt2)
    assert isinstance(load_adapter(path, model=tiny_gpt2, strict_model=False), SteerAdapter)
    assert isinstance(load_adapter(path), SteerAdapter)
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(InputError, match="not a hyperlens adapter"):
        load_adapter(tmp_path / "other.safetensors")
    with pytest.raises(InputError, match="does not exist"):
        load_adapter(tmp_path / "missing.safetensors")
    raw = open(path, "rb").read()
    assert b"pickle" not in raw and raw[8:9] == b"{"  # a safetensors JSON header
