from __future__ import annotations

import json

import pytest

from hyperlens.errors import ReportError
from hyperlens.report import Report, histogram, load_results, rebuild

SPECS = {
    "line.png": {
        "kind": "line",
        "title": "t",
        "xlabel": "x",
        "ylabel": "y",
        "series": [
            {
                "label": "a",
                "x": [1, 2, 3],
                "y": [0.1, 0.5, None],
                "lo": [0, 0.4, 0.1],
                "hi": [0.2, 0.6, 0.3],
            }
        ],
        "hlines": [{"y": 0.3, "label": "chance"}],
    },
    "bar.png": {
        "kind": "bar",
        "categories": ["a", "b"],
        "ylabel": "v",
        "series": [{"label": "s", "values": [1, 2], "lo": [0.5, 1.5], "hi": [1.5, 2.5]}],
    },
    "heat.png": {
        "kind": "heatmap",
        "matrix": [[1, 2], [3, None]],
        "xticklabels": ["a", "b"],
        "yticklabels": ["c", "d"],
    },
    "hist.png": {
        "kind": "hist",
        "series": [{"label": "h", **histogram([0.1, 0.2, 0.2, 0.9], bins=4)}],
    },
    "panel.png": {
        "kind": "panel",
        "rows": 1,
        "cols": 2,
        "title": "p",
        "subplots": [
            {"kind": "scatter", "series": [{"x": [1, 2], "y": [2, 1]}]},
            {"kind": "text", "text": "note"},
        ],
    },
}


def _report(tmp_path):
    rep = Report(
        "demo", {"alpha": 1, "path": tmp_path}, out_dir=tmp_path / "r", seed=7, device="cpu"
    )
    sec = rep.section("Results", "Some prose.")
    sec.table("T", ["name", "value"], [["a", 0.123456], ["b", None]], note="n")
    for name, spec in SPECS.items():
        sec.plot(name, spec)
    sec.metrics({"best": 0.5})
    with rep.timer("work"):
        pass
    rep.summary([["best", 0.5]])
    rep.data["raw"] = [1, 2, 3]
    return rep


def test_report_writes_json_plots_and_html(tmp_path):
    folder = _report(tmp_path).save()
    results = json.loads((folder / "results.json").read_text())
    assert results["schema_version"] == 1
    assert results["config"]["alpha"] == 1 and results["seed"] == 7
    assert results["environment"]["versions"]["torch"]
    assert "work" in results["timings"] and results["timings"]["total_s"] >= 0
    assert results["sections"][0]["tables"][0]["rows"][1] == ["b", None]
    for name in SPECS:
        png = folder / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    page = (folder / "index.html").read_text()
    assert "<table>" in page and "line.png" in page and "0.1235" in page


def test_rebuild_redraws_from_json_alone(tmp_path):
    folder = _report(tmp_path).save()
    for name in SPECS:
        (folder / name).unlink()
    (folder / "index.html").unlink()
    rebuild(folder)
    assert all((folder / n).exists() for n in SPECS) and (folder / "index.html").exists()


def test_bad_inputs_are_reported(tmp_path):
    rep = Report("demo", out_dir=tmp_path)
    sec = rep.section("s")
    with pytest.raises(ReportError, match="row 0 has 1 values but there are 2 columns"):
        sec.table("t", ["a", "b"], [[1]])
    with pytest.raises(ReportError, match="must be a plain name"):
        sec.plot("../x.png", {"kind": "line", "series": []})
    sec.plot("x.png", {"kind": "nope"})
    with pytest.raises(ReportError, match="kind='nope' is unknown"):
        rep.save()
    with pytest.raises(ReportError, match="does not exist"):
        load_results(tmp_path / "missing")


def test_load_results_rejects_other_schema(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(ReportError, match="schema_version=99"):
        load_results(tmp_path)


def test_a_partial_save_says_incomplete_until_the_final_save(tmp_path):
    import json

    from hyperlens.report import Report, rebuild

    rep = Report("demo", out_dir=tmp_path / "r")
    rep.section("first").metrics({"x": 1})
    rep.save(partial=True)
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["complete"] is False
    assert "Incomplete:" in (tmp_path / "r" / "index.html").read_text()
    rebuild(tmp_path / "r")  # a redraw keeps the state
    assert "Incomplete:" in (tmp_path / "r" / "index.html").read_text()
    rep.save()
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert res["complete"] is True
    assert "Incomplete:" not in (tmp_path / "r" / "index.html").read_text()


def test_frames_from_a_saved_folder(tmp_path):
    from hyperlens.report import Report, frames

    rep = Report("demo", out_dir=tmp_path / "r")
    rep.section("s").table("t", ["a", "b"], [[1, 2.5], [3, 4.0]])
    rep.save()
    df = frames(tmp_path / "r")["s / t"]
    assert list(df.columns) == ["a", "b"] and df["b"].sum() == 6.5
