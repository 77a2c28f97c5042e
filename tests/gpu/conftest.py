"""Fixtures of the CUDA tests.

Every test in this folder that needs a GPU is marked ``cuda`` (``pytest -m cuda`` selects
them, ``make gpu-check`` runs them) and takes the ``device`` fixture, which skips it with
the reason where torch sees no CUDA GPU. Each compares what the device computes with the
CPU's result within the tolerances of :mod:`gpu_support` and checks that the device's
tensors really are on the device.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hft"))  # tiny_setup

from gpu_support import device_under_test, skip_reason  # noqa: E402


@pytest.fixture(scope="session")
def device() -> torch.device:
    dev = device_under_test()
    if dev is None:
        pytest.skip(skip_reason())
    return dev
