"""The aligner interface, the registry of aligners by name, and save/load.

An aligner is fitted on *paired* anchors, the same ``n`` texts embedded by two models
(``teacher [n, d_t]`` and ``student [n, d_s]``), and maps either side into one shared
space of ``dim_`` coordinates. Transfer then trains a classifier on mapped teacher
vectors and applies it to mapped student vectors.

Aligners follow the scikit-learn conventions: ``__init__`` only stores parameters (each
aligner declares them as fields of ``@dataclass(eq=False, repr=False)``, so the generated
``__init__`` does exactly that), ``fit`` validates and returns ``self``, learned state ends
in ``_``. Every aligner registers itself under a short name with :func:`register_aligner`,
so the CLI and user code build them with ``make_aligner("procrustes", scaling=True)``; a
user's own aligner joins the registry the same way.

Files: :meth:`Aligner.save` writes one ``.safetensors`` file holding the learned arrays,
with the aligner's name and parameters in the file's metadata; :func:`load_aligner`
rebuilds it without pickle.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ..errors import InputError, NotFittedError, ShapeError
from ..utils import Registry, as_float_matrix, atomic_path

__all__ = [
    "Aligner",
    "register_aligner",
    "make_aligner",
    "available_aligners",
    "aligner_class",
    "load_aligner",
    "check_anchor_pair",
]

FORMAT = "hyperlens.align/1"

ArrayLike = np.ndarray | torch.Tensor

_REGISTRY: Registry[Aligner] = Registry(
    "aligner", "Register your own with @hyperlens.align.register_aligner('name')."
)
#: Class decorator that adds an :class:`Aligner` subclass under a name:
#: ``@register_aligner("mine")``; :class:`ConfigError` when the name is taken (pass
#: ``replace=True`` to override).
register_aligner = _REGISTRY.register
#: Names of every registered aligner, sorted.
available_aligners = _REGISTRY.names
#: The aligner class registered under a name; :class:`ConfigError` listing the names otherwise.
aligner_class = _REGISTRY.lookup


def make_aligner(name: str, **params: Any) -> Aligner:
    """Build the aligner registered under ``name`` with ``params``.

    Unknown parameters raise :class:`ConfigError` naming the accepted ones.
    """
    cls = aligner_class(name)
    _REGISTRY.check_known(name, params, cls.param_names(), "parameter")
    return cls(**params)


def check_anchor_pair(
    teacher: Any, student: Any, *, min_rows: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate paired anchors and return them as float64 CPU tensors.

    Shapes:
        teacher: ``[n, d_t]``; student: ``[n, d_s]`` (same ``n``: row ``i`` of each is the
        same text).
    """
    t = as_float_matrix(teacher, "teacher anchors", dtype=torch.float64, device="cpu")
    s = as_float_matrix(student, "student anchors", dtype=torch.float64, device="cpu")
    if t.shape[0] != s.shape[0]:
        raise ShapeError(
            f"teacher and student anchors must be paired row by row, got {t.shape[0]} teacher "
            f"rows (shape {tuple(t.shape)}) and {s.shape[0]} student rows (shape "
            f"{tuple(s.shape)}); embed the same anchor texts with both models."
        )
    if t.shape[0] < min_rows:
        raise ShapeError(
            f"need at least {min_rows} paired anchors, got n_samples={t.shape[0]}; add anchor "
            "texts."
        )
    return t, s


