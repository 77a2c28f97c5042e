"""Inference from a rolling buffer, saving and loading a trained student.

:class:`RollingBuffer` keeps the newest ``W`` token ids and the absolute position; each
``push`` drops the oldest token, so tokens that left the window cannot reach the student
(nothing else is kept). A step featurises the buffer (a ``W x d`` embedding lookup, the
n-gram hashes of the window and the sketches: a fixed cost per token, independent of how
long the text already is) and runs Stage 1 and Stage 2 on that one row. Track A needs no
teacher at inference.

A saved student is one folder (``student.safetensors`` + ``student.json``); :func:`load_student`
rebuilds it and refuses, with a named error, a damaged or incomplete folder, a teacher or a
capture other than the ones it was trained with, and any tensor that is missing or has
another shape than the model built from its header.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..models.handle import ModelHandle
from ..utils import apply_umask, atomic_path, make_generator
from .features import FeatureConfig, Featurizer

__all__ = ["RollingBuffer", "Student", "save_student", "student_folder", "load_student_state",
           "load_student", "check_state", "check_student_capture"]

WEIGHTS, HEADER = "student.safetensors", "student.json"


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

    def with_vocab_dtype(self, dtype: torch.dtype) -> Student:
        """A copy whose vocabulary product (the frozen unembedding, most of a step's cost at
        batch 1) runs in ``dtype``, the rest in float32: the precision a student is trained
        through where the CPU has native bfloat16. (Its layers in bfloat16 too measured no
        faster at batch 1 and flip routing choices.)"""
        import copy

        model = copy.deepcopy(self.model)
        model.unembed.compute_dtype = dtype
        return Student(self.feat, model)

    @torch.no_grad()
    def generate(self, prompt_ids: list[int], n_tokens: int, start_token: int, *,
                 greedy: bool = True, temperature: float = 1.0, seed: int = 0) -> list[int]:
        """Extend ``prompt_ids`` by ``n_tokens`` (Track A only: tokens in, tokens out)."""
        if isinstance(n_tokens, bool) or not isinstance(n_tokens, (int, np.integer)) \
                or n_tokens < 1:
            raise InputError(f"n_tokens must be an int >= 1 (tokens to produce), got "
                             f"{n_tokens!r}.")
        if not temperature > 0:
            raise InputError(f"temperature must be > 0, got {temperature!r}.")
        if self.feat.cfg.track != "A":
            raise InputError("generation needs a Track A student (Track B reads teacher states).")
        buf = RollingBuffer(self.feat.cfg.window, start_token)
        for t in prompt_ids:
            buf.push(t)
        g = make_generator(seed)
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
    """One safetensors file of weights (featuriser statistics included) plus a JSON header;
    files get the user's umask like every other output."""
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()
               if not k.startswith("unembed.")}
    tensors.update({f"feat.{k}": v.contiguous() for k, v in feat.stats.items()})
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        save_file(tensors, str(tmp / WEIGHTS))
        apply_umask(tmp / WEIGHTS)  # safetensors writes its file private (0600)
        (tmp / HEADER).write_text(json.dumps(
            {"features": asdict(feat.cfg), **meta}, indent=2, default=str))
    return folder


def student_folder(folder: str | Path) -> Path:
    """The saved student in ``folder``: the folder itself, or ``folder/student`` when
    ``folder`` is the --out folder of ``hyperlens hft train``."""
    folder = Path(folder)
    if not (folder / HEADER).exists() and (folder / "student" / HEADER).exists():
        return folder / "student"
    if not folder.is_dir():
        raise InputError(
            f"--student {folder}: no such folder; pass the --out folder of `hyperlens hft "
            "train` (or its 'student' sub-folder)."
        )
    if not (folder / HEADER).exists():
        raise InputError(
            f"--student {folder} holds no saved student ({HEADER}); pass the --out folder of "
            "`hyperlens hft train` (or its 'student' sub-folder)."
        )
    return folder


_META_KEYS = ("features", "teacher", "student", "d_model", "d_aux")


def _damaged(folder: Path, what: str, exc: Any) -> InputError:
    return InputError(
        f"the saved student in {folder} is damaged: {what} ({exc}). Train it again "
        "(`hyperlens hft train`) or restore the folder from a copy."
    )


def load_student_state(folder: str | Path) -> tuple[FeatureConfig, dict[str, Any],
                                                    dict[str, torch.Tensor],
                                                    dict[str, torch.Tensor]]:
    """``(feature config, meta, model state, featuriser stats)`` of a saved student.

    ``folder`` is the student folder or the train run's --out folder holding it. A missing
    or unreadable header or weights file raises :class:`InputError`.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = student_folder(folder)
    try:
        meta = json.loads((folder / HEADER).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(folder, f"{HEADER} is not valid JSON", exc) from None
    if not isinstance(meta, dict) or any(k not in meta for k in _META_KEYS):
        missing = [k for k in _META_KEYS if not isinstance(meta, dict) or k not in meta]
        raise _damaged(folder, f"{HEADER} lacks {', '.join(missing)}", "not a student header")
    try:
        fc = FeatureConfig(**meta.pop("features"))
        fc.validate()
    except (TypeError, InputError) as exc:
        raise _damaged(folder, f"{HEADER} has an invalid 'features' entry", exc) from None
    if fc.pca:
        raise InputError(
            f"the student in {folder} was trained with --pca {fc.pca}, and a saved student "
            "does not keep the PCA projection; train without --pca to save a student."
        )
    if not (folder / WEIGHTS).exists():
        raise InputError(
            f"the saved student in {folder} has no weights ({WEIGHTS} is missing); train it "
            "again or restore the file."
        )
    try:
        t = load_file(str(folder / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise _damaged(folder, f"{WEIGHTS} cannot be read (truncated or not safetensors)",
                       exc) from None
    model = {k[6:]: v for k, v in t.items() if k.startswith("model.")}
    stats = {k[5:]: v for k, v in t.items() if k.startswith("feat.")}
    return fc, meta, model, stats


def check_state(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor],
                where: str) -> None:
    """Refuse ``got`` unless it has every tensor of ``expected`` with the same shape (and
    nothing else); the error lists missing, unexpected and mismatched tensors."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    shapes = [f"{k} {tuple(got[k].shape)} (expected {tuple(expected[k].shape)})"
              for k in sorted(set(expected) & set(got)) if got[k].shape != expected[k].shape]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if shapes:
            parts.append(f"other shape {', '.join(shapes)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        raise InputError(
            f"{where} does not match the model its header describes: {'; '.join(parts)}. "
            "Train the student again or restore the folder from a copy."
        )


