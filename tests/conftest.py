"""Shared fixtures: tiny random Hugging Face models for every architecture we claim.

They are built from configs (no download), in eval mode, with a fixed seed, once per
test session.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HYPERLENS_PROGRESS", "0")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _seeded(build):
    torch.manual_seed(0)
    model = build()
    model.eval()
    return model


@pytest.fixture(scope="session")
def tiny_bert():
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64,
    )
    return _seeded(lambda: BertModel(cfg))


@pytest.fixture(scope="session")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    return _seeded(lambda: LlamaForCausalLM(cfg))


@pytest.fixture(scope="session")
def tiny_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=120, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    return _seeded(lambda: GPT2LMHeadModel(cfg))


@pytest.fixture(scope="session")
def tiny_t5():
    from transformers import T5Config, T5Model

    cfg = T5Config(
        vocab_size=120, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2,
        num_heads=4, relative_attention_num_buckets=8,
    )
    return _seeded(lambda: T5Model(cfg))


@pytest.fixture(scope="session")
def tiny_opt():
    from transformers import OPTConfig, OPTForCausalLM

    cfg = OPTConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        ffn_dim=64, max_position_embeddings=64, word_embed_proj_dim=32,
    )
    return _seeded(lambda: OPTForCausalLM(cfg))


@pytest.fixture(scope="session")
def tiny_gemma3():
    """Gemma 3 text model: scaled tied embeddings, q/k norms, sliding and global layers."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(
        vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=8, max_position_embeddings=64,
        sliding_window=4, layer_types=["sliding_attention", "full_attention"],
        pad_token_id=0, bos_token_id=2, eos_token_id=3,
    )
    return _seeded(lambda: Gemma3ForCausalLM(cfg))


@pytest.fixture(scope="session")
def tiny_gemma3_wide():
    """Tiny Gemma 3 whose sliding window (32) holds every test prompt."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(
        vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=1, head_dim=8, max_position_embeddings=64,
        sliding_window=32, layer_types=["sliding_attention", "full_attention",
                                        "sliding_attention"],
        pad_token_id=0, bos_token_id=2, eos_token_id=3, final_logit_softcapping=5.0,
    )
    return _seeded(lambda: Gemma3ForCausalLM(cfg))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The labelled data folder beside the project (``../shared/data``); skips when absent."""
    root = Path(os.environ.get("HYPERLENS_DATA_DIR", SHARED_DATA))
    if not (root / "sst2" / "dev.tsv").exists():
        pytest.skip(f"labelled data folder not found at {root} (set HYPERLENS_DATA_DIR)")
    return root


@pytest.fixture(scope="session")
def ray_executor():
    """One 2-CPU Ray instance on 127.0.0.1 for the whole session (200 MB object store), shut
    down at the end; skips when ray is not importable. Its workers import this source tree."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # bind to loopback
    pytest.importorskip("ray", reason="ray is not installed (scripts/setup.sh installs it)")
    from hyperlens.run import RayExecutor

    old = os.environ.get("PYTHONPATH")
    src = str(Path(__file__).resolve().parents[1] / "src")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, old) if p)
    ex = RayExecutor(num_cpus=2, object_store_mb=200)
    try:
        yield ex
    finally:
        ex.close()
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


@pytest.fixture(scope="session")
def graph():
    """The cached WordNet hypernym graph (skips with the install hint when WordNet is absent)."""
    from hyperlens.data.wordnet_similarity import wordnet_graph
    from hyperlens.errors import DataError

    try:
        return wordnet_graph()
    except DataError as exc:
        pytest.skip(f"WordNet is not installed: {exc}")