class Aligner(BaseEstimator):
    """Base class: maps teacher and student embeddings into one shared space.

    Subclasses implement :meth:`_fit` (on validated float64 tensors) and
    :meth:`_transform` (``side`` is ``"teacher"`` or ``"student"``), store their learned
    arrays in attributes ending in ``_`` listed by :meth:`_state_names`, and register with
    :func:`register_aligner`.

    Attributes set by ``fit``:
        dim_t_, dim_s_: input widths; dim_: width of the shared space; n_anchors_.
    """

    name: ClassVar[str] = "base"

    # ------------------------------------------------------------------ parameters
    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters (JSON-friendly values); ``deep`` as in scikit-learn."""
        return {p: getattr(self, p) for p in self.param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __sklearn_tags__(self) -> Any:
        """scikit-learn tags: ``fit(teacher, student)`` needs a 2-D ``student`` (the "y")."""
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = False
        return tags

    # ------------------------------------------------------------------ public API
    def fit(self, teacher: ArrayLike, student: ArrayLike) -> Aligner:
        """Fit on paired anchors and return ``self``.

        Shapes:
            teacher: ``[n, d_t]``; student: ``[n, d_s]``.
        """
        if student is None:
            raise InputError(
                f"{type(self).__name__} requires y to be passed, but the target y is None: "
                "fit(teacher, student) needs the student's embeddings of the same anchors."
            )
        t, s = check_anchor_pair(teacher, student, min_rows=self._min_anchors())
        self.n_features_in_ = int(t.shape[1])
        self.dim_t_ = int(t.shape[1])
        self.dim_s_ = int(s.shape[1])
        self.n_anchors_ = int(t.shape[0])
        self._fit(t, s)
        return self

    def transform_teacher(self, x: ArrayLike) -> ArrayLike:
        """Map teacher embeddings ``[N, d_t]`` into the shared space ``[N, dim_]``."""
        return self._apply(x, "teacher")

    def transform_student(self, x: ArrayLike) -> ArrayLike:
        """Map student embeddings ``[N, d_s]`` into the shared space ``[N, dim_]``."""
        return self._apply(x, "student")

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "dim_")

    # ------------------------------------------------------------------ to implement
    def _min_anchors(self) -> int:
        return 2

    def _fit(self, teacher: torch.Tensor, student: torch.Tensor) -> None:
        raise NotImplementedError

    def _transform(self, x: torch.Tensor, side: str) -> torch.Tensor:
        raise NotImplementedError

    def _state_names(self) -> list[str]:
        """Names of the learned tensor attributes saved by :meth:`save`."""
        return []

    def _extra_state(self) -> dict[str, Any]:
        """JSON-friendly learned values that are not arrays (saved in the metadata)."""
        return {}

    def _set_extra_state(self, extra: dict[str, Any]) -> None:
        for k, v in extra.items():
            setattr(self, k, v)

    # ------------------------------------------------------------------ helpers
    def _apply(self, x: ArrayLike, side: str) -> ArrayLike:
        if not self.is_fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted; call .fit(teacher_anchors, "
                "student_anchors) before transform_teacher/transform_student."
            )
        width = self.dim_t_ if side == "teacher" else self.dim_s_
        t = as_float_matrix(x, f"{side} embeddings", dtype=torch.float64, device="cpu")
        if t.shape[1] != width:
            raise ShapeError(
                f"{side} embeddings must have {width} columns (the width seen in fit), got "
                f"shape {tuple(t.shape)}; embed with the same model and layer as the anchors."
            )
        out = self._transform(t, side)
        if isinstance(x, torch.Tensor):
            return out.to(dtype=torch.float32, device=x.device)
        return out.numpy().astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted aligner to one ``.safetensors`` file (atomically)."""
        from safetensors.torch import save_file

        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted; fit it before save().")
        tensors = {
            n: getattr(self, n).detach().to("cpu").contiguous() for n in self._state_names()
        }
        extra = {
            "dim_t_": self.dim_t_,
            "dim_s_": self.dim_s_,
            "dim_": self.dim_,
            "n_anchors_": self.n_anchors_,
            **self._extra_state(),
        }
        meta = {
            "format": FORMAT,
            "aligner": self.name,
            "params": json.dumps(self.get_params()),
            "extra": json.dumps(extra),
        }
        target = Path(path)
        with atomic_path(target) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Aligner:
        """Load a file written by :meth:`save` (any registered aligner)."""
        return load_aligner(path)


_REGISTRY.base = Aligner


def load_aligner(path: str | os.PathLike[str]) -> Aligner:
    """Rebuild an aligner saved with :meth:`Aligner.save`."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise InputError(f"aligner file {str(p)!r} does not exist; pass the path given to save().")
    with safe_open(str(p), framework="pt") as fh:
        meta = fh.metadata() or {}
        if meta.get("format") != FORMAT:
            raise InputError(
                f"{str(p)!r} is not a hyperlens aligner file (format {meta.get('format')!r}, "
                f"expected {FORMAT!r})."
            )
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    aligner = make_aligner(meta["aligner"], **json.loads(meta["params"]))
    for k, v in tensors.items():
        setattr(aligner, k, v)
    aligner._set_extra_state(json.loads(meta["extra"]))
    return aligner


def center_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column means and the centred matrix. Shapes: ``x [n, d]`` -> ``[d]``, ``[n, d]``."""
    mu = x.mean(dim=0)
    return mu, x - mu


def top_components(xc: torch.Tensor, k: int) -> torch.Tensor:
    """The top-``k`` principal directions of a centred matrix, signs fixed.

    Shapes: ``xc [n, d]`` -> ``[d, k]`` (orthonormal columns).
    """
    _, _, vh = torch.linalg.svd(xc, full_matrices=False)
    v = vh[:k].T  # [d, k]
    # deterministic sign: largest-magnitude entry of each column positive
    idx = v.abs().argmax(dim=0)
    signs = torch.sign(v[idx, torch.arange(v.shape[1])])
    signs[signs == 0] = 1
    return v * signs
