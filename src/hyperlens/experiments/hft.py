"""``hyperlens hft capture|train``: the HyperField transformer experiment.

``capture`` runs the teacher over a corpus split by text and stores the shards;
``train`` (capturing first when needed) fits the baselines and the students over seeds and
writes the full report (held-out metrics with bootstrap intervals over texts, t intervals
over seeds, the information-flow checks, speed), saving the seed-0 Track A student, which
``hft eval`` and ``hft generate`` (:mod:`~hyperlens.experiments.hft_saved`) take.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..config import Command, Config, RunContext, above, at_least, between, option, start_report
from ..errors import ConfigError, InputError
from ..hft.evaluate import (
    MIXTURE,
    count_baselines,
    mix_fn,
    seed_means,
    state_fn,
    student_fn,
)
from ..hft.sections import (
    ablation_rows,
    checks_section,
    curves_section,
    est_row,
    feature_label,
    metric_table,
    ppl_plot,
    target_rows,
)
from ..hft.train import StudentConfig as _SC  # the students' defaults live there
from ..report import Report
from ..utils import peak_rss_mb, release_freed_memory

__all__ = ["CaptureOptions", "HftTrainConfig", "COMMANDS", "run_capture", "run_train",
           "tour_section"]

HELP = ("HyperField transformer: distil a teacher LM into a HyperTensor mixture "
        "(capture|train|eval|generate|scale)")
_CPU_ONLY = frozenset({"seed"})  # hft eval / generate: the saved student on the CPU
ONLINE = "A: HyperField, online rule"


@dataclass(frozen=True, kw_only=True)
class CaptureOptions(Config):
    """What ``hyperlens hft capture`` stores, and what ``train`` reads (or captures first).

    The capture's shards run on the context's executor (Ray actors with ``--executor ray``)
    and ``--device`` (a GPU: ``cuda``, each Ray actor or cell asking Ray for one GPU);
    ``--dtype`` is the precision of the teacher's forward pass there (``auto``: bfloat16 on
    a GPU and on CPUs with native bfloat16 units, else float32), recorded in the capture.
    ``train`` trains its students on ``--device`` too; the baselines, the held-out scoring,
    Track B's lenses, the checks and the speed run on the CPU."""

    CONTEXT = frozenset({"seed", "device", "executor", "dtype"})
    RANDOM = "the split of the corpus into training and held-out texts, and the cut rows"

    teacher: str = option("smollm2", help="causal LM (zoo name, HF id or path)",
                          group="capture")
    dataset: str = option("agnews", help="agnews | sst2 | rotten-tomatoes | a csv/tsv/jsonl "
                          "file | a .txt file (one text per line); named corpora joined by + "
                          "(agnews+sst2) give their texts together", group="capture")
    data_dir: str | None = option(None, help="folder holding sst2/ and agnews/", group="capture")
    text_column: str | None = option(None, help="text column of a file", group="capture")
    train_tokens: int = option(32_000, help="tokens the teacher predicts in the training texts "
                               "(whole texts are taken until the count is reached)",
                               check=at_least(1), group="capture")
    heldout_tokens: int = option(8_000, help="tokens the teacher predicts in the held-out texts, "
                                 "which every model is scored on", check=at_least(1),
                                 group="capture")
    layer: int = option(15, help="teacher layer l (Track B, Stage-1 target)", check=at_least(0),
                        group="capture")
    heads: tuple[int, ...] = option((0, 1, 2), help="q/k/v heads at layer l", check=at_least(0),
                                    group="capture")
    window: int = option(32, help="context window W in tokens", check=at_least(1),
                         group="capture")
    cut_fraction: float = option(0.25, help="share of held-out rows past the window that get "
                                 "the one-forward-per-window 'teacher cut to W' baseline "
                                 "(weighted by its inverse)", check=between(0, 1),
                                 group="capture")
    capture_dir: Path | None = option(None, help="capture folder (default: runs/hft-capture-"
                                      "<teacher>-<dataset>-<tokens>-...)", group="capture")

    def check(self) -> None:
        if self.cut_fraction == 0:
            raise ConfigError("--cut-fraction must be above 0 (a share of rows), got 0.")
        bad = [p for p in self.dataset.split("+") if p not in _NAMED]
        if "+" in self.dataset and bad:
            raise ConfigError(f"--dataset {self.dataset}: only named corpora "
                              f"({', '.join(_NAMED)}) join with +, not {', '.join(bad)}.")
        if self.dataset.endswith(".txt") and not Path(self.dataset).is_file():
            raise ConfigError(f"--dataset {self.dataset}: file not found; pass an existing "
                              ".txt file.")
        if self.capture_dir is not None and self.capture_dir.exists() \
                and not self.capture_dir.is_dir():
            raise ConfigError(f"--capture-dir {self.capture_dir} is an existing file; pass a "
                              "folder.")


