"""Sharded embedding: a corpus split over workers that load the model once each.

:func:`hyperlens.models.embed` / :func:`~hyperlens.models.embed_layers` come here when they
are given a Ray executor. The driver tokenises the corpus, plans the length-sorted batches
exactly as a local pass would (:func:`hyperlens.models.forward._batches`) and cuts that plan
into shards of whole batches; each :class:`EmbedWorker` (a Ray actor, see
:func:`hyperlens.run.map_shards`) loads the model once and runs its shards' batches with the
same code as the local pass. Batches are computed the same way wherever they run, so the
result is bit-identical to ``embed(..., cache=...)`` in one process.

With ``cache=True`` every finished shard is written atomically by the driver to
``$HYPERLENS_CACHE/embeddings/<model>/<key>.parts-b<batch>-s<shard>/<i>-of-<n>.npy``; when
all are there the full array lands atomically at ``<key>.npy``, the very file a local run
reads and writes, and the parts are removed. A pass that stops half-way (a killed driver)
resumes from the finished shards. A shard whose worker fails is retried; a worker whose
process dies is replaced.

The same pattern serves any corpus pass that holds a model (activation capture for later
stages): a worker class with the model in ``__init__`` and one shard per ``__call__``,
given to :func:`hyperlens.run.map_shards` together with an ``on_result`` that stores the
shard.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..run import Executor, Resources, map_shards
from ..utils import atomic_write_bytes, progress
from .forward import _batches, _cache_path, _check_batch_size, _forward_batches, _store, _tokenize
from .handle import ModelHandle

__all__ = ["EmbedWorker", "embed_sharded", "plan_shards", "model_spec"]


def model_spec(h: ModelHandle) -> str:
    """What a worker passes to :func:`hyperlens.models.load` to get the same model."""
    from .zoo import known_models

    if h.name.lower() in known_models():
        return h.name
    if h.path is not None and (Path(h.path) / "config.json").exists():
        return str(h.path)
    raise InputError(
        f"model {h.name!r} has no name or folder that a shard worker could load it from (it "
        "was built in memory); save it with save_pretrained(folder) and pass the folder, or "
        "embed without an executor."
    )


def _dtype_name(h: ModelHandle) -> str | None:
    name = str(h.dtype).replace("torch.", "")
    return None if name == "float32" else name


class EmbedWorker:
    """Holds one model; embeds a shard's planned batches (``__call__``)."""

    def __init__(self, model: str, device: str, dtype: str | None, expect: dict[str, Any]) -> None:
        from .zoo import load

        self.h = load(model, device=device, dtype=dtype)
        got = {"hidden_size": self.h.hidden_size, "num_layers": self.h.num_layers,
               "max_length": self.h.max_length}
        if got != expect:
            raise InputError(
                f"shard worker loaded {model!r} as {got}, but the driver's model is {expect}; "
                "every node must hold the same model files."
            )

    def __call__(self, texts: list[str], batches: list[list[int]], pooling: str,
                 lids: list[int], max_length: int) -> np.ndarray:
        """Shapes: returns [len(lids), len(texts), d] in the order of ``texts``."""
        ids_list, lengths = _tokenize(self.h, texts, max_length)
        plan = [np.asarray(b, dtype=np.int64) for b in batches]
        return _forward_batches(self.h, ids_list, lengths, plan, pooling, lids, show=False)


def plan_shards(lengths: np.ndarray, batch_size: int, shard_size: int) -> list[list[np.ndarray]]:
    """The local pass's batches (longest first), grouped into shards of whole batches with
    about ``shard_size`` texts each. Each shard is a list of index arrays into the corpus."""
    batches = _batches(lengths, batch_size)
    per = max(1, int(shard_size) // batch_size)
    return [batches[i : i + per] for i in range(0, len(batches), per)]


def embed_sharded(
    h: ModelHandle,
    texts: list[str],
    key: tuple[Any, ...],
    pooling: str,
    lids: list[int],
    batch_size: int,
    max_length: int | None,
    executor: Executor,
    *,
    shard_size: int = 2048,
    cache: bool = False,
    show: bool | None = None,
) -> np.ndarray:
    """Embed ``texts`` over the executor's workers; returns ``[len(lids), N, d]`` float32."""
    if not isinstance(shard_size, (int, np.integer)) or isinstance(shard_size, bool) \
            or shard_size < 1:
        raise InputError(f"shard_size must be a positive int, got {shard_size!r}.")
    bs = _check_batch_size(batch_size)
    single = key[0] == "layer"
    path = _cache_path(h, texts, key)
    if cache and path.exists():
        try:
            arr = np.load(path, allow_pickle=False)
            return arr[None] if single else arr
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
    spec = model_spec(h)
    _, lengths = _tokenize(h, texts, max_length)
    shards = plan_shards(lengths, bs, int(shard_size))
    n_shards = len(shards)
    mlen = int(max_length or h.max_length)
    out = np.empty((len(lids), len(texts), h.hidden_size), dtype=np.float32)
    order = [np.concatenate(s) for s in shards]  # corpus rows of each shard, in shard order
    parts = path.parent / f"{path.stem}.parts-b{bs}-s{int(shard_size)}"

    def part(i: int) -> Path:
        return parts / f"{i:05d}-of-{n_shards:05d}.npy"

    done: set[int] = set()
    if cache:
        for i in range(n_shards):
            if part(i).exists():
                try:
                    out[:, order[i]] = np.load(part(i), allow_pickle=False)
                    done.add(i)
                except (OSError, ValueError):
                    part(i).unlink(missing_ok=True)
    bar = iter(progress(range(n_shards - len(done)), total=n_shards - len(done),
                        desc=f"embed {h.name} ({executor.name})", enabled=show, unit="shard"))

    def on_result(i: int, arr: np.ndarray) -> None:
        out[:, order[i]] = arr
        if cache:
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
            atomic_write_bytes(part(i), buf.getvalue())
        next(bar, None)

    local_pos = []  # each shard's batches as positions into its own rows (consecutive runs)
    for s in shards:
        ends = np.cumsum([len(b) for b in s])
        local_pos.append([list(range(int(e) - len(b), int(e)))
                          for b, e in zip(s, ends, strict=True)])
    payload = [{"texts": [texts[int(r)] for r in rows], "batches": lp, "pooling": pooling,
                "lids": list(lids), "max_length": mlen}
               for rows, lp in zip(order, local_pos, strict=True)]
    device = str(h.device)
    expect = {"hidden_size": h.hidden_size, "num_layers": h.num_layers, "max_length": h.max_length}
    map_shards(EmbedWorker, {"model": spec, "device": device, "dtype": _dtype_name(h),
                             "expect": expect},
               payload, on_result, executor, resources=Resources.for_device(device), skip=done)
    next(bar, None)
    if cache:
        _store(h, texts, key, out[0] if single else out)
        shutil.rmtree(parts, ignore_errors=True)
    return out
