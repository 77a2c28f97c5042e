"""Sharded embedding: shards over Ray actors equal one local pass bit for bit, land in the
local cache entry, and survive an actor killed mid-run (replaced; every shard once)."""

from __future__ import annotations

import collections
import importlib
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hyperlens.errors import InputError
from hyperlens.models import embed, embed_layers, from_module, load
from hyperlens.run import LocalExecutor, map_shards

embed_mod = importlib.import_module("hyperlens.models.embedding")  # the module, not the function
forward_mod = importlib.import_module("hyperlens.models.forward")
es = importlib.import_module("hyperlens.models.embed_shards")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny_bert, tiny_tokenizer) -> Path:
    """The tiny BERT and its tokenizer saved as a folder, which every actor loads."""
    d = tmp_path_factory.mktemp("tiny-bert")
    tiny_bert.save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    rng = np.random.default_rng(1)
    return [" ".join(f"w{int(i)}" for i in rng.integers(4, 120, size=int(n)))
            for n in rng.integers(1, 30, size=60)]


def test_plan_cuts_the_local_batches_into_whole_shards(corpus, tiny_folder) -> None:
    h = load(str(tiny_folder), device="cpu")
    _, lengths = forward_mod._tokenize(h, corpus, None)
    shards = es.plan_shards(lengths, 4, 10)  # 10 // 4 = 2 batches per shard
    assert [len(s) for s in shards] == [2] * 7 + [1]
    flat = np.concatenate([b for s in shards for b in s])
    np.testing.assert_array_equal(flat, np.concatenate(forward_mod._batches(lengths, 4)))
    assert sorted(flat.tolist()) == list(range(len(corpus)))
    assert es.model_spec(h) == str(tiny_folder)


def test_in_memory_model_cannot_be_sharded(tiny_bert, tiny_tokenizer, ray_executor) -> None:
    h = from_module(tiny_bert, tiny_tokenizer)
    with pytest.raises(InputError, match="save_pretrained"):
        embed(["w4 w5"], h, executor=ray_executor)


def test_local_executor_map_shards_runs_in_process() -> None:
    got: dict[int, int] = {}
    stats = map_shards(_Square, {"k": 3}, [{"x": i} for i in range(5)], got.__setitem__,
                       LocalExecutor(), skip={1})
    assert got == {0: 0, 2: 12, 3: 27, 4: 48}
    assert stats == {"shards": 4, "attempts": 4, "retried": 0, "workers_started": 1}


class _Square:
    def __init__(self, k: int) -> None:
        self.k = k

    def __call__(self, x: int) -> int:
        return self.k * x * x


class _CrashOnce(es.EmbedWorker):
    """Kills its own process (SIGKILL) on its shard call once two shards are done (once in all)."""

    log_dir = ""

    def __call__(self, texts, **kw):  # type: ignore[override]
        done = os.listdir(self.log_dir)
        if len(done) >= 2 and "crashed" not in done:
            # Claim the crash atomically: two actors can both list the folder before
            # either has written the marker, and only one of them may die.
            try:
                os.close(os.open(Path(self.log_dir, "crashed"),
                                 os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os.kill(os.getpid(), signal.SIGKILL)
        out = super().__call__(texts, **kw)
        Path(self.log_dir, f"shard-{len(done)}-{os.getpid()}").touch()
        return out


def test_sharded_equals_local_survives_a_killed_actor_and_lands_in_the_cache(
    corpus, tiny_folder, tmp_path, monkeypatch, ray_executor
) -> None:
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setenv("HYPERLENS_CACHE", str(tmp_path / "cache"))
    (tmp_path / "log").mkdir()
    monkeypatch.setattr(_CrashOnce, "log_dir", str(tmp_path / "log"))
    monkeypatch.setattr(es, "EmbedWorker", _CrashOnce)
    calls: collections.Counter[int] = collections.Counter()
    stats: dict[str, int] = {}
    real = es.map_shards

    def spy(worker_cls, init_kwargs, shards, on_result, executor, **kw):
        def counted(i, value):
            calls[i] += 1
            on_result(i, value)

        stats.update(real(worker_cls, init_kwargs, shards, counted, executor, **kw))
        return stats

    monkeypatch.setattr(es, "map_shards", spy)
    h = load(str(tiny_folder), device="cpu")
    # Bit-identity holds at equal thread counts: each actor runs its shards on one thread
    # (Resources.num_cpus = 1), so the local reference does too. With 2 threads, some CPUs
    # (AMD Zen 5 here) block the tiny GEMMs differently and the last bit moves.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = embed_layers(corpus, h, batch_size=4)
    finally:
        torch.set_num_threads(threads)
    got = embed_layers(corpus, h, batch_size=4, executor=ray_executor, shard_size=8,
                       cache=True)
    np.testing.assert_array_equal(got, local)  # bit for bit, although an actor died
    assert (tmp_path / "log" / "crashed").exists()
    n = stats["shards"]
    assert n == 8 and sorted(calls) == list(range(n)) and set(calls.values()) == {1}  # once each
    assert stats["retried"] == 1 and stats["attempts"] == n + 1
    assert stats["workers_started"] == 3  # two actors and the replacement

    # the result sits in the cache entry a local run reads; the shard parts are gone
    key = ("layers", (0, 1, 2), "mean", None, h.max_length)
    path = forward_mod._cache_path(h, corpus, key)
    assert path.is_file() and not list(path.parent.glob("*.parts-*"))

    def no_compute(*a, **k):
        raise AssertionError("the cache entry written by the sharded pass was not used")

    monkeypatch.setattr(embed_mod, "_embed_transformer", no_compute)
    np.testing.assert_array_equal(embed_layers(corpus, h, batch_size=4, cache=True), local)
    np.testing.assert_array_equal(embed(corpus, h, layer=1, cache=True), local[1])


def test_interrupted_sharded_pass_resumes_from_its_stored_shards(
    corpus, tiny_folder, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("HYPERLENS_CACHE", str(tmp_path / "cache"))
    h = load(str(tiny_folder), device="cpu")
    local = embed(corpus, h, batch_size=4)
    key = ("layer", 2, "mean", None, h.max_length)
    path = forward_mod._cache_path(h, corpus, key)
    _, lengths = forward_mod._tokenize(h, corpus, None)
    shards = es.plan_shards(lengths, 4, 8)
    parts = path.parent / f"{path.stem}.parts-b4-s8"
    parts.mkdir(parents=True)
    for i in (0, 3):  # what a killed driver had stored
        rows = np.concatenate(shards[i])
        np.save(parts / f"{i:05d}-of-{len(shards):05d}.npy", local[None, rows])
    (parts / f"00005-of-{len(shards):05d}.npy").write_bytes(b"torn")  # recomputed
    seen: dict[str, set[int]] = {}
    real = es.map_shards

    def spy(*a, skip=None, **kw):
        seen["skip"] = set(skip or ())
        return real(*a, skip=skip, **kw)

    monkeypatch.setattr(es, "map_shards", spy)
    got = es.embed_sharded(h, corpus, key, "mean", [2], 4, None, LocalExecutor(), shard_size=8,
                           cache=True)
    assert seen["skip"] == {0, 3}
    np.testing.assert_array_equal(got[0], local)
    assert path.is_file() and not parts.exists()