@dataclass(frozen=True, kw_only=True)
class HftTrainConfig(CaptureOptions):
    """Options of ``hyperlens hft train``: the capture, then the students."""

    RANDOM = ("the corpus split, the sketches, bootstrap resamples and the checks' draws "
              "(each replicate's initialisation comes from --seeds)")

    tracks: tuple[Literal["A", "B"], ...] = option(
        ("A",), help="A: tokens only; B: also the teacher's layer-l state, with the logit and "
                     "tuned lens (about 16 more minutes per seed at the default size)",
        group="students", unique=True)
    seeds: tuple[int, ...] = option((0, 1, 2), help="replicate seeds: each student is trained "
                                    "once per seed", check=at_least(0), group="students",
                                    unique=True)
    train_limit: int = option(0, help="train on the capture's first N training positions only "
                              "(cut at a text boundary; held-out rows unchanged): one capture "
                              "serves a data-scaling study; 0 = every position",
                              check=at_least(0), group="students")
    k1: int = option(_SC.k1, help="Stage-1 HyperTensors", check=at_least(1), group="students")
    k2: int = option(_SC.k2, help="Stage-2 HyperTensors", check=at_least(1), group="students")
    top_k: int = option(_SC.top1, help="tensors mixed per routing head", check=at_least(1),
                        group="students")
    mix_heads: int = option(_SC.heads1, help="routing heads per HyperTensor layer (each mixes "
                            "its own top-k; their outputs add; 8 heads x top-4 were chosen on a "
                            "validation split of the training texts, scripts/hft_tune.py)",
                            check=at_least(1), group="students")
    d_sketch: int = option(4096, help="Stage-1 sketch width", check=at_least(1),
                           group="students")
    pca: int | None = option(None, help="StreamingPCA components after the sketch (the saved "
                             "student then cannot be reloaded by eval / generate)",
                             check=at_least(1), group="students")
    features: tuple[Literal["exact", "sketch"], ...] = option(
        ("exact",), help="Stage-1 input: 'exact' passes the last --exact-tokens embeddings "
        "unsketched beside the sketched window, 'sketch' is the seed's pure sketch; the first "
        "is the main student, each further one trains every student again (the ablation)",
        group="students", unique=True)
    exact_tokens: int = option(4, help="token embeddings passed unsketched under 'exact' "
                               "(slot 0 = the current token)", check=at_least(1),
                               group="students")
    patience: int = option(_SC.patience, help="epochs in a row without a better validation "
                           "loss before a phase stops (on the last --val-share of the training "
                           "texts, which no model fits); the rate halves after each such epoch "
                           "and the best epoch is kept; 0 = the seed's fixed epochs over every "
                           "training text", check=at_least(0), group="students")
    min_improvement: float = option(
        _SC.min_improvement, help="the share of the best validation loss an epoch must gain "
        "to count as better (0: any gain counts; 0.001 ends a phase once its epochs gain "
        "under 0.1 %); it decides the rate cuts, the stop and the kept epoch",
        check=between(0.0, 0.5), group="students")
    max_epochs: int = option(_SC.max_epochs, help="epoch cap of each phase when training to a "
                             "plateau", check=at_least(1), group="students")
    val_share: float = option(_SC.val_share, help="share of the training texts held out for "
                              "validation (with --patience > 0)", check=between(0.01, 0.49),
                              group="students")
    stage1_epochs: int = option(_SC.stage1_epochs, help="Stage-1 epochs (with --patience 0)",
                                check=at_least(1), group="students")
    stage2_epochs: int = option(_SC.stage2_epochs, help="Stage-2 epochs (with --patience 0)",
                                check=at_least(1), group="students")
    e2e_epochs: int = option(_SC.e2e_epochs, help="end-to-end epochs (with --patience 0; 0 "
                             "skips the phase under either schedule)", check=at_least(0),
                             group="students")
    batch_size: int = option(_SC.batch_size, help="positions per step", check=at_least(1),
                             group="students")
    precision: Literal["auto", "float32", "bfloat16"] = option(
        "auto", help="training of the MLPs and the transformer: 'bfloat16' runs their "
        "forward and backward passes in bfloat16 autocast (float32 weights, optimiser and "
        "loss; validation and evaluation in float32), and every student's frozen vocabulary "
        "products in bfloat16; 'auto' does both where the CPU has native bf16 units (several "
        "times faster there: benchmarks/bench_hft_precision.py), else neither; 'float32' "
        "neither on any CPU. The HyperField student's own layers always train in "
        "float32 (bf16 rounding changes its routing)",
        group="students")
    lr: float = option(_SC.lr, help="learning rate", check=above(0), group="students")
    shortlist: int = option(_SC.shortlist, help="train every student (and Track B's tuned "
                            "lens) on an estimate of the KL that is exact on each batch's "
                            "shortlist of the teacher's top-k tokens and importance-sampled "
                            "elsewhere (cheaper); validation "
                            "and evaluation stay full-vocabulary; 0 = the full vocabulary",
                            check=at_least(0), group="students")
    negatives: int = option(_SC.negatives, help="tokens drawn per batch from the training "
                            "unigram outside the shortlist (with --shortlist)",
                            check=at_least(1), group="students")
    hard: float = option(_SC.hard, help="weight of the hard-label cross-entropy added to the KL "
                         "to the teacher (more lowers true-token perplexity, raises the KL)",
                         check=at_least(0), group="students")
    online: bool = option(True, help="train the seed's online-rule variant, one cell with the "
                          "first of --seeds on the main features (--no-online skips it)",
                          group="students")
    mlp: bool = option(True, help="train the equal-size MLP (--no-mlp skips it)",
                       group="students")
    window_mlp: bool = option(True, help="with 'exact' features, also train the classic window "
                              "neural LM: an MLP of the same size on the unsketched last "
                              "--exact-tokens embeddings alone (--no-window-mlp skips it)",
                              group="students")
    transformer: bool = option(False, help="also train a 2-layer transformer over the window's "
                               "token ids with the HyperField student's parameter count, data "
                               "and loss (the attention anchor; several times the HyperField's "
                               "training time)", group="students")
    n_boot: int = option(1000, help="bootstrap resamples over texts", check=at_least(10),
                         aliases=("--boot",), group="students")
    fresh: bool = option(False, help="ignore finished students in OUT/cells.jsonl and train "
                         "them again (a killed run otherwise trains only the missing ones, "
                         "each from its last finished epoch)",
                         group="students")

    def check(self) -> None:
        super().check()
        from ..hft.features import FeatureConfig

        tail = FeatureConfig.tail
        if self.window < tail:
            raise ConfigError(f"--window ({self.window}) must be at least {tail}: the features "
                              f"read the last {tail} positions of the window exactly.")
        if "exact" in self.features and self.exact_tokens > self.window:
            raise ConfigError(f"--exact-tokens ({self.exact_tokens}) must not exceed --window "
                              f"({self.window}).")
        if self.k1 % self.mix_heads or self.k2 % self.mix_heads:
            raise ConfigError(f"--mix-heads ({self.mix_heads}) must divide --k1 ({self.k1}) and "
                              f"--k2 ({self.k2}).")
        if self.train_limit > self.train_tokens:
            raise ConfigError(f"--train-limit ({self.train_limit}) exceeds --train-tokens "
                              f"({self.train_tokens}), the capture's training positions; "
                              "capture more or lower the limit.")
        if self.top_k > min(self.k1, self.k2) // self.mix_heads:
            raise ConfigError(f"--top-k ({self.top_k}) must not exceed the tensors per head, "
                              f"min(--k1, --k2) / --mix-heads = "
                              f"{min(self.k1, self.k2) // self.mix_heads}.")


