"""WordNet: the installer from Debian files, the reader, and its error message."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

from hyperlens.errors import DataError

wnmod = importlib.import_module("hyperlens.data.wordnet")

DEBIAN = Path(wnmod.DEBIAN_WORDNET_DIR)


def test_lexnames_table_matches_the_manual_page() -> None:
    assert len(wnmod.LEXNAMES) == 45
    assert [n for n, _, _ in wnmod.LEXNAMES] == list(range(45))
    text = wnmod._lexnames_text()
    lines = text.splitlines()
    assert len(lines) == 45
    assert lines[5] == "05\tnoun.animal\t1"
    assert lines[0] == "00\tadj.all\t3" and lines[44] == "44\tadj.ppl\t3"
    pos = {name.split(".")[0]: p for _, name, p in wnmod.LEXNAMES}
    assert pos == {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
    assert sum(1 for _, name, _ in wnmod.LEXNAMES if name.startswith("noun.")) == 26
    assert sum(1 for _, name, _ in wnmod.LEXNAMES if name.startswith("verb.")) == 15


def _fake_source(tmp_path: Path) -> Path:
    src = tmp_path / "debian-wordnet"
    src.mkdir()
    for f in wnmod.REQUIRED_FILES:
        (src / f).write_text(f"fake {f}\n")
    (src / "bin").mkdir()  # sub-folders of the GUI package are skipped
    return src


def test_install_copies_files_and_writes_lexnames(tmp_path: Path) -> None:
    src = _fake_source(tmp_path)
    target = tmp_path / "nltk_data"
    root = wnmod.install_wordnet(src, target)
    dest = root / "corpora" / "wordnet"
    assert root == target
    assert sorted(p.name for p in dest.iterdir()) == sorted([*wnmod.REQUIRED_FILES, "lexnames"])
    assert (dest / "data.noun").read_text() == "fake data.noun\n"
    assert (dest / "lexnames").read_text() == wnmod._lexnames_text()
    # A second call leaves the installation alone; overwrite=True replaces it.
    (src / "data.noun").write_text("changed\n")
    wnmod.install_wordnet(src, target)
    assert (dest / "data.noun").read_text() == "fake data.noun\n"
    wnmod.install_wordnet(src, target, overwrite=True)
    assert (dest / "data.noun").read_text() == "changed\n"


def test_install_bad_source_and_target(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"apt-get install wordnet-base wordnet-sense-index"):
        wnmod.install_wordnet(tmp_path / "absent", tmp_path / "nltk_data")
    src = _fake_source(tmp_path)
    (src / "index.verb").unlink()
    with pytest.raises(DataError, match=r"lacks the WordNet files \['index.verb'\]"):
        wnmod.install_wordnet(src, tmp_path / "nltk_data")
    with pytest.raises(DataError, match="named 'nltk_data'"):
        wnmod.install_wordnet(src, tmp_path / "elsewhere")


def _fresh_reader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, search: Path) -> None:
    """Point NLTK at ``search`` only, with a not-yet-loaded ``nltk.corpus.wordnet``."""
    import nltk
    from nltk.corpus.reader import CorpusReader, WordNetCorpusReader
    from nltk.corpus.util import LazyCorpusLoader

    monkeypatch.setenv("HYPERLENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(nltk.data, "path", [str(search)])
    omw = LazyCorpusLoader("omw-1.4", CorpusReader, r".*/wn-data-.*\.tab", encoding="utf8")
    monkeypatch.setattr(
        nltk.corpus, "wordnet", LazyCorpusLoader("wordnet", WordNetCorpusReader, omw)
    )


def test_missing_wordnet_error_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "cache"
    _fresh_reader(monkeypatch, tmp_path, tmp_path / "nowhere" / "nltk_data")
    with pytest.raises(DataError) as info:
        wnmod.wordnet_reader()
    msg = str(info.value)
    assert "WordNet data for NLTK was not found" in msg
    assert str(tmp_path / "nowhere" / "nltk_data") in msg
    assert str(empty / "nltk_data") in msg
    assert "scripts/install_wordnet.sh" in msg
    assert "apt-get install wordnet-base wordnet-sense-index" in msg
    assert "nltk.download('wordnet')" in msg


def test_copy_without_lexnames_is_explained(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    src = _fake_source(tmp_path)
    dest = tmp_path / "nltk_data" / "corpora" / "wordnet"
    shutil.copytree(src, dest)  # a hand-made copy of the Debian files: no lexnames
    _fresh_reader(monkeypatch, tmp_path, tmp_path / "nltk_data")
    with pytest.raises(
        DataError, match=r"could not be read .*lexnames.*install_wordnet\(\) writes it"
    ):
        wnmod.wordnet_reader()


@pytest.fixture(scope="module")
def wn():  # noqa: ANN201
    try:
        return wnmod.wordnet_reader()
    except DataError as exc:
        pytest.skip(
            f"WordNet is not installed here (run bash scripts/install_wordnet.sh): {exc}"[:300]
        )


@pytest.mark.integration
def test_wordnet_similarities(wn) -> None:  # noqa: ANN001
    dog, cat = wn.synset("dog.n.01"), wn.synset("cat.n.01")
    assert dog.path_similarity(cat) == pytest.approx(0.2)
    assert dog.wup_similarity(cat) == pytest.approx(0.857, abs=5e-4)
    assert dog.lexname() == "noun.animal"
    assert wn.get_version() == "3.0"
    assert wn.lemma_from_key("dog%1:05:00::").synset() == dog  # needs index.sense


@pytest.mark.integration
def test_wordnet_synset_counts_from_its_files(wn) -> None:  # noqa: ANN001
    # Every synset is one line of data.<pos> (the licence header lines start with spaces);
    # counting lines is fast, and the reader must resolve the first and last of them.
    root = Path(wn.root.path if hasattr(wn.root, "path") else str(wn.root))
    counts = {}
    for pos, tag in (("noun", "n"), ("verb", "v"), ("adj", "a"), ("adv", "r")):
        with open(root / f"data.{pos}", "rb") as fh:
            offsets = [line.split(b" ", 1)[0] for line in fh if not line.startswith(b"  ")]
        counts[pos] = len(offsets)
        first, last = int(offsets[0]), int(offsets[-1])
        assert wn.synset_from_pos_and_offset(tag, first).offset() == first
        assert wn.synset_from_pos_and_offset(tag, last).offset() == last
    assert counts["noun"] == 82_115
    assert sum(counts.values()) == 117_659


@pytest.mark.integration
@pytest.mark.slow
def test_wordnet_reader_enumerates_every_synset(wn) -> None:  # noqa: ANN001
    assert sum(1 for _ in wn.all_synsets("n")) == 82_115
    assert sum(1 for _ in wn.all_synsets()) == 117_659


@pytest.mark.integration
def test_install_from_debian_packages(tmp_path: Path) -> None:
    if not (DEBIAN / "data.noun").is_file():
        pytest.skip("Debian packages wordnet-base / wordnet-sense-index are not installed")
    import filecmp

    import nltk

    root = wnmod.install_wordnet(DEBIAN, tmp_path / "nltk_data")
    dest = root / "corpora" / "wordnet"
    files = sorted(p.name for p in DEBIAN.iterdir() if p.is_file())
    assert "index.sense" in files  # from wordnet-sense-index
    match, mismatch, errors = filecmp.cmpfiles(DEBIAN, dest, files, shallow=False)
    assert (sorted(match), mismatch, errors) == (files, [], [])
    assert (dest / "lexnames").read_text() == wnmod._lexnames_text()
    assert nltk.data.find("corpora/wordnet/lexnames", paths=[str(root)])
    assert str(root) in nltk.data.path
    nltk.data.path[:] = [p for p in nltk.data.path if p != str(root)]


def test_module_command_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hyperlens.data.wordnet_setup import main

    code = main(
        ["install", "--source", str(tmp_path / "absent"), "--target", str(tmp_path / "nltk_data")]
    )
    assert code == 1
    assert "error: source=" in capsys.readouterr().err


def test_install_script_never_fails_the_caller() -> None:
    import subprocess

    script = Path(__file__).resolve().parents[2] / "scripts" / "install_wordnet.sh"
    if shutil.which("bash") is None:
        pytest.skip("bash is not available")
    out = subprocess.run(
        ["bash", str(script), "/nonexistent/python3"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    assert "WARNING: Python interpreter '/nonexistent/python3' not found" in out.stdout
