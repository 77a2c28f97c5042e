"""Aligners between two models' embedding spaces, and transfer evaluation.

>>> from hyperlens.align import make_aligner
>>> aligner = make_aligner("procrustes").fit(teacher_anchors, student_anchors)  # doctest: +SKIP
>>> z_t = aligner.transform_teacher(teacher_vectors)                             # doctest: +SKIP

Registered aligners: ``none``, ``procrustes``, ``cca``, ``ridge``, ``relative``,
``contrastive``; add your own with :func:`register_aligner`.
"""

from __future__ import annotations

from .base import (
    Aligner,
    aligner_class,
    available_aligners,
    check_anchor_pair,
    load_aligner,
    make_aligner,
    register_aligner,
)
from .cca import CCAAligner, shrunk_covariance
from .contrastive import ContrastiveAligner
from .evaluate import (
    INPUT_SCALING,
    CeilingScores,
    FeatureScaler,
    LinearProbe,
    ProbeScores,
    TransferScores,
    balanced_accuracy,
    ceiling_scores,
    chance_corrected_efficiency,
    check_disjoint,
    check_labels,
    efficiency,
    hdc_codes,
    majority_accuracy,
    select_probe,
    shared_projection,
    summarize,
    transfer_scores,
)
from .procrustes import IdentityAligner, ProcrustesAligner
from .relative import RelativeAligner
from .ridge import RidgeAligner

__all__ = [
    "Aligner",
    "aligner_class",
    "available_aligners",
    "check_anchor_pair",
    "load_aligner",
    "make_aligner",
    "register_aligner",
    "IdentityAligner",
    "ProcrustesAligner",
    "CCAAligner",
    "shrunk_covariance",
    "RidgeAligner",
    "RelativeAligner",
    "ContrastiveAligner",
    "LinearProbe",
    "select_probe",
    "FeatureScaler",
    "INPUT_SCALING",
    "ProbeScores",
    "CeilingScores",
    "TransferScores",
    "balanced_accuracy",
    "ceiling_scores",
    "chance_corrected_efficiency",
    "check_disjoint",
    "check_labels",
    "efficiency",
    "hdc_codes",
    "majority_accuracy",
    "shared_projection",
    "summarize",
    "transfer_scores",
]
