"""Capture a teacher causal LM's context into memory-mapped float16 shards.

One *row* is one prediction position: the teacher has read ``ids[0..p]`` of a text (``ids[0]``
is a start token) and predicts ``ids[p + 1]``. For every row the capture stores

==============  ===========================  ===============================================
array           shape, dtype                 what
==============  ===========================  ===============================================
``text``        ``[n] int32``                index of the text in the split
``pos``         ``[n] int32``                position ``p`` inside the text
``ctx``         ``[n, W] int32``             ``ids[p-W+1 .. p]`` (slot 0 = ``ids[p]``), -1 pad
``target``      ``[n] int32``                the next token ``ids[p+1]``
``final``       ``[n, d] float16``           the teacher's final state (after the last norm);
                                             training *target* only, never a student input
``state``       ``[n, d] float16``           hidden state ``hidden.{layer}`` (Track B input,
                                             Stage-1 supervision)
``qkv``         ``[n, 3 * h * d_head] f16``  q, k, v of the chosen heads at block ``layer``
``final_w``     ``[n, d] float16``           held-out only: final state of the teacher fed
                                             only the last ``W`` tokens (baseline); NaN on
                                             rows left out of the subsample
``w_weight``    ``[n] float32``              held-out only: inverse inclusion probability
                                             of the row in the cut-context subsample (1 for
                                             ``p < W``, ``1 / cut_fraction`` for sampled
                                             rows, 0 for rows left out)
==============  ===========================  ===============================================

The teacher's forward pass runs in the capture's ``dtype``: ``float32``, or ``bfloat16`` (a
bfloat16 copy of the teacher, about 3x faster where the CPU has native bfloat16 units; the
manifest records which, so captures of the two precisions never mix). Each forward ends at
the last state it records, so the teacher's vocabulary product is never run here.

Float arrays are float16 unless one of a shard's values would overflow it: that array of that
shard is then float32 (Gemma 3's mid-layer states carry start-token activations near 10^5).
Teacher logits are recomputed on demand: ``logits = final @ W_U^T`` through the frozen
unembedding (:class:`Unembedding`), so nothing of size ``vocab`` is stored. The split is
made *by text* (held-out texts never appear in training rows). Shards are written
atomically, the manifest is updated after each shard, and a re-run skips finished shards
(and removes the temporary folder of a shard whose run was killed). Shards are forwarded by
:class:`CaptureWorker` through :func:`hyperlens.run.map_shards`: in this process, or on Ray
actors (``--executor ray``) that each load the teacher once; this process writes them.

A folder holds one capture: :func:`run_capture` and :func:`load_capture` with ``expect``
refuse a folder whose manifest was written for other settings, naming each setting that
differs.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..functional.packed import PackedLinear
from ..models.handle import ModelHandle
from ..models.hooks import capture as capture_points
from ..run import Executor, Resources, map_shards
from ..utils import atomic_path, atomic_write_json, progress
from .rows import RowArray, RowFile

__all__ = [
    "CaptureConfig",
    "CapturedSplit",
    "Capture",
    "Unembedding",
    "split_texts",
    "check_texts",
    "check_capture_dir",
    "read_manifest",
    "run_capture",
    "load_capture",
    "CaptureWorker",
    "shard_arrays",
]

MANIFEST = "manifest.json"
VERSION = 1


@dataclass
class CaptureConfig:
    """What to capture (all counts are prediction positions, i.e. tokens predicted)."""

    model: str = "smollm2"
    dataset: str = "agnews"
    train_tokens: int = 48_000
    heldout_tokens: int = 12_000
    layer: int = 15
    heads: tuple[int, ...] = (0, 1, 2)
    window: int = 32
    max_length: int = 128
    batch_size: int = 16
    shard_texts: int = 256
    cut_fraction: float = 0.25
    seed: int = 0
    dtype: str = "float32"
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        for name in ("train_tokens", "heldout_tokens", "window", "max_length", "batch_size",
                     "shard_texts"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise InputError(f"{name} must be a positive int, got {v!r}.")
        if self.max_length < 2:
            raise InputError(f"max_length must be >= 2, got {self.max_length}.")
        if not 0 < self.cut_fraction <= 1:
            raise InputError(f"cut_fraction must be in (0, 1], got {self.cut_fraction!r}.")
        if isinstance(self.layer, bool) or not isinstance(self.layer, int) or self.layer < 0:
            raise InputError(f"layer must be an int >= 0 (a block index), got {self.layer!r}.")
        if not self.heads:
            raise InputError("heads must name at least one attention head, e.g. heads=(0,).")
        bad = [h for h in self.heads if isinstance(h, bool) or not isinstance(h, int) or h < 0]
        if bad:
            raise InputError(f"heads must be attention-head indices >= 0, got {list(self.heads)}.")
        if len(set(self.heads)) != len(self.heads):
            raise InputError(f"heads must not repeat a head, got {list(self.heads)}.")
        if self.dtype not in ("float32", "bfloat16"):
            raise InputError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}.")

    def as_manifest(self) -> dict[str, Any]:
        """The config as the manifest stores it (JSON types: ``heads`` a list)."""
        d = asdict(self)
        d["heads"] = list(self.heads)
        return d


#: the option of ``hyperlens hft`` that sets each config field
_OPTION = {"model": "--teacher", "dataset": "--dataset", "train_tokens": "--train-tokens",
           "heldout_tokens": "--heldout-tokens", "layer": "--layer", "heads": "--heads",
           "window": "--window", "cut_fraction": "--cut-fraction", "seed": "--seed",
           "dtype": "--dtype"}
#: what a manifest written before a field existed meant by it
_BEFORE = {"dtype": "float32"}


def _config_diff(have: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """``"name (--option): <capture's> in the capture, <asked> asked"`` per differing field."""
    out = []
    for k in sorted(set(have) | set(want)):
        if have.get(k) != want.get(k):
            opt = f" ({_OPTION[k]})" if k in _OPTION else ""
            out.append(f"{k}{opt}: {have.get(k)!r} in the capture, {want.get(k)!r} asked")
    return out


def read_manifest(root: str | Path) -> dict[str, Any] | None:
    """The manifest of capture folder ``root``, ``None`` where there is none yet.

    Raises :class:`InputError` when ``root`` is an existing file, or its manifest is not a
    capture manifest (damaged or written by something else).
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InputError(
            f"capture folder {root} is an existing file; pass a folder (new or holding a "
            "capture) as --capture-dir."
        )
    mpath = root / MANIFEST
    if not mpath.exists():
        return None
    try:
        manifest = json.loads(mpath.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(
            f"{mpath} is not a readable capture manifest ({exc}); delete {root} to capture "
            "again, or pass another --capture-dir."
        ) from None
    if (not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict)
            or not isinstance(manifest.get("shards"), dict)):
        raise InputError(
            f"{mpath} is not a capture manifest (no config or shards); delete {root} to "
            "capture again, or pass another --capture-dir."
        )
    return manifest


