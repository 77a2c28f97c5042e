"""``make gpu-check``: hyperlens on a CUDA GPU, checked against the CPU in one run.

Two parts, in at most ``--budget-s`` seconds (default 450):

1. the tests marked ``cuda`` (``pytest -m cuda tests``): every device path (loading,
   embedding, capture and intervention, HDC packing and search, sketches, simplex CV,
   training, adapters, the semantic header, the HyperField student, the run context)
   computed on the GPU and compared with the CPU within stated tolerances;
2. a benchmark of the same paths at working sizes, each item timed on the GPU beside the
   CPU (one warm-up call, then one timed call, synchronised) with the largest difference
   between the two results: embedding and activation capture with tiny RANDOM models built
   from transformers configs (no downloads, no model packages), packed HDC search,
   sketches, simplex CV, one semantic-header training step and one HyperField training
   step on synthetic captures. The training steps are plain SGD, whose update is the
   gradient times the rate, so the two devices differ by their gradients' rounding (Adam
   would turn a rounding-sized gradient into a full step).

Results go to ``benchmarks/results/gpu_check.json`` (``--out``): the device, torch, CUDA
and transformers versions, the CPU, the test counts and each item's sizes, times, speed-up
and CPU-against-CUDA difference. Exit status 0 when every test passed and every item is
within its tolerance, 1 otherwise, 2 when no CUDA GPU is visible.

Usage, from the repository root (no install step: ``PYTHONPATH=src`` is enough):

    PYTHONPATH=src python3 scripts/gpu_check.py             # needs a CUDA GPU
    PYTHONPATH=src python3 scripts/gpu_check.py --dry-run   # anywhere: the plan and imports
    make gpu-check [GPU_CHECK_ARGS=--dry-run]

``--dry-run`` prints the tests that ``-m cuda`` collects, the benchmark items and their
sizes, and checks that everything both parts import imports without the packages the GPU
machine lacks; it exits 0 when all is in place. ``--device cpu --scale 0.05`` rehearses
the benchmark on the CPU against itself, and ``HYPERLENS_GPU_REHEARSAL=cpu`` does the same
for the tests (both check the harness, not CUDA).

The GPU machine (the device tool's ``nvidia-h200``; its package list is in the tool
library's KINDS.md) has Python 3.12, torch, transformers, tokenizers, safetensors, numpy,
scipy, scikit-learn, pandas, pyarrow, numba, matplotlib, tqdm, pytest and pytest-timeout.
Of hyperlens' dependencies and extras it lacks nltk, datasets, ray, gguf, wordllama,
spaCy, the docs extra (MkDocs, griffe, playwright; its tests skip there) and every offline
model package: hyperlens imports each of those lazily, inside the
function that needs it, and no path that this check runs needs one, so no wheel is
carried (``--dry-run`` proves the imports with those packages hidden). Its transformers
(5.17) reads the KV cache as ``past_key_values`` where recent releases read ``cache``;
:func:`hyperlens.models.arch.cache_kwarg` passes it under the name the installed release
reads.

The command a session runs with the device tool (``run``; nothing to ``carry``; about
8 minutes of the 10 a command may take, so ``timeout_s`` 600 leaves a margin):

    run(timeout_s=600, command="set -o pipefail; export PYTHONUNBUFFERED=1
        HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1; PYTHONPATH=src python3
        scripts/gpu_check.py 2>&1 | tee $OUT/gpu_check.log; rc=$?;
        cp benchmarks/results/gpu_check.json $OUT/; exit $rc")

(one line in the call). ``$OUT/gpu_check.json`` and ``$OUT/gpu_check.log`` come back;
commit the JSON under ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "gpu"))  # gpu_support: tolerances, tokenizer, diffs

#: hyperlens' dependencies and extras that the GPU machine does not have (see the docstring)
ABSENT = ("nltk", "datasets", "ray", "gguf", "wordllama", "spacy",
          "griffe", "mkdocs", "material", "mkdocstrings", "playwright")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HYPERLENS_PROGRESS": "0"}
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu_check.json"

# Installs a finder that reports ABSENT packages as not installed, then runs the rest.
_HIDE_ABSENT = """
import importlib.abc, sys
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {absent!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (absent on the GPU machine)",
                                      name=name)
        return None
