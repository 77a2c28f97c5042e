"""The adapter contract, run over every registered adapter on tiny random models.

Each adapter class gives a small config for a model through ``example_config(model)``;
adapters registered later join these tests automatically.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from hyperlens.inject import (
    adapter_class,
    attach,
    available_adapters,
    load_adapter,
    make_adapter,
    save_adapter,
)
from hyperlens.models.arch import resolve_backbone
from hyperlens.train import TrainConfig, checksum, fit

ARCHS = ["tiny_llama", "tiny_gpt2", "tiny_bert", "tiny_gemma3"]


def _batch() -> dict[str, torch.Tensor]:
    ids = torch.randint(4, 120, (3, 6), generator=torch.Generator().manual_seed(11))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _out(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits (or the backbone output) at the last ``pos`` positions (prefixes add some)."""
    if model.get_output_embeddings() is not None:
        y = model(**batch).logits
    else:
        y = resolve_backbone(model).stack(**batch).last_hidden_state
    return y[:, -batch["input_ids"].shape[1]:]


def _n_hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _make(name: str, model: nn.Module):
    cfg = adapter_class(name).example_config(model)
    return make_adapter(name, **cfg.as_dict())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", available_adapters())
def test_adapter_contract(name, arch, request, tmp_path):
    model = request.getfixturevalue(arch)
    batch = _batch()
    before = checksum(model)
    with torch.no_grad():
        plain = _out(model, batch)
    adapter = _make(name, model)
    # identity at initialisation
    with torch.no_grad(), attach(model, adapter):
        init = _out(model, batch)
    torch.testing.assert_close(init, plain, rtol=0, atol=1e-6)
    # one optimisation step (through the one training loop) changes the outputs
    target = torch.randn(plain.shape, generator=torch.Generator().manual_seed(3))

    def loss(ad, b):
        with attach(model, ad):
            return (_out(model, b) - target).pow(2).mean()

    fit(adapter, loss, batch, TrainConfig(lr=1e-2, max_steps=1, batch_size=None), frozen=model)
    assert checksum(model) == before
    with torch.no_grad(), attach(model, adapter):
        trained = _out(model, batch)
    assert (trained - plain).abs().max() > 1e-5
    # save -> load gives identical outputs; the header has the config and the model
    path = save_adapter(adapter, tmp_path / f"{name}.safetensors", model=model)
    back = load_adapter(path, model=model)
    with torch.no_grad(), attach(model, back):
        again = _out(model, batch)
    assert torch.equal(again, trained)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["adapter"] == name and json.loads(meta["config"]) == adapter.config.as_dict()
    assert json.loads(meta["model"])["hidden_size"] == resolve_backbone(model).d_model
    # hooks leave on exit and on error
    n = _n_hooks(model)
    with pytest.raises(RuntimeError, match="inside"), attach(model, back):
        assert _n_hooks(model) > n
        raise RuntimeError("inside")
    assert _n_hooks(model) == n
