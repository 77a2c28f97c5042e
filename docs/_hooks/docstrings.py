"""hyperlens docstrings as Markdown: the few reStructuredText habits they use, converted.

The docstrings follow the Google layout (``Args:``, ``Returns:``) that mkdocstrings reads,
but their prose names objects with Sphinx roles (``:func:`load```), shows examples as
doctest blocks (``>>>``) and introduces code with ``Usage::``. Markdown would print the
roles as text and run the doctest lines into one paragraph, so :func:`to_markdown` turns
roles into inline code, doctest blocks into ``pycon`` code blocks and ``::`` blocks into
``python`` code blocks. :class:`RstToMarkdown` applies it to every docstring mkdocstrings
reads (``extensions:`` in ``mkdocs.yml``); the command pages use it for command
descriptions.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const|ref):`(~?)([^`]+)`")


def _role(match: re.Match[str]) -> str:
    short, target = match.group(1), match.group(2)
    if "<" in target and target.endswith(">"):  # :ref:`text <target>`
        target = target.split("<", 1)[0].strip()
    if short:
        target = target.rsplit(".", 1)[-1]
    return f"`{target}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


#: Google-style section headings: a block indented under one belongs to the section.
SECTION = re.compile(r"\s*(Args|Arguments|Parameters|Returns|Yields|Raises|Examples?|Notes?|"
                     r"Shapes|Attributes|Warnings?|See Also|References|Usage):\s*")


def _block_indent(out: list[str], line: str) -> int:
    """Where a doctest block goes: under a section heading (``Example:``) at its own
    indent, else at the indent of the paragraph before it (an indented block after a
    paragraph would read as an indented code block in Markdown)."""
    prev = next((p for p in reversed(out) if p.strip()), "")
    if SECTION.fullmatch(prev) and _indent(prev) < _indent(line):
        return _indent(line)
    return min(_indent(prev), _indent(line))


def to_markdown(text: str) -> str:
    """``text`` with Sphinx roles as inline code, doctest blocks and ``::`` blocks fenced
    (``"Use :func:`~a.load`"`` -> ``"Use `load`"``; tests in tests/docs/test_docs_hooks.py)."""
    lines = ROLE.sub(_role, text).split("\n")
    out: list[str] = []
    i = 0
    fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fence = not fence
        if fence or stripped.startswith(("```", "~~~")):
            out.append(line)
            i += 1
            continue
        if stripped.startswith(">>>"):
            pad = " " * _block_indent(out, line)
            cut = " " * _indent(line)
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i][len(cut):] if lines[i].startswith(cut) else lines[i])
                i += 1
            out += [pad + "```pycon", *[pad + b for b in block], pad + "```"]
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            base = _indent(line)
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j < len(lines) and _indent(lines[j]) > base:
                head = line.rstrip()[:-2].rstrip()
                out.append(head + ":" if head.strip() else "")
                code_indent = _indent(lines[j])
                block = []
                k = j
                while k < len(lines) and (not lines[k].strip() or _indent(lines[k]) > base):
                    block.append(lines[k][code_indent:])
                    k += 1
                while block and not block[-1].strip():
                    block.pop()
                pad = " " * base
                out += ["", pad + "```python", *[pad + b if b else "" for b in block],
                        pad + "```", ""]
                i = k
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    """Convert every docstring griffe reads with :func:`to_markdown`."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = to_markdown(obj.docstring.value)