def check_capture_dir(root: str | Path, cfg: CaptureConfig) -> dict[str, Any] | None:
    """Refuse a capture folder that cannot hold a capture of ``cfg``; returns its manifest
    (``None`` for a new folder). Cheap: reads the manifest only.

    A folder already holding a capture made with other settings (teacher, dataset, sizes,
    window, layer, heads, seed, ...) raises :class:`InputError` naming each difference.
    """
    manifest = read_manifest(root)
    if manifest is None:
        return None
    diff = _config_diff({**_BEFORE, **manifest["config"]}, cfg.as_manifest())
    if diff:
        raise InputError(
            f"--capture-dir {root} holds a capture made with other settings: "
            f"{'; '.join(diff)}. Pass another --capture-dir (or none, for a folder named "
            "after the options), or repeat the options of that capture."
        )
    return manifest


def check_texts(texts: Sequence[str], what: str = "the corpus") -> list[str]:
    """The texts as a list; :class:`InputError` when none holds anything but whitespace."""
    out = list(texts)
    if not any(isinstance(t, str) and t.strip() for t in out):
        raise InputError(
            f"{what} holds no text ({len(out)} entries, none with any characters); pass a "
            "dataset or file with texts to capture."
        )
    return out


def split_texts(
    texts: Sequence[str], token_counts: Sequence[int], train_tokens: int, heldout_tokens: int,
    seed: int,
) -> tuple[list[int], list[int]]:
    """Shuffle texts (seeded) and fill the held-out split, then the training split, by text.

    Returns two disjoint lists of text indices whose predicted-token counts reach the budgets
    (or use every text when the corpus is smaller).
    """
    order = np.random.default_rng(seed).permutation(len(texts))
    held: list[int] = []
    train: list[int] = []
    n_h = n_t = 0
    for i in order.tolist():
        c = int(token_counts[i])
        if c <= 0:
            continue
        if n_h < heldout_tokens:
            held.append(i)
            n_h += c
        elif n_t < train_tokens:
            train.append(i)
            n_t += c
        else:
            break
    return train, held


