"""Adapter files and prefix caches on disk: modes, damaged files, atomic rebuilds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from hyperlens.errors import ConfigError, DataError, InputError
from hyperlens.inject import load_adapter, make_adapter, save_adapter
from hyperlens.inject.prefix_cache import PrefixCache

PRE = [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16]]
CUE = [20, 21]
VERB = [30, 31]


def _umask_mode() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _rewrite(path: Path, edit) -> None:
    """Rewrite a safetensors file through ``edit(tensors, meta)`` (a readable but wrong file)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as fh:
        meta = dict(fh.metadata() or {})
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    edit(tensors, meta)
    save_file(tensors, str(path), metadata=meta)


def _steer(tmp_path: Path) -> Path:
    ad = make_adapter("steer", d_model=8, layers=(0, 1))
    with torch.no_grad():
        for p in ad.parameters():
            p.fill_(0.25)
    return save_adapter(ad, tmp_path / "steer.safetensors")


def test_adapter_file_has_the_umask_mode(tmp_path):
    path = _steer(tmp_path)
    assert path.stat().st_mode & 0o777 == _umask_mode()
    assert [p.name for p in tmp_path.iterdir()] == ["steer.safetensors"]  # no temp left
    back = load_adapter(path)
    assert all((p == 0.25).all() for p in back.parameters())


@pytest.mark.parametrize("damage", [
    lambda b: b[: len(b) // 2],  # truncated
    lambda b: b"",  # empty
    lambda b: os.urandom(300),  # garbage
    lambda b: b[:8] + b"{" * 16 + b[24:],  # a garbled header
])
def test_damaged_adapter_file_is_named(tmp_path, damage):
    path = _steer(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=r"^adapter file '.*steer\.safetensors' is damaged \(.+\); "
                                        r"delete it, then train the adapter again"):
        load_adapter(path)


def test_adapter_file_with_a_broken_header_or_tensors(tmp_path):
    path = _steer(tmp_path)
    _rewrite(path, lambda t, m: m.pop("config"))
    with pytest.raises(DataError, match=r"damaged \(its header is incomplete: 'config'\)"):
        load_adapter(path)
    path = _steer(tmp_path)
    _rewrite(path, lambda t, m: t.clear() or t.update(other=torch.zeros(1)))
    with pytest.raises(DataError, match=r"damaged \(its tensors do not fit its config: "):
        load_adapter(path)
    path = _steer(tmp_path)
    _rewrite(path, lambda t, m: m.update(config=json.dumps({"d_model": 8, "wings": 2})))
    with pytest.raises(ConfigError, match="unknown field"):  # not damage: a config it lacks
        load_adapter(path)
    _rewrite(path, lambda t, m: m.update(format="something/else"))
    with pytest.raises(InputError, match="is not a hyperlens adapter file"):
        load_adapter(path)


def test_prefix_cache_is_written_atomically_and_rebuilt_when_damaged(tmp_path, tiny_llama):
    path = tmp_path / "cache" / "prefix.safetensors"
    pc, reused = PrefixCache.cached(path, tiny_llama, PRE, CUE, VERB, kv_dtype=torch.float32)
    assert not reused and path.stat().st_mode & 0o777 == _umask_mode()
    assert [p.name for p in path.parent.iterdir()] == ["prefix.safetensors"]
    again, reused = PrefixCache.cached(path, tiny_llama, PRE, CUE, VERB, kv_dtype=torch.float32)
    assert reused and torch.equal(again.keys, pc.keys) and torch.equal(again.states, pc.states)
    rows, pseudo = torch.tensor([0, 2]), torch.randn(2, 3, 32)
    with torch.no_grad():
        torch.testing.assert_close(again.suffix_forward(rows, pseudo),
                                   pc.suffix_forward(rows, pseudo))
    # a truncated file: load names it, cached rebuilds it with a one-line warning
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"^prefix cache '.*prefix\.safetensors' is damaged "
                                        r"\(.+\); delete it; the next run rebuilds it\.$"):
        PrefixCache.load(path, tiny_llama, CUE, VERB)
    with pytest.warns(UserWarning, match=r"^prefix cache '.*' is damaged \(.+\); rebuilding it\.$"):
        back, reused = PrefixCache.cached(path, tiny_llama, PRE, CUE, VERB,
                                          kv_dtype=torch.float32)
    assert not reused and torch.equal(back.keys, pc.keys)
    assert torch.equal(PrefixCache.load(path, tiny_llama, CUE, VERB).values, pc.values)


def test_prefix_cache_with_clashing_tensors_is_damaged(tmp_path, tiny_llama):
    path = tmp_path / "prefix.safetensors"
    PrefixCache(tiny_llama, PRE, CUE, VERB, kv_dtype=torch.float32).save(path)
    _rewrite(path, lambda t, m: t.update(lengths=t["lengths"] + 1))
    with pytest.raises(DataError, match="the text offsets do not match the stored lengths"):
        PrefixCache.load(path, tiny_llama, CUE, VERB)
    _rewrite(path, lambda t, m: t.pop("verb_logits"))
    with pytest.raises(DataError, match=r"tensors \['verb_logits'\] are missing"):
        PrefixCache.load(path, tiny_llama, CUE, VERB)


def test_a_crash_while_saving_leaves_the_old_cache(tmp_path, tiny_llama, monkeypatch):
    import safetensors.torch

    path = tmp_path / "prefix.safetensors"
    pc = PrefixCache(tiny_llama, PRE, CUE, VERB, kv_dtype=torch.float32)
    pc.save(path)
    before = path.read_bytes()

    def half(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", half)
    with pytest.raises(OSError, match="disk full"):
        pc.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["prefix.safetensors"]
