"""TextDataset, encode_labels and the seeded, stratified splits."""

from __future__ import annotations

import numpy as np
import pytest

from hyperlens.data import Splits, TextDataset, encode_labels
from hyperlens.errors import DataError, HyperlensError, InputError


def make(n_per_class: tuple[int, ...] = (60, 30, 10), name: str = "toy") -> TextDataset:
    labels = np.repeat(np.arange(len(n_per_class)), n_per_class)
    texts = [f"text {i} of class {c}" for i, c in enumerate(labels)]
    return TextDataset(texts, labels, [f"c{i}" for i in range(len(n_per_class))], name=name)


# ---------------------------------------------------------------------- basics
def test_basic_views_and_counts() -> None:
    ds = make()
    assert len(ds) == 100
    assert ds.num_classes == 3
    assert ds.class_counts.tolist() == [60, 30, 10]
    assert ds.class_distribution() == {"c0": 60, "c1": 30, "c2": 10}
    assert ds.majority_rate == pytest.approx(0.6)
    assert ds.majority_class == "c0"
    assert ds.labels.dtype == np.int64
    assert ds[3] == ("text 3 of class 0", 0)
    assert ds[-1] == ("text 99 of class 2", 2)
    assert list(ds)[95] == ("text 95 of class 2", 2)
    assert ds.indices.tolist() == list(range(100))
    r = repr(ds)
    assert "name='toy'" in r and "n=100" in r and "c0: 60" in r


def test_labels_are_read_only() -> None:
    ds = make()
    with pytest.raises(ValueError):
        ds.labels[0] = 2


def test_select_slice_and_mask_keep_source_indices() -> None:
    ds = make()
    sub = ds[10:20]
    assert isinstance(sub, TextDataset)
    assert sub.indices.tolist() == list(range(10, 20))
    subsub = sub[[9, 0]]
    assert subsub.indices.tolist() == [19, 10]
    assert subsub.texts == [ds.texts[19], ds.texts[10]]
    mask = ds.labels == 2
    assert ds[mask].class_counts.tolist() == [0, 0, 10]
    assert ds[mask].label_names == ds.label_names


def test_summary_is_json_ready() -> None:
    import json

    s = make().summary()
    assert json.loads(json.dumps(s))["class_counts"] == [60, 30, 10]
    assert s["provenance"]["format"] == "memory"


def test_to_pandas_round_trip() -> None:
    df = make().to_pandas()
    assert list(df.columns) == ["text", "label", "label_name", "index"]
    assert df["label_name"].tolist()[:1] == ["c0"]
    assert len(df) == 100


def test_from_lists_encodes_string_labels_sorted() -> None:
    ds = TextDataset.from_lists(["a", "b", "c", "d"], ["pos", "neg", "pos", "neutral"])
    assert ds.label_names == ["neg", "neutral", "pos"]
    assert ds.labels.tolist() == [2, 0, 2, 1]


# ---------------------------------------------------------------------- encode_labels
def test_encode_labels_integers_sorted_numerically() -> None:
    ids, names = encode_labels([10, 2, 2, 1])
    assert names == ["1", "2", "10"]
    assert ids.tolist() == [2, 1, 1, 0]


def test_encode_labels_integer_strings_and_integral_floats() -> None:
    ids, names = encode_labels(["1", "0", "1"])
    assert (ids.tolist(), names) == ([1, 0, 1], ["0", "1"])
    ids, names = encode_labels(np.array([1.0, 3.0, 1.0]))
    assert (ids.tolist(), names) == ([0, 1, 0], ["1", "3"])


def test_encode_labels_with_names() -> None:
    ids, names = encode_labels(["b", "a", "c"], ["c", "b", "a"])
    assert (ids.tolist(), names) == ([1, 2, 0], ["c", "b", "a"])
    ids, names = encode_labels([0, 1, 1], ["neg", "pos"])
    assert (ids.tolist(), names) == ([0, 1, 1], ["neg", "pos"])


