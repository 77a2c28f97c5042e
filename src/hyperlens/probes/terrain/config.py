"""What the terrain battery measures (its configuration) and on which model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...config import Config, at_least, option
from ...errors import ConfigError


# --------------------------------------------------------------------------- configuration
@dataclass(frozen=True, kw_only=True)
class TerrainConfig(Config):
    """Sample sizes and bands of the terrain battery (options of ``hyperlens terrain``).

    The defaults keep a full run on a 49k x 576 vocabulary within about a minute on two
    CPU cores; every sampled statistic is seeded by the run's seed.
    """

    cosine_sample: int = option(3000, help="tokens sampled for the cosine histogram and "
                                "percentiles", check=at_least(10))
    distance_sample: int = option(2000, help="tokens sampled for Euclidean distances",
                                  check=at_least(10))
    n_simplices: int = option(2000, help="random pentachora for the volume CV",
                              check=at_least(10))
    n_permutations: int = option(2000, help="label permutations for the digit and category "
                                 "nulls", check=at_least(2), aliases=("--permutations",))
    n_boot: int = option(1000, help="bootstrap resamples for intervals", check=at_least(2),
                         aliases=("--bootstrap",))
    spectrum_blocks: int = option(64, help="row blocks of the spectrum's block bootstrap",
                                  check=at_least(2))
    spectrum_bootstrap: int = option(100, help="block-bootstrap resamples of PR / d",
                                     check=at_least(2))
    max_positions: int = option(128, help="positions read for the position-embedding "
                                "statistics", check=at_least(2))
    max_length: int = option(64, help="tokens kept per text", check=at_least(2))
    batch_size: int = option(16, help="texts per forward pass", check=at_least(2))
    histogram_bins: int = option(60, help="bins of the histograms", check=at_least(2))
    cv_band: tuple[float, ...] = option((0.20, 0.23), help="published pentachoron-CV band LO HI",
                                        min_items=2, metavar="LO HI")
    pr_band: tuple[float, ...] = option((0.53, 0.56), help="published PR / d band LO HI",
                                        min_items=2, metavar="LO HI")

    def check(self) -> None:
        for name in ("cv_band", "pr_band"):
            band = getattr(self, name)
            if len(band) != 2 or not band[0] < band[1]:
                flag = "--" + name.replace("_", "-")
                raise ConfigError(f"{flag} takes two numbers LO < HI, got "
                                  f"{' '.join(map(str, band))}.")


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