sys.meta_path.insert(0, _Absent())
"""

#: what the benchmark items import (checked by --dry-run with ABSENT hidden)
BENCH_IMPORTS = (
    "torch", "numpy", "transformers", "tokenizers", "gpu_support", "hyperlens.models",
    "hyperlens.hdc", "hyperlens.functional.sketch", "hyperlens.functional.geometry",
    "hyperlens.train", "hyperlens.inject.header", "hyperlens.inject.prefix_cache",
    "hyperlens.hft.train", "hyperlens.hft.model", "hyperlens.hft.capture", "hyperlens.report",
)


# --------------------------------------------------------------------------- items
@dataclass
class Item:
    """One benchmark item: CPU-side inputs built once (untimed), then per device a closure
    whose call is timed; ``compare(cpu_out, dev_out)`` gives the differences, and the item
    is within tolerance when its ``measure`` is at most ``tolerance`` and every quantity
    named in ``also`` is at most its limit there."""

    name: str
    what: str
    sizes: dict[str, int]
    build: Callable[[dict[str, int], Path], Any]
    bind: Callable[[Any, dict[str, int], Any], Callable[[], Any]]
    compare: Callable[[Any, Any], dict[str, float]]
    measure: str = "max_rel_diff"
    tolerance: float = 1e-3
    scaled: tuple[str, ...] = ()
    #: further limits that the compared quantities must also meet (name -> at most)
    also: dict[str, float] = field(default_factory=dict)

    def at_scale(self, scale: float) -> dict[str, int]:
        return {k: max(1, int(v * scale)) if k in self.scaled else v
                for k, v in self.sizes.items()}


def _diffs(ref: Any, got: Any) -> dict[str, float]:
    """Largest absolute and relative (to the largest CPU value) difference over tensors,
    dicts of them or numbers."""
    import torch
    from gpu_support import max_abs_diff

    if isinstance(ref, dict):
        parts = [_diffs(ref[k], got[k]) for k in ref]
        return {"max_abs_diff": max(p["max_abs_diff"] for p in parts),
                "max_rel_diff": max(p["max_rel_diff"] for p in parts)}
    d = max_abs_diff(ref, got)
    scale = float(torch.as_tensor(ref).detach().double().abs().max()) or 1.0
    return {"max_abs_diff": d, "max_rel_diff": d / scale}


def _saved_model(root: Path, kind: str, s: dict[str, int]) -> Path:
    """A tiny random model of ``kind`` ("bert" or "llama") built from its config under a
    fixed seed and saved with a word-level tokenizer (once per run)."""
    import torch
    from gpu_support import word_tokenizer
    from transformers import BertConfig, BertModel, LlamaConfig, LlamaForCausalLM

    folder = root / f"{kind}-{s['hidden']}x{s['layers']}"
    if (folder / "config.json").exists():
        return folder
    h, L, V = s["hidden"], s["layers"], s["vocab"]
    torch.manual_seed(0)
    if kind == "bert":
        model: Any = BertModel(BertConfig(vocab_size=V, hidden_size=h, num_hidden_layers=L,
                                          num_attention_heads=h // 64, intermediate_size=4 * h,
                                          max_position_embeddings=512))
    else:
        model = LlamaForCausalLM(LlamaConfig(
            vocab_size=V, hidden_size=h, num_hidden_layers=L, num_attention_heads=h // 32,
            num_key_value_heads=h // 64, intermediate_size=8 * h // 3, max_position_embeddings=512,
            tie_word_embeddings=True))
    model.save_pretrained(folder)
    word_tokenizer(V, 512).save_pretrained(folder)
    return folder


def _embed_bind(st: Any, s: dict[str, int], dev: Any) -> Callable[[], Any]:
    from hyperlens import models as hmodels

    h = hmodels.load(str(st["folder"]), device=dev)
    return lambda: hmodels.embed_layers(st["texts"], h, batch_size=s["batch"], progress=False)


def _capture_bind(st: Any, s: dict[str, int], dev: Any) -> Callable[[], Any]:
    import torch

    from hyperlens import models as hmodels

    h = hmodels.load(str(st["folder"]), device=dev)
    names = [f"blocks.{i}.attn.q" for i in range(s["layers"])] + [
        f"hidden.{i}" for i in range(s["layers"] + 1)]
    ids = st["ids"].to(dev)

    def run() -> dict[str, Any]:
        out: dict[str, list[Any]] = {n: [] for n in names}
        with torch.inference_mode(), hmodels.capture(h.module, names) as acts:
            for b in range(0, ids.shape[0], s["batch"]):
                acts.clear()
                acts.run(input_ids=ids[b: b + s["batch"]])
                for n in names:
                    out[n].append(acts[n])
        return {n: torch.cat(v) for n, v in out.items()}

    return run


def _search_build(s: dict[str, int], _root: Path) -> Any:
    from hyperlens.functional.hdc import random_hypervectors
    from hyperlens.hdc import PackedCodes

    codes = PackedCodes.from_dense(random_hypervectors(s["codes"], s["dim"], "ternary", seed=0))
    return {"codes": codes, "queries": random_hypervectors(s["queries"], s["dim"], "ternary",
                                                           seed=1)}


def _search_bind(st: Any, s: dict[str, int], dev: Any) -> Callable[[], Any]:
    from hyperlens.hdc import search

    codes, q = st["codes"].to(dev), st["queries"].to(dev)

    def run() -> dict[str, Any]:
        res = search(q, codes, k=s["k"], metric="cosine")
        return {"scores": res.scores, "indices": res.indices}

    return run


def _search_compare(ref: Any, got: Any) -> dict[str, float]:
    """The neighbours must be the same; the scores are integer dot products divided by the
    two norms, so they may differ by the last bit of that division."""
    out = _diffs(ref["scores"], got["scores"])
    out["index_mismatches"] = float((ref["indices"].cpu() != got["indices"].cpu()).sum())
    out["exact"] = float(out["max_abs_diff"] == 0 and out["index_mismatches"] == 0)
    return out


def _sketch_build(s: dict[str, int], _root: Path) -> Any:
    import torch

    from hyperlens.functional.sketch import SRHT, CountSketch, GaussianSketch

    x = torch.randn(s["rows"], s["d_in"], generator=torch.Generator().manual_seed(0))
    ops = {c.__name__: c.draw(s["d_in"], s["d_out"], seed=1)
           for c in (CountSketch, SRHT, GaussianSketch)}
    return {"x": x, "ops": ops}


def _sketch_bind(st: Any, s: dict[str, int], dev: Any) -> Callable[[], Any]:
    x = st["x"].to(dev)
    ops = {k: op.to(dev) for k, op in st["ops"].items()}
    return lambda: {k: op(x) for k, op in ops.items()}


def _simplex_build(s: dict[str, int], _root: Path) -> Any:
    import torch

    from hyperlens.functional.geometry import sample_simplices

    g = torch.Generator().manual_seed(0)
    basis = torch.randn(s["rank"], s["dim"], generator=g)
    X = torch.randn(s["points"], s["rank"], generator=g) @ basis
    X += 0.1 * torch.randn(s["points"], s["dim"], generator=g)
    return {"X": X, "idx": sample_simplices(s["points"], 4, s["simplices"], seed=1)}


def _simplex_bind(st: Any, s: dict[str, int], dev: Any) -> Callable[[], Any]:
    from hyperlens.functional.geometry import simplex_volume_cv, simplex_volumes

    X, idx = st["X"].to(dev), st["idx"].to(dev)

    def run() -> dict[str, Any]:
        res = simplex_volume_cv(X, k=4, n_samples=s["simplices"], seed=0, null="gaussian")
        return {"volumes": simplex_volumes(X, idx), "cv": res}

    return run


def _simplex_compare(ref: Any, got: Any) -> dict[str, float]:
    import math

    out = _diffs(ref["volumes"], got["volumes"])
    a, b = ref["cv"].cv, got["cv"].cv
    se = math.hypot(a.hi - a.lo, b.hi - b.lo) / (2 * 1.96)
    out.update(cv_cpu=a.value, cv_device=b.value, cv_ratio_cpu=ref["cv"].ratio.value,
               cv_ratio_device=got["cv"].ratio.value,
               cv_diff_in_standard_errors=abs(a.value - b.value) / se if se else 0.0)
    return out


def _prompts_build(s: dict[str, int], root: Path) -> Any:
    import torch

    g = torch.Generator().manual_seed(2)
    lens = torch.randint(8, s["max_prefix"] + 1, (s["prompts"],), generator=g).tolist()
    prefixes = [torch.randint(4, s["vocab"], (n,), generator=g).tolist() for n in lens]
    codes = torch.randint(-1, 2, (s["prompts"], s["code_dim"]), generator=g).float()
    labels = torch.randint(0, 2, (s["prompts"],), generator=g)
    return {"folder": _saved_model(root, "llama", s), "prefixes": prefixes, "codes": codes,
            "labels": labels}


def _header_bind(st: Any, s: dict[str, int], dev: Any) -> Callable[[], Any]:
    import torch

    from hyperlens import models as hmodels
    from hyperlens.inject.header import HeaderConfig, SemanticHeader
    from hyperlens.inject.prefix_cache import PrefixCache
    from hyperlens.train import TrainConfig, fit

    lm = hmodels.load(str(st["folder"]), device=dev).module.requires_grad_(False)
    codes, labels = st["codes"].to(dev), st["labels"].to(dev)

    def run() -> dict[str, Any]:
        pc = PrefixCache(lm, st["prefixes"], [5, 6], [7, 8], kv_dtype=torch.float32,
                         batch_size=64)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # built on the CPU: the same header on every device
            header = SemanticHeader(HeaderConfig(code_dim=s["code_dim"], d_model=s["hidden"],
                                                 k=4, placement="cue", cue_len=2))
        header.to(dev)

        def loss(m: Any, rows: Any) -> Any:
            z = pc.label_logits(pc.suffix_forward(rows, m(codes[rows])))
            return torch.nn.functional.cross_entropy(z, labels[rows])

        hist = fit(header, loss, torch.arange(min(s["batch"], len(st["prefixes"]))),
                   TrainConfig(optimizer="sgd", lr=0.1, max_steps=1, batch_size=None,
                               progress=False))
        return {"loss": torch.tensor(hist.train_loss[0]),
                "params": {k: v.detach() for k, v in header.state_dict().items()}}

    return run


def _hyperfield_build(s: dict[str, int], _root: Path) -> Any:
    import torch

    from hyperlens.hft.capture import Unembedding
    from hyperlens.hft.model import log_unigram
    from hyperlens.hft.train import StudentConfig, build_model

    g = torch.Generator().manual_seed(3)
    n, V, d = s["rows"], s["vocab"], s["d_model"]
    data = {"x1": torch.randn(n, s["d1"], generator=g),
            "tail": torch.randn(n, s["d_tail"], generator=g),
            "final": torch.randn(n, d, generator=g) * 3,
            "target": torch.randint(0, V, (n,), generator=g),
            "aux": torch.randn(n, s["d_aux"], generator=g)}
    U = Unembedding(torch.randn(V, d, generator=g) / d ** 0.5)
    # float32 vocabulary products on both devices: the check compares devices, not the
    # CPU's choice of bf16 units
    sc = StudentConfig(batch_size=s["batch"], fast_unembed=False)
    model = build_model(sc, s["d1"], s["d_tail"], d, s["d_aux"], U,
                        log_unigram(data["target"], V))
    # the step starts from one initialisation on both devices: region means are averages
    # over the inputs routed nearest to each tensor, and a last-bit difference in a routing
    # distance can move a sample to another region (measured apart: route_disagreement)
    start = copy.deepcopy(model)
    _hyperfield_init(start, data)
    return {"data": data, "model": model, "start": start.state_dict()}


def _hyperfield_init(m: Any, data: dict[str, Any]) -> None:
    m.init_stage1(data["x1"], data["aux"], seed=0)
    m.init_stage2(data["x1"], data["tail"], data["final"], seed=0)


def _hyperfield_bind(st: Any, s: dict[str, int], dev: Any) -> Callable[[], Any]:
    import torch

    from hyperlens.hft.model import distill_loss
    from hyperlens.train import TrainConfig, fit

    data = {k: v.to(dev) for k, v in st["data"].items()}
    base = copy.deepcopy(st["model"]).to(dev)
    start = {k: v.to(dev) for k, v in st["start"].items()}

    def loss(m: Any, b: dict[str, Any]) -> Any:
        y, _ = m(b["x1"], b["tail"])
        with torch.no_grad():
            t = m.unembed(b["final"])
        return distill_loss(m.logits(y), t, b["target"], 0.1)[0]

    def run() -> dict[str, Any]:
        m = copy.deepcopy(base)
        _hyperfield_init(m, data)
        with torch.no_grad():
            route = torch.cat([m.stage1.nearest(c) for c in data["x1"].split(2048)])
        m.load_state_dict(start)
        hist = fit(m, loss, {k: data[k] for k in ("x1", "tail", "final", "target")},
                   TrainConfig(optimizer="sgd", lr=0.1, max_steps=1, batch_size=s["batch"],
                               seed=1, progress=False))
        return {"route": route, "step": {
            "loss": torch.tensor(hist.train_loss[0]),
            "params": {k: v.detach() for k, v in m.state_dict().items()}}}

    return run


def _hyperfield_compare(ref: Any, got: Any) -> dict[str, float]:
    """The step's loss and parameters, from one initialisation; and the share of inputs
    whose nearest Stage-1 tensor differs between the two devices' initialisations."""
    out = _diffs(ref["step"], got["step"])
    out["route_disagreement"] = float((ref["route"].cpu() != got["route"].cpu())
                                      .double().mean())
    return out


