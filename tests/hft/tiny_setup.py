"""A character tokenizer, a small corpus and a small student for the HyperField tests (a
tiny random Llama teacher from ``tests/conftest.py``: vocabulary 120, hidden 32)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hyperlens.hft.capture import Capture, CaptureConfig, Unembedding
from hyperlens.hft.features import FeatureConfig, Featurizer
from hyperlens.hft.generate import save_student
from hyperlens.hft.model import log_unigram
from hyperlens.hft.train import StudentConfig, aux_stats, build_model
from hyperlens.models.handle import ModelHandle


class CharTokenizer:
    bos_token_id = 1
    eos_token_id = 2

    def __call__(self, texts, add_special_tokens=False, truncation=True, max_length=None):
        if isinstance(texts, str):  # one text, as `hft generate` tokenises its prompt
            return {"input_ids": [3 + (ord(c) % 100) for c in texts][:max_length]}
        ids = [[3 + (ord(c) % 100) for c in t][:max_length] for t in texts]
        return {"input_ids": ids}

    def decode(self, ids):
        return "".join(chr(32 + (int(i) - 3) % 95) for i in ids)


TEXTS = [f"text number {i} says {'abc' * (i % 7)} and {i * 7 % 13}" for i in range(40)]

#: a capture of TEXTS that takes a second
SMALL = CaptureConfig(model="tiny", train_tokens=300, heldout_tokens=100, layer=1, heads=(0,),
                      window=8, max_length=40, batch_size=4, shard_texts=6)

#: a student small enough to build in milliseconds
SMALL_STUDENT = StudentConfig(d_embed=16, k1=8, top1=2, k2=8, top2=2, d_route=4, heads1=1,
                              heads2=1)


def small_features(window: int = 8) -> FeatureConfig:
    return FeatureConfig(window=window, tail=4, hash_bits=10, d_count=512, d_sketch=128,
                         d_tail=32)


def save_small_student(teacher: ModelHandle, cap: Capture, folder: Path,
                       teacher_name: str = "tiny") -> Path:
    """An untrained Track A student of ``cap`` saved as `hyperlens hft train` saves one."""
    fc = small_features(cap.config["window"])
    feat = Featurizer(teacher.token_embeddings(), fc).fit(cap.train["ctx"], cap.train["pos"])
    U = Unembedding.from_model(teacher)
    lu = log_unigram(torch.from_numpy(np.asarray(cap.train["target"]).astype(np.int64)),
                     U.vocab_size)
    d_aux = int(aux_stats(cap.train)["mean"].numel())
    model = build_model(SMALL_STUDENT, feat.d1, fc.d_tail, teacher.hidden_size, d_aux, U, lu)
    from dataclasses import asdict

    return save_student(folder, feat, model, {
        "teacher": teacher_name, "capture": str(cap.root), "student": asdict(SMALL_STUDENT),
        "d_aux": d_aux, "d_model": teacher.hidden_size, "capture_config": cap.config})
