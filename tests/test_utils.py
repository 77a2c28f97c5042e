from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from hyperlens.errors import ConfigError, DeviceError, HyperlensError, InputError, ShapeError
from hyperlens.utils import (
    as_float_matrix,
    as_real_tensor,
    atomic_path,
    atomic_write_json,
    atomic_write_text,
    cache_dir,
    check_finite,
    check_int,
    check_level,
    make_generator,
    resolve_device,
    stable_hash,
    to_jsonable,
)


def test_resolve_device_auto_and_cpu():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda"}
    assert resolve_device(None) == resolve_device("auto")


def test_resolve_device_cuda_without_gpu_is_clear():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible; the no-GPU error path cannot be exercised here")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_resolve_device_rejects_nonsense():
    with pytest.raises(DeviceError, match="device='gpu0'"):
        resolve_device("gpu0")


def test_generator_is_reproducible_and_validates_seed():
    a = torch.randn(5, generator=make_generator(3))
    b = torch.randn(5, generator=make_generator(3))
    torch.testing.assert_close(a, b)
    with pytest.raises(InputError, match="seed must be an int"):
        make_generator("3")  # type: ignore[arg-type]


def test_cache_dir_honours_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERLENS_CACHE", str(tmp_path / "c"))
    p = cache_dir("models", "x")
    assert p == tmp_path / "c" / "models" / "x" and p.is_dir()


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert target.read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


def test_atomic_path_replaces_folder_only_on_success(tmp_path):
    target = tmp_path / "model"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "a.txt").write_text("2")
            raise RuntimeError("crash")
    assert (target / "a.txt").read_text() == "1"
    assert sorted(os.listdir(tmp_path)) == ["model"]


def test_to_jsonable_handles_numpy_torch_and_nan():
    out = to_jsonable(
        {"a": np.float32(1.5), "b": torch.tensor([1, 2]), "c": float("nan"), 3: (np.int64(2),)}
    )
    assert out == {"a": 1.5, "b": [1, 2], "c": None, "3": [2]}
    json.dumps(out, allow_nan=False)


def test_stable_hash_is_stable_and_sensitive():
    assert stable_hash("a", 1, [1, 2]) == stable_hash("a", 1, [1, 2])
    assert stable_hash("ab", "c") != stable_hash("a", "bc")


def test_as_float_matrix_validates():
    assert as_float_matrix([[1, 2], [3, 4]], "x").dtype == torch.float32
    with pytest.raises(ShapeError, match=r"x must be 2-D .* got shape \(3,\)"):
        as_float_matrix([1, 2, 3], "x")
    with pytest.raises(InputError, match="NaN"):
        as_float_matrix([[1.0, float("nan")]], "x")
    with pytest.raises(ShapeError, match="at least 3 row"):
        as_float_matrix([[1.0, 2.0]], "x", min_rows=3)
    with pytest.raises(HyperlensError):
        check_finite(torch.tensor([float("inf")]), "v")


def test_as_float_matrix_keeps_floating_dtype_and_refuses_other_kinds():
    x64 = torch.zeros(3, 2, dtype=torch.float64)
    assert as_float_matrix(x64, "x", dtype=None) is x64  # no copy, dtype kept
    assert as_float_matrix([[1, 2]], "x", dtype=None).dtype == torch.float32
    assert as_real_tensor(np.arange(3), "v").dtype == torch.int64
    with pytest.raises(InputError, match="Complex data not supported"):
        as_real_tensor(np.ones(3, dtype=complex), "v")
    with pytest.raises(InputError, match="v must be a numeric array"):
        as_real_tensor(["a", "b"], "v")
    with pytest.raises(InputError, match="v must be real-valued"):
        as_real_tensor(torch.ones(2, dtype=torch.bool), "v", allow_bool=False)


@pytest.mark.parametrize("bad", [True, 2.0, "3", None, [1]])
def test_check_int_rejects_bools_floats_and_strings(bad):
    with pytest.raises(InputError, match=rf"k must be an int >= 1, got {type(bad).__name__}"):
        check_int(bad, "k", minimum=1)