# --------------------------------------------------------------------------- helpers
_NAMED = ("agnews", "sst2", "rotten-tomatoes")


def _texts(cfg: CaptureOptions) -> list[str]:
    from ..hft.capture import check_texts

    name = str(cfg.dataset)
    parts = name.split("+")
    if len(parts) > 1:  # named corpora, joined (the capture shuffles the texts)
        bad = [p for p in parts if p not in _NAMED]
        if bad:
            raise InputError(f"--dataset {name}: only named corpora ({', '.join(_NAMED)}) join "
                             f"with +, not {', '.join(bad)}.")
        return check_texts([t for p in parts for t in _one_corpus(cfg, p)], f"--dataset {name}")
    return check_texts(_one_corpus(cfg, name), f"--dataset {name}")


def _one_corpus(cfg: CaptureOptions, name: str) -> list[str]:
    from .. import data as hdata

    if name.endswith(".txt"):
        path = Path(name)
        if not path.is_file():
            raise InputError(f"--dataset {name}: file not found; pass an existing .txt file.")
        texts = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    else:
        split = "train" if name in ("agnews", "sst2") else None
        kw: dict[str, Any] = {"data_dir": cfg.data_dir}
        if split:
            kw["split"] = split
        if cfg.text_column:
            kw["text_column"] = cfg.text_column
        texts = list(hdata.load(name, **kw).texts)
    return texts


def _capture_cfg(cfg: CaptureOptions, ctx: RunContext) -> Any:
    from ..hft.capture import CaptureConfig

    cap = CaptureConfig(model=cfg.teacher, dataset=str(cfg.dataset),
                        train_tokens=cfg.train_tokens, heldout_tokens=cfg.heldout_tokens,
                        layer=cfg.layer, heads=tuple(cfg.heads), window=cfg.window,
                        cut_fraction=cfg.cut_fraction, seed=ctx.seed,
                        dtype=ctx.resolve_dtype(run_device(ctx)))
    cap.validate()
    return cap


def _capture_dir(cfg: CaptureOptions, ctx: RunContext) -> Path:
    if cfg.capture_dir is not None:
        return Path(cfg.capture_dir)
    tag = f"{cfg.teacher}-{Path(str(cfg.dataset)).stem}-{cfg.train_tokens}-{cfg.heldout_tokens}"
    low = "-bf16" if ctx.resolve_dtype(run_device(ctx)) == "bfloat16" else ""
    return Path("runs") / f"hft-capture-{tag}-w{cfg.window}-l{cfg.layer}-s{ctx.seed}{low}"


def run_device(ctx: RunContext) -> torch.device:
    """Where the teacher's capture and the students' training run. Ray gives each actor
    or cell a GPU of its own, which it sees as ``cuda:0``, so on Ray a numbered GPU other
    than 0 is refused (before any work)."""
    dev = ctx.torch_device
    if dev.type == "cuda" and (dev.index or 0) > 0 and ctx.executor == "ray":
        raise ConfigError(f"--device {ctx.device} with --executor ray: Ray assigns each cell "
                          "a GPU of its own; give --device cuda (or --executor local to use "
                          f"GPU {dev.index}).")
    return dev


