"""``pooling="mean_after_first"``: the mean of every real token but the first (decoder sink)."""

from __future__ import annotations

import numpy as np
import torch

from hyperlens.models import embed, from_module
from hyperlens.models.arch import resolve_backbone


def test_mean_after_first_matches_one_text_at_a_time(tiny_llama, tiny_tokenizer, tiny_texts):
    h = from_module(tiny_llama, tiny_tokenizer)
    got = embed(tiny_texts, h, pooling="mean_after_first", batch_size=4)
    stack = resolve_backbone(tiny_llama).stack
    rows = []
    with torch.no_grad():
        for t in tiny_texts:
            ids = tiny_tokenizer([t], return_tensors="pt")["input_ids"]
            hs = stack(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
            rows.append(hs[1:].mean(0) if hs.shape[0] > 1 else hs[0])
    np.testing.assert_allclose(got, torch.stack(rows).numpy(), rtol=1e-4, atol=1e-5)