def _texts_build(kind: str) -> Callable[[dict[str, int], Path], Any]:
    def build(s: dict[str, int], root: Path) -> Any:
        import torch
        from gpu_support import word_texts

        st: dict[str, Any] = {"folder": _saved_model(root, kind, s)}
        if kind == "bert":
            st["texts"] = word_texts(s["texts"], s["vocab"], s["max_words"], seed=0)
        else:
            st["ids"] = torch.randint(4, s["vocab"], (s["seqs"], s["seq_len"]),
                                      generator=torch.Generator().manual_seed(1))
        return st

    return build


ITEMS = (
    Item("embed", "models.load onto the device, embed_layers (all layers, mean pooling) with "
         "a random BERT", {"texts": 4096, "max_words": 60, "batch": 128, "vocab": 2000,
                           "hidden": 256, "layers": 4},
         _texts_build("bert"), _embed_bind, _diffs, scaled=("texts",)),
    Item("capture", "hooks reading q and every hidden state of a random Llama",
         {"seqs": 256, "seq_len": 128, "batch": 32, "vocab": 2000, "hidden": 256, "layers": 4},
         _texts_build("llama"), _capture_bind, _diffs, scaled=("seqs",)),
    Item("hdc_search", "packed (two-bit) cosine top-k search of ternary codes",
         {"codes": 100_000, "dim": 4096, "queries": 512, "k": 10},
         _search_build, _search_bind, _search_compare, measure="index_mismatches", tolerance=0.0,
         also={"max_rel_diff": 1e-6},
         scaled=("codes", "queries")),
    Item("sketch", "CountSketch, SRHT and Gaussian sketches of dense rows",
         {"rows": 16_384, "d_in": 4096, "d_out": 1024},
         _sketch_build, _sketch_bind, _diffs, scaled=("rows",)),
    Item("simplex_cv", "simplex_volume_cv (k=4, Gaussian null, delta-method interval) and the "
         "volumes of shared simplices", {"points": 20_000, "dim": 384, "rank": 64,
                                         "simplices": 200_000},
         _simplex_build, _simplex_bind, _simplex_compare, tolerance=1e-8,
         scaled=("points", "simplices")),
    Item("header_step", "prefix cache of a random Llama, then one semantic-header SGD step",
         {"prompts": 512, "max_prefix": 48, "batch": 64, "code_dim": 4096, "vocab": 2000,
          "hidden": 256, "layers": 4},
         _prompts_build, _header_bind, _diffs, scaled=("prompts",)),
    Item("hyperfield_step", "HyperField student initialised from synthetic captures, then one "
         "SGD step", {"rows": 8192, "d1": 4096, "d_tail": 2048, "d_model": 576, "d_aux": 960,
                      "vocab": 49_152, "batch": 256},
         _hyperfield_build, _hyperfield_bind, _hyperfield_compare, tolerance=1e-3,
         also={"route_disagreement": 1e-3}, scaled=("rows",)),
)


