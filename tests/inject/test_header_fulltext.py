"""The header's full-text pass: saved in parts, resumed where it stopped, to the same states."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import hyperlens.inject.prefix_cache as prefix_cache
from hyperlens.inject.header_arms import HeaderRun

_BACKBONE = prefix_cache.backbone_of


class _Stopped(Exception):
    pass


def _run(tiny_llama) -> SimpleNamespace:
    rng = np.random.default_rng(0)
    prefix = [[int(t) for t in rng.integers(3, 100, int(rng.integers(2, 12)))]
              for _ in range(37)]
    lm = SimpleNamespace(module=tiny_llama.eval(), tokenizer=SimpleNamespace(pad_token_id=0),
                         identity=lambda: "tiny-llama")
    pc = SimpleNamespace(device=torch.device("cpu"), label_logits=lambda s: s[:, :2] * 2)
    return SimpleNamespace(prompts=lambda withheld: (prefix, [7, 8]), lm=lm, verb_ids=[5, 6],
                           pc=pc, d_model=32,
                           rep=SimpleNamespace(timer=lambda name: contextlib.nullcontext()))


def _counting(monkeypatch, stop_after: int | None = None) -> list[int]:
    calls: list[int] = []

    def backbone(module):
        stack = _BACKBONE(module)

        def call(**kw):
            if stop_after is not None and len(calls) == stop_after:
                raise _Stopped
            calls.append(1)
            return stack(**kw)
        return call

    monkeypatch.setattr(prefix_cache, "backbone_of", backbone)
    return calls


def test_a_killed_full_text_pass_resumes_at_its_first_missing_part(tiny_llama, tmp_path,
                                                                   monkeypatch):
    monkeypatch.setenv("HYPERLENS_CACHE", str(tmp_path / "one"))
    run = _run(tiny_llama)
    whole = HeaderRun.full_text(run, batch_size=4, part_batches=2)  # 10 batches, 5 parts
    assert whole[0].shape == (37, 32) and torch.equal(whole[1], whole[0][:, :2] * 2)

    monkeypatch.setenv("HYPERLENS_CACHE", str(tmp_path / "two"))
    _counting(monkeypatch, stop_after=5)  # killed during the third part
    with pytest.raises(_Stopped):
        HeaderRun.full_text(run, batch_size=4, part_batches=2)
    (parts,) = (tmp_path / "two" / "header").glob("*.parts")
    assert sorted(p.name for p in parts.iterdir()) == ["00000.safetensors",
                                                       "00001.safetensors"]
    calls = _counting(monkeypatch)
    again = HeaderRun.full_text(run, batch_size=4, part_batches=2)
    assert len(calls) == 10 - 4  # the two saved parts are read, not run again
    assert torch.equal(again[0], whole[0]) and torch.equal(again[1], whole[1])
    assert not parts.exists()  # the whole file replaces its parts
    calls = _counting(monkeypatch)
    HeaderRun.full_text(run, batch_size=4, part_batches=2)
    assert not calls  # and is read back whole
