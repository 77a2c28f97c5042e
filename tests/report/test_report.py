from __future__ import annotations

import json

import pandas as pd
import pytest

from hyperlens.errors import ReportError
from hyperlens.report import (
    Report,
    comparable,
    histogram,
    is_complete,
    load_frames,
    load_results,
    rebuild,
    table_frame,
)

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
    assert results["schema_version"] == 1 and results["complete"] is True
    assert results["config"]["alpha"] == 1 and results["seed"] == 7
    assert results["environment"]["versions"]["torch"]
    # what decides the CPU kernels' arithmetic: torch's capability and the vector flags
    env = results["environment"]
    assert env["cpu_capability"] and isinstance(env["cpu_flags"], list)
    assert all(f.startswith(("avx", "amx", "fma")) for f in env["cpu_flags"])
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


def test_part_way_saves_read_incomplete_until_the_final_save(tmp_path):
    rep = _report(tmp_path)
    folder = rep.save(final=False)  # e.g. after the first seed of a longer run
    results = load_results(folder)
    assert results["complete"] is False and not is_complete(results)
    banner = "incomplete: this run stopped before it finished"
    assert banner in (folder / "index.html").read_text()
    (folder / "index.html").unlink()
    rebuild(folder)  # `hyperlens report FOLDER` keeps the state
    assert banner in (folder / "index.html").read_text()
    assert load_results(folder)["complete"] is False
    rep.save()
    assert load_results(folder)["complete"] is True
    assert banner not in (folder / "index.html").read_text()
    # results written before the key existed count as complete
    old = load_results(folder)
    del old["complete"]
    (folder / "results.json").write_text(json.dumps(old))
    assert is_complete(load_results(folder))
    rebuild(folder)
    assert banner not in (folder / "index.html").read_text()


def test_tables_as_dataframes_live_and_from_the_folder(tmp_path):
    rep = _report(tmp_path)
    rep.section("Results").table("T", ["name", "value"], [["c", 3]])  # same title again
    rep.section("Other").table("U", ["k", "k2"], [])
    live = rep.frames()
    assert list(live) == ["Results/T", "Results/T (2)", "Other/U"]
    df = live["Results/T"]
    assert df.columns.tolist() == ["name", "value"] and df["name"].tolist() == ["a", "b"]
    assert df["value"].iloc[0] == pytest.approx(0.123456) and pd.isna(df["value"].iloc[1])
    assert df.attrs == {"section": "Results", "title": "T", "note": "n"}
    assert live["Other/U"].shape == (0, 2)
    assert rep.frame("U").equals(live["Other/U"])
    assert rep.frame("Results/T (2)")["value"].tolist() == [3]
    with pytest.raises(ReportError, match="used by 2 tables"):
        rep.frame("T")
    with pytest.raises(ReportError, match=r"no table 'V'.*'Results/T', 'Results/T \(2\)'"):
        rep.frame("V")
    folder = rep.save()
    saved = load_frames(folder)
    assert list(saved) == list(live)
    for key, frame in live.items():
        pd.testing.assert_frame_equal(saved[key], frame)
    assert table_frame(load_results(folder), "U").shape == (0, 2)


def test_comparable_drops_what_differs_between_equal_runs(tmp_path):
    a = _report(tmp_path).to_dict()
    a["data"]["executor"] = {"executor": "local"}
    b = json.loads(json.dumps(a))
    b["created"], b["environment"]["device"] = "2000-01-01T00:00:00+00:00", "elsewhere"
    b["timings"]["total_s"] += 5.0
    b["data"]["executor"] = {"executor": "ray", "nodes": 1}
    assert a != b and comparable(a) == comparable(b)
    assert "timings" in a and "executor" in a["data"]  # the input is left as it was
    assert set(a) - set(comparable(a)) == {"created", "timings", "environment"}
    b["data"]["raw"] = [1, 2, 4]  # a real difference stays visible
    assert comparable(a) != comparable(b)
    assert comparable(a, drop=("data.raw", "no.such.key"))["timings"] == a["timings"]


@pytest.mark.parametrize("record", ["cells.jsonl", "checkpoints", "cells"])
def test_a_killed_runs_folder_is_accepted_and_a_foreign_one_refused(tmp_path, record):
    from hyperlens.errors import ConfigError
    from hyperlens.report import check_out_dir

    killed = tmp_path / "killed"
    (killed / record).mkdir(parents=True)  # what a run killed before its first save leaves
    assert check_out_dir(killed) == killed
    foreign = tmp_path / "foreign"
    (foreign / "notes").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no hyperlens report"):
        check_out_dir(foreign)


def test_each_timed_block_records_the_peak_memory_when_it_ended(tmp_path):
    """The peak resident memory at the end of each timed block (a fresh process, so no
    earlier test's peak hides it): a block that writes a 512 MB buffer raises it, by more
    than 200 MB, and the process's peak is at least every block's."""
    import subprocess
    import sys

    if sys.platform == "win32":
        pytest.skip("no resource module")
    code = (
        "import json, sys, numpy as np\n"
        "from hyperlens.report import Report\n"
        "rep = Report('mem', out_dir=sys.argv[1])\n"
        "with rep.timer('small'):\n    pass\n"
        "with rep.timer('large'):\n    buf = np.ones(512 * 2**20 // 8); buf.sum()\n"
        "print(json.dumps(rep.to_dict()['environment']['peak_rss_mb']))\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r")], check=True,
                         capture_output=True, text=True).stdout
    env = json.loads(out.strip().splitlines()[-1])
    small, large = env["at the end of"]["small"], env["at the end of"]["large"]
    assert 0 < small and large - small > 200
    assert env["process"] >= large
