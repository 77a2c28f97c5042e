"""WordNet 3.0 through NLTK, installable without internet from the Debian packages.

:func:`wordnet` returns NLTK's WordNet corpus reader, loaded and ready, or raises
:class:`DataError` with the exact steps to install the files. :func:`install_wordnet`
copies the files of the Debian packages ``wordnet-base`` and ``wordnet-sense-index``
(``/usr/share/wordnet``) into ``<cache>/nltk_data/corpora/wordnet/`` and adds the
``lexnames`` file that NLTK reads but Debian does not ship. NLTK refuses corpus paths
outside an ``nltk_data`` folder and symlinks that leave it, hence a copy (about 37 MB).

Command line (used by ``scripts/install_wordnet.sh``)::

    python -m hyperlens.data.wordnet_setup check
    python -m hyperlens.data.wordnet_setup install [--source /usr/share/wordnet] [--target DIR]

"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..errors import DataError, DependencyError

__all__ = [
    "wordnet_reader",
    "install_wordnet",
    "wordnet_search_paths",
    "LEXNAMES",
    "DEBIAN_WORDNET_DIR",
    "REQUIRED_FILES",
]

DEBIAN_WORDNET_DIR = "/usr/share/wordnet"

#: Files NLTK's reader opens (``lexnames`` is written by :func:`install_wordnet`).
REQUIRED_FILES: tuple[str, ...] = tuple(
    f"{kind}.{pos}" for kind in ("data", "index") for pos in ("noun", "verb", "adj", "adv")
) + tuple(f"{pos}.exc" for pos in ("noun", "verb", "adj", "adv"))

#: The 45 WordNet lexicographer files: (number, name, syntactic category) with
#: categories 1 noun, 2 verb, 3 adjective, 4 adverb (see the ``lexnames(5WN)`` manual page).
LEXNAMES: tuple[tuple[int, str, int], ...] = (
    (0, "adj.all", 3),
    (1, "adj.pert", 3),
    (2, "adv.all", 4),
    (3, "noun.Tops", 1),
    (4, "noun.act", 1),
    (5, "noun.animal", 1),
    (6, "noun.artifact", 1),
    (7, "noun.attribute", 1),
    (8, "noun.body", 1),
    (9, "noun.cognition", 1),
    (10, "noun.communication", 1),
    (11, "noun.event", 1),
    (12, "noun.feeling", 1),
    (13, "noun.food", 1),
    (14, "noun.group", 1),
    (15, "noun.location", 1),
    (16, "noun.motive", 1),
    (17, "noun.object", 1),
    (18, "noun.person", 1),
    (19, "noun.phenomenon", 1),
    (20, "noun.plant", 1),
    (21, "noun.possession", 1),
    (22, "noun.process", 1),
    (23, "noun.quantity", 1),
    (24, "noun.relation", 1),
    (25, "noun.shape", 1),
    (26, "noun.state", 1),
    (27, "noun.substance", 1),
    (28, "noun.time", 1),
    (29, "verb.body", 2),
    (30, "verb.change", 2),
    (31, "verb.cognition", 2),
    (32, "verb.communication", 2),
    (33, "verb.competition", 2),
    (34, "verb.consumption", 2),
    (35, "verb.contact", 2),
    (36, "verb.creation", 2),
    (37, "verb.emotion", 2),
    (38, "verb.motion", 2),
    (39, "verb.perception", 2),
    (40, "verb.possession", 2),
    (41, "verb.social", 2),
    (42, "verb.stative", 2),
    (43, "verb.weather", 2),
    (44, "adj.ppl", 3),
)

_INSTALL_HELP = (
    "Install it in one of these ways: (1) from a hyperlens checkout run "
    "`bash scripts/install_wordnet.sh` (uses the Debian packages when root, else nltk.download); "
    "(2) on Debian/Ubuntu: `sudo apt-get install wordnet-base wordnet-sense-index` and then "
    "`python -m hyperlens.data.wordnet_setup install` (copies /usr/share/wordnet into "
    "{target}); (3) with internet: `python -c \"import nltk; nltk.download('wordnet')\"`; "
    "(4) put an existing nltk_data folder holding corpora/wordnet on NLTK_DATA."
)


def _default_target() -> Path:
    from ..utils import cache_dir  # imported here: hyperlens.utils pulls in torch

    return cache_dir("nltk_data", create=False)


def _lexnames_text() -> str:
    return "".join(f"{num:02d}\t{name}\t{pos}\n" for num, name, pos in LEXNAMES)


def wordnet_search_paths() -> list[str]:
    """Folders NLTK searches for ``corpora/wordnet`` (hyperlens' cache folder included)."""
    try:
        import nltk
    except ImportError:
        return [str(_default_target())]
    _register(_default_target())
    return [str(p) for p in nltk.data.path]


def _register(root: Path) -> None:
    """Put ``root`` (an ``nltk_data`` folder) on NLTK's search path if it holds WordNet."""
    import nltk

    if (root / "corpora" / "wordnet").is_dir() and str(root) not in nltk.data.path:
        nltk.data.path.insert(0, str(root))


def wordnet_reader() -> Any:
    """The NLTK WordNet corpus reader (``nltk.corpus.wordnet``), loaded and usable.

    Looks in NLTK's usual places and in ``<hyperlens cache>/nltk_data`` (where
    :func:`install_wordnet` puts the files). Raises :class:`DependencyError` without
    ``nltk`` and :class:`DataError` with installation steps when the files are missing.

    Example:
        >>> wn = wordnet_reader()  # doctest: +SKIP
        >>> wn.synset("dog.n.01").path_similarity(wn.synset("cat.n.01"))  # doctest: +SKIP
        0.2
    """
    try:
        import nltk
        from nltk.corpus import wordnet as wn
    except ImportError as exc:
        raise DependencyError("wordnet_reader() needs nltk: pip install nltk") from exc
    _register(_default_target())
    try:
        wn.ensure_loaded()
    except LookupError as exc:
        searched = [str(p) for p in nltk.data.path]
        if str(_default_target()) not in searched:
            searched.append(str(_default_target()))
        raise DataError(
            "WordNet data for NLTK was not found (searched corpora/wordnet under: "
            + ", ".join(searched)
            + "). "
            + _INSTALL_HELP.format(target=_default_target() / "corpora" / "wordnet")
        ) from exc
    except (OSError, ValueError) as exc:  # present but broken (e.g. lexnames missing)
        hint = (
            " Copies of the Debian files lack the 'lexnames' file NLTK needs; install_wordnet() "
            "writes it."
            if "lexnames" in str(exc)
            else ""
        )
        raise DataError(
            f"WordNet files were found but could not be read ({type(exc).__name__}: {exc}).{hint} "
            "Reinstall them: `python -m hyperlens.data.wordnet_setup install --overwrite` "
            "(Debian files) or `nltk.download('wordnet')`."
        ) from exc
    return wn


def install_wordnet(
    source: str | os.PathLike[str] = DEBIAN_WORDNET_DIR,
    target: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Copy the Debian WordNet files into ``<target>/corpora/wordnet`` and register them.

    Args:
        source: folder with ``data.noun``, ``index.noun``, ... (``/usr/share/wordnet`` from
            the Debian packages ``wordnet-base`` and ``wordnet-sense-index``).
        target: the ``nltk_data`` folder to install into (default
            ``<hyperlens cache>/nltk_data``, which :func:`wordnet` always searches).
        overwrite: replace an existing installation at ``target``.

    Returns:
        the ``nltk_data`` folder (``target``). It is added to ``nltk.data.path`` in this
        process; other processes find the default target on their own, or use
        ``NLTK_DATA=<target>``.

    The copy is atomic: a failure leaves no half-installed corpus behind.
    """
    from ..utils import atomic_path

    src = Path(source).expanduser()
    root = Path(target).expanduser() if target is not None else _default_target()
    if root.name != "nltk_data":
        raise DataError(
            f"target={str(root)!r} must be a folder named 'nltk_data' (NLTK only reads corpora "
            "inside one); pass e.g. target='~/nltk_data' or leave it out for the hyperlens cache."
        )
    if not src.is_dir():
        raise DataError(
            f"source={str(src)!r} is not a folder. Install the Debian packages first "
            "(`apt-get install wordnet-base wordnet-sense-index`, as root) or pass the folder "
            "that holds data.noun, index.noun, ..."
        )
    missing = [f for f in REQUIRED_FILES if not (src / f).is_file()]
    if missing:
        raise DataError(
            f"source={str(src)!r} lacks the WordNet files {missing}; install the Debian packages "
            "wordnet-base and wordnet-sense-index, or pass the folder that holds them."
        )
    dest = root / "corpora" / "wordnet"
    if dest.exists() and not overwrite and (dest / "lexnames").is_file() and all(
        (dest / f).is_file() for f in REQUIRED_FILES
    ):
        _register(root)
        return root
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        for item in sorted(src.iterdir()):
            if item.is_file():  # skip bin/, pixmaps/, wnres/ of the GUI package
                shutil.copy2(item, tmp / item.name)
        if not (tmp / "lexnames").is_file():
            (tmp / "lexnames").write_text(_lexnames_text(), encoding="utf-8")
    _register(root)
    return root


# Bulk similarity lives in its own module (which reads this one's installer and reader), so
# its names are resolved here on first access instead of by an import at load time.
_SIMILARITY_NAMES = (
    "pair_similarity", "similarity_matrix", "wordnet_graph", "WordNetGraph", "MEASURES",
    "POS_TAGS",
)
__all__ += list(_SIMILARITY_NAMES)


def __getattr__(name: str) -> Any:
    if name in _SIMILARITY_NAMES:
        import importlib

        return getattr(importlib.import_module(f"{__package__}.wordnet_similarity"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