def _ensure_capture(cfg: CaptureOptions, ctx: RunContext, teacher: Any, rep: Report,
                    texts: list[str] | None) -> Any:
    """The capture of the options: reopened when complete, else captured (resumed), by
    ``teacher`` or, where the context's device is another, a copy loaded there."""
    from .. import models as hmodels
    from ..hft.capture import check_capture_dir, load_capture, run_capture as capture_corpus

    folder, cap_cfg = _capture_dir(cfg, ctx), _capture_cfg(cfg, ctx)
    manifest = check_capture_dir(folder, cap_cfg)
    if manifest is not None and manifest.get("complete"):
        return load_capture(folder, expect=cap_cfg)
    dev = run_device(ctx)
    if torch.device(teacher.device) != dev:
        teacher = hmodels.load(cfg.teacher, device=dev)
    with rep.timer("capture"), ctx.make_executor() as executor:
        rep.data["executor"] = executor.describe()
        return capture_corpus(teacher, texts if texts is not None else _texts(cfg), cap_cfg,
                              folder, show_progress=ctx.progress, executor=executor,
                              teacher_source=cfg.teacher)


def _texts_unless_captured(cfg: CaptureOptions, ctx: RunContext) -> list[str] | None:
    """The corpus when the capture still has to run (read before the teacher is loaded, so a
    bad corpus or a capture folder of other settings is refused first), else ``None``."""
    from ..hft.capture import check_capture_dir

    manifest = check_capture_dir(_capture_dir(cfg, ctx), _capture_cfg(cfg, ctx))
    return None if manifest is not None and manifest.get("complete") else _texts(cfg)


# --------------------------------------------------------------------------- train
@dataclass
class _TrainRun:
    """What the parts of one train run share."""

    cfg: HftTrainConfig
    ctx: RunContext
    rep: Report
    sc: Any
    teacher: Any
    cap: Any
    U: Any
    lu: torch.Tensor
    start: int
    n_fit: int = 0
    ledger: Any = None  # finished student cells (OUT/cells.jsonl)
    threads: int = 1  # each student cell's pinned thread count
    stats: Any = None
    counts: dict[str, Any] = field(default_factory=dict)
    results: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)  # scored on a subsample
    seeds_res: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)
    students: dict[str, Any] = field(default_factory=dict)

    @property
    def tr(self) -> Any:
        return self.cap.train

    @property
    def he(self) -> Any:
        return self.cap.heldout

    @property
    def d(self) -> int:
        return int(self.teacher.hidden_size)


def run_train(cfg: HftTrainConfig, ctx: RunContext | None = None) -> Report:
    """Capture (unless the capture exists), fit the baselines, train the students over the
    replicate seeds, score everything on the held-out tokens and run the checks."""
    from .. import models as hmodels
    from ..hft.capture import Unembedding, start_token
    from ..hft.model import log_unigram
    from ..hft.train import StudentConfig, fit_rows, train_bf16, unembed_bf16
    from ..run import Ledger
    from ..utils import retain_freed_memory, stable_hash

    ctx = ctx or RunContext()
    dev = run_device(ctx)
    # --precision: the dense students' autocast and the vocabulary products (None: the device)
    low = {"auto": None, "float32": False, "bfloat16": True}[cfg.precision]
    sc = StudentConfig(k1=cfg.k1, k2=cfg.k2, top1=cfg.top_k, top2=cfg.top_k, lr=cfg.lr,
                       hard=cfg.hard, heads1=cfg.mix_heads, heads2=cfg.mix_heads,
                       batch_size=cfg.batch_size, stage1_epochs=cfg.stage1_epochs,
                       stage2_epochs=cfg.stage2_epochs, e2e_epochs=cfg.e2e_epochs,
                       patience=cfg.patience, min_improvement=cfg.min_improvement,
                       max_epochs=cfg.max_epochs,
                       val_share=cfg.val_share, shortlist=cfg.shortlist,
                       negatives=cfg.negatives,
                       bf16=low, fast_unembed=low)
    # resolved: the report and the keys say which
    sc = replace(sc, bf16=train_bf16(sc, dev), fast_unembed=unembed_bf16(sc, dev))
    sc.validate()
    rep = start_report("hft-train", cfg, ctx,
                       description="HyperField transformer distilled from a teacher LM.")
    texts = _texts_unless_captured(cfg, ctx)  # before the teacher: refusals come first
    rep.data["student config"] = asdict(sc)
    retain_freed_memory()  # capture, scoring and training reuse their vocabulary-wide buffers
    with rep.timer("load teacher"):
        teacher = hmodels.load(cfg.teacher, device="cpu")
    cap = _ensure_capture(cfg, ctx, teacher, rep, texts)
    if cfg.train_limit:
        cap = cap.limited(cfg.train_limit)
    n_fit = fit_rows(cap.train, sc)
    U = Unembedding.from_model(teacher)
    lu = log_unigram(torch.from_numpy(np.asarray(cap.train["target"][:n_fit]).astype(np.int64)),
                     U.vocab_size)
    run = _TrainRun(cfg, ctx, rep, sc, teacher, cap, U, lu, start_token(teacher.tokenizer))
    run.n_fit = n_fit
    run.ledger = Ledger(Path(rep.out_dir) / "cells.jsonl",
                        stable_hash(cap.config, str(cap.root), length=12), fresh=cfg.fresh)
    for ckpt in (Path(rep.out_dir) / "cells").glob("*.ckpt") if cfg.fresh else ():
        shutil.rmtree(ckpt)  # --fresh: students killed mid-training start over too
    run.threads = max(1, torch.get_num_threads())
    tmod: Any = teacher.module
    run.params["teacher"] = sum(int(p.numel()) for p in tmod.parameters())
    tr, he, fitted = run.tr, run.he, run.tr.head(n_fit)
    rep.section("Data", (
        f"Teacher {cfg.teacher}; corpus {cfg.dataset} split by text: {len(tr):,} training "
        f"and {len(he):,} held-out prediction positions ({tr.n_texts} / {he.n_texts} texts). "
        + (f"Every model fits the first {n_fit:,} training positions ({fitted.n_texts} texts); "
           f"the last {len(tr) - n_fit:,} ({tr.n_texts - fitted.n_texts} texts) are the "
           "validation slice that decides when each student stops. " if sc.plateau else
           "Fixed epochs over every training position (no validation slice). ")
        + (f"Students (and the tuned lens) train on an estimate of the KL: exact on each "
           f"batch's shortlist of the teacher's top {sc.shortlist} tokens, importance-sampled "
           f"from {sc.negatives} tokens elsewhere (the checks compare it with the full KL); "
           "validation and every held-out figure are full-vocabulary. " if sc.shortlist else "")
        + ("The MLPs and the transformer train in bfloat16 autocast (float32 weights, "
           "optimiser and loss; validation and scoring in float32); the HyperField student "
           "in float32. " if sc.bf16 else "")
        + ("Every student's frozen vocabulary products run in bfloat16 while training. "
           if sc.fast_unembed else "")
        + f"Window W = {cfg.window}, layer l = {cfg.layer}, heads {list(cfg.heads)}.")).metrics(
        {"train_tokens": len(tr), "heldout_tokens": len(he), "train_texts": tr.n_texts,
         "heldout_texts": he.n_texts, "fit_tokens": n_fit, "validation_tokens": len(tr) - n_fit,
         "vocab": U.vocab_size})
    _baselines(run)
    rep.save(final=False)  # the folder is this report's before the first student writes into it
    release_freed_memory()  # the scoring's float64 blocks: training starts without them
    for track in cfg.tracks:
        _train_track(run, track)
        rep.save(final=False)
    rows = _metrics_sections(run)
    rep.save(final=False)
    _checks_and_speed(run)
    rep.data["max_rss_mb"] = peak_rss_mb()
    rep.summary([[r[0], f"ppl {r[2]:.1f}", f"KL {r[5]:.3f}", f"agree {r[8]:.3f}"] for r in rows])
    rep.save()
    return rep


