"""The header's full-depth prefix arm (``--arms hdc-prefix``) read through the whole causal
LM against its decoder stack alone.

SmolLM2 frozen in bfloat16, SST-2 with the text present (the setting the arm is run in):
the arm needs only the LM's final state at the answer cue. Read through the causal LM
(``output_hidden_states=True, logits_to_keep=1``), the LM head still multiplies the last
position, a strided batch of rows that PyTorch's matmul serves by copying the whole
vocabulary matrix once per row; the arm as it runs calls the decoder stack, no head. Timed
both ways, rounds alternating the order: the held-out evaluation the training loop runs
every ``--eval-every`` steps (batch 64, no gradient) and one training step (batch 16,
forward and backward); the answers of the two are compared on the same rows. Results go
to ``benchmarks/results/bench_header_prefix.json``::

    python benchmarks/bench_header_prefix.py               # 5 rounds
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from _timing import alternate, in_context, machine, medians  # noqa: E402

from hyperlens.config import RunContext  # noqa: E402
from hyperlens.experiments.header import HeaderRunConfig  # noqa: E402
from hyperlens.inject.base import attach  # noqa: E402
from hyperlens.inject.header_arms import PrefixArm, prefix_subset, prepare  # noqa: E402
from hyperlens.report import Report  # noqa: E402
from hyperlens.utils import atomic_write_json, retain_freed_memory  # noqa: E402


def whole_lm_forward(arm: PrefixArm, rows: torch.Tensor,
                     codes: torch.Tensor | None = None) -> torch.Tensor:
    """The arm's forward with the final state read from the causal LM's own output."""
    codes = arm.codes if codes is None else codes
    assert codes is not None and arm.head is not None
    ids, mask = arm.inputs(rows)
    x = arm._dropped(codes[rows])
    with attach(arm.run_.lm, arm.header), arm.header.use_codes(x):
        out = arm.run_.lm.module(input_ids=ids, attention_mask=mask,
                                 output_hidden_states=True, logits_to_keep=1)
    return arm.head(out.hidden_states[-1][:, -1].float())


@contextlib.contextmanager
def whole_lm() -> Iterator[None]:
    orig = PrefixArm.forward
    PrefixArm.forward = whole_lm_forward  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        PrefixArm.forward = orig  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                         "bench_header_prefix.json"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    retain_freed_memory()
    tmp = Path(tempfile.mkdtemp(prefix="bench-header-prefix-"))
    cfg = HeaderRunConfig(text=("present",), n_train=256, n_val=64, n_eval=64, seeds=(0,),
                          arms=("hdc", "hdc-prefix"), prefix_texts=256)
    p = cfg.protocol(RunContext(device="cpu", dtype="bfloat16"))
    run = prepare(p, tmp, Report("header", out_dir=tmp))
    arm = PrefixArm(run, "hdc-prefix", 0)
    fit = torch.from_numpy(prefix_subset(run))
    val = torch.from_numpy(run.split.rows["val"][:64])
    train = fit[:16]

    def evaluate() -> Any:
        arm.eval()
        with torch.no_grad():
            return arm(val)

    def step() -> Any:
        arm.train()
        arm.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(arm(train), run.y[train])
        loss.backward()
        return loss.detach()

    ways: dict[str, Any] = {"whole LM": whole_lm, "decoder stack": contextlib.nullcontext}
    answers = {}
    for w, ctx in ways.items():
        with ctx():
            answers[w] = evaluate()
            step()  # warm
    secs = {task: alternate({w: partial(in_context, ctx, fn) for w, ctx in ways.items()},
                            a.rounds, label=task)[0]
            for task, fn in (("evaluation, batch 64", evaluate),
                             ("training step, batch 16", step))}
    med = {t: medians(d) for t, d in secs.items()}
    results = {
        "benchmark": "header_prefix", "model": "smollm2", "dtype": "bfloat16",
        "dataset": cfg.dataset, "rounds": a.rounds, "seconds": secs, "median_s": med,
        "speedup": {t: m["whole LM"] / m["decoder stack"] for t, m in med.items()},
        "max_abs_answer_diff": float((answers["whole LM"] - answers["decoder stack"])
                                     .abs().max()),
        **machine(),
        "note": "the two ways alternate their order within each round; compare the ratio",
    }
    atomic_write_json(a.out, results)
    print({t: round(v, 2) for t, v in results["speedup"].items()}, med,
          results["max_abs_answer_diff"])


if __name__ == "__main__":
    main()
