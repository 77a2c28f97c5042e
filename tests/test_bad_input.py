"""The bad-input matrix: command lines and API calls a new user gets wrong.

Every case must end in a clear, named error (a ``HyperlensError`` subclass naming the
argument, or argparse's usage error naming the option) raised before any model is loaded
and with nothing written; a few cases check that input which used to be refused or to hang
is now accepted. Model loading is replaced by a tripwire, so a check that ran only after a
model was loaded fails here.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# ------------------------------------------------------------------------------- CLI cases
# (id, argv, text the error must contain). "{out}" is a fresh folder under tmp_path.
CLI_CASES: list[tuple[str, list[str], str]] = [
    ("tour-n-texts-0", ["tour", "--n-texts", "0"], "--n-texts"),
    ("tour-n-texts-negative", ["tour", "--n-texts", "-5"], "--n-texts"),
    ("tour-n-texts-word", ["tour", "--n-texts", "many"], "--n-texts"),
    ("tour-batch-size-0", ["tour", "--batch-size", "0"], "--batch-size"),
    ("tour-test-fraction-1.5", ["tour", "--test-fraction", "1.5"], "--test-fraction"),
    ("tour-test-fraction-0", ["tour", "--test-fraction", "0"], "--test-fraction"),
    ("tour-sections-unknown", ["tour", "--sections", "bogus"], "--sections"),
    ("tour-sections-none-and-more", ["tour", "--sections", "none", "terrain"], "--sections"),
    ("tour-pooling-unknown", ["tour", "--pooling", "max"], "--pooling"),
    ("tour-encoding-unknown", ["tour", "--encoding", "klingon-8"], "--encoding"),
    ("transfer-hdc-dim-negative", ["transfer", "--hdc-dim", "-4"], "--hdc-dim"),
    ("transfer-hdc-dim-0", ["transfer", "--hdc-dim", "0"], "--hdc-dim"),
    ("transfer-hdc-dims-negative", ["transfer", "--hdc-dims", "1024", "-1"], "--hdc-dims"),
    ("transfer-n-anchors-over-pool", ["transfer", "--stages", "1", "--n-anchors", "5000"],
     "--n-anchors"),
    ("transfer-batch-size-0", ["transfer", "--batch-size", "0"], "--batch-size"),
    ("transfer-tau-0", ["transfer", "--tau", "0"], "--tau"),
    ("transfer-C-negative", ["transfer", "--C", "-1"], "--C"),
    ("transfer-seed-list-negative", ["transfer", "--seeds", "-1"], "--seeds"),
    ("transfer-train-1", ["transfer", "--train", "1"], "--train"),
    ("transfer-anchors-0", ["transfer", "--anchors", "0"], "--anchors"),
    ("transfer-aligner-unknown", ["transfer", "--aligners", "nosuch"], "nosuch"),
    ("transfer-pair-same", ["transfer", "--pair", "minilm", "minilm"], "--pair"),
    ("transfer-stage-unknown", ["transfer", "--stages", "9"], "--stages"),
    ("transfer-anchor-pool-word", ["transfer", "--anchor-pool", "lots"], "--anchor-pool"),
    ("transfer-pair-three", ["transfer", "--pair", "minilm", "smollm2", "glove-50d"], "--pair"),
    ("transfer-C-float-0", ["transfer", "--C-float", "0"], "--C-float"),
    ("transfer-encoding-unknown", ["transfer", "--encoding", "klingon-8"], "--encoding"),
    ("transfer-executor-unknown", ["transfer", "--executor", "dask"], "--executor"),
    ("transfer-ray-address-local", ["transfer", "--ray-address", "auto"], "--ray-address"),
    ("terrain-no-model", ["terrain"], "--models"),
    ("terrain-n-simplices-1", ["terrain", "--models", "minilm", "--n-simplices", "1"],
     "--n-simplices"),
    ("terrain-permutations-0", ["terrain", "--models", "minilm", "--n-permutations", "0"],
     "--n-permutations"),
    ("terrain-bootstrap-word", ["terrain", "--models", "minilm", "--n-boot", "x"],
     "--n-boot"),
    ("weights-threads-0", ["weights", "--models", "minilm", "--threads", "0"], "--threads"),
    ("weights-chunk-negative", ["weights", "--models", "minilm", "--chunk-mb", "-1"],
     "--chunk-mb"),
    ("weights-thresholds-decreasing", ["weights", "--models", "minilm", "--thresholds", "0.1",
                                       "0.01"], "--thresholds"),
    ("weights-threshold-0", ["weights", "--models", "minilm", "--thresholds", "0"],
     "--thresholds"),
    ("mha-cv-dims-0", ["mha-cv", "--dims", "0"], "--dims"),
    ("mha-cv-lr-0", ["mha-cv", "--lr", "0"], "--lr"),
    ("align-vocab-test-fraction-2", ["align-vocab", "--models", "a", "b", "--test-fraction", "2"],
     "--test-fraction"),
    ("align-vocab-k-0", ["align-vocab", "--models", "a", "b", "--k", "0"], "--k"),
    ("modulate-test-negative", ["modulate", "--test", "-5"], "--test"),
    ("modulate-steps-negative", ["modulate", "--steps", "-1"], "--steps"),
    ("modulate-batch-size-0", ["modulate", "--batch-size", "0"], "--batch-size"),
    ("modulate-lr-negative", ["modulate", "--lr", "-1"], "--lr"),
    ("modulate-n-boot-0", ["modulate", "--n-boot", "0"], "--n-boot"),
    ("modulate-anchors-under-dim", ["modulate", "--anchors", "10"], "--anchors"),
    ("modulate-seeds-word", ["modulate", "--seeds", "three"], "--seeds"),
    ("modulate-seeds-repeated", ["modulate", "--seeds", "0", "0"], "--seeds"),
    ("modulate-layers-out-of-range", ["modulate", "--models", "minilm", "--layers", "6"],
     "--layers"),
    ("modulate-static-model", ["modulate", "--models", "glove-50d"], "static"),
    ("modulate-field-alpha-over-max", ["modulate", "--field-alpha", "0.5"], "--field-alpha"),
    ("modulate-dtype-unknown", ["modulate", "--dtype", "float16"], "--dtype"),
    ("seed-negative", ["tour", "--seed", "-1"], "--seed"),
    ("device-unknown", ["tour", "--device", "tpu"], "tpu"),
    ("out-is-a-file", ["tour", "--out", "{file}"], "is an existing file"),
    ("out-under-a-file", ["tour", "--out", "{file}/sub"], "which is a file"),
    ("out-foreign-folder", ["tour", "--out", "{foreign}"], "no hyperlens report"),
    ("config-missing", ["tour", "--config", "{tmp}/none.toml"], "does not exist"),
]

# (id, TOML text, text the error must contain); run as `hyperlens tour --config FILE`.
TOML_CASES: list[tuple[str, str, str]] = [
    ("toml-invalid", "n-texts = = 3\n", "not valid TOML"),
    ("toml-unknown-key", "[tour]\nbogus = 1\n", "bogus"),
    ("toml-n-texts-word", '[tour]\nn-texts = "many"\n', "n-texts"),
    ("toml-n-texts-0", "[tour]\nn-texts = 0\n", "n-texts"),
    ("toml-batch-size-0", "[tour]\nbatch-size = 0\n", "batch-size"),
    ("toml-seed-float", "seed = 1.5\n", "seed"),
    ("toml-flag-not-bool", '[tour]\ndrop-invalid = "yes"\n', "drop-invalid"),
    ("toml-pooling-unknown", '[tour]\npooling = "max"\n', "pooling"),
    ("toml-test-fraction-2", "[tour]\ntest-fraction = 2\n", "test-fraction"),
    ("toml-sections-unknown", '[tour]\nsections = ["bogus"]\n', "--sections"),
    ("toml-batch-size-list", "[tour]\nbatch-size = [1, 2]\n", "batch-size"),
    ("toml-models-table", "[tour]\nmodels = {a = 1}\n", "models"),
]


@pytest.fixture()
def no_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any model load during a bad-input case is a failure: checks must come first."""
    import importlib

    import hyperlens.models as models
    from hyperlens.models import zoo

    embed = importlib.import_module("hyperlens.models.embedding")  # the module, not the function

    def tripwire(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a model was loaded before the input was checked: {args}")

    for mod in (models, zoo):  # the package re-exports load: patch both names
        monkeypatch.setattr(mod, "load", tripwire)
    monkeypatch.setattr(embed, "_as_handle", tripwire)


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from hyperlens.cli import main

    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        rc = int(exc.code or 0)
    return rc, capsys.readouterr().err


def _fill(argv: list[str], tmp_path: Path) -> list[str]:
    f = tmp_path / "a-file.txt"
    f.write_text("not a folder")
    foreign = tmp_path / "photos"
    foreign.mkdir(exist_ok=True)
    (foreign / "holiday.jpg").write_text("x")
    return [a.format(file=f, foreign=foreign, tmp=tmp_path) for a in argv]


@pytest.mark.parametrize("argv,needle", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input(argv: list[str], needle: str, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str], no_model_loads: None) -> None:
    args = _fill(argv, tmp_path)
    if "--out" not in args:
        args += ["--out", str(tmp_path / "report")]
    rc, err = _run_cli(args, capsys)
    assert rc == 2, err
    assert needle in err
    assert "Traceback" not in err
    assert not (tmp_path / "report").exists()  # nothing half-written
    if "{foreign}" in argv:
        assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["holiday.jpg"]


@pytest.mark.parametrize("toml,needle", [c[1:] for c in TOML_CASES], ids=[c[0] for c in TOML_CASES])
def test_config_bad_input(toml: str, needle: str, tmp_path: Path,
                          capsys: pytest.CaptureFixture[str], no_model_loads: None) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text(toml)
    rc, err = _run_cli(["tour", "--config", str(cfg), "--out", str(tmp_path / "report")], capsys)
    assert rc == 2, err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "report").exists()


