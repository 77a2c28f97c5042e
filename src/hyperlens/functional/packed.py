"""bfloat16 linear maps on weights laid out once for oneDNN, for inference on the CPU.

A ``[1, d] @ W.T`` product with a large bfloat16 ``W`` (a vocabulary map is ``49,152 x
576``) is what a token-by-token decoder spends most of a step on. PyTorch's default CPU path
streams ``W`` in its plain row-major layout; oneDNN's linear on a weight reordered once into
its blocked layout (``torch.ops.mkldnn._reorder_linear_weight``, the layout
``torch.compile`` freezes CPU weights into) runs the same product with native bfloat16
instructions, about 2.4x faster at batch 1 on an AVX-512-BF16 CPU and the same bits
(``benchmarks/bench_packed_linear.py`` measures both and compares them).

Used where a product is inference only (no gradient is asked for) and the CPU has native
bfloat16 (:func:`~hyperlens.functional.kernels.features`); everywhere else the plain
``F.linear`` runs. :func:`pack_linears` swaps every ``nn.Linear`` of a bfloat16 inference
copy of a model for a :class:`PackedLinear` (the decoders' speed check packs teacher and
student alike, so each runs its fastest).

Examples:
    >>> import torch
    >>> w = torch.randn(64, 16).bfloat16()
    >>> lin = PackedLinear(w)
    >>> x = torch.randn(2, 16).bfloat16()
    >>> with torch.no_grad():
    ...     bool(torch.allclose(lin(x).float(), (x @ w.T).float(), atol=1e-2))
    True
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import features

__all__ = ["PackedLinear", "pack_linears", "packable", "packed_available"]

_OPS: bool | None = None


def packed_available() -> bool:
    """Whether this torch has oneDNN's reordered-weight linear (``torch.ops.mkldnn``)."""
    global _OPS
    if _OPS is None:
        try:
            _OPS = bool(torch.backends.mkldnn.is_available()) and hasattr(
                torch.ops.mkldnn, "_reorder_linear_weight") and hasattr(
                torch.ops.mkldnn, "_linear_pointwise")
        except (AttributeError, RuntimeError):
            _OPS = False
    return _OPS


def packable(weight: torch.Tensor) -> bool:
    """Whether ``weight`` gets the packed path: a 2-D bfloat16 CPU tensor, on a CPU with
    native bfloat16 and a torch with the oneDNN ops."""
    return (weight.dtype == torch.bfloat16 and weight.device.type == "cpu"
            and weight.ndim == 2 and features().bf16 and packed_available())


class PackedLinear(nn.Module):
    """``y = x @ weight.T + bias`` with ``weight`` also held in oneDNN's layout.

    The plain ``weight`` stays (state dicts, gradients and devices other than the CPU use
    it); the packed copy is made on the first inference call and serves calls that need no
    gradient. Shapes: ``[..., d_in] -> [..., d_out]``.
    """

    weight: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("weight", weight.detach())
        self.register_buffer("bias", None if bias is None else bias.detach())
        self._packed: torch.Tensor | None = None
        self._use = packable(self.weight)

    @classmethod
    def from_linear(cls, lin: nn.Linear) -> PackedLinear:
        return cls(lin.weight, lin.bias)

    def __getstate__(self) -> dict[str, Any]:
        # the packed copy is an opaque oneDNN tensor (no storage to copy or pickle): copies
        # and pickles leave it out and pack again on first use
        state = super().__getstate__() if hasattr(super(), "__getstate__") else dict(
            self.__dict__)
        return {**state, "_packed": None}

    def packed(self) -> torch.Tensor:
        if self._packed is None:
            self._packed = torch.ops.mkldnn._reorder_linear_weight(self.weight, 1)
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._use or x.dtype != self.weight.dtype or (
                torch.is_grad_enabled() and x.requires_grad):
            return F.linear(x, self.weight, self.bias)
        shape = x.shape
        y = torch.ops.mkldnn._linear_pointwise(
            x.reshape(-1, shape[-1]).contiguous(), self.packed(), self.bias, "none", [], "")
        return y.reshape(*shape[:-1], y.shape[-1])


def pack_linears(module: nn.Module) -> int:
    """Replace every ``nn.Linear`` under ``module`` (in place; for an inference copy) with a
    :class:`PackedLinear` over the same tensors; returns how many were replaced (0 where the
    weights are not packable: float32, another device, or a CPU without native bfloat16)."""
    swaps: list[tuple[Any, str, nn.Linear]] = [
        (parent, name, child) for parent in module.modules()
        for name, child in parent.named_children()
        if type(child) is nn.Linear and packable(child.weight)]
    for parent, name, child in swaps:
        setattr(parent, name, PackedLinear.from_linear(child))
    return len(swaps)