def test_encode_labels_refuses_regression_scores() -> None:
    with pytest.raises(DataError, match="non-integer numbers"):
        encode_labels([0.25, 0.5, 1.0])


def test_encode_labels_refuses_unknown_names_and_out_of_range_ids() -> None:
    with pytest.raises(DataError, match="not in label_names"):
        encode_labels(["a", "z"], ["a", "b"])
    with pytest.raises(DataError, match="outside 0..1"):
        encode_labels([0, 2], ["a", "b"])
    with pytest.raises(InputError, match="duplicates"):
        encode_labels([0, 1], ["a", "a"])


# ---------------------------------------------------------------------- constructor bad input
@pytest.mark.parametrize(
    "texts, match",
    [
        (["ok", ""], "non-empty strings"),
        (["ok", None], "NoneType"),
        (["ok", 3], "int"),
        (["ok", "  "], "index 1"),
    ],
)
def test_constructor_refuses_empty_or_non_string_texts(texts: list, match: str) -> None:
    with pytest.raises(InputError, match=match):
        TextDataset(texts, [0, 1], ["a", "b"])


def test_constructor_refuses_bad_labels() -> None:
    with pytest.raises(InputError, match="one label per text"):
        TextDataset(["a", "b"], [0], ["x", "y"])
    with pytest.raises(InputError, match="lie in 0..1"):
        TextDataset(["a", "b"], [0, 2], ["x", "y"])
    with pytest.raises(InputError, match="integer class ids"):
        TextDataset(["a", "b"], ["x", "y"], ["x", "y"])


def test_require_classes_single_class() -> None:
    ds = TextDataset(["a", "b", "c"], [1, 1, 1], ["neg", "pos"], name="one")
    with pytest.raises(DataError, match=r"single class, 'pos' \(3 rows\)") as info:
        ds.require_classes()
    assert isinstance(info.value, HyperlensError)
    assert "at least 2 classes" in str(info.value)
    assert ds.require_classes(1) is ds


def test_require_classes_hints_at_hidden_labels() -> None:
    ds = TextDataset.from_lists(["a", "b"], [-1, -1])
    with pytest.raises(DataError, match="hidden labels"):
        ds.require_classes()


# ---------------------------------------------------------------------- split
def _disjoint(s: Splits) -> None:
    parts = [set(p.indices.tolist()) for p in s]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])


def test_split_counts_disjoint_and_stratified() -> None:
    ds = make()
    s = ds.split(train=50, test=30, anchors=10, seed=3)
    assert s.sizes == {"train": 50, "test": 30, "anchors": 10}
    _disjoint(s)
    # Proportions 60/30/10 % carry over exactly where they are whole numbers.
    assert s.train.class_counts.tolist() == [30, 15, 5]
    assert s.test.class_counts.tolist() == [18, 9, 3]
    assert s.anchors.class_counts.tolist() == [6, 3, 1]
    assert s.train.name == "toy[train]"
    for part, sub in zip(("train", "test", "anchors"), s, strict=True):
        assert sub.texts == [ds.texts[i] for i in s.rows[part].tolist()]
        np.testing.assert_array_equal(sub.labels, ds.labels[s.rows[part]])


def test_split_fractions_and_remainder() -> None:
    ds = make()
    s = ds.split(test=0.25, seed=0)  # train takes the rest
    assert s.sizes == {"train": 75, "test": 25, "anchors": 0}
    assert len(s.train) + len(s.test) == len(ds)
    assert sorted(np.concatenate([s.train.indices, s.test.indices]).tolist()) == list(range(100))
    s2 = ds.split(train=0.5, test=None, anchors=0.1, seed=0)
    assert s2.sizes == {"train": 50, "test": 40, "anchors": 10}


