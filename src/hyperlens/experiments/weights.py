"""``hyperlens weights``: the weight topology battery on one model, or two side by side.

Reads the model's safetensors one role group at a time (never builds the model), runs
:func:`hyperlens.probes.weights.weight_battery` and writes a report: a 3 x 3 panel per
model, per-role tables (spectra, sparsity, QK geometry, MLP neurons, cross-layer
similarity, norm scales, position bias), every matrix's row, ``results.json`` and
``index.html``. With two ``--models`` the second is analysed the same way and compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ..config import Command, Config, RunContext, above, at_least, option, start_report
from ..config.shared import check_side_by_side
from ..errors import ConfigError
from ..probes.weights import DEFAULT_THRESHOLDS, weight_battery
from ..probes.weights_sections import add_comparison, add_model_sections, summary_rows
from ..report import Report

__all__ = ["WeightsConfig", "run", "COMMANDS", "tour_section"]


@dataclass(frozen=True, kw_only=True)
class WeightsConfig(Config):
    """Options of ``hyperlens weights``."""

    CONTEXT = frozenset({"device"})
    RANDOM = ""  # the battery reads every weight; nothing is sampled

    models: tuple[str, ...] = option(
        help="one model, or two analysed and compared side by side: zoo name (smollm2, "
             "minilm), folder with config.json + *.safetensors, or a .safetensors file",
        aliases=("--model",), metavar="MODEL")
    precision: Literal["float32", "float64", "svd"] = option(
        "float32", help="singular values from a float32 or float64 Gram eigensolve, or a full "
                        "SVD (float64 resolves condition numbers beyond ~1e2)")
    thresholds: tuple[float, ...] = option(DEFAULT_THRESHOLDS, help="sparsity thresholds on "
                                           "|w|", check=above(0))
    chunk_mb: int | None = option(None, help="most MiB of weights held at once (default: a "
                                  "quarter of the checkpoint)", check=at_least(1))
    threads: int | None = option(None, help="CPU threads for torch (default: torch's choice; "
                                 "1 is often faster on a machine that other jobs keep busy)",
                                 check=at_least(1))

    def check(self) -> None:
        check_side_by_side(self.models)
        if list(self.thresholds) != sorted(set(self.thresholds)):
            raise ConfigError("--thresholds must be distinct and increasing, got "
                              f"{' '.join(f'{t:g}' for t in self.thresholds)}.")


def run(config: WeightsConfig, ctx: RunContext | None = None) -> Report:
    """Run the battery on each of ``config.models`` and write the report."""
    from ..probes.weights_io import resolve_checkpoint

    ctx = ctx or RunContext()
    for m in config.models:  # every model is found before any is read
        resolve_checkpoint(m)
    if config.threads is not None:
        import torch

        torch.set_num_threads(config.threads)
    dev = ctx.torch_device
    rep = start_report(
        "weights", config, ctx,
        description="Geometry of the frozen weights alone: spectra, ranks, sparsity, QK "
        "similarity forms, MLP neurons, cross-layer structure, norms and position bias.",
    )
    results = []
    for tag, m in zip("ab", config.models, strict=False):
        res = _battery(rep, m, device=dev, precision=config.precision,
                       thresholds=list(config.thresholds),
                       chunk_bytes=None if config.chunk_mb is None else config.chunk_mb << 20)
        results.append(res)
        label = (
            res["model"]
            if tag == "a" or res["model"] != results[0]["model"]
            else f"{res['model']}-vs"
        )
        res["model"] = label
        add_model_sections(rep, res, f"{tag}-{label}")
    if len(results) == 2:
        add_comparison(rep, results[0], results[1])
    rep.data["models"] = results
    rep.summary([row for res in results for row in summary_rows(res)])
    rep.save()
    return rep


def _battery(rep: Report, model: str, **kw: Any) -> dict[str, Any]:
    """The battery on one model; its seconds go to the report's timings only."""
    res = weight_battery(model, **kw)
    for part, seconds in res.pop("timings", {}).items():
        rep.timings[f"battery:{model}:{part}"] = seconds
    return res


def tour_section(
    rep: Report, *, seed: int = 0, device: str = "auto", model: str = "minilm"
) -> None:
    """Add the weight battery of ``model`` (default MiniLM) to another report, e.g. the tour."""
    res = _battery(rep, model, device=device)
    add_model_sections(rep, res, f"tour-{res['model']}")
    rep.data.setdefault("weights", []).append(res)


COMMANDS = (
    Command("weights", "weight topology battery (spectra, ranks, sparsity, QK heads, dead "
            "neurons) from safetensors", WeightsConfig, run, description=__doc__ or ""),
)
