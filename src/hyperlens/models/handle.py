"""The uniform model handle that every part of hyperlens passes around."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..utils import stable_hash

__all__ = ["ModelHandle", "StaticVectors", "from_module"]


@dataclass
class StaticVectors:
    """A static embedding table: one vector per vocabulary entry.

    ``words`` and ``vectors`` are row-aligned. ``lowercase`` says whether the table's
    keys are lower-case (GloVe), in which case text is lower-cased before lookup.
    ``tokenize`` splits a text into lookup keys (a word regex or a subword tokenizer).
    ``index`` maps a key to its row; ``aliases`` maps extra keys to rows (spaCy stores
    several surface forms per row).

    Shapes:
        vectors: [vocab, d]
    """

    words: list[str]
    vectors: torch.Tensor
    lowercase: bool
    tokenize: Any
    index: dict[str, int] = field(default_factory=dict)
    ids_from_tokenizer: bool = False

    def __post_init__(self) -> None:
        if not self.index:
            self.index = {w: i for i, w in enumerate(self.words)}


@dataclass
class ModelHandle:
    """One loaded model, whatever its kind.

    Attributes:
        name: short name (``"minilm"``) or the id / path it was loaded from.
        kind: ``"encoder" | "decoder" | "encoder-decoder" | "static"``.
        module: the ``nn.Module`` (``None`` for static models); for decoders the full
            language model with its head (embedding calls use the bare backbone).
        tokenizer: a Hugging Face tokenizer (``None`` for word-vector models).
        hidden_size: width of the hidden states / vectors.
        num_layers: number of transformer blocks (0 for static models).
        device, dtype: where the weights live and their precision.
        path: local folder with ``config.json`` and ``*.safetensors`` when there is one.
        source: where the weights came from (package, cache folder, hub id).
        static: the vector table of a static model (``None`` otherwise).
        max_length: longest token sequence fed to the model; longer texts are truncated.
    """

    name: str
    kind: str
    module: nn.Module | None
    tokenizer: Any
    hidden_size: int
    num_layers: int
    device: torch.device
    dtype: torch.dtype
    path: Path | None = None
    source: str = ""
    static: StaticVectors | None = None
    max_length: int = 512
    _identity: str | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ vocabulary
    def token_embeddings(self) -> torch.Tensor:
        """The input embedding matrix, row ``i`` belonging to ``vocab()[i]``.

        Shapes:
            returns: [vocab, d] (on ``self.device``, in ``self.dtype``)
        """
        if self.static is not None:
            return self.static.vectors
        if self.module is None:
            raise InputError(f"model {self.name!r} has neither a module nor a vector table.")
        emb = self.module.get_input_embeddings()
        return emb.weight.detach()

    def vocab(self) -> list[str]:
        """The vocabulary as strings, in row order of :meth:`token_embeddings`.

        For subword tokenizers these are the raw token strings (``"Ġthe"``, ``"##ing"``).
        Rows beyond the tokenizer's vocabulary (padding rows some models add) are named
        ``"<row N>"`` so the list always has exactly ``token_embeddings().shape[0]`` entries.
        """
        if self.static is not None:
            return list(self.static.words)
        if self.tokenizer is None:
            raise InputError(f"model {self.name!r} has no tokenizer, so it has no vocabulary.")
        n_rows = int(self.token_embeddings().shape[0])
        words = [f"<row {i}>" for i in range(n_rows)]
        for tok, idx in self.tokenizer.get_vocab().items():
            if 0 <= idx < n_rows:
                words[idx] = tok
        return words

    # ------------------------------------------------------------------ identity
    def identity(self) -> str:
        """A stable fingerprint of the weights (used as the embedding cache key).

        Models with files on disk hash their path, sizes and modification times; bare
        modules hash a float64 checksum of every parameter.
        """
        if self._identity is None:
            parts: list[Any] = [self.name, self.kind, str(self.dtype)]
            files: list[Path] = []
            if self.path is not None and Path(self.path).is_dir():
                files = sorted(Path(self.path).glob("*.safetensors")) + sorted(
                    Path(self.path).glob("*.bin")
                )
                files += [Path(self.path) / "config.json"]
            if files:
                for f in files:
                    if f.exists():
                        st = os.stat(f)
                        parts += [str(f), st.st_size, int(st.st_mtime)]
            elif self.module is not None:
                with torch.no_grad():
                    sums = [float(p.double().sum()) for p in self.module.parameters()]
                    parts += [type(self.module).__name__, sums]
            elif self.static is not None:
                v = self.static.vectors
                parts += [self.source, list(v.shape), float(v.double().sum())]
            self._identity = stable_hash(*parts)
        return self._identity


def from_module(
    module: nn.Module,
    tokenizer: Any = None,
    *,
    name: str | None = None,
    kind: str | None = None,
) -> ModelHandle:
    """Wrap a Hugging Face ``module`` (and its tokenizer) in a :class:`ModelHandle`.

    ``kind`` is inferred from the config when omitted: encoder-decoder when
    ``config.is_encoder_decoder``, decoder for causal stacks, else encoder.
    """
    from .arch import resolve_backbone

    if not isinstance(module, nn.Module):
        raise InputError(
            f"module must be a torch.nn.Module, got {type(module).__name__}; "
            "use hyperlens.models.load(name) for named models."
        )
    bb = resolve_backbone(module)
    cfg = getattr(module, "config", None)
    if kind is None:
        if cfg is not None and getattr(cfg, "is_encoder_decoder", False):
            kind = "encoder-decoder"
        else:
            kind = "decoder" if bb.causal else "encoder"
    if kind not in {"encoder", "decoder", "encoder-decoder"}:
        raise InputError(f"kind must be 'encoder', 'decoder' or 'encoder-decoder', got {kind!r}.")
    param = next(module.parameters())
    return ModelHandle(
        name=name or type(module).__name__,
        kind=kind,
        module=module,
        tokenizer=tokenizer,
        hidden_size=bb.d_model,
        num_layers=bb.num_layers,
        device=param.device,
        dtype=param.dtype,
        path=None,
        source="module",
    )
