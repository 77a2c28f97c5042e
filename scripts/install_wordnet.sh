#!/usr/bin/env bash
# Make WordNet 3.0 usable from NLTK for hyperlens.
#
#   bash scripts/install_wordnet.sh [PYTHON]      (PYTHON defaults to python3)
#
# 1. If WordNet already loads, do nothing.
# 2. As root with apt-get: install the Debian packages wordnet-base and
#    wordnet-sense-index (unless already there); when their files are present in
#    /usr/share/wordnet, copy them into <hyperlens cache>/nltk_data with the lexnames
#    file NLTK needs (python -m hyperlens.data.wordnet_setup install; no root needed).
# 3. Else try nltk.download("wordnet") (needs internet).
# 4. Else print the manual steps.
# It never fails the caller's set-up: it always exits 0, with a warning when WordNet
# could not be installed (only the WordNet-based probes need it).

set -u
PY="${1:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"

say() { printf '[wordnet] %s\n' "$*"; }

if ! command -v "$PY" >/dev/null 2>&1 && [ ! -x "$PY" ]; then
    say "WARNING: Python interpreter '$PY' not found; skipping the WordNet set-up."
    exit 0
fi

check() { "$PY" -c "from hyperlens.data.wordnet import wordnet_reader; wordnet_reader()" >/dev/null 2>&1; }

if check; then
    say "WordNet is already usable; nothing to do."
    exit 0
fi

DEB=/usr/share/wordnet
if [ ! -f "$DEB/data.noun" ] || [ ! -f "$DEB/index.sense" ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        say "installing the Debian packages wordnet-base and wordnet-sense-index ..."
        if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                --no-install-recommends wordnet-base wordnet-sense-index; } >/dev/null 2>&1; then
            say "apt-get could not install the WordNet packages."
        fi
    fi
fi
# The Debian files (installed now or earlier, by anyone) need no root to copy for NLTK.
if [ -f "$DEB/data.noun" ]; then
    if "$PY" -m hyperlens.data.wordnet_setup install --source "$DEB"; then
        exit 0
    fi
    say "copying the Debian WordNet files for NLTK failed."
fi

say "trying nltk.download('wordnet') ..."
LIMIT=""
command -v timeout >/dev/null 2>&1 && LIMIT="timeout 180"
if $LIMIT "$PY" -c "import nltk, sys; sys.exit(0 if nltk.download('wordnet', quiet=True, raise_on_error=True) else 1)" \
        >/dev/null 2>&1 && check; then
    say "WordNet downloaded with NLTK."
    exit 0
fi

cat <<'EOF'
[wordnet] WARNING: WordNet could not be installed automatically; hyperlens works without it,
[wordnet] but the WordNet-based probes will raise an error until it is installed. Do one of:
[wordnet]   (a) Debian/Ubuntu:
[wordnet]         sudo apt-get install wordnet-base wordnet-sense-index
[wordnet]         python -m hyperlens.data.wordnet_setup install
[wordnet]   (b) with internet:  python -c "import nltk; nltk.download('wordnet')"
[wordnet]   (c) copy an nltk_data folder holding corpora/wordnet and set NLTK_DATA to it.
EOF
exit 0