def test_split_stratified_sizes_exact_with_awkward_numbers() -> None:
    ds = make((37, 23, 11, 2))
    for seed in range(5):
        s = ds.split(train=41, test=17, anchors=7, seed=seed)
        assert s.sizes == {"train": 41, "test": 17, "anchors": 7}
        _disjoint(s)
        total = s.train.class_counts + s.test.class_counts + s.anchors.class_counts
        assert (total <= ds.class_counts).all()
        # Each part is within one row per class of its proportional quota.
        for sub in s:
            quota = ds.class_counts * len(sub) / len(ds)
            assert np.abs(sub.class_counts - quota).max() < 1.0 + 1e-9


def test_split_is_reproducible_and_seed_dependent() -> None:
    ds = make()
    a = ds.split(train=40, test=20, anchors=10, seed=7)
    b = ds.split(train=40, test=20, anchors=10, seed=7)
    c = ds.split(train=40, test=20, anchors=10, seed=8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.indices, y.indices)
    assert not np.array_equal(a.train.indices, c.train.indices)


def test_split_parts_are_shuffled_not_class_blocks() -> None:
    s = make((50, 50)).split(train=60, test=40, seed=0)
    for part in (s.train, s.test):
        assert not np.all(np.diff(part.labels) >= 0)  # not grouped by class


def test_split_unstratified_covers_and_differs() -> None:
    ds = make((90, 10))
    s = ds.split(train=50, test=50, seed=1, stratify=False)
    _disjoint(s)
    assert s.sizes == {"train": 50, "test": 50, "anchors": 0}
    assert int(s.train.class_counts.sum()) == 50
    strat = ds.split(train=50, test=50, seed=1)
    assert strat.train.class_counts.tolist() == [45, 5]


def test_split_sizes_exceeding_data_raise() -> None:
    ds = make()
    with pytest.raises(
        InputError, match=r"add up to 110 rows, but dataset 'toy' has only 100"
    ) as info:
        ds.split(train=80, test=20, anchors=10)
    assert "lower the sizes" in str(info.value)
    with pytest.raises(InputError, match="nothing|left over|lower the other"):
        ds.split(train=None, test=60, anchors=40)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"train": -1}, "negative"),
        ({"test": 1.5}, "fraction"),
        ({"train": None, "test": None}, "only one part may be None"),
        ({"test": "half"}, "row count"),
        ({"test": True}, "row count"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.0}, "seed"),
    ],
)
def test_split_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        make().split(**kwargs)


def test_split_summary_and_repr() -> None:
    s = make().split(train=50, test=30, anchors=10, seed=2)
    assert s.summary()["class_counts"]["anchors"] == [6, 3, 1]
    assert repr(s) == "Splits(train=50, test=30, anchors=10, seed=2, stratify=True)"


# ---------------------------------------------------------------------- subsample / shuffle
def test_subsample_stratified_seeded() -> None:
    ds = make()
    sub = ds.subsample(20, seed=5)
    assert sub.class_counts.tolist() == [12, 6, 2]
    assert len(set(sub.indices.tolist())) == 20
    np.testing.assert_array_equal(sub.indices, ds.subsample(20, seed=5).indices)
    assert not np.array_equal(sub.indices, ds.subsample(20, seed=6).indices)
    assert len(ds.subsample(0.5, seed=0)) == 50
    with pytest.raises(InputError, match="has only 100"):
        ds.subsample(101)


def test_shuffle_is_a_permutation() -> None:
    ds = make()
    sh = ds.shuffle(seed=1)
    assert sorted(sh.indices.tolist()) == list(range(100))
    assert sh.indices.tolist() != list(range(100))
    assert [ds.texts[i] for i in sh.indices.tolist()] == sh.texts


def test_split_on_large_dataset_is_vectorised() -> None:
    n = 200_000
    labels = np.random.default_rng(0).integers(0, 5, n)
    ds = TextDataset(["x"] * n, labels, list("abcde"))
    s = ds.split(train=0.7, test=0.2, anchors=1000, seed=0)
    assert s.sizes == {"train": 140_000, "test": 40_000, "anchors": 1000}
    combined = np.concatenate([p.indices for p in s])
    assert np.unique(combined).size == combined.size
