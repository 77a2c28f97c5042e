"""Benchmark: NLTK's per-pair WordNet similarity loop against hyperlens' bulk computation.

In one run, for noun pairs and for verb pairs (random synsets of that part of speech):

1. NLTK's loop ``a.path_similarity(b)`` / ``a.wup_similarity(b)`` / ``a.lch_similarity(b)``
   (``simulate_root=True``, NLTK's default) over ``--nltk-pairs`` pairs whose ``Synset``
   objects are built beforehand (outside the timing):

   - **cold**: the first pass after NLTK's lazily filled caches are emptied (each synset's
     hypernym closure, the taxonomy depths Leacock-Chodorow computes on its first call);
   - **warm**: the best of ``--repeats`` further passes, caches filled;

2. ``hyperlens.data.pair_similarity`` on ``--pairs`` pairs given as synset ids (what
   matches NLTK's ready-made ``Synset`` objects), best of ``--our-repeats``, and the same
   pairs given as names (against NLTK's loop plus its ``wn.synset(name)`` look-ups, also
   timed); its values on the NLTK pairs are checked equal to NLTK's (NaN where NLTK says
   None);
3. the all-pairs path matrix of ``--matrix`` synsets (``similarity_matrix``), and NLTK's
   loop extrapolated to it from its warm per-pair cost;
4. loading: NLTK's corpus load against the cached graph, and the first compiled call.

Speed-ups are per pair, against NLTK warm (the target: 200x) and cold. The JSON records
the CPU, the load average before and after, and the versions.

Usage::

    PYTHONPATH=src python benchmarks/bench_wordnet.py [--nltk-pairs 5000] [--pairs 60000]
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
MEASURES = ("path", "wup", "lch")


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


def _best(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _cool(wn: Any, syn: list[Any]) -> None:
    """Empty NLTK's lazily filled caches: hypernym closures and the taxonomy depths."""
    for s in syn:
        s._all_hypernyms = None
    wn._max_depth.clear()


def _nltk_loop(syn: list[Any], a: np.ndarray, b: np.ndarray, measure: str) -> np.ndarray:
    from nltk.corpus.reader.wordnet import WordNetError

    out = np.empty(a.size)
    for k, (i, j) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
        try:
            v = getattr(syn[i], measure + "_similarity")(syn[j])
        except WordNetError:  # lch across parts of speech
            v = None
        out[k] = np.nan if v is None else v
    return out