def _baselines(run: _TrainRun) -> None:
    """Uniform, unigram, Kneser-Ney, the teacher and the teacher cut to the window.

    Their held-out rows are kept in ``OUT/cells/baselines-<key>.npz`` (the key: the
    capture, the fitted rows and the held-out rows), so a resumed run reads them back
    instead of scoring the full vocabulary again; the N-grams are fitted every time (the
    mixture reads KN-5), which is quick."""
    from ..hft.evaluate import logprobs_from_final, score, score_many, subset
    from ..hft.train import aux_stats
    from ..utils import stable_hash

    he, U, V = run.he, run.U, run.U.vocab_size
    wcut = (np.asarray(he["w_weight"]) if "w_weight" in he.arrays
            else np.ones(len(he), np.float32))
    key = stable_hash({"capture": run.ledger.fingerprint, "limit": run.cap.limit or 0,
                       "n_fit": run.n_fit, "heldout": len(he), "orders": [3, 5]}, length=12)
    path = Path(run.rep.out_dir) / "cells" / f"baselines-{key}.npz"
    with run.rep.timer("baselines"):
        run.counts = count_baselines(run.lu, run.tr.head(run.n_fit), he, run.start, (3, 5))
        rows = None if run.cfg.fresh else _read_rows(path, len(he))
        if rows is None:
            rows = score_many({
                "uniform": lambda r: torch.full((r.stop - r.start, V), -np.log(V)),
                **run.counts, "teacher": logprobs_from_final(U, he)}, he, U)
            keep = np.flatnonzero(wcut > 0)
            sub = subset(he, keep)
            rc = score(logprobs_from_final(U, sub, "final_w"), sub, U)
            full = {k: np.zeros(len(he)) for k in rc}
            for k, v in rc.items():
                full[k][keep] = v
            rows["teacher, context cut to W"] = full
            _write_rows(path, rows)
        run.results |= rows
        run.weights["teacher, context cut to W"] = wcut
    run.stats = aux_stats(run.tr.head(run.n_fit))


_SEP = "\x1f"  # between a model's name and a metric's in the stored rows


def _write_rows(path: Path, rows: dict[str, dict[str, np.ndarray]]) -> None:
    """Per-model held-out rows into one ``.npz`` (atomically)."""
    from ..utils import atomic_path

    flat = {f"{m}{_SEP}{k}": v for m, r in rows.items() for k, v in r.items()}
    names = list(flat)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, names=np.array(names),
                 **{f"a{i}": flat[n] for i, n in enumerate(names)})  # type: ignore[arg-type]


