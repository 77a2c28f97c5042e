"""The package's top level: star import and lazy subpackages."""

from __future__ import annotations

import importlib.util


def test_star_import_brings_every_present_subpackage():
    ns: dict[str, object] = {}
    exec("from hyperlens import *", ns)  # noqa: S102 - the statement under test
    for name in ("models", "train", "inject", "align", "report", "HyperlensError"):
        assert name in ns, name
    import hyperlens

    missing = [m for m in hyperlens._SUBMODULES
               if importlib.util.find_spec(f"hyperlens.{m}") is None]
    assert not set(missing) & set(hyperlens.__all__)


def test_one_registry_pattern():
    import pytest

    from hyperlens.align.base import _REGISTRY as aligners
    from hyperlens.errors import ConfigError
    from hyperlens.inject.base import _REGISTRY as adapters
    from hyperlens.utils import Registry

    assert isinstance(aligners, Registry) and isinstance(adapters, Registry)
    reg = Registry("widget", "Register one with @register_widget.")
    reg.base = int

    @reg.register("w1")
    class W(int):
        pass

    assert reg.lookup("w1") is W and W.name == "w1" and reg.names() == ["w1"]
    with pytest.raises(ConfigError, match="available: w1"):
        reg.lookup("w2")
    with pytest.raises(ConfigError, match="decorates int"):
        reg.register("w3")(str)
    with pytest.raises(ConfigError, match="short identifier"):
        reg.register("two words")


def test_package_docstring_lists_every_subpackage() -> None:
    from pathlib import Path

    import hyperlens

    root = Path(hyperlens.__file__).parent
    names = {p.parent.name for p in root.glob("*/__init__.py")}
    names |= {p.stem for p in root.glob("*.py") if p.stem not in {"__init__", "__main__"}}
    doc = hyperlens.__doc__ or ""
    missing = sorted(n for n in names if f"hyperlens.{n}`" not in doc)
    assert not missing, f"the package docstring omits {missing}"
    assert names <= set(hyperlens._KNOWN_SUBMODULES)


def test_no_function_shadows_a_submodule() -> None:
    import importlib
    import pkgutil
    import types

    import hyperlens

    bad = []
    for info in pkgutil.walk_packages(hyperlens.__path__, "hyperlens."):
        parent_name, _, leaf = info.name.rpartition(".")
        parent = importlib.import_module(parent_name)
        value = getattr(parent, leaf, None)
        if value is not None and not isinstance(value, types.ModuleType):
            bad.append(f"{info.name} is also a {type(value).__name__} of {parent_name}")
    assert not bad, "\n".join(bad)
