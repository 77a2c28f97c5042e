"""Embedding throughput (texts per second) for MiniLM and SmolLM2, side by side.

On the first 2,000 sentences of SST-2 (``$HYPERLENS_DATA_DIR/sst2/train.tsv``, default
``../shared/data``) it times, in one run:

(a) ``single``: one text at a time, no padding (on the first ``--n-single`` texts);
(b) ``padded32``: batches of 32 in input order, padded to the longest text of each
    batch, ``model(**batch, output_hidden_states=True)`` under ``torch.no_grad`` (the
    usual notebook recipe; for SmolLM2 this runs the whole causal LM, head included);
(b') ``padded32_backbone``: the same without the language-model head (shows how much of
    the gain comes from sorting alone);
(c) ``st_encode`` (MiniLM only): sentence-transformers ``encode(batch_size=32)``;
and ``hyperlens.models.embed`` in float32 (the default) and bfloat16 (opt-in), at the last
layer and, for SmolLM2, at layer 6 of 30 (the forward pass stops there).

Every variant's vectors are compared with (b) (cosine similarity per text) so a faster
path that changes the numbers shows up. Results go to
``benchmarks/results/bench_embed.json``. Run from the project root::

    python benchmarks/bench_embed.py            # both models, 2,000 texts (long on 2 busy cores)
    python benchmarks/bench_embed.py --models minilm \
        --out benchmarks/results/bench_embed_minilm.json
    python benchmarks/bench_embed.py --models smollm2 --n 600 --n-single 60 \
        --out benchmarks/results/bench_embed_smollm2.json
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from hyperlens.functional.kernels import cpu_info  # noqa: E402
from hyperlens.models import embed, load  # noqa: E402
from hyperlens.models.arch import resolve_backbone  # noqa: E402
from hyperlens.utils import atomic_write_json  # noqa: E402


def sst2_sentences(n: int) -> list[str]:
    env = os.environ.get("HYPERLENS_DATA_DIR")
    cands = [Path(env)] if env else [p / "shared" / "data" for p in ROOT.parents]
    path = next((c / "sst2" / "train.tsv" for c in cands if (c / "sst2" / "train.tsv").exists()),
                cands[0] / "sst2" / "train.tsv")
    if not path.exists():
        sys.exit(
            f"SST-2 not found at {path}; set HYPERLENS_DATA_DIR to the folder holding "
            "sst2/train.tsv"
        )
    with path.open(encoding="utf-8") as fh:
        rows = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        return [r[0] for _, r in zip(range(n), rows, strict=False)]


def timed(fn: Callable[[], np.ndarray], label: str = "") -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    print(f"  {label}: {dt:.1f} s", flush=True)
    return out, dt


def mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1)


def last_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    idx = mask.sum(1) - 1
    return h[torch.arange(h.shape[0]), idx]


def naive(
    module: torch.nn.Module, tok, texts: list[str], bs: int, pool, layer: int, max_len: int
) -> np.ndarray:
    """(a)/(b): input order, padded per batch, all hidden states, no_grad."""
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), bs):
            b = tok(
                texts[i : i + bs],
                return_tensors="pt",
                padding=bs > 1,
                truncation=True,
                max_length=max_len,
            )
            res = module(**b, output_hidden_states=True)
            out.append(pool(res.hidden_states[layer], b["attention_mask"]).float())
    return torch.cat(out).numpy()


def cosine_vs(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="number of SST-2 sentences")
    ap.add_argument("--n-single", type=int, default=400, help="texts timed one at a time (a)")
    ap.add_argument("--models", default="minilm,smollm2")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_embed.json"))
    args = ap.parse_args()

    texts = sst2_sentences(args.n)
    results: dict = {
        "benchmark": "embedding throughput (texts/s)",
        "data": f"first {len(texts)} sentences of SST-2 train",
        "n_texts": len(texts),
        "n_single": min(args.n_single, len(texts)),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_info": cpu_info(),
        "load_average_at_start": os.getloadavg(),
        "note": "taken on a shared 2-core machine under load; figures are noisy",
        "models": {},
    }
    for name in args.models.split(","):
        h = load(name, device="cpu")
        pooling, pool = ("mean", mean_pool)
        tok, module = h.tokenizer, h.module
        backbone = resolve_backbone(module).stack
        L = h.num_layers
        rec: dict = {
            "kind": h.kind,
            "layers": L,
            "pooling": pooling,
            "max_length": h.max_length,
            "rates": {},
        }
        ns = results["n_single"]
        # load-independent view: token positions each scheme pushes through the model
        lens = np.array(
            [len(x) for x in tok(texts, truncation=True, max_length=h.max_length)["input_ids"]]
        )
        srt = np.sort(lens)[::-1]
        rec["token_positions"] = {
            "real": int(lens.sum()),
            "padded32_input_order": int(
                sum(lens[i : i + 32].max() * len(lens[i : i + 32]) for i in range(0, len(lens), 32))
            ),
            "padded32_length_sorted": int(
                sum(srt[i : i + 32].max() * len(srt[i : i + 32]) for i in range(0, len(srt), 32))
            ),
        }

        # warm-up (first calls allocate)
        embed(texts[:64], h, pooling=pooling)

        ref, t = timed(
            lambda: naive(module, tok, texts, 32, pool, -1, h.max_length), f"{name} b_padded32"
        )
        rec["rates"]["b_padded32"] = len(texts) / t
        _, t = timed(
            lambda: naive(backbone, tok, texts, 32, pool, -1, h.max_length), f"{name} b_backbone"
        )
        rec["rates"]["b_padded32_backbone"] = len(texts) / t
        single, t = timed(
            lambda: naive(backbone, tok, texts[:ns], 1, pool, -1, h.max_length), f"{name} a_single"
        )
        rec["rates"]["a_single"] = ns / t
        rec["cos_min"] = {"a_single": cosine_vs(single, ref[:ns])}

        ours, t = timed(
            lambda: embed(texts, h, pooling=pooling, batch_size=32), f"{name} hyperlens fp32"
        )
        rec["rates"]["hyperlens_fp32"] = len(texts) / t
        rec["cos_min"]["hyperlens_fp32"] = cosine_vs(ours, ref)
        rec["max_abs_diff_fp32"] = float(np.abs(ours - ref).max())
        if name == "smollm2":
            early, t = timed(
                lambda: embed(texts, h, pooling=pooling, layer=6, batch_size=32), f"{name} layer 6"
            )
            rec["rates"]["hyperlens_fp32_layer6"] = len(texts) / t
            ref6 = naive(backbone, tok, texts[:256], 32, pool, 6, h.max_length)
            rec["cos_min"]["hyperlens_fp32_layer6"] = cosine_vs(early[:256], ref6)
        if name == "minilm":
            from sentence_transformers import SentenceTransformer

            st = SentenceTransformer(str(h.path), device="cpu")
            st_out, t = timed(lambda: st.encode(texts, batch_size=32, normalize_embeddings=False,
                                                 convert_to_numpy=True), f"{name} st.encode")
            rec["rates"]["c_st_encode"] = len(texts) / t
            rec["cos_min"]["c_st_encode"] = cosine_vs(st_out, ref)
            del st
        # bfloat16: opt-in, same texts
        hb = load(name, device="cpu", dtype="bfloat16")
        embed(texts[:64], hb, pooling=pooling)
        bf, t = timed(lambda h=hb: embed(texts, h, pooling=pooling, batch_size=32), f"{name} bf16")
        rec["rates"]["hyperlens_bf16"] = len(texts) / t
        rec["cos_min"]["hyperlens_bf16"] = cosine_vs(bf, ref)
        del hb
        r = rec["rates"]
        rec["speedup"] = {
            "fp32_vs_a_single": r["hyperlens_fp32"] / r["a_single"],
            "fp32_vs_b_padded32": r["hyperlens_fp32"] / r["b_padded32"],
            "bf16_vs_b_padded32": r["hyperlens_bf16"] / r["b_padded32"],
        }
        if "c_st_encode" in r:
            rec["speedup"]["fp32_vs_c_st_encode"] = r["hyperlens_fp32"] / r["c_st_encode"]
        results["models"][name] = rec
        print(
            name,
            {k: round(v, 1) for k, v in r.items()},
            {k: round(v, 2) for k, v in rec["speedup"].items()},
            {k: round(v, 5) for k, v in rec["cos_min"].items()},
            flush=True,
        )
    results["load_average_at_end"] = os.getloadavg()
    path = atomic_write_json(args.out, results)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