def _parsed_with_config(tmp_path: Path, toml: str, argv: list[str]) -> Any:
    from hyperlens.cli import build_parser
    from hyperlens.config.commandline import build

    cfg = tmp_path / "run.toml"
    cfg.write_text(toml)
    ns = build_parser().parse_args([*argv, "--config", str(cfg)])
    typed = {k: v for k, v in vars(ns).items() if not k.startswith("_") and k != "command"}
    config, ctx = build(ns._command, typed, env={})
    return config, ctx


def test_config_values_use_the_option_types(tmp_path: Path) -> None:
    cfg, ctx = _parsed_with_config(
        tmp_path, 'seed = 3\n[tour]\nmodels = "glove-50d"\nn-texts = 200\ndrop-invalid = true\n'
        'out = "runs/x"\n', ["tour"])
    assert cfg.models == ("glove-50d",)  # one value, not split into characters
    assert cfg.n_texts == 200 and ctx.seed == 3 and cfg.drop_invalid is True
    assert isinstance(ctx.out, Path)
    # flags on the command line still win over the file
    cfg, _ = _parsed_with_config(tmp_path, "[tour]\nn-texts = 200\n", ["tour", "--n-texts", "50"])
    assert cfg.n_texts == 50


def test_transfer_n_anchors_checked_only_where_used() -> None:
    from hyperlens.config.commandline import build
    from hyperlens.experiments.transfer import COMMANDS

    config, _ = build(COMMANDS[0], {"stages": ["0"], "n_anchors": "5000"}, env={})
    assert config.n_anchors == 5000  # stage 0 does not read --n-anchors


