"""Shared HyperField fixtures: the tiny teacher, one small capture, one saved student."""

from __future__ import annotations

import pytest
from tiny_setup import SMALL, TEXTS, CharTokenizer, save_small_student

from hyperlens.hft.capture import run_capture
from hyperlens.models.handle import from_module


@pytest.fixture(scope="session")
def tiny_teacher(tiny_llama):
    return from_module(tiny_llama.eval(), CharTokenizer(), name="tiny", kind="decoder")


@pytest.fixture(scope="session")
def small_capture(tiny_teacher, tmp_path_factory):
    return run_capture(tiny_teacher, TEXTS, SMALL, tmp_path_factory.mktemp("small-cap"),
                       show_progress=False)


@pytest.fixture(scope="session")
def saved_student(tiny_teacher, small_capture, tmp_path_factory):
    """The --out folder of a train run: the student is its 'student' sub-folder."""
    out = tmp_path_factory.mktemp("train-out")
    save_small_student(tiny_teacher, small_capture, out / "student")
    return out
