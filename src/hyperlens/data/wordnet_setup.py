"""``python -m hyperlens.data.wordnet_setup check | install``: WordNet for NLTK from a shell.

Kept apart from :mod:`hyperlens.data.wordnet` so that running it as ``-m`` does not re-run
a module the package has already imported.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import DataError, DependencyError
from .wordnet import DEBIAN_WORDNET_DIR, install_wordnet, wordnet_reader

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hyperlens.data.wordnet_setup",
        description="Check or install WordNet for NLTK.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("check", help="exit 0 when WordNet loads, 1 otherwise")
    inst = sub.add_parser("install", help="copy the Debian WordNet files where NLTK finds them")
    inst.add_argument("--source", default=DEBIAN_WORDNET_DIR)
    inst.add_argument(
        "--target", default=None, help="an nltk_data folder (default: hyperlens cache)"
    )
    inst.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "install":
            root = install_wordnet(args.source, args.target, overwrite=args.overwrite)
            print(
                f"WordNet installed under {root / 'corpora' / 'wordnet'} (hyperlens finds it "
                "there; "
                f"for plain NLTK elsewhere, export NLTK_DATA={root})"
            )
        wn = wordnet_reader()
        dog, cat = wn.synset("dog.n.01"), wn.synset("cat.n.01")
        print(
            f"WordNet {wn.get_version()} is usable: path_similarity(dog, cat) = "
            f"{dog.path_similarity(cat):.3f}, wup = {dog.wup_similarity(cat):.3f}."
        )
        return 0
    except (DataError, DependencyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
