from __future__ import annotations

import numpy as np

from hyperlens.models import embed, embed_layers, from_module


def test_embed_layers_fills_the_single_layer_cache(tiny_bert, tmp_path, monkeypatch):
    from transformers import BertTokenizerFast

    monkeypatch.setenv("HYPERLENS_CACHE", str(tmp_path))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "fine", "film", "bad", "plot"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt"))
    h = from_module(tiny_bert, tok, name="tiny-bert-cache")
    texts = ["a fine film", "bad plot", "a bad film plot"]
    layers = embed_layers(texts, h, cache=True)
    n_files = len(list(tmp_path.rglob("*.npy")))
    assert n_files == 1 + layers.shape[0]
    last = embed(texts, h, layer=-1, cache=True)       # served from the cache
    np.testing.assert_array_equal(last, layers[-1])
    assert len(list(tmp_path.rglob("*.npy"))) == n_files
    np.testing.assert_allclose(embed(texts, h, layer=1), layers[1], rtol=1e-5, atol=1e-6)
