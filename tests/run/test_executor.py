"""The executor layer: the ledger, the cell loop, the CLI options, and a driver killed with
SIGKILL mid-sweep on Ray whose rerun resumes from the ledger with the same numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hyperlens import cli
from hyperlens.errors import ConfigError
from hyperlens.run import Cell, Ledger, LocalExecutor, Task, check_executor, run_cells


def _double(x: float) -> dict:
    return {"y": 2 * x, "nan": float("nan")}


def test_ledger_records_once_resumes_and_skips_damaged_lines(tmp_path: Path) -> None:
    path = tmp_path / "cells.jsonl"
    led = Ledger(path, "fp1")
    cells = [Cell({"i": i}, Task(_double, {"x": i})) for i in (1, 2, 3, 2)]
    assert run_cells(cells, led, LocalExecutor()) == 3  # the duplicate key runs once
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    path.write_text("\n".join(lines[:2]) + "\n" + lines[2][:30])  # a torn last line
    again = Ledger(path, "fp1")
    assert again.resumed == 2 and {"i": 3} not in again
    assert run_cells(cells, again) == 1
    assert again.get({"i": 3})["y"] == 6
    assert Ledger(path, "fp2").resumed == 0  # another protocol: nothing reused
    assert Ledger(path, "fp1", fresh=True).resumed == 0
    mem = Ledger(None, "fp1")
    run_cells(cells[:1], mem)
    assert mem.get({"i": 1})["y"] == 2


def test_executor_options_are_checked_before_work(tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="--executor"):
        check_executor("dask")
    with pytest.raises(ConfigError, match="--ray-address"):
        check_executor("local", "127.0.0.1:6379")
    assert check_executor(None) in ("local", "ray")
    code = cli.main(["terrain", "--model", "glove-50d", "--executor", "ray",
                     "--out", str(tmp_path / "t")])
    assert code == 2
    assert "runs in one process" in capsys.readouterr().err and not (tmp_path / "t").exists()


MHA = ["--dims", "8", "16", "--heads", "1", "2", "--epochs", "6", "--n-simplices", "20",
       "--n-boot", "10", "--n-classes", "5", "--samples-per-class", "10", "--vocab", "32",
       "--seeds", "0", "1",
       "--device", "cpu", "--no-progress"]


def _results(out: Path) -> dict:
    recs = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in recs}) == len(recs), "a cell was recorded twice"
    return {r["id"]: r["result"] for r in recs}


def test_killed_driver_reruns_from_the_ledger(tmp_path: Path, ray_executor) -> None:
    out = tmp_path / "ray"
    env = {**os.environ, "HYPERLENS_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "hyperlens", "mha-cv", *MHA, "--out", str(out),
           "--executor", "ray", "--ray-address", ray_executor.cluster_address]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ledger = out / "cells.jsonl"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ledger.exists() and ledger.read_text().strip():
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)  # the driver dies mid-sweep
    finally:
        proc.wait(timeout=60)
        if proc.stderr:
            proc.stderr.close()
    n_before = len(_results(out))
    assert 0 < n_before < 8
    # the rerun (here: in-process, local executor) trains only the missing models
    assert cli.main(["mha-cv", *MHA, "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["cells"] == {"resumed": n_before, "computed": 8 - n_before,
                                    "file": "cells.jsonl"}
    assert cli.main(["mha-cv", *MHA, "--out", str(tmp_path / "local")]) == 0
    assert _results(out) == _results(tmp_path / "local")  # same numbers, each cell once
