"""Size measures of the source tree: experiments/ share, long files, long functions.

    python scripts/code_metrics.py            # a table on stdout
    python scripts/code_metrics.py --json     # the same as JSON

Targets (docs/architecture.md): experiments/ at most 12 % of src lines, no file over 800
lines, no function over 120 lines.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "hyperlens"


def measure(src: Path = SRC) -> dict[str, object]:
    files = sorted(src.rglob("*.py"))
    lines = {f: len(f.read_text("utf-8").splitlines()) for f in files}
    total = sum(lines.values())
    exp = sum(n for f, n in lines.items() if "experiments" in f.relative_to(src).parts)
    long_funcs = []
    for f in files:
        for node in ast.walk(ast.parse(f.read_text("utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > 120:
                    long_funcs.append((str(f.relative_to(src)), node.name, n))
    return {
        "src_lines": total,
        "experiments_lines": exp,
        "experiments_share": round(exp / total, 4),
        "files_over_800": sorted((str(f.relative_to(src)), n) for f, n in lines.items()
                                 if n > 800),
        "functions_over_120": sorted(long_funcs, key=lambda t: -t[2]),
    }


def main(argv: list[str]) -> int:
    m = measure()
    if "--json" in argv:
        print(json.dumps(m, indent=2))
        return 0
    print(f"src lines: {m['src_lines']}; experiments/: {m['experiments_lines']} "
          f"({100 * float(m['experiments_share']):.1f} %)")
    print(f"files over 800 lines: {m['files_over_800']}")
    print("functions over 120 lines:")
    for path, name, n in m["functions_over_120"]:  # type: ignore[misc]
        print(f"  {path}:{name} {n}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