def _read_rows(path: Path, n: int) -> dict[str, dict[str, np.ndarray]] | None:
    """What :func:`_write_rows` stored, or ``None`` when there is no complete file."""
    import zipfile

    try:
        with np.load(path) as z:
            flat = {str(name): z[f"a{i}"] for i, name in enumerate(z["names"])}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    rows: dict[str, dict[str, np.ndarray]] = {}
    for name, v in flat.items():
        m, k = name.split(_SEP)
        rows.setdefault(m, {})[k] = v
    return rows if all(len(v) == n for r in rows.values() for v in r.values()) else None


def _train_track(run: _TrainRun, track: str) -> None:
    """The features of one track, then its students over the replicate seeds and the
    featurisations, as cells (resumable; on the context's executor)."""
    from ..hft import cells as hc
    from ..hft.features import FeatureConfig
    from ..run import pinned_threads, run_cells

    cfg, ctx, rep = run.cfg, run.ctx, run.rep
    if track == "B":
        _lenses(run)
    plan: list[tuple[Any, list[Any], Any]] = []
    for j, kind in enumerate(cfg.features):
        fc = FeatureConfig(window=cfg.window, d_sketch=cfg.d_sketch, pca=cfg.pca, track=track,
                           exact=cfg.exact_tokens if kind == "exact" else 0, seed=ctx.seed)
        setup = hc.StudentSetup.of(cfg.teacher, run.cap.root, fc, run.sc, run.n_fit,
                                   run.cap.limit or 0, str(run_device(ctx)))
        with rep.timer(f"features {track} {kind}"), pinned_threads(run.threads):
            prep = hc.prepare(setup, run.teacher, run.cap, show_progress=ctx.progress)
        hc.register(setup, prep)
        sfx = "" if j == 0 else f" [{feature_label(kind, cfg.exact_tokens)}]"
        runs = []
        for i, seed in enumerate(cfg.seeds):
            runs.append(hc.StudentRun("hyperfield", seed, f"{track}: HyperField{sfx}",
                                      keep=i == 0 and j == 0))
            if cfg.mlp:
                runs.append(hc.StudentRun("mlp", seed, f"{track}: MLP (same parameters){sfx}"))
            if cfg.transformer and j == 0:  # reads ids: one per seed, whatever the features
                runs.append(hc.StudentRun("transformer", seed, f"{track}: transformer "
                                          "(2 layers, same parameters)"))
            if cfg.window_mlp and fc.exact:
                runs.append(hc.StudentRun("window-mlp", seed, f"{track}: window MLP (last "
                                          f"{fc.exact} tokens, unsketched){sfx}"))
        if cfg.online and track == "A" and j == 0:  # the first seed's, on the main features
            runs.append(hc.StudentRun("online", cfg.seeds[0], ONLINE))
        plan.append((setup, runs, prep))
    cells = [(c, setup, r, prep) for setup, runs, prep in plan
             for c, r in zip(hc.cells_for(setup, runs, rep.out_dir, run.threads), runs,
                             strict=True)]
    for cell, setup, r, _ in cells:  # recorded, but its files are gone: train it again
        if cell.key in run.ledger and not hc.outputs_present(rep.out_dir, setup, r):
            run.ledger.discard(cell.key)
    with rep.timer(f"train students {track}"), ctx.make_executor() as ex:
        rep.data["executor"] = ex.describe()
        run_cells([c[0] for c in cells], run.ledger, ex, desc=f"hft students {track}",
                  show_progress=ctx.progress)
    run.ledger.report_into(rep)
    for cell, setup, r, prep in cells:
        _collect(run, track, cell.key, setup, r, prep)


def _collect(run: _TrainRun, track: str, key: dict[str, Any], setup: Any, r: Any,
             prep: Any) -> None:
    """A finished student cell into the run: seed means, the first seed's held-out rows,
    history and size, and (the kept one) the model for the checks, mixture and saving."""
    from ..hft import cells as hc
    from ..hft.evaluate import score

    res = run.ledger.get(key)
    assert res is not None  # run_cells recorded every cell
    if r.model == "online":  # not a replicate: its rows, size and residual curve only
        run.results[r.name] = hc.load_metrics(run.rep.out_dir, setup, r)
        run.params[r.name] = int(res["params"])
        run.rep.timings[f"train {r.name}"] = float(res["train_seconds"])
        run.rep.data["online residual"] = res["history"]["residual"]
        return
    run.seeds_res.setdefault(r.name, []).append(res["summary"])
    # training over every sitting (cells from before it was kept: the finishing sitting's)
    run.rep.timings[f"train {r.name} seed {r.seed}"] = float(res.get("train_seconds",
                                                                     res["seconds"]))
    if r.seed != run.cfg.seeds[0]:
        return
    run.results[r.name] = hc.load_metrics(run.rep.out_dir, setup, r)
    run.params[r.name] = int(res["params"])
    run.rep.data[f"history {r.name}"] = res["history"]
    if r.model == "hyperfield":
        run.rep.data[f"reseeds {r.name}"] = res["reseeds"]
    if r.keep:
        model = hc.load_student_model(run.rep.out_dir, setup, r)
        run.students[track] = (prep.feat, model, prep.heldout, res["history"])
        if track == "A":  # complementary to counts? an untuned mixture
            X, T = prep.heldout.tensors().values()
            run.results[MIXTURE] = score(mix_fn(student_fn(model, X, T), run.counts["KN-5"]),
                                         run.he, run.U)
            run.params[MIXTURE] = run.params[r.name]