class Unembedding(torch.nn.Module):
    """The teacher's frozen output map: ``logits = x @ W_U^T (+ b)``.

    ``weight`` is ``[vocab, d]`` float32 (a copy, requires_grad off); ``compute_dtype`` may
    be ``torch.bfloat16`` to run the large product on bf16 units (outputs are float32).
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 compute_dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach().float().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.compute_dtype = compute_dtype

    @classmethod
    def from_model(cls, model: ModelHandle | torch.nn.Module,
                   compute_dtype: torch.dtype = torch.float32) -> Unembedding:
        module: Any = model.module if isinstance(model, ModelHandle) else model
        head = module.get_output_embeddings()
        if head is None:
            raise InputError("the teacher has no output embedding; pass a causal LM.")
        return cls(head.weight, getattr(head, "bias", None), compute_dtype)

    @property
    def vocab_size(self) -> int:
        return int(self.weight.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., d] -> [..., vocab]`` float32."""
        if self.compute_dtype == torch.float32:
            out = x.float() @ self.weight.T
        else:  # inference on a bf16 CPU: oneDNN's packed layout (same bits, faster)
            out = self.low_linear()(x.to(self.compute_dtype)).float()
        return out if self.bias is None else out + self.bias

    def columns(self, x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """The logits of tokens ``ids`` only: ``[..., d] -> [..., len(ids)]`` float32, in the
        same precision as :meth:`forward`."""
        w = self.weight if self.compute_dtype == torch.float32 else self.low_weight()
        out = (x.to(w.dtype) @ w[ids].T).float()
        return out if self.bias is None else out + self.bias[ids]

    def low_weight(self) -> torch.Tensor:
        """``weight`` in ``compute_dtype`` (converted once per device and dtype)."""
        return self.low_linear().weight

    def low_linear(self) -> PackedLinear:
        """The product with ``weight`` in ``compute_dtype`` as a :class:`PackedLinear`
        (made once per device and dtype)."""
        lin = self.__dict__.get("_low")
        if lin is None or lin.weight.device != self.weight.device \
                or lin.weight.dtype != self.compute_dtype:
            lin = PackedLinear(self.weight.to(self.compute_dtype))
            self.__dict__["_low"] = lin  # a cache, not a submodule: no state dict entry
        return lin


@dataclass
class CapturedSplit:
    """The rows of one split over its shards: the per-row numbers (target, text, position)
    as arrays, the states and windows as :class:`~hyperlens.hft.rows.RowArray` s read from
    the shard files on demand (a 1M-row capture is several GB; it stays on disk)."""

    arrays: dict[str, Any]
    n_texts: int
    #: where what is computed from this split's leading rows is kept (the teacher's top-k
    #: targets); ``None`` for a split not read from a capture folder, or not a leading slice
    cache: Path | None = None

    def __len__(self) -> int:
        return int(self.arrays["target"].shape[0])

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def head(self, n: int) -> CapturedSplit:
        """The first ``n`` rows (views, nothing read or copied)."""
        arrays = {k: v.head(n) if isinstance(v, RowArray) else v[:n]
                  for k, v in self.arrays.items()}
        return CapturedSplit(arrays, int(len(np.unique(arrays["text"]))) if n else 0,
                             self.cache)

    def source(self, key: str) -> Any:
        """Rows of ``key`` as the training loop takes them: a row file read per batch, or a
        tensor (an array held in memory)."""
        v = self.arrays[key]
        return v.file if isinstance(v, RowArray) else torch.from_numpy(np.ascontiguousarray(v))

    def tensor(self, key: str, rows: np.ndarray | slice | None = None,
               dtype: torch.dtype | None = None) -> torch.Tensor:
        a = self.arrays[key] if rows is None else self.arrays[key][rows]
        t = torch.from_numpy(np.ascontiguousarray(a))
        return t if dtype is None else t.to(dtype)


@dataclass
class Capture:
    """A finished capture folder: config, per-split rows and model facts."""

    root: Path
    manifest: dict[str, Any]
    train: CapturedSplit
    heldout: CapturedSplit
    limit: int | None = None  # training rows kept by :meth:`limited` (None: all)

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest["config"]

    def limited(self, tokens: int) -> Capture:
        """The same capture with only its first training texts, at most ``tokens``
        prediction positions (cut at a text boundary; the held-out rows are unchanged)."""
        text = np.asarray(self.train["text"])
        n = len(text)
        if tokens < n:
            n = int(np.searchsorted(text, text[tokens], side="left"))
        if n < 1:
            raise InputError(f"a training limit of {tokens} positions keeps no whole text "
                             f"(the first has {int((text == text[0]).sum())}); raise it.")
        return Capture(self.root, self.manifest, self.train.head(n), self.heldout, n)

    @property
    def vocab_size(self) -> int:
        return int(self.manifest["vocab_size"])


def start_token(tokenizer: Any) -> int:
    """The token every text starts with (and n-gram histories are padded with): BOS, else
    EOS."""
    start = tokenizer.bos_token_id
    if start is None:
        start = tokenizer.eos_token_id
    if start is None:
        raise InputError("the tokenizer has neither a BOS nor an EOS token to start texts with.")
    return int(start)


def _tokenize(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[list[int]]:
    start = start_token(tokenizer)
    enc = tokenizer(list(texts), add_special_tokens=False, truncation=True,
                    max_length=max_length - 1)["input_ids"]
    return [[int(start)] + list(e) for e in enc]


def _shard_names(split: str, k: int) -> str:
    return f"{split}-{k:05d}"


def capture_sites(layer: int, num_layers: int) -> list[str]:
    """The sites a capture records: the final state, the layer-``layer`` state and that
    block's q / k / v."""
    return [f"hidden.{num_layers}", f"hidden.{layer}", f"blocks.{layer}.attn.q",
            f"blocks.{layer}.attn.k", f"blocks.{layer}.attn.v"]


def padded_batches(seqs: list[list[int]], batch_size: int
                   ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """The texts in batches of similar length (sorted by length): each batch's text indices,
    its input ids (every token but a text's last, right-padded with 0) and attention mask."""
    order = sorted(range(len(seqs)), key=lambda j: len(seqs[j]))
    for b0 in range(0, len(order), batch_size):
        idx = order[b0:b0 + batch_size]
        T = max(len(seqs[j]) - 1 for j in idx)
        ids = torch.zeros(len(idx), T, dtype=torch.long)
        mask = torch.zeros(len(idx), T, dtype=torch.long)
        for bi, j in enumerate(idx):
            s = seqs[j][:-1]
            ids[bi, :len(s)] = torch.tensor(s)
            mask[bi, :len(s)] = 1
        yield idx, ids, mask


def shard_arrays(
    teacher: ModelHandle, seqs: list[list[int]], text_offset: int, cfg: CaptureConfig,
    heldout: bool, shard: int = 0,
) -> dict[str, np.ndarray]:
    """Forward the texts of one shard; returns its arrays (the table in the module's doc)."""
    assert teacher.module is not None
    dev = teacher.device
    W = cfg.window
    n_rows = sum(len(s) - 1 for s in seqs)
    d = teacher.hidden_size
    L = teacher.num_layers
    out: dict[str, np.ndarray] = {}
    out["text"] = np.empty(n_rows, np.int32)
    out["pos"] = np.empty(n_rows, np.int32)
    out["ctx"] = np.full((n_rows, W), -1, np.int32)
    out["target"] = np.empty(n_rows, np.int32)
    # float32 while the shard is built; stored as float16 unless a value would overflow it
    out["final"] = np.empty((n_rows, d), np.float32)
    out["state"] = np.empty((n_rows, d), np.float32)
    heads = list(cfg.heads)
    qkv_parts: list[np.ndarray] = []
    row_start: list[int] = []
    r = 0
    for j, s in enumerate(seqs):
        row_start.append(r)
        ids = np.asarray(s, np.int64)
        n = len(s) - 1
        out["text"][r:r + n] = text_offset + j
        out["pos"][r:r + n] = np.arange(n)
        out["target"][r:r + n] = ids[1:]
        for slot in range(W):
            p = np.arange(n) - slot
            ok = p >= 0
            out["ctx"][r:r + n, slot][ok] = ids[p[ok]]
        r += n
    qkv_rows: dict[int, np.ndarray] = {}
    with torch.no_grad(), capture_points(teacher, capture_sites(cfg.layer, L),
                                         stop_early=True) as acts:
        for idx, batch_ids, mask in padded_batches(seqs, cfg.batch_size):
            acts.run(input_ids=batch_ids.to(dev), attention_mask=mask.to(dev))
            fin = acts[f"hidden.{L}"].float().cpu()
            st = acts[f"hidden.{cfg.layer}"].float().cpu()
            q = acts[f"blocks.{cfg.layer}.attn.q"].float().cpu()
            k = acts[f"blocks.{cfg.layer}.attn.k"].float().cpu()
            v = acts[f"blocks.{cfg.layer}.attn.v"].float().cpu()
            kv_heads = [h % k.shape[2] for h in heads]
            parts = torch.cat([q[:, :, heads].flatten(2), k[:, :, kv_heads].flatten(2),
                               v[:, :, kv_heads].flatten(2)], dim=-1)
            for bi, j in enumerate(idx):
                n = len(seqs[j]) - 1
                a = row_start[j]
                out["final"][a:a + n] = fin[bi, :n].numpy()
                out["state"][a:a + n] = st[bi, :n].numpy()
                qkv_rows[j] = parts[bi, :n].numpy()
    for j in range(len(seqs)):
        qkv_parts.append(qkv_rows[j])
    out["qkv"] = np.concatenate(qkv_parts, axis=0)
    if heldout:
        rng = np.random.default_rng([cfg.seed, shard])
        out["final_w"], out["w_weight"] = _cut_context_final(
            teacher, out, W, cfg.batch_size * 4, cfg.cut_fraction, rng)
    for name in ("final", "state", "qkv", "final_w"):
        if name in out:
            out[name] = half_or_single(out[name])
    return out


def _write_shard(arrays: dict[str, np.ndarray], folder: Path) -> int:
    """Write a shard's arrays as ``.npy`` files into ``folder``; returns its rows."""
    for name, arr in arrays.items():
        mm = np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=arr.dtype,
                                       shape=arr.shape)
        mm[...] = arr
        mm.flush()
        del mm
    return int(arrays["target"].shape[0])


class CaptureWorker:
    """A shard worker of :func:`hyperlens.run.map_shards`: holds the teacher, forwards shards.

    ``teacher`` is a loaded handle (in this process) or what :func:`hyperlens.models.load`
    takes (a Ray actor loads it once, on ``device``). Every shard runs on ``threads`` threads
    (:func:`hyperlens.run.pinned_threads`), so on the CPU a shard has the same bits wherever
    it runs. With ``dtype="bfloat16"`` in ``cfg`` the worker forwards a bfloat16 copy of the
    teacher.
    """

    def __init__(self, teacher: ModelHandle | str, cfg: dict[str, Any], threads: int,
                 device: str = "cpu") -> None:
        if isinstance(teacher, str):
            from ..models import load

            teacher = load(teacher, device=device)
        self.cfg = CaptureConfig(**{**cfg, "heads": tuple(cfg["heads"])})
        self.teacher = in_dtype(teacher, self.cfg.dtype)
        self.threads = threads

    def __call__(self, seqs: list[list[int]], text_offset: int, heldout: bool,
                 shard: int) -> dict[str, np.ndarray]:
        from ..run import pinned_threads

        with pinned_threads(self.threads):
            return shard_arrays(self.teacher, seqs, text_offset, self.cfg, heldout, shard)


def in_dtype(teacher: ModelHandle, dtype: str) -> ModelHandle:
    """``teacher``, or a handle on a copy of its module in ``dtype`` where it differs (the
    caller's handle and module stay as they are)."""
    want = getattr(torch, dtype)
    if teacher.module is None or teacher.dtype == want:
        return teacher
    return dataclasses.replace(teacher, module=copy.deepcopy(teacher.module).to(want),
                               dtype=want)


def half_or_single(a: np.ndarray) -> np.ndarray:
    """``a`` as float16 when every finite value fits it, else float32 (a shard of Gemma 3's
    mid-layer states holds start-token activations above float16's 65,504). Shards of one
    split may then differ in dtype; :func:`load_capture` concatenates them as float32."""
    peak = float(np.max(np.abs(a), where=np.isfinite(a), initial=0.0))
    if peak > float(np.finfo(np.float16).max):
        return a.astype(np.float32, copy=False)
    return a.astype(np.float16)


def _cut_context_final(teacher: ModelHandle, out: dict[str, np.ndarray], W: int, batch: int,
                       fraction: float, rng: np.random.Generator
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Final state of the teacher reading only ``ids[p-W+1..p]``, and each row's weight.

    Rows with ``p < W`` see their whole context, so they equal ``final`` (weight 1). The
    rest need one teacher forward each (``W`` tokens), which costs ``W`` times a row of the
    capture itself, so only a seeded ``fraction`` of them is run (weight ``1 / fraction``,
    an unbiased estimate of held-out sums); the others get NaN and weight 0.
    """
    module: Any = teacher.module
    assert module is not None
    res = out["final"].copy()
    weight = np.ones(len(res), np.float32)
    rows = np.nonzero(out["pos"] >= W)[0]
    if fraction < 1 and len(rows):
        take = np.sort(rng.choice(len(rows), max(1, round(fraction * len(rows))),
                                  replace=False))
        weight[rows] = 0.0
        res[rows] = np.nan
        rows = rows[take]
        weight[rows] = len(np.nonzero(out["pos"] >= W)[0]) / len(rows)
    L = teacher.num_layers
    with torch.no_grad(), capture_points(teacher, [f"hidden.{L}"], stop_early=True) as acts:
        for b0 in range(0, len(rows), batch):
            rr = rows[b0:b0 + batch]
            ctx = out["ctx"][rr][:, ::-1].astype(np.int64)  # oldest first, all valid
            acts.run(input_ids=torch.from_numpy(ctx.copy()).to(teacher.device))
            res[rr] = acts[f"hidden.{L}"][:, -1].float().cpu().numpy()
    return res, weight


def run_capture(
    teacher: ModelHandle, texts: Sequence[str], cfg: CaptureConfig, out_dir: str | Path, *,
    show_progress: bool | None = None, executor: Executor | None = None,
    teacher_source: str | None = None,
) -> Capture:
    """Tokenise, split by text, forward the teacher shard by shard; resumable.

    A folder holding a manifest with the same config continues where it stopped; a
    different config raises :class:`InputError` (choose another folder). The shards run
    through :func:`hyperlens.run.map_shards` on ``executor`` (default: in this process with
    ``teacher``; on Ray, actors that each load ``teacher_source``, default ``teacher.name``,
    on the kind of device ``teacher`` is on, each asking Ray for a GPU where that is CUDA);
    this process writes each finished shard and the manifest.
    """
    cfg.validate()
    if teacher.module is None or teacher.kind != "decoder":
        raise InputError(
            f"teacher {teacher.name!r} is a {teacher.kind} model; the HyperField capture needs "
            "a causal LM (e.g. 'smollm2', 'gemma3' or a Hugging Face causal LM id)."
        )
    if not 0 <= cfg.layer < teacher.num_layers:
        raise InputError(
            f"layer must be in 0..{teacher.num_layers - 1} for {teacher.name}, got {cfg.layer}."
        )
    tm: Any = teacher.module
    n_heads = int(tm.config.num_attention_heads)
    if max(cfg.heads) >= n_heads:
        raise InputError(
            f"heads {list(cfg.heads)}: {teacher.name} has {n_heads} attention heads per layer, "
            f"so each head must be in 0..{n_heads - 1}."
        )
    texts = check_texts(texts)
    root = Path(out_dir)
    manifest = check_capture_dir(root, cfg)
    cfg_dict = cfg.as_manifest()
    mpath = root / MANIFEST
    seqs = _tokenize(teacher.tokenizer, texts, cfg.max_length)
    counts = [len(s) - 1 for s in seqs]
    total = sum(c for c in counts if c > 0)
    if total < cfg.train_tokens + cfg.heldout_tokens:
        raise InputError(
            f"the corpus holds {total:,} prediction positions in {len(texts):,} texts (at most "
            f"{cfg.max_length - 1} per text), fewer than the {cfg.train_tokens:,} training + "
            f"{cfg.heldout_tokens:,} held-out asked; lower --train-tokens / --heldout-tokens "
            "or use a larger corpus."
        )
    train_idx, held_idx = split_texts(texts, counts, cfg.train_tokens, cfg.heldout_tokens,
                                      cfg.seed)
    if not train_idx or not held_idx:
        raise InputError(
            f"the corpus's {len(texts):,} texts cannot fill both splits (a split is made of "
            "whole texts); use a corpus with more texts or smaller --train-tokens / "
            "--heldout-tokens."
        )
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_shards(root)
    if manifest is None:
        head_dim = teacher.hidden_size // n_heads
        manifest = {
            "version": VERSION, "config": cfg_dict, "teacher": teacher.name,
            "hidden_size": teacher.hidden_size, "num_layers": teacher.num_layers,
            "vocab_size": int(tm.get_output_embeddings().weight.shape[0]),
            "head_dim": int(getattr(tm.config, "head_dim", None) or head_dim),
            "texts": {"train": train_idx, "heldout": held_idx},
            "shards": {"train": [], "heldout": []}, "complete": False,
        }
        atomic_write_json(mpath, manifest)
    jobs: list[tuple[str, int, list[int]]] = []
    for split, idx in (("train", manifest["texts"]["train"]),
                       ("heldout", manifest["texts"]["heldout"])):
        for k in range(math.ceil(len(idx) / cfg.shard_texts)):
            jobs.append((split, k, idx[k * cfg.shard_texts:(k + 1) * cfg.shard_texts]))
    done = {(s, d["name"]) for s in ("train", "heldout") for d in manifest["shards"][s]}
    skip = {j for j, (split, k, _) in enumerate(jobs) if (split, _shard_names(split, k)) in done}
    shards = [{"seqs": [seqs[i] for i in idx], "text_offset": k * cfg.shard_texts,
               "heldout": split == "heldout", "shard": k} for split, k, idx in jobs]
    bar = progress(range(len(jobs) - len(skip)), total=len(jobs) - len(skip),
                   desc="hft capture", enabled=show_progress)
    tick = iter(bar)

    def store(j: int, arrays: dict[str, np.ndarray]) -> None:  # this process writes, once
        split, k, idx = jobs[j]
        name = _shard_names(split, k)
        with atomic_path(root / name) as tmp:
            tmp.mkdir(parents=True)
            rows = _write_shard(arrays, tmp)
        manifest["shards"][split].append({"name": name, "rows": rows, "texts": len(idx)})
        manifest["shards"][split].sort(key=lambda d: d["name"])
        atomic_write_json(mpath, manifest)
        next(tick, None)

    threads = max(1, int(torch.get_num_threads()))
    local = executor is None or executor.name == "local"
    kind = torch.device(teacher.device).type  # a Ray actor's GPU is its own cuda:0
    map_shards(CaptureWorker, {"teacher": teacher if local else (teacher_source or teacher.name),
                               "cfg": cfg_dict, "threads": threads, "device": kind},
               shards, store, executor, skip=skip,
               resources=Resources.for_device(kind, num_cpus=threads))
    next(tick, None)
    manifest["complete"] = True
    manifest["tokens"] = {s: sum(d["rows"] for d in manifest["shards"][s])
                          for s in ("train", "heldout")}
    atomic_write_json(mpath, manifest)
    return load_capture(root)


def _remove_stale_shards(root: Path) -> None:
    """Remove the temporary folders (``.train-00003.<random>.tmp``) of shards whose run was
    killed before its rename; a finished shard is never one of them."""
    for p in root.glob(".*.tmp"):
        if p.is_dir() and any(p.name.startswith(f".{s}-") for s in ("train", "heldout")):
            shutil.rmtree(p, ignore_errors=True)


def load_capture(root: str | Path, expect: CaptureConfig | None = None) -> Capture:
    """Open a capture folder written by :func:`run_capture` (arrays memory-mapped).

    With ``expect``, a capture made with other settings raises :class:`InputError` naming
    each difference (see :func:`check_capture_dir`).
    """
    root = Path(root)
    manifest = (read_manifest(root) if expect is None else check_capture_dir(root, expect))
    if manifest is None:
        raise InputError(
            f"{root} has no {MANIFEST}; run `hyperlens hft capture --capture-dir {root}` first."
        )
    if not manifest.get("complete"):
        raise InputError(
            f"the capture in {root} is unfinished; run the same capture command again to "
            "resume it."
        )
    splits = {}
    for split in ("train", "heldout"):
        shards = sorted(manifest["shards"][split], key=lambda d: d["name"])
        parts: dict[str, list[Path]] = {}
        for d in shards:
            for f in sorted((root / d["name"]).glob("*.npy")):
                parts.setdefault(f.stem, []).append(f)
        if "target" not in parts:
            raise InputError(
                f"the capture in {root} has no {split} rows; delete it and capture again with "
                "a corpus that fills both splits."
            )
        arrays = {k: _rows(v) for k, v in parts.items()}
        splits[split] = CapturedSplit(arrays, sum(d["texts"] for d in shards),
                                      root / "cache" / split)
    return Capture(root, manifest, splits["train"], splits["heldout"])


def _rows(files: list[Path]) -> Any:
    """One array over the shards' files: rows of a 2-D array stay in the files (read per
    batch), a 1-D array (a number per row) is read into memory."""
    first = np.load(files[0], mmap_mode="r")
    if first.ndim == 2:
        return RowArray(RowFile(files))
    return np.concatenate([np.load(f) for f in files])
