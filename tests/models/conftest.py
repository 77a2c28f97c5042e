"""Fixtures for the model tests: a small word-level tokenizer that fits the tiny models."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A whitespace word-level tokenizer with 120 ids (the tiny models' vocabulary size).

    Ids 0-3 are [PAD], [UNK], [CLS], [SEP]; the words ``w4 .. w119`` have their own ids.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    vocab.update({f"w{i}": i for i in range(4, 120)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=60,
    )


@pytest.fixture(scope="session")
def tiny_texts():
    """Sentences of different lengths over the tiny vocabulary (seeded)."""
    import numpy as np

    rng = np.random.default_rng(0)
    lens = [3, 9, 1, 14, 5, 5, 20, 2, 7, 11, 4, 16]
    return [" ".join(f"w{int(i)}" for i in rng.integers(4, 120, size=n)) for n in lens]
