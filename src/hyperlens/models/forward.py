"""Batched forward passes and the on-disk embedding cache, shared by :mod:`.embedding` and
:mod:`.embed_shards` (a local pass and a sharded one run the same batches through the same
code, which is what makes them bit-identical)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..utils import (
    atomic_write_bytes,
    cache_dir,
    progress as progress_bar,
    stable_hash,
)
from .handle import ModelHandle
from .hooks import StopForward, capture

_PROGRESS_MIN = 256  # texts; shorter inputs never show a bar by default
_CACHE_VERSION = 1


# --------------------------------------------------------------------------- cache
def _cache_path(h: ModelHandle, texts: list[str], key: tuple[Any, ...]) -> Any:
    digest = stable_hash(_CACHE_VERSION, h.identity(), list(key), texts, length=32)
    return cache_dir("embeddings", h.name.replace("/", "--")) / f"{digest}.npy"


def _store(h: ModelHandle, texts: list[str], key: tuple[Any, ...], arr: np.ndarray) -> None:
    path = _cache_path(h, texts, key)
    if path.exists():
        return
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def _cached(
    h: ModelHandle, texts: list[str], key: tuple[Any, ...], use: bool, compute: Any
) -> np.ndarray:
    if not use:
        return compute()
    path = _cache_path(h, texts, key)
    if path.exists():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            path.unlink(missing_ok=True)  # unreadable entry: recompute and overwrite
    arr = compute()
    _store(h, texts, key, arr)
    return arr


# --------------------------------------------------------------------------- transformers
def _batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar token length (longest first)."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _pool(
    h: torch.Tensor, mask: torch.Tensor | None, lengths: torch.Tensor, pooling: str
) -> torch.Tensor:
    """Pool hidden states over positions.

    Shapes:
        h: [batch, pos, d]; mask: [batch, pos] or None; lengths: [batch]; returns [batch, d]
    """
    if pooling == "cls":
        return h[:, 0]
    if pooling == "last":
        return h[torch.arange(h.shape[0], device=h.device), lengths - 1]
    if pooling == "mean_after_first":  # decoders: leave out the first-position attention sink
        pos = torch.arange(h.shape[1], device=h.device)[None, :]
        keep = (pos >= 1) & (pos < lengths[:, None])
        keep = keep | ((lengths[:, None] == 1) & (pos == 0))  # one-token texts keep their token
        m = keep.to(h.dtype).unsqueeze(-1)
        return (h * m).sum(dim=1) / m.sum(dim=1)
    if mask is None:
        return h.mean(dim=1)
    m = mask.to(h.dtype).unsqueeze(-1)  # [batch, pos, 1]
    return (h * m).sum(dim=1) / lengths.to(h.dtype).unsqueeze(-1)


def _embed_transformer(
    h: ModelHandle,
    texts: list[str],
    pooling: str,
    lids: list[int],
    batch_size: int,
    show: bool | None,
    max_length: int | None,
) -> np.ndarray:
    ids_list, lengths = _tokenize(h, texts, max_length)
    batches = _batches(lengths, _check_batch_size(batch_size))
    return _forward_batches(h, ids_list, lengths, batches, pooling, lids, show)


def _check_batch_size(batch_size: Any) -> int:
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) \
            or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}.")
    return int(batch_size)


def _tokenize(
    h: ModelHandle, texts: list[str], max_length: int | None
) -> tuple[list[list[int]], np.ndarray]:
    """Token ids of every text (truncated to the model's limit) and their lengths ``[N]``."""
    if h.tokenizer is None or h.module is None:
        raise InputError(
            f"model {h.name!r} has no tokenizer; build the handle with from_module(module, "
            "tokenizer)."
        )
    mlen = int(max_length or h.max_length)
    enc = h.tokenizer(texts, add_special_tokens=True, truncation=True, max_length=mlen,
                      padding=False)
    ids_list: list[list[int]] = enc["input_ids"]
    lengths = np.fromiter((len(x) for x in ids_list), dtype=np.int64, count=len(ids_list))
    if (lengths == 0).any():
        i = int(np.flatnonzero(lengths == 0)[0])
        raise InputError(f"texts[{i}] = {texts[i]!r} produced no tokens; drop empty texts.")
    return ids_list, lengths


def _forward_batches(
    h: ModelHandle,
    ids_list: list[list[int]],
    lengths: np.ndarray,
    batches: list[np.ndarray],
    pooling: str,
    lids: list[int],
    show: bool | None,
) -> np.ndarray:
    """Run the given batches (index arrays into ``ids_list``) and pool the requested layers.

    A batch's result depends only on its own texts, so the same batches give the same bits
    whether they run here in one pass or spread over shard workers.

    Shapes:
        returns: [len(lids), N, d] with N = len(ids_list)
    """
    tok = h.tokenizer
    assert tok is not None and h.module is not None
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    dev = h.device
    n, d = len(ids_list), h.hidden_size
    out = torch.empty((len(lids), n, d), dtype=torch.float32)
    names = [f"hidden.{li}" for li in lids]
    if show is None:
        show = None if n >= _PROGRESS_MIN else False
    it = progress_bar(
        batches, total=len(batches), desc=f"embed {h.name}", enabled=show, unit="batch"
    )
    module = h.module
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode(), capture(module, names, stop_early=True) as acts:
            for idx in it:
                blen = lengths[idx]
                T = int(blen.max())
                arr = np.full((len(idx), T), pad_id, dtype=np.int64)
                for r, j in enumerate(idx):  # fill rows; the batch is at most batch_size long
                    arr[r, : blen[r]] = ids_list[j]
                input_ids = torch.from_numpy(arr).to(dev)
                lens_t = torch.from_numpy(blen).to(dev)
                need_mask = bool((blen != T).any())
                mask = (
                    (torch.arange(T, device=dev)[None, :] < lens_t[:, None]).long()
                    if need_mask
                    else None
                )
                kwargs: dict[str, Any] = {"input_ids": input_ids}
                if mask is not None:
                    kwargs["attention_mask"] = mask
                if h.kind == "encoder" and "token_type_ids" in getattr(
                    tok, "model_input_names", []
                ):
                    kwargs["token_type_ids"] = torch.zeros_like(input_ids)
                acts.clear()
                try:
                    acts.run(**kwargs)
                except StopForward:  # pragma: no cover - run() absorbs it
                    pass
                sel = torch.from_numpy(idx)
                for k, name in enumerate(names):
                    pooled = _pool(acts[name], mask, lens_t, pooling)
                    out[k, sel] = pooled.float().cpu()
    finally:
        module.train(was_training)
    return out.numpy()


# --------------------------------------------------------------------------- static
