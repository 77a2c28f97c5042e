"""quiet_third_party: other packages' bars, logs and deprecation warnings off by default."""

from __future__ import annotations

import ast
import os
import warnings
from pathlib import Path

import pytest

from hyperlens.quiet import quiet_third_party

SRC = Path(__file__).resolve().parents[2] / "src" / "hyperlens"
ENV_VARS = ("TRANSFORMERS_VERBOSITY", "TRANSFORMERS_NO_ADVISORY_WARNINGS", "DATASETS_VERBOSITY",
            "HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS")


@pytest.fixture
def restore(monkeypatch):
    """Start from no user settings; leave the packages as loud as they were."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    yield
    quiet_third_party(verbose=True)  # takes back what the test set (pytest restores filters)


def _warn_from(module: str, category: type[Warning]) -> None:
    """Raise ``category`` as if from code in ``module`` (the filters match on that name)."""
    exec(compile("import warnings\nwarnings.warn('old api', C)", f"<{module}>", "exec"),  # noqa: S102
         {"__name__": module, "C": category})


@pytest.mark.parametrize("category", [FutureWarning, DeprecationWarning])
def test_third_party_deprecations_hidden_unless_verbose(restore, category):
    quiet_third_party(verbose=False)
    with warnings.catch_warnings(record=True) as seen:
        _warn_from("torch.nn.modules.module", category)
        _warn_from("transformers.modeling_utils", category)
        _warn_from("hyperlens.models.zoo", category)  # ours: always shown, it needs a fix
    assert [str(w.message) for w in seen] == ["old api"]
    assert seen[0].filename == "<hyperlens.models.zoo>"

    quiet_third_party(verbose=True)
    with warnings.catch_warnings(record=True) as seen:
        _warn_from("transformers.modeling_utils", category)
    assert len(seen) == 1


def test_other_warning_categories_are_left_alone(restore):
    quiet_third_party(verbose=False)
    with warnings.catch_warnings(record=True) as seen:
        _warn_from("transformers.modeling_utils", UserWarning)
    assert len(seen) == 1


def test_switching_back_and_forth_does_not_pile_up_filters(restore):
    quiet_third_party(verbose=False)
    n = len(warnings.filters)
    for verbose in (True, False, True, False):
        quiet_third_party(verbose=verbose)
    assert len(warnings.filters) == n + 3  # one "default" per category from the verbose calls


def test_transformers_bars_and_log_level_follow_the_switch(restore):
    from transformers.utils import logging as tlog

    quiet_third_party(verbose=False)
    assert not tlog.is_progress_bar_enabled()
    assert tlog.get_verbosity() == tlog.ERROR
    quiet_third_party(verbose=True)
    assert tlog.is_progress_bar_enabled()
    assert tlog.get_verbosity() == tlog.WARNING


def test_environment_set_for_packages_not_yet_imported_and_taken_back(restore, monkeypatch):
    monkeypatch.setenv("DATASETS_VERBOSITY", "info")  # the user's own choice wins
    quiet_third_party(verbose=False)
    assert os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] == "1"
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "error"
    assert os.environ["DATASETS_VERBOSITY"] == "info"
    quiet_third_party(verbose=True)
    assert "HF_DATASETS_DISABLE_PROGRESS_BARS" not in os.environ
    assert "TRANSFORMERS_VERBOSITY" not in os.environ
    assert os.environ["DATASETS_VERBOSITY"] == "info"


def test_loading_a_model_draws_no_bar_when_quiet(restore, tmp_path, tiny_bert, tiny_tokenizer,
                                                 capfd):
    from hyperlens.models import load

    tiny_bert.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    quiet_third_party(verbose=True)
    load(str(tmp_path), device="cpu")
    assert "Loading weights" in capfd.readouterr().err  # the bar the quiet run must hide
    quiet_third_party(verbose=False)
    load(str(tmp_path), device="cpu")
    assert "Loading weights" not in capfd.readouterr().err


def _legacy_cache_uses(path: Path) -> list[str]:
    hits = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Call):
            hits += [f"{path.name}:{node.lineno} passes past_key_values="
                     for kw in node.keywords if kw.arg == "past_key_values"]
        elif isinstance(node, ast.Attribute) and node.attr == "past_key_values":
            hits.append(f"{path.name}:{node.lineno} reads .past_key_values")
    return hits


def test_no_call_of_ours_uses_the_deprecated_cache_names():
    """transformers renamed ``past_key_values`` to ``cache`` (arguments and outputs); the old
    names raise a FutureWarning per call. Hooks may still *read* either keyword."""
    hits = [h for f in sorted(SRC.rglob("*.py")) for h in _legacy_cache_uses(f)]
    assert not hits, "\n".join(hits)
