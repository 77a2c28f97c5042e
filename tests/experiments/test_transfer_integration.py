"""Transfer and vocabulary alignment on the real offline models (marked ``integration``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hyperlens.errors import DependencyError, ModelNotFoundError

pytestmark = pytest.mark.integration


def _require(*names: str) -> None:
    from hyperlens import models as hmodels

    for name in names:
        try:
            hmodels.load(name, device="cpu")
        except (ModelNotFoundError, DependencyError) as exc:
            pytest.skip(f"model {name!r} is not available offline here: {exc}")


def test_transfer_minilm_glove_on_rotten_tomatoes(tmp_path: Path) -> None:
    _require("minilm", "glove-50d")
    from hyperlens.config import RunContext
    from hyperlens.experiments import transfer as tr

    cfg = tr.TransferConfig(
        stages=["0", "2"], models=["minilm", "glove-50d"], pair=["minilm", "glove-50d"],
        dataset="rotten-tomatoes", train=400, test=150, anchor_pool=250, anchors=["250"],
        n_anchors=250, aligners=["none", "ridge", "cca"], seeds=[0], hdc_dim=2048)
    rep = tr.run(cfg, RunContext(out=tmp_path / "run", device="cpu"))
    res = json.loads((rep.out_dir / "results.json").read_text())
    ceil = res["data"]["stage0"]
    assert ceil["minilm"]["float_acc"]["mean"] > 0.65  # MiniLM separates fresh from rotten
    assert ceil["minilm"]["float_acc"]["mean"] > ceil["minilm"]["majority"]["mean"] + 0.1
    s2 = res["data"]["stage2"]
    for d in ("minilm->glove-50d", "glove-50d->minilm"):
        aligned = s2[f"{d}|ridge|250"]["cc_eff"]["mean"]
        none = s2[f"{d}|none|250"]["cc_eff"]["mean"]
        assert aligned > none + 0.2, (d, aligned, none)
    # the strong teacher's classifier carries over to the static model
    assert s2["minilm->glove-50d|ridge|250"]["cc_eff"]["mean"] > 0.3


def test_align_vocab_minilm_glove(tmp_path: Path) -> None:
    _require("minilm", "glove-50d")
    from hyperlens.config import RunContext
    from hyperlens.experiments.align_vocab import AlignVocabConfig, run

    cfg = AlignVocabConfig(models=("minilm", "glove-50d"), max_test=1500)
    rep = run(cfg, RunContext(out=tmp_path / "v"))
    res = json.loads((rep.out_dir / "results.json").read_text())
    m = res["sections"][0]["metrics"]
    assert m["n_shared"] > 10000  # whole words of BERT's uncased vocabulary are GloVe words
    assert m["cosine_mean"] > m["null"]["cosine_mean"] + 0.2
    assert m["top1_retrieval"] > 10 * max(m["null"]["top1_retrieval"], 1e-3)