def _trained_on(meta: dict[str, Any], fc: FeatureConfig, vocab: int) -> str:
    cap = meta.get("capture_config") or {}
    extra = "".join(f", {k} {cap[k]}" for k in ("dataset", "layer") if k in cap)
    return (f"teacher {meta['teacher']!r} (hidden {meta['d_model']}, vocab {vocab}), window "
            f"{fc.window}, capture {meta.get('capture', '?')}{extra}")


def check_student_capture(meta: dict[str, Any], fc: FeatureConfig, vocab: int,
                          manifest: dict[str, Any], where: str | Path) -> None:
    """Refuse a capture (its ``manifest``) that a student cannot be scored on: another
    teacher, hidden size, vocabulary or window than the student was trained with."""
    cfg = manifest.get("config", {})
    have = {"teacher": cfg.get("model"), "hidden": manifest.get("hidden_size"),
            "vocab": manifest.get("vocab_size"), "window": cfg.get("window")}
    want = {"teacher": meta["teacher"], "hidden": int(meta["d_model"]), "vocab": vocab,
            "window": fc.window}
    diff = [f"{k} {have[k]!r}" for k in want if have[k] != want[k]]
    if diff:
        raise InputError(
            f"this student was trained on {_trained_on(meta, fc, vocab)}; the capture in "
            f"{where} has {', '.join(diff)}. Pass the capture the student was trained on as "
            "--capture-dir (or omit it to use the one its header names)."
        )


def load_student(folder: str | Path, teacher: ModelHandle | None = None
                 ) -> tuple[Student, ModelHandle, dict[str, Any]]:
    """Rebuild a saved student: ``(Student, teacher, meta)``.

    ``teacher`` defaults to the one the header names (loaded with
    :func:`hyperlens.models.load`). Every check that needs no teacher runs before it is
    loaded; a teacher of another hidden size or vocabulary, or weights that do not fill the
    model exactly (a tensor missing or of another shape), raise :class:`InputError`.
    """
    from .capture import Unembedding
    from .train import StudentConfig, build_model

    fc, meta, state, fstats = load_student_state(folder)
    folder = student_folder(folder)
    if "unigram" not in state or state["unigram"].ndim != 1:
        raise InputError(
            f"the weights in {folder / WEIGHTS} lack the 1-D tensor unigram (the student's "
            "vocabulary bias); train the student again or restore the folder from a copy."
        )
    vocab = int(state["unigram"].numel())
    if teacher is None:
        from .. import models as hmodels

        teacher = hmodels.load(meta["teacher"], device="cpu")
    U = Unembedding.from_model(teacher)
    if teacher.hidden_size != int(meta["d_model"]) or U.vocab_size != vocab:
        raise InputError(
            f"this student was trained on {_trained_on(meta, fc, vocab)}; the teacher given, "
            f"{teacher.name!r}, has hidden {teacher.hidden_size} and vocab {U.vocab_size}. "
            f"Use the student with teacher {meta['teacher']!r}."
        )
    feat = Featurizer(teacher.token_embeddings(), fc)
    want_stats = {"sketch_mean": (fc.d_sketch,), "sketch_std": (fc.d_sketch,),
                  "tail_mean": (fc.d_tail,), "tail_std": (fc.d_tail,)}
    if fc.track == "B":
        want_stats.update(state_mean=(feat.d,), state_std=(feat.d,))
    if fc.exact:
        want_stats.update(exact_mean=(fc.exact * feat.d,), exact_std=(fc.exact * feat.d,))
    check_state({k: torch.empty(v) for k, v in want_stats.items()}, fstats,
                f"the featuriser statistics of the student in {folder}")
    feat.stats = fstats
    sc = meta["student"]
    known = {f.name for f in fields(StudentConfig)}
    try:
        model = build_model(StudentConfig(**{k: v for k, v in sc.items() if k in known}),
                            feat.d1, fc.d_tail, int(meta["d_model"]), int(meta["d_aux"]), U,
                            state["unigram"])
    except (TypeError, AttributeError, InputError) as exc:
        raise _damaged(folder, f"{HEADER} describes no buildable student", exc) from None
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("unembed.")}
    check_state(expected, state, f"the weights in {folder / WEIGHTS}")
    model.load_state_dict(state, strict=False)  # strict apart from the teacher's unembedding
    model.eval()
    return Student(feat, model), teacher, meta
