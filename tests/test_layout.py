"""The package's shape: no import cycles, imports flow down the layers."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Lower layers never import higher ones (docs/architecture.md). The report package imports
# nothing above utils, so experiments can hand it their data; the executor layer (run) sits
# just above errors/utils, so models (sharded embedding) and probes can submit cells to it.
LAYERS = [
    {"errors", "utils", "report", "run", "quiet"},
    {"data", "models"},
    {"functional"},
    {"hdc", "align", "train", "config"},
    {"probes", "inject", "hft"},
    {"experiments"},
    {"cli", "__main__"},
]


def _modules() -> dict[str, Path]:
    out = {}
    for f in SRC.rglob("*.py"):
        parts = f.with_suffix("").relative_to(SRC).parts
        out[".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts)] = f
    return out


def _graph() -> dict[str, set[str]]:
    """Module -> the hyperlens modules it imports (anywhere in the file)."""
    mods = _modules()
    graph = {}
    for mod, f in mods.items():
        pkg = mod if f.name == "__init__.py" else mod.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                cands = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            else:
                continue
            deps |= {c for c in cands if c in mods and c != mod and not mod.startswith(c + ".")}
        graph[mod] = deps
    return graph


def test_no_import_cycles() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                cycles.append(" -> ".join(stack[stack.index(v):] + [v]))
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def _top(mod: str) -> str:
    """``hyperlens.models.zoo`` -> ``models`` (``""`` for the package itself)."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(mod: str) -> int | None:
    for i, layer in enumerate(LAYERS):
        if _top(mod) in layer:
            return i
    return None


def test_imports_flow_down_the_layers() -> None:
    bad = []
    for mod, deps in _graph().items():
        lm = _layer(mod)
        for d in deps:
            ld = _layer(d)
            if lm is not None and ld is not None and ld > lm:
                bad.append(f"{mod} imports {d}")
            if {_top(mod), _top(d)} == {"inject", "hft"}:
                bad.append(f"{mod} imports {d} (inject and hft never import each other)")
    assert not bad, "imports against the layer order:\n" + "\n".join(sorted(bad))
