"""The documentation site: built with ``mkdocs build --strict`` and every page opened in
headless Chromium.

The strict build fails on a broken cross-reference, a missing page, a docstring mkdocstrings
cannot read or a figure macro that the committed JSON cannot fill. Chromium then opens every
built page from a local server and checks that it renders, that every image loads and that
every internal link (and its anchor) resolves.

Needs the ``docs`` extra (``pip install -e ".[docs]"``; ``make test`` installs it) and
Chromium (``bash scripts/install_chromium.sh``, which ``make test`` runs); without them the
tests skip with the reason.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("HYPERLENS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _need(module: str, how: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed; {how}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    for mod in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        _need(mod, 'install the docs tools with: pip install -e ".[docs]" (make test does)')
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f",
                           str(ROOT / "mkdocs.yml"), "-d", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    pages = sorted(out.rglob("*.html"))
    print(f"\nsite built in {seconds:.1f} s: {len(pages)} pages")
    yield out


def test_site_has_every_page(site: Path) -> None:
    """The navigation's pages, a page per command and per API section, the plots drawn."""
    for page in ("index.html", "getting-started.html", "architecture.html",
                 "capabilities/benchmarks.html", "commands/index.html",
                 "commands/transfer.html", "commands/hft-train.html", "commands/report.html",
                 "reference/index.html", "reference/hdc.html", "reference/config.html"):
        assert (site / page).is_file(), f"{page} was not built"
    html = (site / "commands" / "terrain.html").read_text("utf-8")
    assert "--n-simplices" in html and "random pentachora for the volume CV" in html
    assert "{{" not in (site / "capabilities" / "benchmarks.html").read_text("utf-8")
    assert not list(site.rglob("_hooks")), "the hook sources must not be published"


def _serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a page left mid-transfer
                super().handle_error(request, client_address)  # type: ignore[arg-type]

    server = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


_ID = re.compile(r"""\bid=["']?([^"'\s>]+)""")


def _anchors(path: Path, cache: dict[Path, set[str]]) -> set[str]:
    if path not in cache:
        cache[path] = set(_ID.findall(path.read_text("utf-8")))
    return cache[path]


_PAGE_STATE = """() => ({
  title: document.title,
  article: (document.querySelector("article") || {innerText: ""}).innerText.length,
  images: Array.from(document.images).map(i => [i.currentSrc || i.src, i.complete,
                                                i.naturalWidth]),
  links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
})"""


def test_every_page_renders_with_its_images_and_links(site: Path) -> None:
    _need("playwright", 'install it with: pip install -e ".[docs]" (make test does)')
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}; install it with: bash scripts/install_chromium.sh"
                    " (Debian packages chromium and chromium-driver; make test runs it)")
    from playwright.sync_api import sync_playwright

    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    server, base = _serve(site)
    problems: list[str] = []
    cache: dict[Path, set[str]] = {}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page()
            # Nothing leaves the machine: only the local server answers.
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith(base) else route.abort())
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            for rel in pages:
                errors.clear()
                response = page.goto(f"{base}/{rel}", wait_until="load")
                if response is None or response.status != 200:
                    problems.append(f"{rel}: HTTP {response.status if response else 'none'}")
                    continue
                state = page.evaluate(_PAGE_STATE)
                if not state["title"] or (rel != "404.html" and state["article"] < 20):
                    problems.append(f"{rel}: no content rendered")
                problems += [f"{rel}: script error {e}" for e in errors]
                for src, complete, width in state["images"]:
                    if not complete or width == 0:
                        problems.append(f"{rel}: image {src} did not load")
                for href in state["links"]:
                    problems += _check_link(site, rel, base, href, cache)
            browser.close()
    finally:
        server.shutdown()
    assert len(pages) >= 40, f"only {len(pages)} pages were built"
    assert not problems, "\n".join(problems[:50])


def _check_link(site: Path, rel: str, base: str, href: str,
                cache: dict[Path, set[str]]) -> list[str]:
    if not href.startswith(base):
        return []  # external (none is fetched)
    parts = urlsplit(href)
    path = unquote(parts.path).lstrip("/") or "index.html"
    target = site / path
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        return [f"{rel}: link {href} points to a missing {path}"]
    if parts.fragment and target.suffix == ".html":
        if unquote(parts.fragment) not in _anchors(target, cache):
            return [f"{rel}: link {href} names a missing anchor #{parts.fragment}"]
    return []