# --------------------------------------------------------------------------- timing
def _sync(dev: Any) -> None:
    import torch

    if torch.device(dev).type == "cuda":
        torch.cuda.synchronize(dev)


def _timed(fn: Callable[[], Any], dev: Any) -> tuple[float, Any]:
    """Seconds of one call after a warm-up call (kernels loaded, caches and compiled code
    ready), with the device synchronised around it; and the call's result."""
    fn()
    _sync(dev)
    t0 = time.perf_counter()
    out = fn()
    _sync(dev)
    return time.perf_counter() - t0, out


def run_item(item: Item, dev: str, scale: float, root: Path) -> dict[str, Any]:
    """Time ``item`` on the CPU and on ``dev`` and compare the two results."""
    s = item.at_scale(scale)
    rec: dict[str, Any] = {"name": item.name, "what": item.what, "sizes": s,
                           "measure": item.measure, "tolerance": item.tolerance}
    if item.also:
        rec["also"] = dict(item.also)
    t0 = time.perf_counter()
    state = item.build(s, root)
    rec["build_s"] = time.perf_counter() - t0
    rec["cpu_s"], ref = _timed(item.bind(state, s, "cpu"), "cpu")
    rec["device_s"], got = _timed(item.bind(state, s, dev), dev)
    rec["speedup"] = rec["cpu_s"] / rec["device_s"] if rec["device_s"] > 0 else None
    rec.update(item.compare(ref, got))
    rec["ok"] = bool(rec[item.measure] <= item.tolerance
                     and all(rec[k] <= v for k, v in item.also.items()))
    return rec


