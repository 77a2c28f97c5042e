"""The executor layer: the ledger, the cell loop, the CLI options, and a driver killed with
SIGKILL mid-sweep on Ray whose rerun resumes from the ledger with the same numbers."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hyperlens import cli
from hyperlens.errors import ConfigError
from hyperlens.run import (
    ENV_ADDRESS,
    ENV_EXECUTOR,
    Cell,
    Ledger,
    LocalExecutor,
    Task,
    check_executor,
    executor as executor_mod,
    make_executor,
    run_cells,
)


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
    # each record keeps the seconds of the call that computed it; the account sums them
    acc = Ledger(path, "fp1").account()
    assert (acc["cells"], acc["resumed"], acc["computed"], acc["timed"]) == (3, 3, 0, 3)
    assert acc["compute_s"] == round(sum(json.loads(ln)["seconds"] for ln in
                                         path.read_text().splitlines()), 3)


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


def _closed_port(host: str = "127.0.0.1") -> int:
    """A loopback port where nothing listens (bound, then released without listening)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("bad", ["not an address", "127.0.0.1", "127.0.0.1:0",
                                 "127.0.0.1:99999", "http://127.0.0.1:6379", "ray://:10001"])
def test_ray_address_form_is_checked_before_work(bad: str, monkeypatch) -> None:
    monkeypatch.delenv(ENV_ADDRESS, raising=False)
    with pytest.raises(ConfigError, match=re.escape(f"--ray-address {bad!r} is not a Ray")):
        check_executor("ray", bad)


@pytest.mark.parametrize("good", ["auto", "127.0.0.1:6379", "localhost:1", "[::1]:6379",
                                  "ray://head-node.example:10001", " 10.0.0.5:6379 "])
def test_ray_address_forms_that_pass(good: str) -> None:
    assert executor_mod._check_address(good) == good.strip()


def test_env_address_applies_to_ray_runs_only(monkeypatch, tmp_path: Path, capsys) -> None:
    monkeypatch.delenv(ENV_EXECUTOR, raising=False)
    monkeypatch.setenv(ENV_ADDRESS, "127.0.0.1:6379")
    assert check_executor("local") == "local" and check_executor(None) == "local"
    assert isinstance(make_executor("local"), LocalExecutor)
    with pytest.raises(ConfigError, match="--ray-address '127.0.0.1:6379' was given with"):
        check_executor("local", "127.0.0.1:6379")  # typed: still refused for a local run
    monkeypatch.setenv(ENV_ADDRESS, "not an address")
    assert isinstance(make_executor(None), LocalExecutor)
    # a Ray run reads it, and the message names the variable
    with pytest.raises(ConfigError, match=r"^\$HYPERLENS_RAY_ADDRESS 'not an address' is not a "
                                          r"Ray.*or unset HYPERLENS_RAY_ADDRESS\.$"):
        check_executor("ray")
    assert executor_mod._choose("ray", "auto")[1:] == ("auto", "--ray-address")  # typed wins
    monkeypatch.setenv(ENV_ADDRESS, " auto ")
    assert executor_mod._choose("ray", None)[1:] == ("auto", "$HYPERLENS_RAY_ADDRESS")
    monkeypatch.setenv(ENV_EXECUTOR, "dask")
    with pytest.raises(ConfigError, match=r"^\$HYPERLENS_EXECUTOR must be one of \['local', "
                                          r"'ray'\], got 'dask'\. Set HYPERLENS_EXECUTOR"):
        check_executor(None)
    assert check_executor("LOCAL") == "local"  # the option wins over the variable


def test_probe_fails_fast_where_nothing_listens_and_names_the_source(monkeypatch) -> None:
    monkeypatch.setattr(executor_mod, "_dialled_hosts", lambda host: [host])  # loopback only
    port = _closed_port()
    start = time.monotonic()
    with pytest.raises(ConfigError) as err:
        executor_mod._probe(f"127.0.0.1:{port}")
    assert str(err.value) == (f"no Ray cluster answers at 127.0.0.1:{port} (connection "
                              "refused); start one with `ray start --head` or drop --ray-address.")
    with pytest.raises(ConfigError, match=r"\(from \$HYPERLENS_RAY_ADDRESS; connection refused\)"
                                          r".* or unset HYPERLENS_RAY_ADDRESS\.$"):
        executor_mod._probe(f"ray://127.0.0.1:{port}", "$HYPERLENS_RAY_ADDRESS")
    assert time.monotonic() - start < 5


def test_probe_accepts_the_address_ray_dials(monkeypatch) -> None:
    """127.0.0.1:PORT passes when only the address Ray rewrites it to answers (here another
    loopback address stands in for this machine's node address)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.2", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        monkeypatch.setattr(executor_mod, "_dialled_hosts", lambda host: [host, "127.0.0.2"])
        executor_mod._probe(f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match="connection refused"):
        executor_mod._probe(f"127.0.0.1:{port}")


def test_ray_executor_fails_fast_at_a_closed_port(monkeypatch, tmp_path: Path, capsys) -> None:
    pytest.importorskip("ray", reason="ray is not installed (scripts/setup.sh installs it)")
    monkeypatch.setattr(executor_mod, "_dialled_hosts", lambda host: [host])  # loopback only
    monkeypatch.delenv(ENV_EXECUTOR, raising=False)
    port = _closed_port()
    start = time.monotonic()
    with pytest.raises(ConfigError, match=re.escape(
            f"no Ray cluster answers at 127.0.0.1:{port} (connection refused); start one with "
            "`ray start --head` or drop --ray-address")):
        make_executor("ray", f"127.0.0.1:{port}")
    monkeypatch.setenv(ENV_ADDRESS, f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match="unset HYPERLENS_RAY_ADDRESS"):
        make_executor("ray")
    assert time.monotonic() - start < 30  # Ray's own retries take minutes
    code = cli.main(["mha-cv", *MHA, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}",
                     "--out", str(tmp_path / "m")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hyperlens mha-cv: error: no Ray cluster answers at") and "\n" not in err
    assert not (tmp_path / "m").exists()
    assert time.monotonic() - start < 60


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
    cells = res["data"]["cells"]
    assert (cells["resumed"], cells["computed"], cells["timed"]) == (n_before, 8 - n_before, 8)
    assert cli.main(["mha-cv", *MHA, "--out", str(tmp_path / "local")]) == 0
    assert _results(out) == _results(tmp_path / "local")  # same numbers, each cell once


def test_a_run_with_other_options_keeps_the_first_runs_cells(tmp_path: Path) -> None:
    path = tmp_path / "cells.jsonl"
    cells = [Cell({"i": i}, Task(_double, {"x": i})) for i in (1, 2)]
    run_cells(cells, Ledger(path, "bf16"))
    other = Ledger(path, "fp32")  # another precision: nothing reused, nothing erased
    assert other.resumed == 0
    run_cells(cells[:1], other)
    assert Ledger(path, "bf16").resumed == 2 and Ledger(path, "fp32").resumed == 1
    fresh = Ledger(path, "fp32", fresh=True)  # starting over drops this key's cells only
    run_cells(cells[1:], fresh)
    assert Ledger(path, "bf16").resumed == 2
    assert [{"i": 2}] == [r["key"] for r in Ledger(path, "fp32").cells.values()]
    assert fresh.discard({"i": 2}) and Ledger(path, "bf16").resumed == 2
    assert len(path.read_text().splitlines()) == 2
