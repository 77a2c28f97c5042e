"""Benchmark: NLTK's per-pair WordNet similarity loop against hyperlens' bulk computation.

In one run, on the same random synset pairs (all parts of speech, as the seed drew them):

1. NLTK's loop ``a.path_similarity(b)`` / ``a.wup_similarity(b)`` / ``a.lch_similarity(b)``
   (``simulate_root=True``, NLTK's default) over ``--nltk-pairs`` pairs, after a warm-up
   pass so that NLTK's lazy synset and depth caches are filled (the loop is timed at its
   best, not at its first call);
2. ``hyperlens.data.pair_similarity`` on the same pairs (checked equal, NaN where NLTK says
   None) and on ``--pairs`` pairs for the per-pair rate;
3. the all-pairs path matrix of ``--matrix`` synsets (``similarity_matrix``), and NLTK's
   loop extrapolated to it from its per-pair cost;
4. loading: NLTK's corpus load against the cached graph.

Usage::

    PYTHONPATH=src python benchmarks/bench_wordnet.py [--nltk-pairs 5000] [--pairs 200000]
        [--matrix 3000] [--out benchmarks/results/bench_wordnet.json]
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _timed_subprocess(code: str) -> float:
    """Wall seconds of ``code`` in a fresh interpreter (cold imports, nothing cached in memory)."""
    env = dict(os.environ)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nltk-pairs", type=int, default=5000)
    ap.add_argument("--pairs", type=int, default=200_000)
    ap.add_argument("--matrix", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "bench_wordnet.json")
    args = ap.parse_args(argv)

    from hyperlens.data import wordnet_reader
    from hyperlens.utils import atomic_write_json

    wsim = importlib.import_module("hyperlens.data.wordnet_similarity")
    res: dict[str, Any] = {
        "benchmark": "wordnet",
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "nltk": importlib.import_module("nltk").__version__,
        "loadavg_before": os.getloadavg(),
    }
    print("loading ...", file=sys.stderr)
    res["load"] = {
        "nltk_corpus_load_s": _timed_subprocess(
            "from hyperlens.data import wordnet_reader; wordnet_reader().synset('dog.n.01')"),
        "hyperlens_cached_graph_s": _timed_subprocess(
            "import importlib; importlib.import_module('hyperlens.data.wordnet_similarity')"
            ".wordnet_graph()"),
        "note": "fresh interpreters, imports included",
    }
    g = wsim.wordnet_graph()
    wn = wordnet_reader()
    rng = np.random.default_rng(args.seed)
    n = len(g)
    a_all = rng.integers(0, n, args.pairs)
    b_all = rng.integers(0, n, args.pairs)
    a_nl, b_nl = a_all[: args.nltk_pairs], b_all[: args.nltk_pairs]
    syn = [wn.synset(x) for x in g.names]  # NLTK objects built once, outside the timing
    from nltk.corpus.reader.wordnet import WordNetError

    measures: dict[str, Any] = {}
    for measure in ("path", "wup", "lch"):
        print(f"{measure} ...", file=sys.stderr)

        def nltk_loop(m: str = measure) -> np.ndarray:
            out = np.empty(a_nl.size)
            for k, (i, j) in enumerate(zip(a_nl.tolist(), b_nl.tolist(), strict=True)):
                try:
                    v = getattr(syn[i], m + "_similarity")(syn[j])
                except WordNetError:  # lch across parts of speech
                    v = None
                out[k] = np.nan if v is None else v
            return out

        nltk_loop()  # warm NLTK's caches (lazily parsed synsets, depths)
        t_nltk, ref = float("inf"), None
        for _ in range(max(1, args.repeats - 1)):
            t = time.perf_counter()
            ref = nltk_loop()
            t_nltk = min(t_nltk, time.perf_counter() - t)
        ours_small = g.similarity(a_nl, b_nl, measure)
        assert ref is not None
        equal = bool(np.array_equal(ours_small, ref, equal_nan=True))
        t_ours = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            g.similarity(a_all, b_all, measure)
            t_ours = min(t_ours, time.perf_counter() - t)
        per_nltk = t_nltk / a_nl.size
        per_ours = t_ours / a_all.size
        measures[measure] = {
            "nltk_pairs": int(a_nl.size), "nltk_s": t_nltk, "nltk_us_per_pair": per_nltk * 1e6,
            "hyperlens_pairs": int(a_all.size), "hyperlens_s": t_ours,
            "hyperlens_us_per_pair": per_ours * 1e6, "speedup": per_nltk / per_ours,
            "equal_to_nltk": equal, "nan_share": float(np.isnan(ref).mean()),
        }
        print(f"  NLTK {per_nltk * 1e6:.1f} us/pair, ours {per_ours * 1e6:.3f} us/pair, "
              f"{per_nltk / per_ours:.0f}x, equal={equal}", file=sys.stderr)
    res["pairs"] = measures

    print("matrix ...", file=sys.stderr)
    ids = rng.choice(n, size=args.matrix, replace=False)
    names = [g.names[i] for i in ids]
    t_mat = float("inf")
    M = None
    for _ in range(args.repeats):
        t = time.perf_counter()
        M = wsim.similarity_matrix(names, "path")
        t_mat = min(t_mat, time.perf_counter() - t)
    assert M is not None
    sub = rng.integers(0, args.matrix, (2000, 2))
    check = g.similarity(ids[sub[:, 0]], ids[sub[:, 1]], "path")
    res["matrix"] = {
        "n": args.matrix, "pairs": args.matrix**2, "hyperlens_s": t_mat,
        "nltk_extrapolated_s": measures["path"]["nltk_us_per_pair"] * 1e-6 * args.matrix**2,
        "matches_pairs": bool(np.array_equal(M[sub[:, 0], sub[:, 1]], check, equal_nan=True)),
    }
    print(f"  {args.matrix} x {args.matrix} path matrix: {t_mat:.2f} s", file=sys.stderr)
    res["seed_workload"] = {
        "pairs": 50 * 200_000,
        "nltk_path_minutes": measures["path"]["nltk_us_per_pair"] * 1e-6 * 50 * 200_000 / 60,
        "hyperlens_path_s": measures["path"]["hyperlens_us_per_pair"] * 1e-6 * 50 * 200_000,
    }
    res["loadavg_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, res)
    print(f"wrote {args.out}", file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