def test_tour_sections_none_means_no_extra_section() -> None:
    from hyperlens.experiments import tour

    assert tour._sections(["none"]) == [] and tour._sections([]) == []
    assert tour._sections(None) == [n for n, _ in tour.EXTRA_SECTIONS]


# ------------------------------------------------------------------------------- API cases
def _packed(n: int = 3) -> Any:
    from hyperlens.functional.hdc import random_hypervectors
    from hyperlens.hdc.packed import PackedCodes

    return PackedCodes.from_dense(random_hypervectors(n, 64, "ternary", seed=0))


def _unfitted(kind: str) -> Callable[[], Any]:
    def call() -> Any:
        x = np.ones((4, 3))
        if kind == "encoder":
            from hyperlens.hdc.encoder import TernaryEncoder

            return TernaryEncoder().transform(x)
        if kind == "pca":
            from hyperlens.hdc.pca import StreamingPCA

            return StreamingPCA().transform(x)
        from hyperlens.align import make_aligner

        return make_aligner(kind).transform_teacher(x)

    return call


def _sparse() -> Any:
    import scipy.sparse as sp

    return sp.random(10, 4, density=0.5, format="csr", random_state=0)


def _encoder_fit(x: Any, **kw: Any) -> Callable[[], Any]:
    def call() -> Any:
        from hyperlens.hdc.encoder import TernaryEncoder

        return TernaryEncoder(dim=kw.pop("dim", 32), **kw).fit(x() if callable(x) else x)

    return call


