"""Loading local csv / tsv / jsonl / json / parquet files, and their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hyperlens.data import load
from hyperlens.errors import DataError, HyperlensError, InputError

ROWS = [
    ("a warm and funny film", "pos"),
    ("dull and far too long", "neg"),
    ("the cast is wonderful", "pos"),
    ("I want my two hours back", "neg"),
    ("neither good nor bad", "neutral"),
    ("a quiet triumph", "pos"),
]
TEXTS = [t for t, _ in ROWS]
NAMES = ["neg", "neutral", "pos"]
IDS = [NAMES.index(lab) for _, lab in ROWS]


def write(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8")
    return path


def check(ds, *, texts=TEXTS, ids=IDS, names=NAMES) -> None:  # noqa: ANN001
    assert ds.texts == texts
    assert ds.labels.dtype == np.int64
    assert ds.labels.tolist() == ids
    assert ds.label_names == names


# ---------------------------------------------------------------------- formats
def test_csv_with_header(tmp_path: Path) -> None:
    p = tmp_path / "reviews.csv"
    pd.DataFrame({"id": range(6), "text": TEXTS, "label": [r[1] for r in ROWS]}).to_csv(
        p, index=False
    )
    ds = load(p)
    check(ds)
    assert ds.name == "reviews"
    prov = ds.provenance
    assert (prov.format, prov.text_column, prov.label_column) == ("csv", "text", "label")
    assert (prov.rows_read, prov.rows_kept, dict(prov.dropped)) == (6, 6, {})
    assert prov.source == str(p)


def test_csv_quoted_commas_and_newlines(tmp_path: Path) -> None:
    texts = ['"Wow," she said, "what a film"', "line one\nline two", "plain", "x, y"]
    p = tmp_path / "q.csv"
    pd.DataFrame({"sentence": texts, "class": [1, 0, 1, 0]}).to_csv(p, index=False)
    ds = load(str(p))
    assert ds.texts == texts
    assert ds.labels.tolist() == [1, 0, 1, 0]
    assert ds.label_names == ["0", "1"]


def test_tsv_with_header_glue_style(tmp_path: Path) -> None:
    lines = ["sentence\tlabel"] + [f'{t} "quoted\t{i % 2}' for i, t in enumerate(TEXTS)]
    ds = load(write(tmp_path / "train.tsv", "\n".join(lines) + "\n"))
    assert ds.texts == [f'{t} "quoted' for t in TEXTS]
    assert ds.labels.tolist() == [0, 1, 0, 1, 0, 1]


def test_tsv_without_header_guesses_columns(tmp_path: Path) -> None:
    # label first, text second, no header: the longer column is the text.
    body = "".join(f"{lab}\t{t}\n" for t, lab in ROWS * 3)
    ds = load(write(tmp_path / "nohead.tsv", body))
    check(ds, texts=TEXTS * 3, ids=IDS * 3)
    assert (ds.provenance.text_column, ds.provenance.label_column) == ("1", "0")


def test_csv_without_header_numeric_class_first(tmp_path: Path) -> None:
    body = "".join(
        f'"{i % 4 + 1}","Title {i}","a longer description number {i}"\n' for i in range(12)
    )
    ds = load(write(tmp_path / "agnews_like.csv", body))
    assert len(ds) == 12  # the first row is data, not a header
    assert ds.label_names == ["1", "2", "3", "4"]
    assert ds.texts[0] == "a longer description number 0"
    assert ds.labels.tolist()[:5] == [0, 1, 2, 3, 0]


def test_header_without_known_names_detected_by_shape(tmp_path: Path) -> None:
    # "tag" never recurs in its few-valued column, so the first row is a header; but
    # neither column has a usual name, so the user is asked to name them.
    body = "txt,tag\n" + "".join(f"{t},{lab}\n" for t, lab in ROWS * 3)
    p = write(tmp_path / "odd.csv", body)
    with pytest.raises(
        DataError, match=r"could not tell which column .* holds the texts.*'txt', 'tag'"
    ):
        load(p)
    ds = load(p, text_column="txt", label_column="tag")
    check(ds, texts=TEXTS * 3, ids=IDS * 3)


def test_explicit_header_flag_and_positions(tmp_path: Path) -> None:
    body = "".join(f"{t},{lab}\n" for t, lab in ROWS)
    p = write(tmp_path / "plain.csv", body)
    ds = load(p, text_column=0, label_column=1, header=False)
    check(ds)
    first_as_header = load(p, text_column=0, label_column=1, header=True)
    assert len(first_as_header) == 5


def test_jsonl(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"review": t, "sentiment": lab}) + "\n" for t, lab in ROWS))
    ds = load(p)
    check(ds)
    assert ds.provenance.format == "jsonl"


def test_json_records(tmp_path: Path) -> None:
    p = tmp_path / "d.json"
    p.write_text(json.dumps([{"text": t, "label": lab} for t, lab in ROWS]))
    check(load(p))


def test_parquet_with_int_labels_and_names(tmp_path: Path) -> None:
    p = tmp_path / "d.parquet"
    pd.DataFrame({"content": TEXTS, "target": np.array(IDS, dtype=np.int32)}).to_parquet(p)
    ds = load(p, label_names=NAMES)
    check(ds)
    plain = load(p)
    assert plain.label_names == ["0", "1", "2"]


def test_compressed_csv(tmp_path: Path) -> None:
    p = tmp_path / "d.csv.gz"
    pd.DataFrame({"text": TEXTS, "label": [r[1] for r in ROWS]}).to_csv(p, index=False)
    check(load(p))
    assert load(p).name == "d"


def test_column_overrides_case_insensitive(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    pd.DataFrame({"Body": TEXTS, "Title": ["t"] * 6, "Stars": IDS}).to_csv(p, index=False)
    ds = load(p, text_column="body", label_column="STARS")
    assert ds.texts == TEXTS
    assert ds.provenance.text_column == "Body"


def test_label_names_define_string_order(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    pd.DataFrame({"text": TEXTS, "label": [r[1] for r in ROWS]}).to_csv(p, index=False)
    ds = load(p, label_names=["pos", "neg", "neutral"])
    assert ds.labels.tolist() == [["pos", "neg", "neutral"].index(r[1]) for r in ROWS]


def test_relative_path_found_in_data_dir(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    pd.DataFrame({"text": TEXTS, "label": IDS}).to_csv(tmp_path / "mine" / "x.csv", index=False)
    ds = load("mine/x.csv", data_dir=tmp_path)
    assert len(ds) == 6


# ---------------------------------------------------------------------- bad input
def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(DataError, match="was not found") as info:
        load(missing)
    msg = str(info.value)
    assert str(missing) in msg and "data_dir" in msg
    with pytest.raises(DataError, match="was not found"):
        load("no/such/file.tsv")


def test_missing_column(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    pd.DataFrame({"text": TEXTS, "label": IDS}).to_csv(p, index=False)
    with pytest.raises(
        DataError, match=r"text_column='sentence' is not a column .* \['text', 'label'\]"
    ):
        load(p, text_column="sentence")
    with pytest.raises(DataError, match=r"label_column=5 is out of range"):
        load(p, label_column=5)


def test_no_label_column(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    pd.DataFrame({"text": TEXTS, "score_a": IDS}).to_csv(p, index=False)
    with pytest.raises(DataError, match=r"holds the labels.*label_column="):
        load(p)


def test_single_class_labels(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    pd.DataFrame({"text": TEXTS, "label": ["pos"] * 6}).to_csv(p, index=False)
    with pytest.raises(DataError, match=r"single class, 'pos' \(6 rows\)") as info:
        load(p)
    assert "label_column" in str(info.value)
    assert len(load(p, min_classes=1)) == 6


def test_empty_texts_refused_then_dropped(tmp_path: Path) -> None:
    body = "text,label\n" + "".join(f"{t},{lab}\n" for t, lab in ROWS) + ",pos\n   ,neg\nok text,\n"
    p = write(tmp_path / "holes.csv", body)
    with pytest.raises(DataError) as info:
        load(p)
    msg = str(info.value)
    assert "2 empty text (data rows [7, 8])" in msg
    assert "1 missing label (data rows [9])" in msg
    assert "drop_invalid=True" in msg
    ds = load(p, drop_invalid=True)
    check(ds)
    assert dict(ds.provenance.dropped) == {"empty_text": 2, "missing_label": 1}
    assert (ds.provenance.rows_read, ds.provenance.rows_kept) == (9, 6)


def test_non_string_texts_in_jsonl(tmp_path: Path) -> None:
    records = [{"text": t, "label": lab} for t, lab in ROWS]
    records += [
        {"text": 42, "label": "pos"},
        {"text": ["a", "list"], "label": "neg"},
        {"text": None, "label": "neg"},
    ]
    p = tmp_path / "mixed.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(
        DataError, match=r"2 non string text \(data rows \[7, 8\], e\.g\. 42\)"
    ) as info:
        load(p)
    assert "1 missing text (data rows [9])" in str(info.value)
    ds = load(p, drop_invalid=True)
    check(ds)
    assert dict(ds.provenance.dropped) == {"missing_text": 1, "non_string_text": 2}


def test_numeric_text_column_means_swapped_columns(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    pd.DataFrame({"text": TEXTS, "label": IDS}).to_csv(p, index=False)
    with pytest.raises(DataError, match="holds only numbers"):
        load(p, text_column="label", label_column="text")


def test_regression_labels_refused(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    pd.DataFrame({"text": TEXTS, "label": [0.1, 0.9, 0.5, 0.3, 0.7, 0.2]}).to_csv(p, index=False)
    with pytest.raises(DataError, match="regression scores"):
        load(p)


def test_unknown_suffix_and_empty_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot tell the format"):
        load(write(tmp_path / "d.xlsx", "x"))
    with pytest.raises(DataError, match="no data rows"):
        load(write(tmp_path / "empty.csv", "text,label\n"))
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataError, match="is a folder"):
        load(tmp_path / "folder")


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "latin.csv"
    p.write_bytes("text,label\ncaf\xe9 au lait,1\nthe rest,0\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8.*latin-1"):
        load(p)
    ds = load(p, read_options={"encoding": "latin-1"})
    assert ds.texts[0] == "caf\xe9 au lait"


def test_split_argument_refused_for_files(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    pd.DataFrame({"text": TEXTS, "label": IDS}).to_csv(p, index=False)
    with pytest.raises(InputError, match="split='dev' applies to named"):
        load(p, split="dev")


def test_bad_name_types() -> None:
    with pytest.raises(InputError, match="name_or_path must be"):
        load(3)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="is empty"):
        load("  ")
    with pytest.raises(InputError, match="min_classes"):
        load("rotten-tomatoes", min_classes=0)


def test_every_error_is_a_hyperlens_error(tmp_path: Path) -> None:
    for call in (lambda: load(tmp_path / "x.csv"), lambda: load("")):
        with pytest.raises(HyperlensError):
            call()