# --------------------------------------------------------------------------- tests
def _pytest(args: list[str], *, hide_absent: bool, timeout: float | None,
            capture: bool) -> subprocess.CompletedProcess[str]:
    code = "import sys, pytest\nsys.exit(pytest.main(sys.argv[1:]))\n"
    if hide_absent:
        code = _HIDE_ABSENT.format(absent=set(ABSENT)) + code
    env = {**os.environ, **OFFLINE,
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"),
                                                     os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, text=True,
                          timeout=timeout, capture_output=capture, check=False)


def collect_cuda_tests() -> tuple[list[str], str]:
    """The node ids that ``pytest -m cuda tests`` collects, with the ABSENT packages hidden;
    and pytest's output when collection failed (else "")."""
    proc = _pytest(["--collect-only", "-q", "-m", "cuda", "-p", "no:cacheprovider", "tests"],
                   hide_absent=True, timeout=600, capture=True)
    ids = [ln.strip() for ln in proc.stdout.splitlines() if "::" in ln]
    return ids, "" if proc.returncode == 0 else proc.stdout[-4000:] + proc.stderr[-2000:]


def run_cuda_tests(timeout: float) -> dict[str, Any]:
    """Run ``pytest -m cuda tests`` (output streamed) and count the outcomes."""
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "cuda-tests.xml"
        t0 = time.perf_counter()
        try:
            proc = _pytest(["-m", "cuda", "-q", "-rfEs", "-p", "no:cacheprovider",
                            f"--junitxml={junit}", "tests"], hide_absent=False,
                           timeout=timeout, capture=False)
        except subprocess.TimeoutExpired:
            return {"returncode": None, "seconds": time.perf_counter() - t0, "ok": False,
                    "error": f"the tests ran past their {timeout:.0f} s"}
        rec: dict[str, Any] = {"returncode": proc.returncode,
                               "seconds": time.perf_counter() - t0}
        rec.update(_junit_counts(junit))
    rec["ok"] = proc.returncode == 0 and rec.get("failed", 1) == 0 and rec.get("passed", 0) > 0
    return rec