def _stats(name: str, *args: Any, **kw: Any) -> Callable[[], Any]:
    def call() -> Any:
        from hyperlens.functional import stats

        return getattr(stats, name)(*args, **kw)

    return call


def _load_model(name: str) -> Callable[[], Any]:
    def call() -> Any:
        from hyperlens.models import load

        return load(name, device="cpu")

    return call


def _load_data(name: str, **kw: Any) -> Callable[[], Any]:
    def call() -> Any:
        from hyperlens import data

        return data.load(name, **kw)

    return call


def _report_into_file(tmp: Path) -> Callable[[], Any]:
    def call() -> Any:
        from hyperlens.report import Report

        f = tmp / "taken"
        f.write_text("x")
        return Report("t", out_dir=f).save()

    return call


def _geometry(name: str, *args: Any, **kw: Any) -> Callable[[], Any]:
    def call() -> Any:
        from hyperlens.functional import geometry

        return getattr(geometry, name)(*args, **kw)

    return call


def _aligner_fit(name: str, teacher: Any, student: Any) -> Callable[[], Any]:
    def call() -> Any:
        from hyperlens.align import make_aligner

        return make_aligner(name).fit(teacher, student)

    return call


# (id, call (tmp_path -> callable), exception class name, text the message must contain)
API_CASES: list[tuple[str, Callable[[Path], Callable[[], Any]], str, str]] = [
    ("packed-index-out-of-range", lambda t: lambda: _packed(3)[5], "IndexError", "out of range"),
    ("packed-negative-index-out-of-range", lambda t: lambda: _packed(3)[-4], "IndexError",
     "out of range"),
    ("encoder-unfitted", lambda t: _unfitted("encoder"), "NotFittedError", "not fitted"),
    ("pca-unfitted", lambda t: _unfitted("pca"), "NotFittedError", "not fitted"),
    ("procrustes-unfitted", lambda t: _unfitted("procrustes"), "NotFittedError", "not fitted"),
    ("ridge-unfitted", lambda t: _unfitted("ridge"), "NotFittedError", "not fitted"),
    ("encoder-sparse", lambda t: _encoder_fit(_sparse), "InputError", "sparse"),
    ("encoder-complex", lambda t: _encoder_fit(np.ones((4, 3), dtype=complex)), "InputError",
     "Complex"),
    ("encoder-nan-in-fit", lambda t: _encoder_fit(np.full((4, 3), np.nan)), "InputError", "NaN"),
    ("encoder-negative-dim", lambda t: _encoder_fit(np.ones((4, 3)), dim=-4), "InputError",
     "dim"),
    ("encoder-1d", lambda t: _encoder_fit(np.ones(4)), "ShapeError", "Reshape"),
    ("aligner-no-student", lambda t: _aligner_fit("procrustes", np.ones((5, 3)), None),
     "InputError", "requires y"),
    ("aligner-one-anchor", lambda t: _aligner_fit("ridge", np.ones((1, 3)), np.ones((1, 2))),
     "ShapeError", "n_samples=1"),
    ("stats-level-95", lambda t: _stats("t_interval", [1.0, 2.0], 95),
     "InputError", "level"),
    ("stats-bootstrap-one-item", lambda t: _stats("bootstrap_ci", [1.0]), "ShapeError",
     "at least 2"),
    ("stats-wilson-k-over-n", lambda t: _stats("wilson_interval", 5, 3), "InputError", "k must"),
    ("stats-mcnemar-shapes", lambda t: _stats("mcnemar", [1, 0], [1, 0, 1]), "ShapeError",
     "same items"),
    ("stats-permutation-alternative", lambda t: _stats("permutation_pvalue", 1.0, [0.0],
                                                       "bigger"), "InputError", "alternative"),
    ("model-bad-syntax", lambda t: _load_model("not a model!"), "ModelNotFoundError",
     "known name"),
    ("model-owner-less-id-offline", lambda t: _load_model("gpt2-not-in-cache"),
     "ModelNotFoundError", "download gpt2-not-in-cache"),
    ("model-typo", lambda t: _load_model("minlm"), "ModelNotFoundError", "minilm"),
    ("model-empty", lambda t: _load_model("  "), "InputError", "non-empty"),
    ("data-missing-file", lambda t: _load_data(str(t / "none.csv")), "DataError", "none.csv"),
    ("report-into-a-file", _report_into_file, "ConfigError", "existing file"),
    ("geometry-3d", lambda t: _geometry("participation_ratio", np.ones((2, 3, 4))),
     "ShapeError", "2-D"),
    ("geometry-seed-ci-level", lambda t: _geometry("seed_ci", float, 3, level=1.5),
     "InputError", "level"),
]


