"""PackedCodes: construction, block access, conversion and save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hyperlens.errors import DataError, HyperlensError, InputError, ShapeError
from hyperlens.functional import hdc as F, packing as P
from hyperlens.hdc import PackedCodes


@pytest.fixture(scope="module")
def codes() -> torch.Tensor:
    return F.random_hypervectors(257, 1003, "ternary", seed=0, sparsity=0.7)


@pytest.mark.parametrize("scheme", ["twobit", "base3"])
def test_from_dense_round_trip_and_blocks(codes: torch.Tensor, scheme: str) -> None:
    p = PackedCodes.from_dense(codes, scheme)
    assert len(p) == 257 and p.dim == 1003 and p.scheme == scheme
    assert p.bytes_per_code == P.packed_width(1003, scheme)
    assert torch.equal(p.to_dense(), codes)
    assert torch.equal(p.unpack(10, 20), codes[10:20])
    blocks = list(p.iter_blocks(100))
    assert [s for s, _ in blocks] == [0, 100, 200]
    assert torch.equal(torch.cat([b for _, b in blocks]), codes)
    assert torch.equal(p.nonzeros(block_size=50), F.nonzeros(codes))
    assert torch.equal(p[5].to_dense(), codes[5:6])
    assert torch.equal(p[-1].to_dense(), codes[-1:])
    assert torch.equal(p[torch.tensor([3, 1])].to_dense(), codes[[3, 1]])
    other = "base3" if scheme == "twobit" else "twobit"
    assert torch.equal(p.convert(other, block_size=64).to_dense(), codes)
    both = PackedCodes.concat([p[:100], p[100:]])
    assert torch.equal(both.data, p.data)


def test_memory_is_16x_and_20x_smaller_than_float32() -> None:
    c = F.random_hypervectors(10, 10_000, "ternary", seed=1)
    assert PackedCodes.from_dense(c, "twobit").nbytes * 16 == c.numel() * 4
    assert PackedCodes.from_dense(c, "base3").nbytes * 20 == c.numel() * 4


def test_numpy_memmap_is_wrapped(tmp_path, codes: torch.Tensor) -> None:
    packed = P.pack(codes, "base3").numpy()
    mm = np.lib.format.open_memmap(
        tmp_path / "c.npy", mode="w+", dtype=np.uint8, shape=packed.shape
    )
    mm[:] = packed
    p = PackedCodes(mm, 1003, "base3")
    assert torch.equal(p.to_dense(), codes)


@pytest.mark.parametrize("scheme", ["twobit", "base3"])
def test_save_load_round_trip(tmp_path, codes: torch.Tensor, scheme: str) -> None:
    p = PackedCodes.from_dense(codes, scheme)
    path = p.save(tmp_path / "sub" / "codes.safetensors", metadata={"model": "minilm", "seed": 0})
    q, meta = PackedCodes.load_with_metadata(path)
    assert torch.equal(q.data, p.data) and q.dim == 1003 and q.scheme == scheme
    assert meta["model"] == "minilm" and meta["dim"] == "1003" and meta["scheme"] == scheme
    assert [f.name for f in (tmp_path / "sub").iterdir()] == [
        "codes.safetensors"
    ]  # no temp files left
    # header is plain JSON at the start of the file (safetensors), readable without hyperlens
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    assert header["__metadata__"]["format"] == "hyperlens.packed_codes"


def test_load_rejects_foreign_and_broken_files(tmp_path) -> None:
    from safetensors.torch import save_file

    with pytest.raises(DataError, match="does not exist"):
        PackedCodes.load(tmp_path / "missing.safetensors")
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(DataError, match="not a hyperlens packed-codes file"):
        PackedCodes.load(tmp_path / "other.safetensors")
    meta = {
        "format": "hyperlens.packed_codes",
        "version": "1",
        "dim": "1001",
        "scheme": "twobit",
        "n": "2",
    }
    save_file(
        {"codes": torch.zeros(2, 250, dtype=torch.uint8)},
        str(tmp_path / "bad.safetensors"),
        metadata=meta,
    )
    with pytest.raises(DataError, match="inconsistent"):
        PackedCodes.load(tmp_path / "bad.safetensors")
    (tmp_path / "garbage.safetensors").write_bytes(b"not a file at all")
    with pytest.raises(DataError):
        PackedCodes.load(tmp_path / "garbage.safetensors")


def test_bad_construction() -> None:
    with pytest.raises(InputError, match="uint8"):
        PackedCodes(torch.zeros(2, 250, dtype=torch.int8), 1000)
    with pytest.raises(ShapeError, match="dim=1001"):
        PackedCodes(torch.zeros(2, 250, dtype=torch.uint8), 1001)
    with pytest.raises(InputError, match="scheme"):
        PackedCodes(torch.zeros(2, 250, dtype=torch.uint8), 1000, "int2")
    with pytest.raises(HyperlensError, match="parts"):
        PackedCodes.concat([PackedCodes.empty(1, 8), PackedCodes.empty(1, 16)])
    with pytest.raises(InputError, match="block_size"):
        next(PackedCodes.empty(1, 8).iter_blocks(0))


def test_load_as_memory_map_and_search(tmp_path, codes: torch.Tensor) -> None:
    from hyperlens.hdc import search

    p = PackedCodes.from_dense(codes, "base3")
    path = p.save(tmp_path / "codes.safetensors")
    mm = PackedCodes.load(path, mmap=True)
    assert isinstance(mm.data, torch.Tensor) and torch.equal(mm.data, p.data)
    assert torch.equal(mm.unpack(100, 150), codes[100:150])
    a = search(codes[:3], mm, k=4, block_size=64)
    b = search(codes[:3], p, k=4, block_size=64)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.scores, b.scores)
    with pytest.raises(InputError, match="mmap"):
        PackedCodes.load(path, device="meta", mmap=True)
