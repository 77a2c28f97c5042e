"""Rows of a stored feature file read per batch: the same values as the array, no memory map."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from hyperlens.errors import DataError
from hyperlens.hft.rows import RowFile
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
