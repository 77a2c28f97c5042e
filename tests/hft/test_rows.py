"""Rows of a stored feature file read per batch: the same values as the array, no memory map."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from hyperlens.errors import DataError
from hyperlens.hft.rows import RowArray, RowFile, RowWriter, Standardised
from hyperlens.train import TrainConfig, fit


@pytest.fixture()
def stored(tmp_path):
    a = np.random.default_rng(0).standard_normal((97, 5)).astype(np.float16)
    np.save(tmp_path / "x.npy", a)
    return a, RowFile(tmp_path / "x.npy")


def test_slices_indices_and_views_read_the_stored_rows(stored):
    a, rf = stored
    assert len(rf) == 97 and rf.shape == (97, 5)
    assert np.array_equal(rf[3:10].numpy(), a[3:10]) and rf[50:50].shape == (0, 5)
    idx = np.array([96, 0, 5, 6, 7, 5, -1])
    assert np.array_equal(rf[idx].numpy(), a[idx])
    assert np.array_equal(rf.take_rows(torch.tensor([4, 2])).numpy(), a[[4, 2]])
    view = rf.rows(10, 40)
    assert len(view) == 30 and np.array_equal(view[0:5].numpy(), a[10:15])
    assert np.array_equal(view[np.array([29, 0])].numpy(), a[[39, 10]])
    assert np.array_equal(view.rows(5, 8)[:].numpy(), a[15:18])
    back = pickle.loads(pickle.dumps(view))  # a worker process opens its own descriptor
    assert np.array_equal(back[:].numpy(), a[10:40])
    with pytest.raises(IndexError):
        view[np.array([30])]
    with pytest.raises(IndexError):
        rf[::2]


def test_damaged_files_are_named(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 4), np.float32))
    raw = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(raw[:-8])
    with pytest.raises(DataError, match="truncated"):
        RowFile(tmp_path / "x.npy")
    (tmp_path / "y.npy").write_bytes(b"not an array")
    with pytest.raises(DataError, match="not a readable"):
        RowFile(tmp_path / "y.npy")


def test_the_training_loop_batches_a_row_source_like_a_tensor(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]])
    np.save(tmp_path / "x.npy", x.numpy())
    cfg = TrainConfig(lr=0.05, epochs=3, batch_size=16, seed=0)

    def loss(m, b):
        return torch.nn.functional.mse_loss(m(b["x"].float()), b["y"])

    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    fit(a, loss, {"x": x, "y": y}, cfg)
    fit(b, loss, {"x": RowFile(tmp_path / "x.npy"), "y": y}, cfg)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_several_files_read_as_one_across_their_boundaries(tmp_path):
    rng = np.random.default_rng(1)
    parts = [rng.standard_normal((n, 4)).astype(np.float16) for n in (5, 1, 9, 3)]
    for i, p in enumerate(parts):
        np.save(tmp_path / f"p{i}.npy", p)
    a = np.concatenate(parts)
    rf = RowFile([tmp_path / f"p{i}.npy" for i in range(4)])
    assert rf.shape == (18, 4)
    assert np.array_equal(rf[:].numpy(), a) and np.array_equal(rf[4:16].numpy(), a[4:16])
    idx = rng.permutation(18)
    assert np.array_equal(rf[idx].numpy(), a[idx])
    view = rf.rows(5, 15)
    assert np.array_equal(view[np.array([0, 9, 1])].numpy(), a[[5, 14, 6]])
    np.save(tmp_path / "wide.npy", np.zeros((2, 5), np.float16))
    with pytest.raises(DataError, match="differ in width"):
        RowFile([tmp_path / "p0.npy", tmp_path / "wide.npy"])


def test_a_row_array_answers_like_the_array(tmp_path):
    a = np.arange(60, dtype=np.int32).reshape(12, 5)
    np.save(tmp_path / "a.npy", a[:7])
    np.save(tmp_path / "b.npy", a[7:])
    ra = RowArray(RowFile([tmp_path / "a.npy", tmp_path / "b.npy"]))
    assert ra.shape == (12, 5) and ra.dtype == np.int32 and len(ra) == 12
    assert np.array_equal(np.asarray(ra), a) and np.array_equal(ra[3:9], a[3:9])
    assert np.array_equal(ra[np.array([11, 0])], a[[11, 0]]) and np.array_equal(ra[-1], a[-1])
    assert ra[0, -1] == a[0, -1] and np.array_equal(ra[2:4, 1:3], a[2:4, 1:3])
    mask = a[:, 0] % 20 == 0
    assert np.array_equal(ra[mask], a[mask]) and np.array_equal(ra.head(8)[:], a[:8])


def test_standardised_rows_are_the_z_scores_of_the_sources(tmp_path):
    rng = np.random.default_rng(2)
    s, q = (rng.standard_normal((30, k)).astype(np.float16) for k in (3, 2))
    np.save(tmp_path / "s.npy", s)
    both = np.concatenate([s, q], 1).astype(np.float32)
    mean, std = torch.from_numpy(both.mean(0)), torch.from_numpy(both.std(0))
    want = ((torch.from_numpy(both) - mean) / std).half()
    z = Standardised([RowFile(tmp_path / "s.npy"), torch.from_numpy(q)], mean, std)
    assert z.shape == (30, 5)
    assert torch.equal(z[:], want) and torch.equal(z.take_rows(torch.tensor([7, 2])), want[[7, 2]])
    assert torch.equal(z.rows(10, 20)[np.array([9, 0])], want[[19, 10]])
    with pytest.raises(DataError, match="columns"):
        Standardised([torch.from_numpy(q)], mean, std)


def test_row_writer_writes_what_a_memory_map_would_and_refuses_a_short_file(tmp_path) -> None:
    """The stored features are written block by block; the bytes are those of assigning
    the same float32 blocks into a float16 memory map (the cast rounds alike), and a
    file left short or overfilled is an error, never a file that reads as finished."""
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal((n, 7)).astype(np.float32) * 1e3 for n in (5, 8, 3)]
    ref = np.lib.format.open_memmap(tmp_path / "ref.npy", "w+", np.float16, (16, 7))
    with RowWriter(tmp_path / "new.npy", (16, 7), np.float16) as w:
        a = 0
        for b in blocks:
            ref[a:a + len(b)] = b
            w.write(b)
            a += len(b)
    ref.flush()
    del ref
    assert (tmp_path / "new.npy").read_bytes() == (tmp_path / "ref.npy").read_bytes()
    assert torch.equal(RowFile(tmp_path / "new.npy")[2:9],
                       torch.from_numpy(np.concatenate(blocks)[2:9].astype(np.float16)))
    with pytest.raises(DataError, match="15 of 16 rows written"):
        with RowWriter(tmp_path / "short.npy", (16, 7), np.float16) as w:
            w.write(np.zeros((15, 7)))
    w = RowWriter(tmp_path / "wide.npy", (4, 7), np.float16)
    with pytest.raises(DataError, match=r"expected \[rows, 7\]"):
        w.write(np.zeros((2, 6)))
    with pytest.raises(DataError, match="more than the 4 of its header"):
        w.write(np.zeros((5, 7)))
    w._f.close()
