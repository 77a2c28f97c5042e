"""``scripts/gpu_check.py`` on a machine without a GPU: the dry run plans the whole check
and proves its imports with the GPU machine's missing packages hidden; a real run is
refused before any work."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def dry_run():
    return _run("--dry-run")


def test_dry_run_lists_the_cuda_tests_and_the_benchmark_and_exits_0(dry_run):
    assert dry_run.returncode == 0, dry_run.stderr
    out = dry_run.stdout
    tests = [ln.strip() for ln in out.splitlines() if "::" in ln]
    assert f"collects {len(tests)} tests" in out and len(tests) >= 40
    for node in ("tests/gpu/test_gpu_hdc.py::test_int_matmul_is_exact_and_uses_the_integer_kernel",
                 "tests/gpu/test_gpu_training.py::test_train_hyperfield_runs_on_the_device",
                 "tests/functional/test_geometry.py::test_cuda_matches_cpu"):
        assert node in tests
    assert not any("test_device_refusal" in t for t in tests)  # CPU checks are not marked
    for item in _script().ITEMS:
        assert f"  {item.name}: " in out
    assert "imports: ok" in out and "nltk" in out


def test_the_import_check_hides_what_the_gpu_machine_lacks():
    gc = _script()
    code = gc._HIDE_ABSENT.format(absent=set(gc.ABSENT)) + "import nltk\n"
    proc = subprocess.run([sys.executable, "-c", code], text=True, capture_output=True,
                          check=False)
    assert proc.returncode != 0 and "absent on the GPU machine" in proc.stderr
    assert {"nltk", "datasets", "ray"} <= set(gc.ABSENT)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: the check would run")
def test_without_a_gpu_a_real_run_is_refused_before_any_work(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = _run("--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.strip() == proc.stderr.strip().splitlines()[0]
    assert "--device cuda: no CUDA GPU is visible" in proc.stderr and "--dry-run" in proc.stderr
    assert not out.exists()


def test_bad_scale_is_refused():
    proc = _run("--dry-run", "--scale", "0")
    assert proc.returncode == 2 and "--scale must be > 0, got 0.0" in proc.stderr


def test_junit_counts_and_item_scaling(tmp_path):
    gc = _script()
    xml = tmp_path / "r.xml"
    xml.write_text(
        '<testsuites><testsuite><testcase classname="a" name="ok"/>'
        '<testcase classname="a" name="bad"><failure message="x"/></testcase>'
        '<testcase classname="b" name="skip"><skipped message="no gpu"/></testcase>'
        '<testcase classname="b" name="err"><error message="y"/></testcase>'
        "</testsuite></testsuites>")
    assert gc._junit_counts(xml) == {"passed": 1, "failed": 2, "skipped": 1,
                                     "failures": ["a::bad", "b::err"]}
    assert gc._junit_counts(tmp_path / "missing.xml") == {"error": "pytest wrote no report"}
    item = next(i for i in gc.ITEMS if i.name == "hdc_search")
    assert item.at_scale(0.01) == {**item.sizes, "codes": 1000, "queries": 5}
