"""The arms of a semantic header study: cached LM states (stage A), headers trained through
the frozen LM (stage B), and the run state they share.

:class:`HeaderRun` loads the LM and the sentence encoder, encodes the texts, builds the
prompts and the :class:`~hyperlens.inject.prefix_cache.PrefixCache` (each prefix's keys and
values once, on disk), and keeps finished (arm, seed) cells in a
:class:`~hyperlens.run.Ledger`. :func:`stage_a` fits the classifier head, the linear probes
and the zero-shot answers on cached states; :func:`stage_b` trains each header arm with
:func:`hyperlens.train.fit`. Everything chosen (C of the probes, the head's epoch,
checkpoints, the header learning rate) is chosen on the held-out slice of the training
split; the evaluation texts are only predicted.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..align.evaluate import select_probe
from ..errors import ConfigError, InputError
from ..report import Report
from ..run import Cell, Executor, Ledger, Resources, Task, pinned_threads, run_cells
from ..train import step_generator
from ..utils import cache_dir, derive_seed, make_generator, stable_hash
from .header_task import (
    ABLATED,
    ARMS_B,
    FROM_RECON,
    FULL_DEPTH,
    LR_FAMILIES,
    PROMPTS,
    HeaderProtocol,
    load_split,
    verbalizer_words,
)
from .header_train import _torch_seeded, train_loop

__all__ = ["Head", "train_loop", "HeaderRun", "stage_a", "stage_r", "arms_a", "HeaderArm", "arm_b",
           "choose_lrs", "stage_b", "header_cell", "release"]


# --------------------------------------------------------------------------- small models
class Head(nn.Module):
    """The original classifier: standardise, Linear(d, 256), GELU, dropout, Linear(256, C)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float().clamp_min(1e-6))
        self.net = nn.Sequential(nn.Linear(mean.numel(), 256), nn.GELU(), nn.Dropout(0.1),
                                 nn.Linear(256, n_classes))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net((h - self.mean) / self.std)