def bench_pos(g: Any, wn: Any, syn: list[Any], pos: str, args: argparse.Namespace,
              rng: np.random.Generator) -> dict[str, Any]:
    """NLTK cold and warm against hyperlens on random pairs of one part of speech."""
    wsim = importlib.import_module("hyperlens.data.wordnet_similarity")
    pool = np.flatnonzero(g.pos == pos)
    a_all, b_all = rng.choice(pool, args.pairs), rng.choice(pool, args.pairs)
    a_nl, b_nl = a_all[: args.nltk_pairs], b_all[: args.nltk_pairs]
    names_a, names_b = [g.names[i] for i in a_all], [g.names[i] for i in b_all]
    out: dict[str, Any] = {"synsets_of_this_pos": int(pool.size)}
    lookup = [g.names[i] for i in a_nl]
    t_lookup = _best(lambda: [wn.synset(x) for x in lookup], args.repeats)
    out["nltk_name_lookup_us"] = t_lookup / len(lookup) * 1e6  # wn.synset(name), warm
    for measure in MEASURES:
        print(f"  {pos} {measure} ...", file=sys.stderr)
        _cool(wn, syn)
        t = time.perf_counter()
        ref = _nltk_loop(syn, a_nl, b_nl, measure)
        cold = time.perf_counter() - t
        warm = _best(lambda m=measure: _nltk_loop(syn, a_nl, b_nl, m), args.repeats)
        ours_nl = wsim.pair_similarity(a_nl, b_nl, measure)
        equal = bool(np.array_equal(ours_nl, ref, equal_nan=True))
        t_ids = _best(lambda m=measure: wsim.pair_similarity(a_all, b_all, m), args.our_repeats)
        t_names = _best(lambda m=measure: wsim.pair_similarity(names_a, names_b, m),
                        args.our_repeats)
        per = {
            "nltk_cold_us": cold / a_nl.size * 1e6,
            "nltk_warm_us": warm / a_nl.size * 1e6,
            "hyperlens_ids_us": t_ids / a_all.size * 1e6,
            "hyperlens_names_us": t_names / a_all.size * 1e6,
        }
        out[measure] = {
            "nltk_pairs": int(a_nl.size), "hyperlens_pairs": int(a_all.size),
            "us_per_pair": per,
            "speedup_vs_nltk_warm": per["nltk_warm_us"] / per["hyperlens_ids_us"],
            "speedup_vs_nltk_cold": per["nltk_cold_us"] / per["hyperlens_ids_us"],
            "speedup_names_vs_nltk_warm": per["nltk_warm_us"] / per["hyperlens_names_us"],
            "speedup_names_vs_nltk_warm_from_names":
                (per["nltk_warm_us"] + 2 * out["nltk_name_lookup_us"]) / per["hyperlens_names_us"],
            "target_200x_warm": per["nltk_warm_us"] / per["hyperlens_ids_us"] >= 200,
            "equal_to_nltk": equal,
            "nan_share": float(np.isnan(ref).mean()),
        }
        print(f"    NLTK cold {per['nltk_cold_us']:.1f} / warm {per['nltk_warm_us']:.1f} "
              f"us/pair; ours {per['hyperlens_ids_us']:.3f} (ids), "
              f"{per['hyperlens_names_us']:.3f} (names); "
              f"{out[measure]['speedup_vs_nltk_warm']:.0f}x warm, equal={equal}",
              file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nltk-pairs", type=int, default=5000)
    ap.add_argument("--pairs", type=int, default=60_000)
    ap.add_argument("--matrix", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3, help="NLTK's warm passes")
    ap.add_argument("--our-repeats", type=int, default=10, help="hyperlens' timed calls")
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
        "numba": getattr(wsim.numba, "__version__", None),
        "loadavg_before": os.getloadavg(),
        "note": "us per pair; NLTK on ready-made Synset objects, hyperlens on synset ids "
                "(and on names); warm = NLTK's caches filled, cold = emptied before the pass",
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
    t = time.perf_counter()
    wsim.pair_similarity(np.arange(100), np.arange(100, 200))  # numba's set-up, kernel load
    res["load"]["hyperlens_first_pairs_call_s"] = time.perf_counter() - t
    wn = wordnet_reader()
    rng = np.random.default_rng(args.seed)
    syn = [wn.synset(x) for x in g.names]  # NLTK objects built once, outside the timing
    res["pairs"] = {"noun": bench_pos(g, wn, syn, "n", args, rng),
                    "verb": bench_pos(g, wn, syn, "v", args, rng)}

    print("matrix ...", file=sys.stderr)
    n = len(g)
    ids = rng.choice(n, size=args.matrix, replace=False)
    names = [g.names[i] for i in ids]
    t_mat = _best(lambda: wsim.similarity_matrix(names, "path"), args.repeats)
    M = wsim.similarity_matrix(names, "path")
    sub = rng.integers(0, args.matrix, (2000, 2))
    check = g.similarity(ids[sub[:, 0]], ids[sub[:, 1]], "path")
    noun_path = res["pairs"]["noun"]["path"]["us_per_pair"]
    res["matrix"] = {
        "n": args.matrix, "pairs": args.matrix**2, "hyperlens_s": t_mat,
        "hyperlens_us_per_pair": t_mat / args.matrix**2 * 1e6,
        "nltk_extrapolated_s": noun_path["nltk_warm_us"] * 1e-6 * args.matrix**2,
        "matches_pairs": bool(np.array_equal(M[sub[:, 0], sub[:, 1]], check, equal_nan=True)),
        "note": "random synsets of every part of speech; NLTK extrapolated from noun path",
    }
    print(f"  {args.matrix} x {args.matrix} path matrix: {t_mat:.2f} s", file=sys.stderr)
    res["seed_workload"] = {
        "pairs": 50 * 200_000,
        "nltk_warm_noun_path_minutes": noun_path["nltk_warm_us"] * 1e-6 * 50 * 200_000 / 60,
        "hyperlens_noun_path_s": noun_path["hyperlens_ids_us"] * 1e-6 * 50 * 200_000,
    }
    res["loadavg_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, res)
    print(f"wrote {args.out}", file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
