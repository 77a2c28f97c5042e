"""The weight battery on SmolLM2 next to a naive loop and WeightWatcher, in one run.

Variants, each in its own child process so that peak resident memory (``ru_maxrss`` of
the child) belongs to that variant alone:

- ``hyperlens``: :func:`hyperlens.probes.weights.weight_battery` on the safetensors folder
  (reading the tensors from disk is inside the timing; no model is built).
- ``naive``: the model built with ``transformers`` (load not timed), then what a notebook
  does: a Python loop over ``named_parameters`` classifying by name, a full
  ``torch.linalg.svd`` (with U and V) per matrix and the metrics in NumPy, sparsity by
  concatenating every role's values, per-layer QK matrices ``W_Qᵀ W_K`` (grouped-query K
  repeated) with ``svdvals`` and ``eigvalsh``, a per-layer loop for MLP neurons and a
  double loop over layers for cross-layer cosines.
- ``weightwatcher``: ``WeightWatcher(model).analyze()`` with its defaults on the same
  built model (load not timed), when the package imports (``pip install weightwatcher``;
  ``--ww-path`` adds a folder it was installed into with ``--target``).

Usage:
    python benchmarks/bench_weights.py [--model DIR] [--threads 2] [--variants ...]

Writes ``benchmarks/results/bench_weights.json`` with wall time, peak RSS, the model's
file size and the machine's load average before and after each variant.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["run_variant", "main"]

RESULTS = Path(__file__).resolve().parent / "results" / "bench_weights.json"
DEFAULT_MODEL = Path.home() / ".cache" / "hyperlens" / "models" / "smollm2-135m-instruct-f32"


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _naive_battery(model: Any) -> dict[str, Any]:
    """The notebook way: loops over parameters and layers, full SVD per matrix."""
    import re
    from collections import defaultdict

    import numpy as np
    import torch

    cfg = model.config
    catalog: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name, p in model.named_parameters():
        w = p.detach().float()
        m = re.search(r"\.(\d+)\.", name)
        layer = int(m.group(1)) if m else -1
        leaf = name.split(".")[-2] if "." in name else name
        wtype = "norm" if "norm" in name else ("embedding" if "embed" in name else leaf)
        catalog[wtype].append({"name": name, "param": w, "layer": layer})
    svd_rows = []
    for entries in catalog.values():
        for e in entries:
            w = e["param"]
            if w.dim() != 2:
                continue
            _, s, _ = torch.linalg.svd(w, full_matrices=False)
            s = s.numpy()
            e2 = s**2
            cum = np.cumsum(e2) / e2.sum()
            svd_rows.append(
                {
                    "name": e["name"],
                    "stable_rank": e2.sum() / e2[0],
                    "pr": s.sum() ** 2 / e2.sum(),
                    "active": (s > 0.01 * s[0]).mean(),
                    "rank90": int(np.searchsorted(cum, 0.9) + 1),
                    "cond": s[0] / (s[-1] + 1e-10),
                }
            )
    thresholds = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    sparsity = {}
    for wtype, entries in catalog.items():
        vals = torch.cat([e["param"].abs().flatten() for e in entries])
        sparsity[wtype] = [float((vals < t).sum()) / len(vals) for t in thresholds]
    qk = []
    heads, kv = (
        cfg.num_attention_heads,
        getattr(cfg, "num_key_value_heads", cfg.num_attention_heads),
    )
    dh = cfg.hidden_size // heads
    q_by = {e["layer"]: e["param"] for e in catalog.get("q_proj", [])}
    k_by = {e["layer"]: e["param"] for e in catalog.get("k_proj", [])}
    for layer in sorted(q_by):
        wq = q_by[layer]
        wk = (
            k_by[layer]
            .reshape(kv, dh, -1)
            .repeat_interleave(heads // kv, 0)
            .reshape(heads * dh, -1)
        )
        m_ = wq.T @ wk
        s = torch.linalg.svdvals(m_).numpy()
        sym = float(torch.norm(m_ - m_.T) / torch.norm(m_))
        ev = torch.linalg.eigvalsh((m_ + m_.T) / 2).numpy()
        qk.append(
            {
                "layer": layer,
                "sr": (s**2).sum() / s[0] ** 2,
                "sym": sym,
                "pos": int((ev > 0).sum()),
                "neg": int((ev < 0).sum()),
            }
        )
    dead = []
    ups = {e["layer"]: e["param"] for e in catalog.get("up_proj", [])}
    gates = {e["layer"]: e["param"] for e in catalog.get("gate_proj", [])}
    downs = {e["layer"]: e["param"] for e in catalog.get("down_proj", [])}
    for layer in sorted(ups):
        c = torch.norm(ups[layer], dim=1) * torch.norm(downs[layer], dim=0)
        if layer in gates:
            c = c * torch.norm(gates[layer], dim=1)
        dead.append(int((c < 0.01 * c.mean()).sum()))
    cross = {}
    for wtype, entries in catalog.items():
        entries = [e for e in entries if e["param"].dim() == 2 and e["layer"] >= 0]
        n = len(entries)
        if n < 2:
            continue
        cos = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                a, b = entries[i]["param"].flatten(), entries[j]["param"].flatten()
                cos[i, j] = float(torch.dot(a, b) / (torch.norm(a) * torch.norm(b) + 1e-8))
        cross[wtype] = cos
    norms = [float(e["param"].mean()) for e in catalog.get("norm", [])]
    return {
        "n_matrices": len(svd_rows),
        "qk_layers": len(qk),
        "dead": sum(dead),
        "cross": len(cross),
        "norms": len(norms),
        "sparsity": sparsity,
    }


def run_variant(variant: str, model_dir: Path, threads: int) -> dict[str, Any]:
    """Run one variant in this process; returns timings and peak RSS."""
    import torch

    torch.set_num_threads(threads)
    out: dict[str, Any] = {"variant": variant, "threads": threads}
    rss_import = _rss_mib()
    if variant == "hyperlens":
        from hyperlens.probes.weights import weight_battery

        t0 = time.perf_counter()
        res = weight_battery(model_dir, device="cpu")
        out["seconds"] = time.perf_counter() - t0
        out["load_seconds"] = 0.0
        out["matrices"] = res["n_matrices"]
        out["stage_seconds"] = res["timings"]
        out["extras"] = {
            "qk_heads": len(res["qk"]["heads"]),
            "mlp_dead": res["mlp"]["dead"],
            "cross_layer_roles": len(res["cross_layer"]),
            "norm_vectors": len(res["norms"]),
        }
    else:
        from transformers import AutoModelForCausalLM

        t0 = time.perf_counter()
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        model.eval()
        out["load_seconds"] = time.perf_counter() - t0
        out["rss_after_load_mib"] = _rss_mib()
        t0 = time.perf_counter()
        if variant == "naive":
            with torch.no_grad():
                res = _naive_battery(model)
            out["matrices"] = res["n_matrices"]
        elif variant == "weightwatcher":
            import weightwatcher as ww

            details = ww.WeightWatcher(model=model).analyze()
            out["matrices"] = int(len(details))
            out["version"] = getattr(ww, "__version__", "?")
        else:
            raise SystemExit(f"unknown variant {variant!r}")
        out["seconds"] = time.perf_counter() - t0
    out["rss_after_import_mib"] = rss_import
    out["peak_rss_mib"] = _rss_mib()
    return out


def _child(variant: str, model_dir: Path, threads: int, ww_path: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in [src, ww_path, env.get("PYTHONPATH")] if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env["OMP_NUM_THREADS"] = str(threads)
    env["MKL_NUM_THREADS"] = str(threads)
    load_before = os.getloadavg()
    proc = subprocess.run([sys.executable, __file__, "--child", variant, "--model", str(model_dir),
                           "--threads", str(threads)], capture_output=True, text=True, env=env)
    load_after = os.getloadavg()
    if proc.returncode != 0:
        return {"variant": variant, "error": (proc.stderr or proc.stdout)[-2000:]}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["loadavg_before"] = load_before[0]
    res["loadavg_after"] = load_after[0]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help="safetensors folder (SmolLM2 fp32)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=["hyperlens", "naive", "weightwatcher"])
    ap.add_argument(
        "--ww-path", default=None, help="folder holding weightwatcher (pip install --target)"
    )
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--append",
        action="store_true",
        help="keep the other variants already in --out (to run variants one call at a time)",
    )
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_variant(args.child, args.model, args.threads)))
        return 0
    if not (args.model / "config.json").exists():
        print(
            f"model folder {args.model} not found (needs config.json and *.safetensors)",
            file=sys.stderr,
        )
        return 2
    file_mib = sum(f.stat().st_size for f in args.model.glob("*.safetensors")) / 2**20
    rows = []
    if args.append and args.out.exists():  # keep earlier variants of a run split over calls
        rows = [r for r in json.loads(args.out.read_text()).get("variants", [])
                if r.get("variant") not in args.variants]
    for v in args.variants:
        r = _child(v, args.model, args.threads, args.ww_path)
        rows.append(r)
        _write(args, file_mib, rows)
        if "error" in r:
            print(f"{v:14s} failed: {r['error'].splitlines()[-1] if r['error'] else '?'}")
        else:
            print(f"{v:14s} {r['seconds']:8.2f} s  peak RSS {r['peak_rss_mib']:7.0f} MiB "
                  f"({r['peak_rss_mib'] / file_mib:.2f}x file)  matrices {r.get('matrices')}  "
                  f"load avg {r['loadavg_before']:.1f}->{r['loadavg_after']:.1f}", flush=True)
    _write(args, file_mib, rows)
    return 0


def _write(args: argparse.Namespace, file_mib: float, rows: list[dict[str, Any]]) -> None:
    """Write the results so far (atomically), with speed-ups against the hyperlens variant."""
    by = {r["variant"]: r for r in rows if "error" not in r}
    speedups = {}
    if "hyperlens" in by:
        for other in ("naive", "weightwatcher"):
            if other in by:
                speedups[f"vs_{other}"] = by[other]["seconds"] / by["hyperlens"]["seconds"]
    import torch

    from hyperlens.functional.kernels import cpu_info

    result = {
        "benchmark": "weights",
        "model": str(args.model),
        "file_mib": file_mib,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cpu_info": cpu_info(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "variants": rows,
        "speedup": speedups,
        "note": "wall seconds exclude building the model for naive and weightwatcher; hyperlens "
        "reads the tensors from disk inside its timing. Peak RSS is ru_maxrss of each child.",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)
    print("speedup:", {k: round(v, 2) for k, v in speedups.items()}, "->", args.out, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