@pytest.mark.parametrize("make,exc_name,needle", [c[1:] for c in API_CASES],
                         ids=[c[0] for c in API_CASES])
def test_api_bad_input(make: Callable[[Path], Callable[[], Any]], exc_name: str, needle: str,
                       tmp_path: Path) -> None:
    import hyperlens.errors as errors

    exc_type = getattr(errors, exc_name, None) or getattr(__builtins__, exc_name, None)
    if exc_type is None:
        import builtins

        exc_type = getattr(builtins, exc_name)
    with pytest.raises(exc_type) as info:
        make(tmp_path)()
    assert needle in str(info.value)
    if exc_name != "IndexError":
        assert isinstance(info.value, errors.HyperlensError)


# --------------------------------------------------------------- accepted now (were broken)
def test_packed_codes_as_array_and_sequence() -> None:
    codes = _packed(3)
    dense = np.asarray(codes)  # used to loop forever
    assert dense.shape == (3, 64) and dense.dtype == np.int8
    assert np.array_equal(dense, codes.to_dense().numpy())
    assert len(list(codes)) == 3 and len(codes[-1]) == 1


def test_twobit_encoder_inside_a_pipeline() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from hyperlens.hdc.encoder import TernaryEncoder

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = (x[:, 0] > 0).astype(int)
    pipe = make_pipeline(TernaryEncoder(dim=256, output="twobit"), LogisticRegression())
    assert pipe.fit(x, y).score(x, y) > 0.7  # used to hang in np.asarray


def test_star_import() -> None:
    namespace: dict[str, Any] = {}
    exec("from hyperlens import *", namespace)  # noqa: S102
    assert "HyperlensError" in namespace and "NotFittedError" in namespace


def test_report_files_follow_the_umask(tmp_path: Path) -> None:
    from hyperlens.report import Report

    old = os.umask(0o022)
    try:
        rep = Report("t", {"a": 1}, out_dir=tmp_path / "r")
        rep.section("s").metrics({"x": 1.0})
        out = rep.save()
    finally:
        os.umask(old)
    for name in ("results.json", "index.html"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


def test_report_save_failure_keeps_the_previous_folder(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from hyperlens.errors import ReportError
    from hyperlens.report import Report, core

    rep = Report("t", {"a": 1}, out_dir=tmp_path / "r")
    rep.section("s").metrics({"x": 1.0})
    rep.save()
    before = sorted(p.name for p in (tmp_path / "r").iterdir())
    (tmp_path / "r" / "cells.jsonl").write_text("{}\n")  # a run's own record is kept

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(core, "atomic_write_text", full_disk)
    rep.section("s").metrics({"x": 2.0})
    with pytest.raises(ReportError, match="previous contents are unchanged"):
        rep.save()
    after = sorted(p.name for p in (tmp_path / "r").iterdir())
    assert after == sorted([*before, "cells.jsonl"])
    assert '"x": 1.0' in (tmp_path / "r" / "results.json").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".r.")]  # no staging left
    monkeypatch.undo()
    rep.save()
    assert (tmp_path / "r" / "cells.jsonl").read_text() == "{}\n"


