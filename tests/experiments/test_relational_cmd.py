"""The ``hyperlens relational`` command: a small real run and errors before heavy work."""

from __future__ import annotations

import json

import pytest

from hyperlens import cli
from hyperlens.errors import DataError


def _wordnet_or_skip() -> None:
    import importlib

    try:
        importlib.import_module("hyperlens.data.wordnet_similarity").wordnet_graph()
    except DataError as exc:
        pytest.skip(f"WordNet is not installed: {exc}")


def test_bad_options_fail_before_loading(tmp_path, capsys) -> None:
    rc = cli.main(["relational", "--model", "minilm", "--pos", "nounz", "--out", str(tmp_path)])
    assert rc == 2 and "--pos" in capsys.readouterr().err
    rc = cli.main(["relational", "--model", "minilm", "--seeds", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err  # the old spelling still works and names the new one
    assert rc == 2 and "--seeds is now --n-redraws" in err and "--n-redraws must be" in err
    rc = cli.main(["relational", "--models", "minilm", "nosuchmodel", "--out", str(tmp_path)])
    assert rc == 2 and "'nosuchmodel'" in capsys.readouterr().err
    rc = cli.main(["relational", "--models", "minilm", "--max-entries", "100", "--n-main", "500",
                   "--out", str(tmp_path)])
    assert rc == 2 and "--max-entries" in capsys.readouterr().err
    rc = cli.main(["relational", "--models", "minilm", "--n-main", "500", "--n-sample", "900",
                   "--out", str(tmp_path)])
    assert rc == 2 and "--n-sample 900 must be below --n-main" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    rc = cli.main(["relational", "--model", str(folder), "--out", str(tmp_path / "r")])
    assert rc == 2 and "no tokenizer files" in capsys.readouterr().err


@pytest.mark.integration
def test_small_run_on_glove(tmp_path) -> None:
    _wordnet_or_skip()
    from hyperlens.models.static import check_static

    ok, detail = check_static("glove-50d")
    if not ok:
        pytest.skip(f"glove-50d unavailable: {detail}")
    out = tmp_path / "rel"
    rc = cli.main(["relational", "--models", "glove-50d", "--max-entries", "300", "--n-main",
                   "200", "--n-redraws", "2", "--n-sample", "100", "--n-permutations", "19",
                   "--n-boot", "30",
                   "--n-simplices", "100", "--no-cache", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    r = res["data"]["relational"]["glove-50d"]
    assert set(r["analyses"]) >= {"all POS", "nouns"}
    a = r["analyses"]["all POS"]
    ctx = a["reps"]["contextual"]["path"]["spearman"]
    assert ctx["lo"] <= ctx["value"] <= ctx["hi"]
    assert "path.spearman" in a["vs_baseline"]["static"]
    assert r["stability"]["all POS"]["estimates"]["static.path.spearman"]["n"] == 2
    assert (out / "relational_glove-50d_panel.png").exists()