# --------------------------------------------------------------------------- the run
class HeaderRun:
    """State shared by the arms: split, features, the prefix cache, finished cells.

    ``report`` receives the timings and what the run records about its inputs; finished
    cells go to ``out/cells.jsonl`` (``fresh=True``: earlier ones are ignored).
    """

    def __init__(self, p: HeaderProtocol, out: Path, report: Report, *,
                 fresh: bool = False) -> None:
        self.p, self.out, self.rep, self.fresh = p, Path(out), report, fresh
        self.split = load_split(p)
        self.words = verbalizer_words(p, self.split.label_names)
        self.n_classes = len(self.split.label_names)
        self.y = torch.from_numpy(self.split.labels)
        self.correct: dict[str, dict[int, np.ndarray]] = {}
        self.curves: dict[str, dict[str, Any]] = {}
        self.lrs: dict[str, float] = {}
        self.lr_search: dict[str, Any] = {}
        self.recon: dict[int, dict[str, Any]] = {}  # stage R results by replicate seed

    # ------------------------------------------------------------------ heavy inputs
    def load_models(self) -> None:
        """Load the frozen LM, resolve the insert layer, open the ledger, check the words."""
        from .. import models as hmodels
        from .header import check_lm

        p = self.p
        with self.rep.timer("load models"):
            self.lm: Any = hmodels.load(p.model, device=p.device, dtype=p.dtype)
        if self.lm.kind != "decoder" or self.lm.module is None:
            raise InputError(f"--model {p.model!r} is a {self.lm.kind} model; the header "
                             "needs a causal LM (decoder) with input embeddings.")
        self.d_model = check_lm(self.lm.module)
        lm_config: Any = self.lm.module.config
        n_layers = int(lm_config.num_hidden_layers)
        layer = round(2 * n_layers / 3) if p.insert_layer is None else p.insert_layer
        if layer >= n_layers:
            raise ConfigError(f"--insert-layer {layer} is past the last block of "
                              f"{p.model} ({n_layers} blocks: 0..{n_layers - 1}).")
        self.layer: int = layer
        resolved = dataclasses.replace(p, insert_layer=layer)
        self.store = Ledger(self.out / "cells.jsonl", resolved.fingerprint(), fresh=self.fresh)
        if self.fresh:  # cells killed mid-training start over too
            shutil.rmtree(self.out / "checkpoints", ignore_errors=True)
        tok = self.lm.tokenizer
        self.verb_ids = []
        for w in self.words:
            ids = tok(w, add_special_tokens=False)["input_ids"]
            if len(ids) != 1:
                raise ConfigError(f"verbaliser word {w!r} is {len(ids)} tokens for {p.model}; "
                                  "each answer word must be one token (pass --verbalizer).")
            self.verb_ids.append(ids[0])
        for prm in self.lm.module.parameters():
            prm.requires_grad_(False)
        self.lm.module.eval()

    def features(self) -> None:
        """The sentence encoder's mean-pooled vectors of every text (``[N, d_enc]``)."""
        from .. import models as hmodels

        with self.rep.timer("embed minilm"):
            enc = hmodels.load(self.p.encoder, device=self.p.device)
            self.minilm = np.asarray(hmodels.embed(self.split.texts, enc, pooling="mean",
                                                   cache=True), dtype=np.float32)
        self._codes: dict[int, torch.Tensor] = {}

    def hdc_codes(self, seed: int) -> torch.Tensor:
        """Ternary codes ``[N, hdc_dim]`` int8; projection drawn from ``seed``, fitted on train."""
        from ..hdc import TernaryEncoder

        if seed not in self._codes:
            enc = TernaryEncoder(dim=self.p.hdc_dim, threshold="quantile",
                                 sparsity=self.p.sparsity, seed=seed)
            enc.fit(self.minilm[self.split.rows["train"]])
            out = enc.transform(self.minilm)
            assert isinstance(out, torch.Tensor)
            self._codes[seed] = out
        return self._codes[seed]

    def prompts(self, withheld: bool | None = None) -> tuple[list[list[int]], list[int]]:
        """Token ids of every prompt's prefix (up to the header) and of the answer cue; with
        the text withheld (``p.text``, or ``withheld``) every prefix is the instruction
        alone, so the header sits where the text would be."""
        tmpl, cue, _ = PROMPTS.get(self.p.dataset, PROMPTS["sst2"])
        tok = self.lm.tokenizer
        head, tail = tmpl.split("{text}")
        h_ids = tok(head, add_special_tokens=True)["input_ids"]
        t_ids = tok(tail, add_special_tokens=False)["input_ids"] if tail else []
        if self.p.withheld if withheld is None else withheld:
            body: list[list[int]] = [[] for _ in self.split.texts]
        else:
            body = tok(self.split.texts, add_special_tokens=False, truncation=True,
                       max_length=self.p.max_tokens)["input_ids"]
        return [h_ids + b + t_ids for b in body], tok(cue, add_special_tokens=False)["input_ids"]

    def prefix_cache(self) -> Any:
        """The prompts' prefix keys and values below and at the insert layer, kept on disk;
        with the text withheld also :meth:`full_text` (the upper bound, and the states that
        scale the heads)."""
        from .prefix_cache import PrefixCache

        p = self.p
        prefix, cue = self.prompts()
        self.prefix_ids, self.cue_ids = prefix, cue
        layer = self.layer
        key = stable_hash(self.lm.identity(), prefix, cue, self.verb_ids, layer, p.kv_dtype,
                          length=24)
        path = cache_dir("header") / f"prefix-{key}.safetensors"
        dtype = getattr(torch, p.kv_dtype)
        reused = path.exists()
        with self.rep.timer("prefix cache (read)" if reused else "prefix cache (built)"):
            if reused:
                pc = PrefixCache.load(path, self.lm.module, cue, self.verb_ids, layer=layer)
            else:
                pc = PrefixCache(self.lm.module, prefix, cue, self.verb_ids, kv_dtype=dtype,
                                 layer=layer, extra_tokens=p.k)
                pc.save(path)
        self.rep.data["prefix_cache"] = {
            "file": str(path), "MB": pc.nbytes / 1e6, "prefix_tokens": int(pc.lengths.sum()),
            "suffix_tokens_per_text": p.k + len(cue), "insert_layer": layer, "text": p.text}
        self.pc = pc
        if p.withheld:
            self.full_states, self.full_logits = self.full_text()
        else:
            self.full_states, self.full_logits = pc.states[-1], pc.verb_logits
        return pc

    @torch.no_grad()
    def full_text(self, batch_size: int = 32, part_batches: int = 32
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """The LM's final state at the answer cue of every prompt *with* its text ``[N, d]``
        and its verbaliser logits there ``[N, C]`` (one plain forward per prompt, no header;
        kept on disk).

        Prompts run shortest first, ``batch_size`` at a time; every ``part_batches`` batches
        are saved as a part, so a run killed during this pass (hours for AG News on one
        core) resumes at its first missing part, to the same states: the batches are the
        same whichever parts were already on disk."""
        import shutil

        from ..utils import load_safetensors, progress, save_safetensors
        from .prefix_cache import backbone_of

        prefix, cue = self.prompts(withheld=False)
        seqs = [ids + cue for ids in prefix]
        key = stable_hash(self.lm.identity(), seqs, self.verb_ids, length=24)
        path = cache_dir("header") / f"fulltext-{key}.safetensors"
        fix = "delete it; the next run computes it again"
        if path.exists():
            with self.rep.timer("full-text states (read)"):
                t, _ = load_safetensors(path, what="full-text states", fix=fix)
            return t["states"], t["verb_logits"]
        stack, dev = backbone_of(self.lm.module), self.pc.device
        pad = int(self.lm.tokenizer.pad_token_id or 0)
        states = torch.empty(len(seqs), self.d_model)
        order = np.argsort([len(q) for q in seqs])
        parts = path.with_suffix(".parts")
        block = batch_size * part_batches
        starts = range(0, len(seqs), block)
        with self.rep.timer("full-text states (built)"):
            for n, a in enumerate(progress(starts, total=len(starts), desc="full-text states",
                                           unit="part")):
                block_rows = torch.from_numpy(order[a: a + block])
                part = parts / f"{n:05d}.safetensors"
                if part.exists():
                    t, _ = load_safetensors(part, what="a part of the full-text states", fix=fix)
                    if tuple(t["states"].shape) == (len(block_rows), self.d_model):
                        states[block_rows] = t["states"]
                        continue
                for i in range(a, min(a + block, len(seqs)), batch_size):
                    rows = order[i: i + batch_size]
                    width = max(len(seqs[j]) for j in rows)
                    ids = torch.full((len(rows), width), pad, dtype=torch.long)
                    mask = torch.zeros(len(rows), width, dtype=torch.long)
                    for b, j in enumerate(rows):
                        ids[b, : len(seqs[j])] = torch.tensor(seqs[j])
                        mask[b, : len(seqs[j])] = 1
                    hid = stack(input_ids=ids.to(dev), attention_mask=mask.to(dev))[0]
                    last = hid[torch.arange(len(rows)), mask.sum(1).to(dev) - 1]
                    states[torch.from_numpy(rows)] = last.float().cpu()
                save_safetensors(part, {"states": states[block_rows]})
            logits = self.pc.label_logits(states.to(dev)).float().cpu()
        save_safetensors(path, {"states": states, "verb_logits": logits},
                         {"what": "full-text states"})
        shutil.rmtree(parts, ignore_errors=True)
        return states, logits

    # ------------------------------------------------------------------ cells
    def baseline_head_path(self, seed: int) -> Path:
        return self.out / f"baseline-head-seed{seed}.safetensors"

    def record(self, pred: np.ndarray, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """A cell's result: which evaluation texts ``pred`` gets right, plus ``extra``."""
        y = self.split.labels[self.split.rows["eval"]]
        c = (np.asarray(pred) == y)
        return {"correct": c.astype(int).tolist(), **(extra or {})}

    def checkpoint_dir(self, arm: str, seed: int, lr: float) -> Path:
        """Where the training of cell (arm, seed) at ``lr`` checkpoints as it goes (every
        evaluation): a cell killed mid-training resumes there; removed once it has finished.
        The protocol's hash in the name keeps another study's checkpoints apart."""
        tag = self.store.fingerprint[:12]
        return self.out / "checkpoints" / f"{tag}-{arm}-seed{seed}-lr{lr:g}"

    def cell_key(self, arm: str, seed: int) -> dict[str, Any]:
        """The ledger key of the cell (arm, seed); a full-depth arm's also names the size of
        its training subset."""
        key: dict[str, Any] = {"arm": arm, "seed": seed}
        if arm in FULL_DEPTH:
            key["texts"] = self.p.prefix_texts
        return key

    def collect(self, arm: str, seed: int) -> None:
        """Keep the answers (and training curve) of the finished cell (arm, seed)."""
        done = self.store.get(self.cell_key(arm, seed))
        if done is None:
            raise InputError(f"the header cell ({arm}, seed {seed}) has not run.")
        self.correct.setdefault(arm, {})[seed] = np.asarray(done["correct"], dtype=bool)
        if "curve" in done:
            self.curves.setdefault(arm, {})[str(seed)] = done["curve"]

    def run_cells(self, specs: list[tuple[dict[str, Any], float | None, bool]],
                  executor: Executor | None, desc: str) -> None:
        """Compute the cells ``(key, lr, search)`` missing from the ledger with ``executor``.

        Each cell is :func:`header_cell`: in this process it reuses this run's models and
        cache; on a Ray worker it prepares the run once per process (models, features, the
        prefix cache from disk). Every cell runs on this process's thread count."""
        threads = max(1, torch.get_num_threads())
        res = Resources.for_device(self.p.device, num_cpus=threads)
        cells = [Cell(key, Task(header_cell, {
            "p": self.p, "out": str(self.out), "arm": key["arm"].removeprefix("lr-search:"),
            "seed": key["seed"], "lr": lr, "search": search, "threads": threads}, res))
            for key, lr, search in specs]
        run_cells(cells, self.store, executor, desc=desc, show_progress=None)


#: prepared runs of this process, by (protocol, folder): a Ray worker prepares one once
_RUNS: dict[tuple[str, str], HeaderRun] = {}


def _run_key(p: HeaderProtocol, out: Path | str) -> tuple[str, str]:
    return stable_hash(dataclasses.asdict(p), length=20), str(Path(out))


def release(run: HeaderRun) -> None:
    """Forget ``run`` in this process's cache of prepared runs (its models can be freed)."""
    _RUNS.pop(_run_key(run.p, run.out), None)


def header_cell(p: HeaderProtocol, out: str, arm: str, seed: int, lr: float | None,
                search: bool, threads: int) -> dict[str, Any]:
    """One (arm, seed) cell of the study (``search``: a learning-rate trial of ``arm``)."""
    key = _run_key(p, out)
    run = _RUNS.get(key)
    if run is None:  # a worker process: prepare once (the prefix cache is read from disk)
        run = prepare(p, Path(out), Report("header", out_dir=out))
    with pinned_threads(threads), run.rep.timer(f"arm:{arm}"):
        return _compute(run, arm, seed, lr, search)


def _compute(run: HeaderRun, arm: str, seed: int, lr: float | None,
             search: bool) -> dict[str, Any]:
    """What the arm ``arm`` answers under ``seed`` (stage B arms train at ``lr``)."""
    pc, r, y = run.pc, run.split.rows, run.split.labels
    if arm == "recon":
        from .header_recon import recon_arm

        return recon_arm(run, seed, run.p.lr if lr is None else lr)
    if search or arm in ARMS_B:
        assert lr is not None
        return arm_b(run, arm, seed, lr, search=search)
    last = pc.states[-1].numpy()
    if arm == "notext":  # no text reaches the LM: its calibrated answer is the class prior
        major = np.bincount(y[r["train"]], minlength=run.n_classes).argmax()
        return run.record(np.full(len(r["eval"]), major))
    if arm == "fulltext":
        return _head_arm(run, run.full_states.numpy(), seed)
    if arm == "fulltext-zs":
        return run.record(*select_probe(run.full_logits.numpy(), y, r, Cs=(1.0, 100.0)))
    if arm == "baseline":
        return _head_arm(run, last, seed, run.baseline_head_path(seed))
    if arm == "fusion":
        return _head_arm(run, np.concatenate([last, run.minilm], axis=1), seed)
    if arm == "hdc-logistic":
        return run.record(*select_probe(run.hdc_codes(seed).float().numpy(), y, r))
    if arm == "logistic":
        return run.record(*select_probe(last, y, r))
    if arm == "minilm":
        return run.record(*select_probe(run.minilm, y, r))
    zs = pc.verb_logits.numpy()
    if arm == "zeroshot":
        return run.record(zs[r["eval"]].argmax(1))
    if arm == "zeroshot-cal":  # a logistic map of the verbaliser logits, fitted on training
        return run.record(*select_probe(zs, y, r, Cs=(1.0, 100.0)))
    if arm == "best-layer":
        return _layer_probes(run)
    raise ConfigError(f"unknown header arm {arm!r}.")


def prepare(p: HeaderProtocol, out: Path, report: Report, *, fresh: bool = False
            ) -> HeaderRun:
    """A :class:`HeaderRun` with its models, features and prefix cache ready."""
    run = HeaderRun(p, out, report, fresh=fresh)
    run.load_models()
    run.features()
    run.prefix_cache()
    _RUNS[_run_key(p, out)] = run
    return run


# --------------------------------------------------------------------------- stage A
def _head_arm(run: HeaderRun, x: np.ndarray, seed: int, save: Path | None = None
              ) -> dict[str, Any]:
    """The classifier head on features ``x`` ``[N, d]``, 40 epochs, best epoch on val."""
    r, y = run.split.rows, run.split.labels
    ytr = torch.from_numpy(y[r["train"]])
    xt = torch.from_numpy(x).float()
    with _torch_seeded(seed):
        head = Head(xt[r["train"]].mean(0), xt[r["train"]].std(0), run.n_classes)
    xtr, xva = xt[r["train"]], xt[r["val"]]

    def loss_fn(rows: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(head(xtr[rows]), ytr[rows])

    def val() -> float:
        with torch.no_grad():
            return float((head(xva).argmax(1).numpy() == y[r["val"]]).mean())

    n = len(r["train"])
    steps = 40 * math.ceil(n / run.p.batch_size)  # 40 epochs; the best on val is kept
    hist = train_loop(head, loss_fn, n, lr=run.p.head_lr, param_lr={}, steps=steps,
                      batch_size=run.p.batch_size, seed=seed, eval_fn=val,
                      eval_every=math.ceil(n / run.p.batch_size))
    with torch.no_grad():
        pred = head(xt[r["eval"]]).argmax(1).numpy()
    if save is not None:  # the baseline head warm-starts the head of the stage B arms
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(save))
    return run.record(pred, {"best_step": hist.get("best_step"),
                             "val_acc": hist["best_val_acc"]})


def _layer_probes(run: HeaderRun) -> dict[str, Any]:
    """A logistic probe per layer of the prompt's last state; the best one on val."""
    pc, y, r = run.pc, run.split.labels, run.split.rows
    val_acc, ev_acc, preds = [], [], []
    for li in range(pc.states.shape[0]):
        pred, info = select_probe(pc.states[li].numpy(), y, r, Cs=(0.1,))
        val_acc.append(info["val_acc"])
        ev_acc.append(float((pred == y[r["eval"]]).mean()))
        preds.append(pred)
    best = int(np.argmax(val_acc))
    return run.record(preds[best], {"best_layer": best, "val_acc": val_acc,
                                    "eval_acc": ev_acc})


_ARMS_A_PER_SEED = ("baseline", "fusion", "hdc-logistic")
_ARMS_A_ONCE = ("logistic", "minilm", "zeroshot", "zeroshot-cal", "best-layer")
#: with the text withheld the LM's state is the same for every text, so the arms that read
#: it give way to the floor (no text), the upper bound (the text in the prompt) and the
#: code's own ceilings
_WITHHELD_PER_SEED = ("fulltext", "hdc-logistic")
_WITHHELD_ONCE = ("notext", "zeroshot", "fulltext-zs", "minilm")


def arms_a(p: HeaderProtocol) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Stage A's arms ``(per replicate seed, once)`` for ``p``'s placement of the text."""
    return ((_WITHHELD_PER_SEED, _WITHHELD_ONCE) if p.withheld
            else (_ARMS_A_PER_SEED, _ARMS_A_ONCE))


def stage_a(run: HeaderRun, executor: Executor | None = None) -> None:
    """The cached arms: heads and probes on the LM's states, MiniLM, HDC, zero-shot."""
    p = run.p
    per_seed, once = arms_a(p)
    for seed in p.seeds:
        if not run.baseline_head_path(seed).exists():  # stage B warm-starts from the file
            run.store.cells.pop(run.store.cell_id({"arm": "baseline", "seed": seed}), None)
    s0 = p.seeds[0]
    keys: list[dict[str, Any]] = (
        [{"arm": a, "seed": s} for s in p.seeds for a in per_seed]
        + [{"arm": a, "seed": s0} for a in once])
    run.run_cells([(k, None, False) for k in keys], executor, "header stage A")
    for k in keys:
        run.collect(k["arm"], k["seed"])
    for arm in once:
        for seed in p.seeds[1:]:  # deterministic arms: the same answers under every seed
            run.correct[arm][seed] = run.correct[arm][s0]


# --------------------------------------------------------------------------- stage B
def codes_for(run: HeaderRun, arm: str, seed: int) -> torch.Tensor | None:
    """Per-text inputs of an arm's header ``[N, D]`` (None for input-independent prompts).

    The shuffled and random arms draw from the replicate ``seed``'s ``"codes"`` stream.
    """
    gen = make_generator(derive_seed(seed, "codes"))
    if arm in ("hdc", "hdc-frozen", "lm-hdc", "hdc-recon"):
        return run.hdc_codes(seed)
    if arm == "float":
        return torch.from_numpy(run.minilm)
    if arm == "shuffled":
        codes = run.hdc_codes(seed)
        perm = torch.arange(codes.shape[0])
        for rows in run.split.rows.values():  # permute within each part of the split
            t = torch.from_numpy(rows)
            perm[t] = t[torch.randperm(t.numel(), generator=gen)]
        return codes[perm]
    if arm == "random":
        n, d = run.hdc_codes(seed).shape
        nz = int(round((1 - run.p.sparsity) * d))
        out = torch.zeros(n, d, dtype=torch.int8)
        idx = torch.rand(n, d, generator=gen).argsort(dim=1)[:, :nz]
        sign = torch.randint(0, 2, (n, nz), generator=gen, dtype=torch.int8) * 2 - 1
        out.scatter_(1, idx, sign)
        return out
    return None


class HeaderArm(nn.Module):
    """Header (or static prompt) + head, or the LM's verbaliser logits.

    Its parameters are initialised from the replicate ``seed`` (torch's default generator
    is seeded for the construction only and restored after).
    """

    def __init__(self, run: HeaderRun, arm: str, seed: int) -> None:
        super().__init__()
        with _torch_seeded(seed):  # built on the CPU, so every device starts the same
            self._build(run, arm, seed)
        self.to(run.pc.device)

    def _build(self, run: HeaderRun, arm: str, seed: int) -> None:
        from .header import HeaderConfig, SemanticHeader, embedding_norm

        p, pc = run.p, run.pc
        self.run_, self.arm = run, arm
        self.codes = codes_for(run, arm, seed)
        self.lm_side = arm.startswith("lm-")
        variant = {"prompt": "static", "lm-static": "static", "lm-hdc": "gated"}.get(
            arm, p.variant)
        width = 1 if self.codes is None else int(self.codes.shape[1])
        train_rows = torch.from_numpy(run.split.rows["train"])
        if run.layer > 0:
            ref = pc.cue_states[train_rows]  # [n, c, d] residual stream at the insert layer
        else:
            emb = run.lm.module.get_input_embeddings()
            with torch.no_grad():
                ref = emb(pc.cue.to(pc.device))[None].float().cpu()
        # through the embedding module at layer 0, so a scaled embedding (Gemma 3) is matched
        norm = (float(ref.norm(dim=-1).mean()) if run.layer > 0 else
                embedding_norm(run.lm.module, pc.cue))
        hc = HeaderConfig(code_dim=width, d_model=run.d_model, k=p.k, variant=variant,
                          placement="cue", cue_len=len(run.cue_ids), target_norm=norm,
                          code_kind="float" if arm == "float" else "ternary")
        self.header = SemanticHeader(hc)
        if variant in ("static", "gated"):
            base = ref.mean(0)  # the cue's own vectors, cycled to k
            self.header.init_prompt(base[torch.arange(p.k) % base.shape[0]])
        # the head's standardisation: the LM's states over the training texts (with the text
        # withheld those are one state, so the states of the prompts with the text set it)
        scale = run.full_states[train_rows]
        self.head = None if self.lm_side else Head(scale.mean(0), scale.std(0), run.n_classes)
        warm = run.baseline_head_path(seed)
        if self.head is not None and warm.exists() and not p.withheld:  # the baseline head
            from safetensors.torch import load_file

            self.head.load_state_dict(load_file(str(warm)))
        if arm in FROM_RECON:  # the projector stage R trained on the same seed's codes
            assert self.header.net is not None  # a projector header has its net
            self.header.net.load_state_dict(recon_weights(run, seed))
        if arm == "hdc-frozen":  # only the header trains: the head stays the baseline's
            if self.head is None or not warm.exists():
                raise InputError(f"the hdc-frozen arm keeps the baseline head, but "
                                 f"{str(warm)!r} is missing; run stage A first (--stages A B).")
            self.head.requires_grad_(False)

    def forward(self, rows: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        codes = self.codes if codes is None else codes
        n = rows.numel()
        x = None if codes is None else codes[rows].to(self.run_.pc.device)
        x = self._dropped(x)
        pseudo = self.header(n if x is None else x)
        h = self.run_.pc.suffix_forward(rows, pseudo)
        if self.head is not None:
            return self.head(h)
        return self.run_.pc.label_logits(h)

    def _dropped(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """``x`` with inverted dropout over code entries while training (``code_dropout``),
        drawn from the training loop's generator."""
        drop = self.run_.p.code_dropout
        if x is None or not self.training or drop <= 0:
            return x
        keep = torch.rand(x.shape, generator=step_generator()) >= drop
        return x.float() * keep.to(x.device) / (1.0 - drop)

    def predict(self, rows: np.ndarray, codes: torch.Tensor | None = None,
                batch: int = 64) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(rows), batch):
                out.append(self(torch.from_numpy(rows[i: i + batch]), codes).argmax(1).cpu())
        return torch.cat(out).numpy()


class PrefixArm(HeaderArm):
    """The seed's full-depth header: the HDC code's ``k`` pseudo-tokens before the prompt's
    first token at the input embeddings (``placement="prefix"``), the whole prompt and answer
    cue through the frozen LM on every step (nothing before the header can be cached), and
    a head on the LM's final state at the cue, standardised as the other heads are."""

    def _build(self, run: HeaderRun, arm: str, seed: int) -> None:
        from .header import HeaderConfig, SemanticHeader, embedding_norm

        self.run_, self.arm, self.lm_side = run, arm, False
        self.codes = run.hdc_codes(seed)
        hc = HeaderConfig(code_dim=int(self.codes.shape[1]), d_model=run.d_model, k=run.p.k,
                          variant=run.p.variant, placement="prefix",
                          target_norm=embedding_norm(run.lm.module, run.pc.cue))
        self.header = SemanticHeader(hc)
        scale = run.full_states[torch.from_numpy(run.split.rows["train"])]
        self.head = Head(scale.mean(0), scale.std(0), run.n_classes)
        self.seqs = [list(ids) + list(run.cue_ids) for ids in run.prefix_ids]
        self.pad = int(run.lm.tokenizer.pad_token_id or 0)

    def inputs(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Input ids and attention mask of training rows ``rows``, left-padded so every row
        ends at its answer cue ``[B, T]``."""
        seqs = [self.seqs[int(i)] for i in rows]
        width = max(len(q) for q in seqs)
        ids = torch.full((len(seqs), width), self.pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for b, q in enumerate(seqs):
            ids[b, width - len(q):] = torch.tensor(q)
            mask[b, width - len(q):] = 1
        return ids, mask

    def forward(self, rows: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        from .base import attach

        codes = self.codes if codes is None else codes
        assert codes is not None
        ids, mask = self.inputs(rows)
        dev = self.run_.pc.device
        x = self._dropped(codes[rows].to(dev))
        # the decoder stack without the LM head: only its final state is read (the head of
        # a causal LM over the last position alone multiplies a strided row batch, which
        # PyTorch serves by copying the whole vocabulary matrix once per row)
        with attach(self.run_.lm, self.header), self.header.use_codes(x):
            out = self.run_.pc.stack(input_ids=ids.to(dev), attention_mask=mask.to(dev))
        assert self.head is not None
        return self.head(out.last_hidden_state[:, -1].float())


def recon_weights(run: HeaderRun, seed: int) -> dict[str, torch.Tensor]:
    """The projector weights (``net.*``) of stage R's header of ``seed``."""
    from ..utils import load_safetensors
    from .header_recon import recon_header_path

    path = recon_header_path(run.out, seed)
    if not path.is_file():
        raise InputError(f"the hdc-recon arm starts from stage R's header, but {str(path)!r} "
                         "is missing; run stage R first (--stages R B).")
    tensors, _ = load_safetensors(path, what="the stage R header",
                                  fix="run stage R again (--stages R B --fresh)")
    return {k[len("net."):]: v for k, v in tensors.items() if k.startswith("net.")}


def _ablate(run: HeaderRun, model: HeaderArm, arm: str, seed: int) -> list[int]:
    """Test-time ablation: the trained header fed codes permuted across evaluation texts
    (the replicate ``seed``'s ``"ablation"`` stream); saves the trained header."""
    r = run.split.rows
    assert model.codes is not None
    gen = make_generator(derive_seed(seed, "ablation"))
    ev = torch.from_numpy(r["eval"])
    perm = torch.arange(model.codes.shape[0])
    perm[ev] = ev[torch.randperm(ev.numel(), generator=gen)]
    pa = model.predict(r["eval"], codes=model.codes[perm])
    if model.header.config.variant != "static":
        from .base import save_adapter

        save_adapter(model.header, run.out / f"header-{arm}-seed{seed}.safetensors",
                     model=run.lm)
    return (pa == run.split.labels[r["eval"]]).astype(int).tolist()


def arm_b(run: HeaderRun, arm: str, seed: int, lr: float,
          search: bool = False) -> dict[str, Any]:
    """Train one stage B arm; ``search=True`` scores only the held-out slice (no evaluation)."""
    p, sp = run.p, run.split
    r = sp.rows
    model = (PrefixArm if arm in FULL_DEPTH else HeaderArm)(run, arm, seed)
    fit = prefix_subset(run) if arm in FULL_DEPTH else r["train"]
    train_rows = torch.from_numpy(fit)

    def loss_fn(rows: torch.Tensor) -> torch.Tensor:
        gl = train_rows[rows]
        logits = model(gl)
        return nn.functional.cross_entropy(logits, run.y[gl].to(logits.device))

    # training accuracy on as many training texts as the held-out slice has (a seeded
    # sample): memorisation shows as it rising while the held-out accuracy does not
    gen = make_generator(derive_seed(seed, "train-sample"))
    pick = torch.randperm(len(fit), generator=gen)[: len(r["val"])].sort().values
    tr_rows = fit[pick.numpy()]

    def val() -> dict[str, float]:
        return {"val_acc": float((model.predict(r["val"]) == sp.labels[r["val"]]).mean()),
                "train_acc": float((model.predict(tr_rows) == sp.labels[tr_rows]).mean())}

    ckpt = run.checkpoint_dir(f"lr-search-{arm}" if search else arm, seed, lr)
    hist = train_loop(model, loss_fn, len(fit), lr=lr,
                      param_lr={"head.*": p.head_lr}, steps=p.steps,
                      batch_size=p.batch_size, seed=seed, eval_fn=val,
                      eval_every=p.eval_every, frozen=run.lm.module, patience=p.patience,
                      weight_decay=p.weight_decay, checkpoint_dir=ckpt)
    if search:  # the evaluation texts are never touched while choosing
        vals = [e["val_acc"] for e in hist["evals"]]
        out = {"best_val_acc": hist["best_val_acc"], "mean_val_acc": float(np.mean(vals)),
               "best_step": hist["best_step"], "lr": lr}
    else:
        out = run.record(model.predict(r["eval"]), {"curve": hist, "lr": lr})
        if arm in ABLATED:
            out["ablate_correct"] = _ablate(run, model, arm, seed)
    shutil.rmtree(ckpt, ignore_errors=True)  # the ledger now takes the cell
    return out


def prefix_subset(run: HeaderRun) -> np.ndarray:
    """The training texts of a full-depth arm: ``prefix_texts`` of the training rows (all
    when there are fewer), the same for every replicate seed (drawn from the run's seed)."""
    rows = run.split.rows["train"]
    gen = make_generator(derive_seed(run.p.base_seed, "prefix-texts"))
    pick = torch.randperm(len(rows), generator=gen)[: run.p.prefix_texts].sort().values
    return rows[pick.numpy()]


def choose_lrs(run: HeaderRun, executor: Executor | None = None) -> dict[str, float]:
    """Header learning rate per stage B arm, chosen on the held-out slice of the training set.

    For each family in :data:`LR_FAMILIES` that has an arm to run, its first arm is trained
    at every ``lr_grid`` value (first seed, the same steps); the value with the best
    held-out accuracy (ties: the better mean over the run's evaluations) serves the whole
    family in every seed. The evaluation texts play no part. An empty grid uses ``lr``.
    """
    p = run.p
    grid = list(p.lr_grid)
    chosen: dict[str, float] = {}
    search: dict[str, Any] = {}
    s0 = p.seeds[0]
    for probe, family in LR_FAMILIES.items():
        todo = [a for a in family if a in p.arms]
        if not todo:
            continue
        if len(grid) <= 1:
            best = grid[0] if grid else p.lr
        else:
            keys = {lr: {"arm": f"lr-search:{probe}", "lr": lr, "seed": s0} for lr in grid}
            run.run_cells([(k, lr, True) for lr, k in keys.items()], executor,
                          f"header lr search {probe}")
            scores: dict[float, dict[str, Any]] = {}
            for lr, k in keys.items():
                rec = run.store.get(k)
                assert rec is not None
                scores[lr] = rec
            best = max(grid, key=lambda x: (scores[x]["best_val_acc"], scores[x]["mean_val_acc"]))
            search[probe] = {"grid": grid, "chosen": best, "arms": todo,
                             "val_acc": [scores[x]["best_val_acc"] for x in grid]}
        for a in todo:
            chosen[a] = best
    run.lr_search = search
    run.lrs = chosen
    return chosen


def stage_r(run: HeaderRun, executor: Executor | None = None) -> None:
    """Reconstruction (:mod:`hyperlens.inject.header_recon`): one cell per replicate seed,
    its per-text NLLs kept in ``run.recon``."""
    keys: list[dict[str, Any]] = [{"arm": "recon", "seed": s} for s in run.p.seeds]
    run.run_cells([(k, run.p.lr, False) for k in keys], executor, "header reconstruction")
    run.recon = {}
    for seed, k in zip(run.p.seeds, keys, strict=True):
        rec = run.store.get(k)
        if rec is None:
            raise InputError(f"the header cell (recon, seed {seed}) has not run.")
        run.recon[seed] = rec


def stage_b(run: HeaderRun, after_seed: Callable[[], Any] | None = None,
            executor: Executor | None = None) -> None:
    """The stage B arms, seed by seed (``after_seed()`` runs after each: a report so far);
    the arms of one seed are cells computed together by ``executor``."""
    lrs = choose_lrs(run, executor)
    for seed in run.p.seeds:
        run.run_cells([(run.cell_key(a, seed), lrs[a], False) for a in run.p.arms],
                      executor, f"header stage B seed {seed}")
        for arm in run.p.arms:
            run.collect(arm, seed)
            if arm in ABLATED:
                rec = run.store.get(run.cell_key(arm, seed))
                if rec is not None and "ablate_correct" in rec:
                    run.correct.setdefault(f"{arm}-ablate", {})[seed] = np.asarray(
                        rec["ablate_correct"], dtype=bool)
        if after_seed is not None:
            after_seed()