def test_owner_less_ids_are_ids() -> None:
    from hyperlens.models import zoo

    for ident in ("gpt2", "bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2"):
        assert zoo._HF_ID.fullmatch(ident)
    for bad in ("a/b/c", "../x", "has space", ""):
        assert not zoo._HF_ID.fullmatch(bad)


def test_matrix_is_large_enough() -> None:
    assert len(CLI_CASES) + len(TOML_CASES) + len(API_CASES) >= 60


# ------------------------------------------------------- every option of every command
# Generated from the config classes: each option gets the wrong type, values outside its
# range and, for a list, no value; each must be refused (exit 2, one line naming the option,
# no traceback, nothing loaded, nothing written). REQUIRED gives the commands' required
# options a valid value so that the option under test is the one refused.
REQUIRED: dict[str, dict[str, list[str]]] = {
    "align-vocab": {"--models": ["minilm", "glove-50d"]},
    "terrain": {"--models": ["minilm"]},
    "weights": {"--models": ["minilm"]},
    "relational": {"--models": ["minilm"]},
    "hft eval": {"--student": ["student-folder"]},
    "hft generate": {"--student": ["student-folder"]},
}


def _commands() -> list[Any]:
    import importlib

    from hyperlens.cli import COMMAND_MODULES

    out = []
    for name in COMMAND_MODULES:
        out.extend(getattr(importlib.import_module(name), "COMMANDS", ()))
    return out


def _bad_values(opt: Any) -> list[tuple[str, list[str]]]:
    """(label, command-line values) that option ``opt`` must refuse."""
    out: list[tuple[str, list[str]]] = []
    if opt.kind is bool:
        return out
    if opt.choices is not None:
        out.append(("unknown-choice", ["no-such-choice"]))
    elif opt.kind in (int, float):
        out.append(("word", ["many"]))
        if opt.kind is int:
            out.append(("fraction", ["1.5"]))
        else:
            out.append(("nan", ["nan"]))
    check = opt.spec.check
    if check is not None:
        out += [(f"refused-{v}", [str(v)]) for v in check.refused()]
    return out


def _option_cases() -> list[Any]:
    from hyperlens.config.commandline import context_options

    cases = []
    for cmd in _commands():
        for opt in (*cmd.config.options(), *context_options(cmd.config)):
            if opt.name == "out":
                continue  # the folder checks are the hand-written cases above
            for label, values in _bad_values(opt):
                argv = [*cmd.words]
                for flag, valid in REQUIRED.get(cmd.name, {}).items():
                    if flag != opt.flag:
                        argv += [flag, *valid]
                argv += [opt.flag, *values]
                cases.append(pytest.param(argv, opt.flag,
                                          id=f"{cmd.name.replace(' ', '-')}{opt.flag}-{label}"))
    return cases


@pytest.mark.parametrize("argv,flag", _option_cases())
def test_every_option_refuses_bad_values(argv: list[str], flag: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         no_model_loads: None) -> None:
    rc, err = _run_cli([*argv, "--out", str(tmp_path / "report")], capsys)
    assert rc == 2, (argv, err)
    assert flag in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err  # one clear line
    assert not (tmp_path / "report").exists()


def test_required_options_are_covered() -> None:
    for cmd in _commands():
        needed = {o.flag for o in cmd.config.options() if o.required}
        assert needed <= set(REQUIRED.get(cmd.name, {})), (cmd.name, needed)