def _junit_counts(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"error": "pytest wrote no report"}
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    failures: list[str] = []
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            counts["failed"] += 1
            failures.append(f"{case.get('classname')}::{case.get('name')}")
        elif "skipped" in kinds:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return {**counts, "failures": failures}


# --------------------------------------------------------------------------- environment
def environment(dev: str) -> dict[str, Any]:
    """The device, the CPU and the versions this run measured with."""
    import torch
    import transformers

    from hyperlens.report import environment_info

    info = environment_info(dev)
    cpu = {"model": _cpu_model(), "cores": os.cpu_count(), "torch_threads":
           torch.get_num_threads(), "capability": torch.backends.cpu.get_cpu_capability()}
    versions = {**info["versions"], "transformers": transformers.__version__,
                "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version()}
    out: dict[str, Any] = {"cpu": cpu, "platform": info["platform"], "versions": versions,
                           "git_commit": info["git_commit"]}
    if torch.device(dev).type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        out["device"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                         "memory_gib": round(props.total_memory / 2**30, 1),
                         "multiprocessors": props.multi_processor_count,
                         "count": torch.cuda.device_count()}
    else:
        out["device"] = {"name": f"{dev} (a rehearsal: the CPU against itself)"}
    return out


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# --------------------------------------------------------------------------- main
@dataclass
class Budget:
    seconds: float
    start: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def dry_run(scale: float) -> int:
    """Print the plan and check the imports with the packages the GPU machine lacks hidden."""
    ids, failed = collect_cuda_tests()
    print(f"gpu_check --dry-run: pytest -m cuda tests collects {len(ids)} tests")
    for node in ids:
        print(f"  {node}")
    print(f"benchmark items (each timed on the CPU and on the device; scale {scale}):")
    for item in ITEMS:
        sizes = ", ".join(f"{k}={v:,}" for k, v in item.at_scale(scale).items())
        print(f"  {item.name}: {item.what} [{sizes}]; {item.measure} <= {item.tolerance:g}")
    code = _HIDE_ABSENT.format(absent=set(ABSENT)) + (
        "import importlib\nbad = []\n"
        f"for name in {BENCH_IMPORTS!r}:\n"
        "    try:\n        importlib.import_module(name)\n"
        "    except Exception as exc:\n        bad.append(f'{name}: {exc!r}')\n"
        "print('\\n'.join(bad))\nsys.exit(1 if bad else 0)\n")
    env = {**os.environ, **OFFLINE, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), str(ROOT / "tests" / "gpu")])}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, text=True,
                          capture_output=True, check=False)
    hidden = ", ".join(ABSENT)
    if failed or proc.returncode != 0 or not ids:
        print(f"imports: FAILED with {hidden} hidden", file=sys.stderr)
        print((failed or "") + proc.stdout + proc.stderr, file=sys.stderr)
        return 1
    print(f"imports: ok ({len(BENCH_IMPORTS)} modules and every cuda test module, with "
          f"{hidden} hidden)")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--dry-run", action="store_true",
                    help="print the plan and check the imports; runs nothing heavy")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON to write")
    ap.add_argument("--budget-s", type=float, default=450.0,
                    help="wall-clock budget of the whole run; items that would start after it "
                    "are listed as skipped")
    ap.add_argument("--device", default="cuda", help="cuda | cuda:N, or cpu to rehearse")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply the benchmark's row counts (e.g. 0.05 for a rehearsal)")
    ap.add_argument("--skip-tests", action="store_true", help="run the benchmark only")
    args = ap.parse_args(argv)
    if not args.scale > 0:
        ap.error(f"--scale must be > 0, got {args.scale}")
    if args.dry_run:
        return dry_run(args.scale)
    import torch

    from hyperlens.quiet import quiet_third_party

    quiet_third_party()  # no loading bars between the lines of the benchmark

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"gpu_check: error: --device {args.device}: no CUDA GPU is visible to torch "
              f"{torch.__version__}; run this on the GPU machine, or --dry-run here.",
              file=sys.stderr)
        return 2
    return run(args)