def _lenses(run: _TrainRun) -> None:
    """Track B's baselines: the logit lens and a tuned lens per replicate seed. Each lens
    checkpoints every epoch in ``cells/`` and keeps its checkpoint: a rerun resumes it, or
    restores the finished one; its training time is summed over the sittings."""
    from ..hft.evaluate import score
    from ..hft.model import TunedLens, count_parameters
    from ..hft.train import train_tuned_lens
    from ..models.arch import resolve_backbone
    from ..utils import stable_hash

    he, U = run.he, run.U
    norm: Any = resolve_backbone(run.teacher.module).final_norm
    run.results["B: logit lens"] = score(state_fn(nn.Sequential(norm, U), he), he, U)
    lens_sc = {k: v for k, v in asdict(run.sc).items() if k != "bf16"}  # the lens: float32
    lens_sc["fast_unembed"] = run.sc.fast_unembed or None  # float32 products: names as before
    lens_sc["lens target"] = "shortlist" if run.sc.shortlist else "full"
    key = stable_hash(run.cfg.teacher, str(run.cap.root), run.cap.limit or 0, lens_sc, length=8)
    for i, seed in enumerate(run.cfg.seeds):
        lens = TunedLens(run.d, norm, U)
        ckpt = Path(run.rep.out_dir) / "cells" / f"tuned-lens--seed{seed}--{key}.ckpt"
        lh = train_tuned_lens(lens, run.tr, U, run.sc, seed=seed, log_prior=run.lu,
                              show_progress=run.ctx.progress, checkpoint_dir=ckpt)
        run.rep.timings[f"train tuned lens seed {seed}"] = lh.pop("seconds")
        r_ = score(state_fn(lens, he), he, U)
        run.seeds_res.setdefault("B: tuned lens", []).append(seed_means(r_))
        if i == 0:
            run.results["B: tuned lens"] = r_
            run.params["B: tuned lens"] = count_parameters(lens)
            run.rep.data["history B: tuned lens"] = lh


def _metrics_sections(run: _TrainRun) -> list[list[Any]]:
    """The held-out metrics, the across-seed table and the targets; returns the rows."""
    from ..functional.stats import t_interval
    from ..hft.evaluate import summarise

    cfg, rep, results = run.cfg, run.rep, run.results
    text = np.asarray(run.he["text"])
    summ = {k: summarise(v, text, n_boot=cfg.n_boot, seed=run.ctx.seed,
                         weights=run.weights.get(k))
            for k, v in results.items()}
    cols, rows = metric_table(summ, run.params)
    sec = rep.section("Held-out metrics", (
        "Full-vocabulary metrics on the same held-out tokens, first replicate seed for trained "
        "models; 95 % percentile-bootstrap intervals over held-out texts. KL is "
        "KL(teacher || model) in nats per token; agree is top-1 agreement with the teacher. "
        "The teacher cut to W runs one forward per window, so it is scored on a seeded "
        f"{cfg.cut_fraction:.0%} of the rows past the window (all rows inside it), weighted by "
        "inverse inclusion probability."))
    sec.table("Held-out metrics (seed 0)", cols, rows)
    seed_rows = []
    for k, lst in run.seeds_res.items():
        row = [k, len(lst)]
        for m in ("ppl", "kl", "agree"):
            row += est_row(t_interval([x[m] for x in lst]))
        seed_rows.append(row)
    sec.table("Across seeds (mean, 95 % t interval)",
              ["model", "seeds", "ppl", "lo", "hi", "KL", "lo", "hi", "agree", "lo", "hi"],
              seed_rows)
    sec.plot("ppl.png", ppl_plot(summ))
    if len(cfg.features) > 1:
        labels = [feature_label(k, cfg.exact_tokens) for k in cfg.features]
        rep.section("Featurisation ablation", (
            "Each student trained on each Stage-1 input with the same seeds, data and "
            "schedule. ppl: seed 0 with its 95 % interval over held-out texts; mean: over the "
            "seeds; ratio: perplexity against the main featurisation (first row of each "
            "student), paired bootstrap over texts; below 1 means better.")).table(
            "Featurisation ablation", ["student", "features", "ppl", "lo", "hi", "seeds",
                                       "mean ppl", "ratio", "lo", "hi"],
            ablation_rows(summ, results, text, run.seeds_res, labels))
    curves_section(rep, {k[len("history "):]: v for k, v in rep.data.items()
                         if k.startswith("history ")}, run.sc.min_improvement)
    targets = target_rows(summ, results, text)
    rep.section("Targets", (
        "Each target with its paired 95 % interval over held-out texts. detectable: the "
        "smallest relative change of the ratio (of the agreement: the smallest difference) "
        "the comparison finds with probability 0.8, over texts only (one seed's students; "
        "seed-to-seed variation is not in it).")).table(
        "Issue targets", ["target", "value", "lo", "hi", "detectable", "met"], targets)
    rep.data["summary"] = {k: {m: e.as_dict() for m, e in v.items()} for k, v in summ.items()}
    rep.data["seeds"] = run.seeds_res
    rep.data["parameters"] = run.params
    return rows


