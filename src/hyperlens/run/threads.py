"""A fixed thread count for a cell, so its numbers do not depend on where it runs.

BLAS reductions (NumPy's matrix products, ``np.corrcoef``) and torch's intra-op kernels
split sums over threads, and the split changes the last bits of a result. A Ray worker
starts with one thread per CPU it was given while this process uses every core, so a cell
computed in one place could differ from the same cell computed in the other by a few ulps.
:func:`pinned_threads` runs a block on a fixed number of threads (torch, and BLAS / OpenMP
pools through ``threadpoolctl``) and restores the previous settings afterwards, so a cell
gives bit-identical numbers in-process and on any worker.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["pinned_threads"]


@contextmanager
def pinned_threads(n: int = 1) -> Iterator[None]:
    """Run the block on ``n`` torch intra-op threads and ``n`` BLAS / OpenMP threads."""
    import torch
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        with threadpool_limits(limits=max(1, int(n))):
            yield
    finally:
        torch.set_num_threads(before)