def test_check_int_range_hint_and_error_class():
    assert check_int(np.int64(4), "k", minimum=1, maximum=4) == 4
    assert type(check_int(np.int32(0), "k")) is int
    with pytest.raises(InputError, match=r"k must be >= 1, got 0\. pass k=4\."):
        check_int(0, "k", minimum=1, hint="pass k=4.")
    with pytest.raises(InputError, match="k must be <= 4, got 5"):
        check_int(5, "k", minimum=1, maximum=4)
    with pytest.raises(InputError, match=r"an int in \[1, 4\]"):
        check_int(1.5, "k", minimum=1, maximum=4)
    with pytest.raises(ConfigError, match="--layers"):
        check_int(-1, "--layers", minimum=0, error=ConfigError)


def test_check_level():
    assert check_level(0.9) == 0.9
    for bad in (0, 1, 1.5, True, "0.9"):
        with pytest.raises(InputError, match="level must be a float in \\(0, 1\\)"):
            check_level(bad)


def test_check_finite_fast_path_keeps_every_verdict() -> None:
    # the one-reduction path (a finite sum) must never pass a NaN or Inf, and a sum that
    # overflows on finite values must still pass through the full check
    big = torch.tensor([3.0e38, 3.0e38, -1.0], dtype=torch.float32)
    assert not torch.isfinite(big.sum())
    check_finite(big, "v")
    check_finite(torch.zeros(0), "v")
    for bad in (float("nan"), float("inf"), -float("inf")):
        for dtype in (torch.float16, torch.float32, torch.float64):
            x = torch.ones(50, 7, dtype=dtype)
            x[31, 2] = bad
            with pytest.raises(InputError, match=r"first at index \(31, 2\)"):
                check_finite(x, "v")
    x = torch.tensor([float("inf"), -float("inf"), 1.0])  # inf - inf: the sum is NaN
    with pytest.raises(InputError, match="2 value"):
        check_finite(x, "v")


def test_retain_freed_memory_stops_refaulting_large_blocks() -> None:
    import resource

    from hyperlens.utils import retain_freed_memory

    if not retain_freed_memory():
        pytest.skip("not glibc: mallopt is not available")
    assert retain_freed_memory()  # idempotent
    pages = (32 << 20) // resource.getpagesize()  # a 32 MB block
    torch.ones(8 << 20)  # warm: the first block faults its pages once
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        t = torch.ones(8 << 20)  # 32 MB of float32, freed at the next assignment
        del t
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 8 * pages  # without it: 20 * pages (every block faulted again)


def test_trimmed_releases_the_retained_heap_every_few_items(monkeypatch) -> None:
    import hyperlens.utils as U

    calls: list[int] = []
    monkeypatch.setattr(U, "release_freed_memory", lambda: calls.append(1))
    assert list(U.trimmed(iter(range(10)), every=3)) == list(range(10))
    assert len(calls) == 3  # after items 3, 6 and 9
    with pytest.raises(InputError, match="every must be at least 1"):
        list(U.trimmed(range(3), every=0))
    assert (U.trim_every(2048), U.trim_every(256), U.trim_every(10**6)) == (2, 16, 1)


def test_a_trim_hands_a_retained_block_back_to_the_os() -> None:
    """Under :func:`retain_freed_memory` a freed 256 MB block stays resident; one
    :func:`trimmed` period returns it (a child process: its own heap and settings)."""
    import subprocess
    import sys

    code = """
import torch
from hyperlens.utils import retain_freed_memory, trimmed
def anon():
    for line in open('/proc/self/status'):
        if line.startswith('RssAnon'):
            return int(line.split()[1]) // 1024
if not retain_freed_memory():
    print('skip'); raise SystemExit
t = torch.ones(64 << 20)  # 256 MB, every page touched
del t
kept = anon()
for _ in trimmed(range(1), every=1):
    pass
print(kept, anon())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    if out == ["skip"]:
        pytest.skip("not glibc: mallopt is not available")
    kept, after = map(int, out)
    assert kept - after > 200, (kept, after)
