"""Tiny random models saved as safetensors folders (config.json + model.safetensors)."""

from __future__ import annotations

from pathlib import Path

import pytest


def _save(model, tmp_path_factory, name: str) -> Path:  # noqa: ANN001
    folder = tmp_path_factory.mktemp(name)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def bert_dir(tiny_bert, tmp_path_factory) -> Path:  # noqa: ANN001
    return _save(tiny_bert, tmp_path_factory, "bert")


@pytest.fixture(scope="session")
def llama_dir(tiny_llama, tmp_path_factory) -> Path:  # noqa: ANN001
    return _save(tiny_llama, tmp_path_factory, "llama")


@pytest.fixture(scope="session")
def gpt2_dir(tiny_gpt2, tmp_path_factory) -> Path:  # noqa: ANN001
    return _save(tiny_gpt2, tmp_path_factory, "gpt2")


@pytest.fixture(scope="session")
def t5_dir(tiny_t5, tmp_path_factory) -> Path:  # noqa: ANN001
    return _save(tiny_t5, tmp_path_factory, "t5")


@pytest.fixture(scope="session")
def opt_dir(tiny_opt, tmp_path_factory) -> Path:  # noqa: ANN001
    return _save(tiny_opt, tmp_path_factory, "opt")