def run(args: argparse.Namespace) -> int:
    from hyperlens.utils import atomic_write_json

    budget = Budget(args.budget_s)
    report: dict[str, Any] = {
        "schema": "hyperlens.gpu_check/1", "started": _dt.datetime.now().isoformat(),
        "command": " ".join(sys.argv), "budget_s": args.budget_s, "scale": args.scale,
        **environment(args.device), "tests": None, "items": []}
    print(f"gpu_check: {report['device']['name']}; torch {report['versions']['torch']}, "
          f"CUDA {report['versions']['cuda']}; CPU {report['cpu']['model']}", flush=True)
    if not args.skip_tests:
        report["tests"] = run_cuda_tests(timeout=max(60.0, budget.left() * 0.5))
        atomic_write_json(args.out, report)
    with tempfile.TemporaryDirectory() as tmp:
        for item in ITEMS:
            if budget.left() < 20:
                report["items"].append({"name": item.name, "ok": False,
                                        "skipped": "the time budget ran out"})
                continue
            print(f"gpu_check: {item.name} ...", flush=True)
            try:
                rec = run_item(item, args.device, args.scale, Path(tmp))
            except Exception as exc:  # noqa: BLE001 - one broken item must not hide the others
                rec = {"name": item.name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
            report["items"].append(rec)
            print(_line(rec), flush=True)
            atomic_write_json(args.out, report)
    report["total_s"] = args.budget_s - budget.left()
    tests_ok = report["tests"] is None or report["tests"]["ok"]
    report["ok"] = bool(tests_ok and all(r["ok"] for r in report["items"]))
    atomic_write_json(args.out, report)
    print(f"gpu_check: {'ok' if report['ok'] else 'FAILED'} in {report['total_s']:.0f} s; "
          f"wrote {args.out}")
    return 0 if report["ok"] else 1


def _line(rec: dict[str, Any]) -> str:
    if "error" in rec or "skipped" in rec:
        return f"  {rec['name']}: {rec.get('error') or rec.get('skipped')}"
    speed = f"{rec['speedup']:.1f}x" if rec.get("speedup") else "-"
    limits = {rec["measure"]: rec["tolerance"], **rec.get("also", {})}
    checks = ", ".join(f"{k} {rec[k]:.3g} (<= {v:g})" for k, v in limits.items())
    return (f"  {rec['name']}: cpu {rec['cpu_s']:.3f} s, device {rec['device_s']:.3f} s "
            f"({speed}); {checks}: {'ok' if rec['ok'] else 'NO'}")


if __name__ == "__main__":
    sys.exit(main())
