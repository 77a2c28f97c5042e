"""What the CUDA tests share with ``scripts/gpu_check.py``: the device under test, the
tolerances of CPU-against-CUDA comparisons, a word-level tokenizer for tiny random models
and the checks that a result really lives on the device.

The device is CUDA when torch sees a GPU. ``HYPERLENS_GPU_REHEARSAL=cpu`` puts the CPU in
its place, so the CUDA tests and the benchmark items can be rehearsed on a machine without
a GPU (every comparison is then the CPU against itself, which checks the tests, not CUDA).
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import nn

REHEARSAL = "HYPERLENS_GPU_REHEARSAL"

#: float32 model arithmetic: other kernels (cuBLAS, fused attention) round differently
F32 = {"rtol": 1e-4, "atol": 1e-4}
#: float64 geometry: the same sums in another order
F64 = {"rtol": 1e-9, "atol": 1e-12}
#: a few optimiser steps in float32 (rounding differences grow a little with each step)
STEPS = {"rtol": 1e-3, "atol": 1e-4}


def device_under_test() -> torch.device | None:
    """CUDA when visible, the CPU under a rehearsal, else ``None`` (nothing to test)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get(REHEARSAL, "") == "cpu":
        return torch.device("cpu")
    return None


def skip_reason() -> str:
    return (f"no CUDA GPU is visible to torch {torch.__version__} "
            f"(torch.cuda.is_available() is False); {REHEARSAL}=cpu rehearses these tests on "
            "the CPU")


def assert_on(device: torch.device, *tensors: Any) -> None:
    """Every tensor (or every parameter and buffer of a module) lives on ``device``."""
    for t in tensors:
        items = [*t.parameters(), *t.buffers()] if isinstance(t, nn.Module) else [t]
        for x in items:
            assert x.device.type == device.type, f"{tuple(x.shape)} is on {x.device}, not {device}"


def moved(module: nn.Module, device: torch.device) -> nn.Module:
    """A copy of ``module`` on ``device`` (shared fixtures stay on the CPU)."""
    return copy.deepcopy(module).to(device)


def max_abs_diff(a: Any, b: Any) -> float:
    """``max |a - b|`` over two tensors or arrays of one shape (0.0 when empty)."""
    ta = torch.as_tensor(a).detach().cpu().double()
    tb = torch.as_tensor(b).detach().cpu().double()
    if ta.shape != tb.shape:
        raise AssertionError(f"shapes differ: {tuple(ta.shape)} and {tuple(tb.shape)}")
    return float((ta - tb).abs().max()) if ta.numel() else 0.0


def word_tokenizer(vocab_size: int = 120, max_length: int = 64) -> Any:
    """A whitespace word-level tokenizer for tiny random models: ids 0-3 are ``[PAD]``,
    ``[UNK]``, ``[CLS]``, ``[SEP]``; the words ``w4 .. w{vocab_size - 1}`` have their own ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    vocab.update({f"w{i}": i for i in range(4, vocab_size)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]",
                                   model_max_length=max_length)


def word_texts(n: int, vocab_size: int = 120, max_words: int = 20, seed: int = 0) -> list[str]:
    """``n`` texts of 1 to ``max_words`` words over :func:`word_tokenizer`'s vocabulary."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lens = rng.integers(1, max_words + 1, size=n)
    return [" ".join(f"w{int(i)}" for i in rng.integers(4, vocab_size, size=k)) for k in lens]