def _checks_and_speed(run: _TrainRun) -> None:
    """The seed's information-flow checks and the throughput, per trained track."""
    from ..hft import checks
    from ..hft.generate import Student, save_student

    cfg, ctx, rep, tr, he, U = run.cfg, run.ctx, run.rep, run.tr, run.he, run.U
    for track, (feat, model, fhe, _hist) in run.students.items():
        release_freed_memory()  # what scoring and training left in the heap
        st = Student(feat, model)
        X, T = fhe.tensors().values()
        rows_ = slice(0, min(1024, len(he)))
        with rep.timer(f"checks {track}"):
            res = {
                "token ablation": checks.token_ablation(st, he, seed=ctx.seed),
                "position shuffle": checks.position_shuffle(st, he, seed=ctx.seed),
                # Track B reads teacher states, which a token stream alone does not give
                "beyond window": (checks.beyond_window(st, U.vocab_size, run.start,
                                                       seed=ctx.seed)
                                  if track == "A" else {"max_abs_logprob_diff": None}),
                "hash collisions": checks.hash_collisions(
                    st, tr, he, run.results[f"{track}: HyperField"]["kl"]),
                "stage-1 reconstruction": checks.stage1_reconstruction(
                    model, X[rows_].float(), he, run.stats, run.d, len(cfg.heads),
                    int(run.cap.manifest["head_dim"]), rows_),
                "tail toggle": checks.tail_toggle(model, X[rows_].float(), T[rows_].float(),
                                                  he.tensor("final", rows_), U),
                "cached vs fresh": checks.cached_vs_fresh(st, X[:256], T[:256], he,
                                                          slice(0, 256)),
            }
            if run.sc.shortlist:
                res["shortlist target"] = checks.shortlist_target(
                    model, X[rows_], T[rows_], he, rows_, U, run.lu, run.sc.shortlist,
                    run.sc.negatives)
        release_freed_memory()
        with rep.timer(f"speed {track}"):
            res["throughput"] = checks.throughput(st, run.teacher, he)
        checks_section(rep, track, res, run.params.get(f"{track}: HyperField", 0),
                        run.params["teacher"])
        rep.data[f"checks {track}"] = res
        if track == "A":
            save_student(Path(rep.out_dir) / "student", feat, model,
                         {"teacher": cfg.teacher, "capture": str(run.cap.root),
                          "student": asdict(run.sc),
                          "d_aux": int(run.stats["mean"].numel()), "d_model": run.d,
                          "capture_config": run.cap.config})
        rep.save(final=False)


def run_capture(cfg: CaptureOptions, ctx: RunContext | None = None) -> Report:
    """Run the teacher over the corpus and store the capture (kept if it exists)."""
    from .. import models as hmodels

    ctx = ctx or RunContext()
    dev = run_device(ctx)
    rep = start_report("hft-capture", cfg, ctx)
    texts = _texts_unless_captured(cfg, ctx)
    teacher = hmodels.load(cfg.teacher, device=dev)
    cap = _ensure_capture(cfg, ctx, teacher, rep, texts)
    rep.section("Capture").metrics({"folder": str(cap.root), "train": len(cap.train),
                                    "heldout": len(cap.heldout)})
    rep.summary([["capture", str(cap.root)], ["train positions", len(cap.train)],
                 ["held-out positions", len(cap.heldout)]])
    rep.save()
    return rep


def tour_section(report: Report, *, seed: int = 0, device: str = "cpu") -> None:
    """A small HyperField run for the tour: rotten-tomatoes, 4,000 / 1,000 positions, Track
    A, one seed, a small student trained to a plateau of at most 4 epochs a phase, no MLPs or
    online variant (about a minute on 2 cores).
    It runs on the CPU whatever ``device`` the tour's other sections use."""
    sub = Path(report.out_dir) / "hft"
    cfg = HftTrainConfig(  # every option the tour leaves alone keeps the CLI's default
        dataset="rotten-tomatoes", train_tokens=4000, heldout_tokens=1000,
        capture_dir=Path(report.out_dir) / "hft-capture", seeds=(seed,), k1=128, k2=256,
        d_sketch=1024, patience=1, max_epochs=4, online=False, mlp=False, window_mlp=False,
        n_boot=200)
    # the tour's small run stays on the CPU whatever the tour's device: its report records
    # the CPU
    res = run_train(cfg, RunContext(seed=seed, device="cpu", progress=False, out=sub))
    rows = []
    for s in res.sections:
        for t in s.tables:
            if t["title"] == "Held-out metrics (seed 0)":
                rows = [[r[0], r[2], r[5], r[8]] for r in t["rows"]]
    report.section("HyperField transformer (small)", (
        "SmolLM2 distilled into a two-stage HyperTensor mixture on rotten-tomatoes "
        "(4,000 training / 1,000 held-out positions, one seed); the full experiment is "
        f"`hyperlens hft train`. Full report: {sub}.")).table(
        "Held-out", ["model", "ppl", "KL", "agree"], rows)


COMMANDS = (
    Command("hft capture", "run the teacher over a corpus and store the capture",
            CaptureOptions, run_capture, group_help=HELP),
    Command("hft train", "capture if needed, then train and score the students and baselines",
            HftTrainConfig, run_train, description=__doc__ or ""),
)
