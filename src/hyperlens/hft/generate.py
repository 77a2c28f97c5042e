"""Inference from a rolling buffer, saving and loading a trained student.

:class:`RollingBuffer` keeps the newest ``W`` token ids and the absolute position; each
``push`` drops the oldest token, so tokens that left the window cannot reach the student
(nothing else is kept). A step featurises the buffer (a ``W x d`` embedding lookup, the
n-gram hashes of the window and the sketches: a fixed cost per token, independent of how
long the text already is) and runs Stage 1 and Stage 2 on that one row. Track A needs no
teacher at inference.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..utils import atomic_path
from .features import FeatureConfig, Featurizer

__all__ = ["RollingBuffer", "Student", "save_student", "load_student_state"]


class RollingBuffer:
    """The newest ``window`` token ids, newest first (``-1`` where the text is shorter)."""

    def __init__(self, window: int, start_token: int) -> None:
        self.window = window
        self.ids = np.full(window, -1, np.int64)
        self.position = -1
        self.push(start_token)

    def push(self, token: int) -> None:
        self.ids[1:] = self.ids[:-1].copy()
        self.ids[0] = int(token)
        self.position += 1

    def row(self) -> tuple[np.ndarray, np.ndarray]:
        """``ctx [1, W]`` and ``pos [1]`` for the featuriser."""
        return self.ids[None].copy(), np.array([self.position])


class Student:
    """Featuriser + trained model, predicting next-token log-probabilities from windows.

    Shapes: ``logprobs(ctx [n, W], pos [n], state [n, d] | None) -> [n, V]``.
    """

    def __init__(self, feat: Featurizer, model: Any) -> None:
        self.feat, self.model = feat, model

    @torch.no_grad()
    def logprobs(self, ctx: np.ndarray, pos: np.ndarray, state: Any = None) -> torch.Tensor:
        x1 = self.feat.stage1(ctx, pos, state)
        tail = self.feat.tail(ctx)
        y, _ = self.model(x1, tail)
        return torch.log_softmax(self.model.logits(y), -1)

    @torch.no_grad()
    def generate(self, prompt_ids: list[int], n_tokens: int, start_token: int, *,
                 greedy: bool = True, temperature: float = 1.0, seed: int = 0) -> list[int]:
        """Extend ``prompt_ids`` by ``n_tokens`` (Track A only: tokens in, tokens out)."""
        if self.feat.cfg.track != "A":
            raise InputError("generation needs a Track A student (Track B reads teacher states).")
        buf = RollingBuffer(self.feat.cfg.window, start_token)
        for t in prompt_ids:
            buf.push(t)
        g = torch.Generator().manual_seed(seed)
        out: list[int] = []
        for _ in range(n_tokens):
            ctx, pos = buf.row()
            lp = self.logprobs(ctx, pos)[0]
            if greedy:
                tok = int(lp.argmax())
            else:
                tok = int(torch.multinomial((lp / temperature).softmax(-1), 1, generator=g))
            out.append(tok)
            buf.push(tok)
        return out


def save_student(folder: Path, feat: Featurizer, model: nn.Module, meta: dict[str, Any]) -> Path:
    """One safetensors file of weights (featuriser statistics included) plus a JSON header."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()
               if not k.startswith("unembed.")}
    tensors.update({f"feat.{k}": v.contiguous() for k, v in feat.stats.items()})
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        save_file(tensors, str(tmp / "student.safetensors"))
        (tmp / "student.json").write_text(json.dumps(
            {"features": asdict(feat.cfg), **meta}, indent=2, default=str))
    return folder


def load_student_state(folder: Path) -> tuple[FeatureConfig, dict[str, Any],
                                             dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(feature config, meta, model state, featuriser stats)`` of a saved student."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if not (folder / "student.json").exists():
        raise InputError(
            f"{folder} holds no saved student (student.json); run `hyperlens hft train` with "
            "--out pointing there first."
        )
    meta = json.loads((folder / "student.json").read_text())
    fc = FeatureConfig(**meta.pop("features"))
    t = load_file(str(folder / "student.safetensors"))
    model = {k[6:]: v for k, v in t.items() if k.startswith("model.")}
    stats = {k[5:]: v for k, v in t.items() if k.startswith("feat.")}
    return fc, meta, model, stats
