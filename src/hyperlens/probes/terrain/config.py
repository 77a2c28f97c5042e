"""What the terrain battery measures (its configuration) and on which model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...errors import InputError


# --------------------------------------------------------------------------- configuration
@dataclass
class TerrainConfig:
    """Sample sizes and bands of the terrain battery.

    The defaults keep a full run on a 49k x 576 vocabulary within about a minute on two
    CPU cores; every sampled statistic is seeded by ``seed``.
    """

    cosine_sample: int = 3000
    distance_sample: int = 2000
    n_simplices: int = 2000
    n_permutations: int = 2000
    n_bootstrap: int = 1000
    spectrum_blocks: int = 64
    spectrum_bootstrap: int = 100
    max_positions: int = 128
    max_length: int = 64
    batch_size: int = 16
    histogram_bins: int = 60
    seed: int = 0
    cv_band: tuple[float, float] = (0.20, 0.23)
    pr_band: tuple[float, float] = (0.53, 0.56)

    def __post_init__(self) -> None:
        for name in ("cosine_sample", "distance_sample", "n_simplices"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 10:
                raise InputError(f"TerrainConfig.{name} must be an int >= 10, got {value!r}; raise it.")
        for name in ("n_permutations", "n_bootstrap", "spectrum_bootstrap", "spectrum_blocks",
                     "max_positions", "max_length", "batch_size", "histogram_bins"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2:
                raise InputError(f"TerrainConfig.{name} must be an int >= 2, got {value!r}.")
        for name in ("cv_band", "pr_band"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise InputError(f"TerrainConfig.{name} must be (low, high) with low < high, got {(lo, hi)!r}.")


@dataclass
class TerrainSubject:
    """What the battery needs to know about one model.

    ``embeddings`` is the input token embedding matrix ``[vocab, d]``. ``vocab`` lists the
    token strings (for word-level lookup when there is no tokenizer). ``module`` is the
    ``nn.Module`` (``None`` for static models); ``tokenizer`` a Hugging Face tokenizer or
    ``None``.
    """

    name: str
    kind: str
    embeddings: torch.Tensor
    vocab: list[str] | None = None
    tokenizer: Any | None = None
    module: nn.Module | None = None
    num_layers: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_handle(cls, handle: Any) -> TerrainSubject:
        """Build a subject from a :class:`hyperlens.models.ModelHandle`."""
        emb = handle.token_embeddings()
        try:
            vocab = list(handle.vocab())
        except Exception:  # noqa: BLE001 - a vocabulary is optional for the battery
            vocab = None
        return cls(
            name=str(handle.name),
            kind=str(handle.kind),
            embeddings=torch.as_tensor(emb).detach().float().cpu(),
            vocab=vocab,
            tokenizer=getattr(handle, "tokenizer", None),
            module=getattr(handle, "module", None),
            num_layers=int(getattr(handle, "num_layers", 0) or 0),
        )
