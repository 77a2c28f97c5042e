"""The training loop: seeding, frozen guard, parameter groups, schedules, early stop, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from hyperlens.errors import ConfigError, InputError
from hyperlens.train import (
    CHECKPOINT_NAME,
    FrozenModelChanged,
    History,
    TrainConfig,
    checksum,
    current_step,
    fit,
    fit_module,
    step_generator,
)
from hyperlens.train.loop import _lr_factor as lr_factor

SRC = Path(__file__).resolve().parents[1] / "src"


def _data(n: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    w = torch.randn(6, 1, generator=g)
    return x, x @ w + 0.1 * torch.randn(n, 1, generator=g)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 16)
        self.drop = nn.Dropout(0.2)
        self.out = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.relu(self.lin(x))))


def mse(module: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(module(x), y)


def _weights(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


def test_fit_learns_records_and_keeps_global_rng():
    x, y = _data()
    state = torch.get_rng_state()
    cfg = TrainConfig(lr=1e-2, epochs=30, batch_size=32, seed=3, early_stop_metric="mse")
    net, hist = fit_module(Net, mse, (x, y), cfg, eval_fn=lambda m: {"mse": float(mse(m, (x, y)))})
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    assert hist.steps == list(range(1, 91)) and len(hist.train_loss) == 90
    assert hist.epoch_loss()[-1] < 0.3 * hist.epoch_loss()[0]
    assert [e["step"] for e in hist.evals] == list(range(3, 91, 3))
    assert hist.best is not None and hist.best["mse"] == min(e["mse"] for e in hist.evals)
    assert not net.training
    spec = hist.plot_spec()
    assert spec["kind"] == "line" and [s["label"] for s in spec["series"]] == [
        "train loss", "eval mse", "eval train_loss"]
    json.dumps(hist.as_dict())
    assert History.from_dict(hist.as_dict()).train_loss == hist.train_loss
    # same seed, same bits; another seed, other weights
    net2, _ = fit_module(Net, mse, (x, y), cfg)
    assert all(torch.equal(a, b) for a, b in zip(_weights(net), _weights(net2), strict=True))
    net3, _ = fit_module(Net, mse, (x, y), TrainConfig(lr=1e-2, epochs=30, batch_size=32, seed=4))
    assert hist.plot_spec(metrics=["mse"])["series"][1]["label"] == "eval mse"
    assert not torch.equal(net.lin.weight, net3.lin.weight)


def test_param_lr_and_no_decay():
    x, y = _data()
    torch.manual_seed(0)
    net = Net()
    b0, w0 = net.out.bias.detach().clone(), net.out.weight.detach().clone()
    fit(net, mse, (x, y), TrainConfig(lr=1e-2, epochs=2, param_lr={"out.bias": 0.0}))
    assert torch.equal(net.out.bias, b0) and not torch.equal(net.out.weight, w0)

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Parameter(torch.ones(3))
            self.idle = nn.Parameter(torch.ones(3))  # no gradient: only weight decay moves it

    def loss(m: Two, batch: torch.Tensor) -> torch.Tensor:
        return (m.used * batch.sum()).sum() * 0 + (m.used ** 2).sum() + 0 * m.idle.sum()

    data = torch.zeros(4, 1)
    m = Two()
    fit(m, loss, data, TrainConfig(optimizer="adamw", lr=0.1, weight_decay=0.5, epochs=3))
    assert (m.idle < 1).all()
    m = Two()
    fit(m, loss, data, TrainConfig(optimizer="adamw", lr=0.1, weight_decay=0.5, epochs=3,
                                   no_decay=("idle",)))
    assert torch.equal(m.idle.detach(), torch.ones(3))


def test_frozen_guard(tiny_llama):
    x = torch.randint(4, 120, (16, 5), generator=torch.Generator().manual_seed(0))
    flags = [p.requires_grad for p in tiny_llama.parameters()]
    before = checksum(tiny_llama)
    head = nn.Linear(32, 2)

    def loss(m: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        h = tiny_llama.model(input_ids=ids).last_hidden_state[:, -1]
        assert not any(p.requires_grad for p in tiny_llama.parameters())
        return m(h).logsumexp(-1).mean()

    fit(head, loss, x, TrainConfig(epochs=2, batch_size=8), frozen=tiny_llama)
    assert checksum(tiny_llama) == before
    assert [p.requires_grad for p in tiny_llama.parameters()] == flags

    def sneaky(m: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            tiny_llama.lm_head.weight.mul_(1.0001)
        return loss(m, ids)

    try:
        with pytest.raises(FrozenModelChanged, match="changed"):
            fit(head, sneaky, x, TrainConfig(epochs=1, batch_size=8), frozen=[tiny_llama])
    finally:
        with torch.no_grad():
            tiny_llama.lm_head.weight.div_(1.0001)
    with pytest.raises(InputError, match="no parameter"):
        fit(tiny_llama, loss, x, TrainConfig(), frozen=tiny_llama)


def test_schedules_and_max_steps():
    cfg = TrainConfig(schedule="linear", warmup_steps=2)
    assert [round(lr_factor(s, 6, cfg), 6) for s in range(6)] == [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]
    cfg = TrainConfig(schedule="cosine")
    assert lr_factor(0, 10, cfg) == 1.0 and abs(lr_factor(5, 10, cfg) - 0.5) < 1e-12
    x, y = _data()
    _, hist = fit_module(Net, mse, (x, y), TrainConfig(epochs=100, max_steps=7, batch_size=40))
    assert hist.steps[-1] == 7 and hist.epochs[-1] == 2


def test_early_stopping():
    x, y = _data()
    calls = iter(range(100))
    cfg = TrainConfig(epochs=50, batch_size=96, early_stop_metric="score", early_stop_mode="max",
                      early_stop_patience=3)
    _, hist = fit_module(Net, mse, (x, y), cfg, eval_fn=lambda m: {"score": min(next(calls), 4)})
    assert hist.stopped_early and len(hist.evals) == 8  # best at the 5th, then 3 without gain
    assert hist.best is not None and hist.best["score"] == 4 and hist.best["step"] == 5


def test_data_kinds_and_bad_input():
    x, y = _data(20)
    for data in ({"x": x, "y": y}, [(x[i], y[i]) for i in range(20)],
                 torch.utils.data.TensorDataset(x, y)):
        def loss(m, b, data=data):
            xb, yb = (b["x"], b["y"]) if isinstance(b, dict) else b
            return nn.functional.mse_loss(m(xb), yb)

        _, hist = fit_module(Net, loss, data, TrainConfig(epochs=1, batch_size=8))
        assert hist.steps == [1, 2, 3]
    _, hist = fit_module(Net, mse, (x, y), TrainConfig(epochs=1, batch_size=8, drop_last=True))
    assert hist.steps == [1, 2]
    with pytest.raises(ConfigError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ConfigError, match="param_lr"):
        TrainConfig(param_lr={"*": -1})
    with pytest.raises(InputError, match="same length"):
        fit(Net(), mse, (x, y[:5]), TrainConfig())
    with pytest.raises(InputError, match="scalar"):
        fit(Net(), lambda m, b: m(b[0]), (x, y), TrainConfig())
    with pytest.raises(InputError, match="only available inside"):
        step_generator()


def test_unknown_option_is_refused_before_training():
    x, y = _data(20)
    net = Net()
    before = _weights(net)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['eval'\]; it takes "
                                          r"\['frozen', 'eval_fn', 'collate'\]"):
        fit(net, mse, (x, y), TrainConfig(), eval=lambda m: {})
    assert all(torch.equal(a, b) for a, b in zip(before, _weights(net), strict=True))
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['froze'\]"):
        fit_module(Net, mse, (x, y), TrainConfig(), froze=None)


def _noisy_loss(m: nn.Module, batch):
    """Uses dropout (global RNG) and the step generator (an own draw): both must resume."""
    x, y = batch
    noise = torch.randn(x.shape, generator=step_generator()) * 0.01
    return nn.functional.mse_loss(m(x + noise), y)


def test_resume_in_process_is_bit_identical(tmp_path):
    x, y = _data()
    cfg = TrainConfig(lr=5e-3, epochs=4, batch_size=20, seed=1)
    ref, ref_hist = fit_module(Net, _noisy_loss, (x, y), cfg)
    ck = TrainConfig(**{**cfg.as_dict(), "checkpoint_dir": str(tmp_path / "ck")})
    steps = iter(range(1000))

    def dying(m, batch):
        if next(steps) == 12:  # in epoch 2, after the checkpoint of epoch 1
            raise KeyboardInterrupt
        return _noisy_loss(m, batch)

    with pytest.raises(KeyboardInterrupt):
        fit_module(Net, dying, (x, y), ck)
    assert (tmp_path / "ck" / CHECKPOINT_NAME).exists()
    net, hist = fit_module(Net, _noisy_loss, (x, y), ck)
    assert hist.resumed_from == 10 and hist.train_loss == ref_hist.train_loss
    assert all(torch.equal(a, b) for a, b in zip(_weights(net), _weights(ref), strict=True))
    other = TrainConfig(**{**ck.as_dict(), "lr": 1e-3})
    with pytest.raises(ConfigError, match="different"):
        fit_module(Net, _noisy_loss, (x, y), other)


def test_checkpoint_every_resumes_from_the_middle_of_an_epoch(tmp_path):
    """One long epoch: a kill mid-epoch loses only the steps after the last checkpoint, and
    the resumed run (same batch order, generators, kept best weights) ends bit-identical."""
    x, y = _data()
    val = (x[:24], y[:24])

    def ev(m):
        return {"val": float(nn.functional.mse_loss(m(val[0]), val[1]))}

    cfg = TrainConfig(lr=5e-3, epochs=2, batch_size=8, seed=3, eval_every=4,
                      restore_best=True, early_stop_metric="val")
    ref, ref_hist = fit_module(Net, _noisy_loss, (x, y), cfg, eval_fn=ev)
    ck = TrainConfig(**{**cfg.as_dict(), "checkpoint_dir": str(tmp_path / "ck"),
                        "checkpoint_every": 5})
    assert ck.fingerprint() == cfg.fingerprint()  # bookkeeping: the numbers do not change
    steps = iter(range(1000))

    def dying(m, batch):
        if next(steps) == 18:  # step 19, in the second epoch of 12 batches
            raise KeyboardInterrupt
        return _noisy_loss(m, batch)

    with pytest.raises(KeyboardInterrupt):
        fit_module(Net, dying, (x, y), ck, eval_fn=ev)
    net, hist = fit_module(Net, _noisy_loss, (x, y), ck, eval_fn=ev)
    assert hist.resumed_from == 15  # the checkpoint after step 15, three batches into epoch 2
    assert hist.train_loss == ref_hist.train_loss and hist.evals == ref_hist.evals
    assert hist.restored_step == ref_hist.restored_step
    assert all(torch.equal(a, b) for a, b in zip(_weights(net), _weights(ref), strict=True))
    with pytest.raises(ConfigError, match="checkpoint_every"):
        TrainConfig(checkpoint_every=5)


class Tracked(nn.Module):
    """A trained layer with state outside its parameters: a running mean of its inputs and a
    frozen table of its own (a parameter-free submodule, which a checkpoint leaves out)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 1)
        self.register_buffer("running", torch.zeros(6))
        self.table = nn.Module()
        self.table.register_buffer("values", torch.arange(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x - self.running)


def _tracked_loss(m: nn.Module, batch):
    """Updates the running buffer, and acts every 3 steps by the loop's step count."""
    x, y = batch
    with torch.no_grad():
        m.running.mul_(0.9).add_(0.1 * x.mean(0))
        if current_step() and current_step() % 3 == 0:
            m.lin.bias.add_(0.05)
    return nn.functional.mse_loss(m(x), y), {"step": float(current_step())}


def test_resume_restores_buffers_and_the_step_count(tmp_path):
    x, y = _data()
    cfg = TrainConfig(lr=5e-3, epochs=4, batch_size=20, seed=1)
    ref, ref_hist = fit_module(Tracked, _tracked_loss, (x, y), cfg)
    assert [m["step"] for m in ref_hist.train_metrics] == list(range(20))
    ck = TrainConfig(**{**cfg.as_dict(), "checkpoint_dir": str(tmp_path / "ck")})
    steps = iter(range(1000))

    def dying(m, batch):
        if next(steps) == 13:
            raise KeyboardInterrupt
        return _tracked_loss(m, batch)

    with pytest.raises(KeyboardInterrupt):
        fit_module(Tracked, dying, (x, y), ck)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "ck" / CHECKPOINT_NAME), "pt") as f:
        spent = json.loads(f.metadata()["meta"])["history"]["seconds"]
    net, hist = fit_module(Tracked, _tracked_loss, (x, y), ck)
    assert hist.resumed_from == 10 and hist.train_loss == ref_hist.train_loss
    assert 0 < spent < hist.seconds  # the killed sitting's time is kept and added to
    assert torch.equal(net.running, ref.running) and net.running.abs().sum() > 0
    assert all(torch.equal(a, b) for a, b in zip(_weights(net), _weights(ref), strict=True))
    with safe_open(str(tmp_path / "ck" / CHECKPOINT_NAME), "pt") as f:
        keys = set(f.keys())
    assert "buffer/running" in keys and "buffer/table.values" not in keys
    with pytest.raises(InputError, match="inside a loss_fn"):
        current_step()


def _kill_config(ckdir: str | None) -> TrainConfig:
    return TrainConfig(lr=5e-3, epochs=5, batch_size=20, seed=2, checkpoint_dir=ckdir)


_SCRIPT = textwrap.dedent('''
    import os, signal, sys
    import torch
    from torch import nn
    sys.path.insert(0, os.environ["TESTS_DIR"])
    from test_train import Net, _data, _kill_config, _noisy_loss
    from hyperlens.train import fit_module
    from safetensors.torch import save_file

    out, ckdir, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    steps = iter(range(10_000))

    def loss(m, batch):
        if next(steps) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return _noisy_loss(m, batch)

    torch.set_num_threads(1)
    x, y = _data()
    net, hist = fit_module(Net, loss, (x, y), _kill_config(ckdir))
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, out)
''')


def test_kill9_then_rerun_gives_the_same_weights(tmp_path):
    from safetensors.torch import load_file

    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(SRC), "TESTS_DIR": str(Path(__file__).parent),
           "HYPERLENS_PROGRESS": "0", "OMP_NUM_THREADS": "1"}

    def run(*args: str) -> int:
        return subprocess.run([sys.executable, str(script), *args], env=env, timeout=300,
                              capture_output=True).returncode

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same kernels as the subprocess runs
    try:
        ref_net, _ = fit_module(Net, _noisy_loss, _data(), _kill_config(None))
    finally:
        torch.set_num_threads(threads)
    ck = str(tmp_path / "ck")
    assert run(str(tmp_path / "res.safetensors"), ck, "13") == -9  # killed in epoch 3
    assert Path(ck, CHECKPOINT_NAME).exists()
    assert run(str(tmp_path / "res.safetensors"), ck, "-1") == 0
    ref, res = ref_net.state_dict(), load_file(tmp_path / "res.safetensors")
    assert ref.keys() == res.keys()
    for k in ref:
        assert torch.equal(ref[k], res[k]), k


# --------------------------------------------------------------------------- restore_best
def _val_mse(xv: torch.Tensor, yv: torch.Tensor):
    return lambda m: {"val_mse": float(mse(m, (xv, yv)).detach())}


def test_restore_best_keeps_the_best_evaluation():
    x, y = _data()
    scores = iter([1.0, 5.0, 3.0, 5.0, 2.0])  # best at the 2nd evaluation (a tie keeps it)
    seen: list[list[torch.Tensor]] = []

    def score(m: nn.Module) -> dict[str, float]:
        seen.append(_weights(m))
        return {"acc": next(scores)}

    base = dict(lr=1e-2, epochs=5, batch_size=32, seed=3, early_stop_metric="acc",
                early_stop_mode="max")
    net, hist = fit_module(Net, mse, (x, y), TrainConfig(**base, restore_best=True),
                           eval_fn=score)
    assert [e["step"] for e in hist.evals] == [3, 6, 9, 12, 15]
    assert hist.restored_step == 6 and hist.best is not None and hist.best["step"] == 6
    assert all(torch.equal(a, b) for a, b in zip(_weights(net), seen[1], strict=True))
    # off (the default): the same steps, the final weights, no restored step
    scores = iter([1.0, 5.0, 3.0, 5.0, 2.0])
    seen.clear()
    last, plain = fit_module(Net, mse, (x, y), TrainConfig(**base), eval_fn=score)
    assert plain.train_loss == hist.train_loss and plain.restored_step is None
    assert all(torch.equal(a, b) for a, b in zip(_weights(last), seen[-1], strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(_weights(last), _weights(net), strict=True))


def test_restore_best_evaluates_the_final_step_and_watches_train_loss():
    x, y = _data()
    xv, yv = _data(40, seed=9)
    cfg = TrainConfig(lr=1e-2, epochs=10, max_steps=10, batch_size=32, eval_every=4,
                      early_stop_metric="val_mse", restore_best=True)
    net, hist = fit_module(Net, mse, (x, y), cfg, eval_fn=_val_mse(xv, yv))
    assert [e["step"] for e in hist.evals] == [4, 8, 10]  # 10: the schedule ends off the grid
    best = min(hist.evals, key=lambda e: e["val_mse"])
    assert hist.restored_step == best["step"]
    assert abs(_val_mse(xv, yv)(net)["val_mse"] - best["val_mse"]) < 1e-6
    off = TrainConfig(**{**cfg.as_dict(), "restore_best": False})
    _, plain = fit_module(Net, mse, (x, y), off, eval_fn=_val_mse(xv, yv))
    assert [e["step"] for e in plain.evals] == [4, 8]  # no extra evaluation when off
    # without an eval_fn, the mean training loss of each epoch picks the weights
    net, hist = fit_module(Net, mse, (x, y), TrainConfig(lr=1e-2, epochs=4, batch_size=32,
                                                          restore_best=True))
    losses = [e["train_loss"] for e in hist.evals]
    assert len(losses) == 4 and hist.restored_step == hist.evals[losses.index(min(losses))]["step"]


def test_eval_at_start_lets_the_starting_weights_win():
    x, y = _data()
    scores = iter([0.5, 1.0, 2.0, 3.0])  # the start (step 0) is best: every step made it worse
    seen: list[list[torch.Tensor]] = []

    def score(m: nn.Module) -> dict[str, float]:
        seen.append(_weights(m))
        return {"val": next(scores)}

    cfg = TrainConfig(lr=1e-2, epochs=3, batch_size=32, seed=1, early_stop_metric="val",
                      restore_best=True, eval_at_start=True, early_stop_patience=5)
    net, hist = fit_module(Net, mse, (x, y), cfg, eval_fn=score)
    assert [e["step"] for e in hist.evals] == [0, 3, 6, 9]
    assert hist.restored_step == 0 and len(hist.train_loss) == 9
    assert all(torch.equal(a, b) for a, b in zip(_weights(net), seen[0], strict=True))
    off = TrainConfig(**{**cfg.as_dict(), "eval_at_start": False})
    assert off.fingerprint() != cfg.fingerprint()  # a checkpoint of one does not resume the other
    with pytest.raises(ConfigError, match="eval_at_start"):
        TrainConfig(eval_at_start=1)  # type: ignore[arg-type]


def test_restore_best_bad_metric_is_refused_before_training():
    x, y = _data()
    calls: list[int] = []

    def loss(m, b):
        calls.append(1)
        return mse(m, b)

    with pytest.raises(ConfigError, match="early_stop_metric='acc' needs an eval_fn"):
        fit_module(Net, loss, (x, y), TrainConfig(restore_best=True, early_stop_metric="acc"))
    assert not calls
    with pytest.raises(ConfigError, match="'acc' is not among the evaluated values"):
        fit_module(Net, mse, (x, y), TrainConfig(restore_best=True, early_stop_metric="acc"),
                   eval_fn=lambda m: {"val": 1.0})


def test_restore_best_resumes_to_the_same_weights(tmp_path):
    x, y = _data()
    xv, yv = _data(40, seed=9)
    cfg = TrainConfig(lr=2e-2, epochs=6, batch_size=20, seed=1, eval_every=3,
                      early_stop_metric="val_mse", restore_best=True)
    ref, ref_hist = fit_module(Net, _noisy_loss, (x, y), cfg, eval_fn=_val_mse(xv, yv))
    ck = TrainConfig(**{**cfg.as_dict(), "checkpoint_dir": str(tmp_path / "ck")})
    steps = iter(range(1000))

    def dying(m, batch):
        if next(steps) == 22:  # in epoch 4; the best so far lives in the checkpoint
            raise KeyboardInterrupt
        return _noisy_loss(m, batch)

    with pytest.raises(KeyboardInterrupt):
        fit_module(Net, dying, (x, y), ck, eval_fn=_val_mse(xv, yv))
    net, hist = fit_module(Net, _noisy_loss, (x, y), ck, eval_fn=_val_mse(xv, yv))
    assert hist.resumed_from == 20 and hist.evals == ref_hist.evals
    assert hist.restored_step == ref_hist.restored_step is not None
    assert all(torch.equal(a, b) for a, b in zip(_weights(net), _weights(ref), strict=True))


def test_fingerprint_without_restore_best_is_unchanged():
    # the value before restore_best existed: older checkpoints keep resuming
    cfg = TrainConfig(lr=5e-3, epochs=4, batch_size=20, seed=1)
    assert cfg.fingerprint() == "7e1c798c67cebcae0552847c6cf2a5f2"
    assert TrainConfig(lr=5e-3, epochs=4, batch_size=20, seed=1,
                       restore_best=True).fingerprint() != cfg.fingerprint()


# --------------------------------------------------------------------------- config checks
@pytest.mark.parametrize("kwargs, message", [
    ({"weight_decay": "0.1"}, r"weight_decay='0\.1' \(str\) is invalid: expected a finite "
                              r"number >= 0"),
    ({"betas": "ab"}, r"betas='ab' \(str\) is invalid: expected two numbers in \[0, 1\)"),
    ({"betas": (2, 3)}, r"betas=\(2, 3\) \(tuple\) is invalid: expected two numbers in \[0, 1\)"),
    ({"betas": (0.9,)}, r"betas=\(0\.9,\)"),
    ({"betas": (0.9, True)}, r"betas=\(0\.9, True\)"),
    ({"momentum": -1}, r"momentum=-1 \(int\) is invalid: expected a number in \[0, 1\)"),
    ({"momentum": 1.0}, r"momentum=1\.0"),
    ({"lr": True}, r"lr=True \(bool\) is invalid: expected a finite learning rate > 0"),
    ({"lr": float("nan")}, r"lr=nan"),
    ({"lr": 0}, r"lr=0 \(int\)"),
    ({"lr": "1e-3"}, r"lr='1e-3' \(str\)"),
    ({"param_lr": {"*": True}}, r"param_lr\['\*'\]=True \(bool\) is invalid: expected a finite"),
    ({"param_lr": {1: 0.1}}, r"param_lr=\{1: 0\.1\} \(dict\) is invalid: expected a dict"),
    ({"param_lr": [("*", 0.1)]}, r"param_lr=\[\('\*', 0\.1\)\] \(list\)"),
    ({"no_decay": "*.bias"}, r"no_decay='\*\.bias' \(str\) is invalid: expected a tuple"),
    ({"epochs": 2.0}, r"epochs=2\.0 \(float\) is invalid: expected an int >= 1"),
    ({"epochs": True}, r"epochs=True \(bool\)"),
    ({"warmup_steps": -1}, r"warmup_steps=-1 \(int\) is invalid: expected an int >= 0"),
    ({"max_steps": True}, r"max_steps=True \(bool\) is invalid: expected None or an int >= 1"),
    ({"batch_size": 0}, r"batch_size=0 \(int\) is invalid: expected None or an int >= 1"),
    ({"eval_every": 0}, r"eval_every=0"),
    ({"early_stop_patience": 1.5}, r"early_stop_patience=1\.5"),
    ({"grad_clip": 0}, r"grad_clip=0 \(int\) is invalid: expected None or a finite max"),
    ({"grad_clip": float("inf")}, r"grad_clip=inf"),
    ({"seed": 1.5}, r"seed=1\.5 \(float\) is invalid: expected an int in \[-2\*\*63, 2\*\*64\)"),
    ({"seed": True}, r"seed=True \(bool\)"),
    ({"seed": 2 ** 64}, r"seed=18446744073709551616"),
    ({"shuffle": 1}, r"shuffle=1 \(int\) is invalid: expected True or False"),
    ({"drop_last": "no"}, r"drop_last='no' \(str\)"),
    ({"restore_best": 1}, r"restore_best=1 \(int\) is invalid: expected True or False"),
    ({"progress": "yes"}, r"progress='yes' \(str\) is invalid: expected None, True or False"),
    ({"early_stop_metric": ""}, r"early_stop_metric='' \(str\) is invalid: expected the name"),
    ({"early_stop_metric": 3}, r"early_stop_metric=3 \(int\)"),
    ({"early_stop_mode": "best"}, r"early_stop_mode='best' \(str\) is invalid: expected one of "
                                  r"\('min', 'max'\)"),
    ({"optimizer": None}, r"optimizer=None \(NoneType\) is invalid: expected one of"),
    ({"schedule": ["linear"]}, r"schedule=\['linear'\] \(list\)"),
    ({"checkpoint_dir": 3}, r"checkpoint_dir=3 \(int\) is invalid: expected None or a folder"),
    ({"checkpoint_dir": ""}, r"checkpoint_dir='' \(str\)"),
])
def test_config_checks_every_field(kwargs, message):
    with pytest.raises(ConfigError, match=r"^TrainConfig\." + message):
        TrainConfig(**kwargs)


def test_config_accepts_numpy_numbers_and_paths(tmp_path):
    import numpy as np

    cfg = TrainConfig(lr=np.float32(0.01), epochs=np.int64(3), betas=[0.8, np.float64(0.9)],
                      seed=np.int32(7), checkpoint_dir=tmp_path, momentum=0, grad_clip=1)
    assert type(cfg.lr) is float and type(cfg.epochs) is int and type(cfg.seed) is int
    assert cfg.betas == (0.8, 0.9) and cfg.checkpoint_dir == str(tmp_path)
    assert len(cfg.fingerprint()) == 32  # JSON-able
    assert TrainConfig(lr=1, weight_decay=0, seed=-1).lr == 1  # ints stay ints (fingerprints)


# --------------------------------------------------------------------------- damaged checkpoints
def _damage(path: Path, how: str) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(256))
    else:  # a readable file without the step generator's state
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata()
            tensors = {k: fh.get_tensor(k) for k in fh.keys() if k != "rng/steps"}
        save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage", "missing"])
def test_a_damaged_checkpoint_is_set_aside_and_training_restarts(tmp_path, how):
    x, y = _data()
    cfg = TrainConfig(lr=5e-3, epochs=3, batch_size=20, seed=1,
                      checkpoint_dir=str(tmp_path / "ck"))
    ref, ref_hist = fit_module(Net, _noisy_loss, (x, y), cfg)
    path = tmp_path / "ck" / CHECKPOINT_NAME
    mode = path.stat().st_mode & 0o777
    umask = os.umask(0o022)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # the umask's mode, not safetensors' private 0600
    _damage(path, how)
    with pytest.warns(UserWarning, match=r"training checkpoint '.*checkpoint\.safetensors' is "
                                         r"damaged \(.*\); it cannot be resumed\. Moved it to "
                                         r"'.*\.damaged'; training starts again from step 0\."):
        net, hist = fit_module(Net, _noisy_loss, (x, y), cfg)
    assert (tmp_path / "ck" / (CHECKPOINT_NAME + ".damaged")).exists()
    assert hist.resumed_from == 0 and hist.train_loss == ref_hist.train_loss
    assert all(torch.equal(a, b) for a, b in zip(_weights(net), _weights(ref), strict=True))
    _, again = fit_module(Net, _noisy_loss, (x, y), cfg)  # the new checkpoint is whole
    assert again.resumed_from == 15


def test_no_global_manual_seed_outside_a_forked_rng():
    """Randomness in train and inject: explicit generators, or the global one inside fork_rng."""
    import ast

    files = [*sorted((SRC / "hyperlens" / "train").glob("*.py")),
             *sorted((SRC / "hyperlens" / "inject").glob("*.py"))]
    bad = []
    for f in files:
        tree = ast.parse(f.read_text())
        forked: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.With) and any(
                    "fork_rng" in ast.unparse(item.context_expr) for item in node.items):
                forked |= {id(n) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and ast.unparse(node.func) in (
                    "torch.manual_seed", "torch.random.manual_seed", "torch.cuda.manual_seed",
                    "torch.cuda.manual_seed_all", "torch.seed") and id(node) not in forked):
                bad.append(f"{f.name}:{node.lineno}")
    assert not bad, f"global seeding outside fork_rng: {bad}"


def test_plateau_schedule_cuts_the_rate_after_each_evaluation_without_improvement(tmp_path):
    w = nn.Parameter(torch.zeros(1))
    module = nn.Module()
    module.w = w

    def loss(m: nn.Module, _b: torch.Tensor) -> torch.Tensor:
        return m.w.sum()  # gradient 1: plain SGD moves w by exactly the rate each step

    def run(scores: list[float], **kw: object) -> tuple[list[float], History]:
        it = iter(scores)
        path: list[float] = []

        def score(m: nn.Module) -> dict[str, float]:
            path.append(float(m.w))
            return {"val": next(it)}

        with torch.no_grad():
            w.zero_()
        cfg = TrainConfig(optimizer="sgd", lr=1.0, epochs=5, batch_size=1, shuffle=False,
                          schedule="plateau", plateau_factor=0.5, early_stop_metric="val",
                          **kw)
        h = fit(module, loss, torch.zeros(1), cfg, eval_fn=score)
        return path, h

    # evaluations after steps 1..5: better, worse, worse, better, worse
    path, h = run([3.0, 4.0, 5.0, 1.0, 2.0])
    steps = [b - a for a, b in zip([0.0, *path], path, strict=False)]
    assert steps == [-1.0, -1.0, -0.5, -0.25, -0.25]  # the cut applies from the next step
    assert [e.get("lr_scale") for e in h.evals] == [None, 0.5, 0.25, None, 0.125]
    # with patience the run stops after that many evaluations in a row without improvement
    path, h = run([3.0, 4.0, 5.0, 1.0, 2.0], early_stop_patience=2)
    assert len(path) == 3 and h.stopped_early
    with pytest.raises(ConfigError, match="plateau_factor"):
        TrainConfig(schedule="plateau", plateau_factor=1.0)
    # other schedules keep their checkpoint fingerprint (the factor is not part of it)
    assert TrainConfig(plateau_factor=0.3).fingerprint() == TrainConfig().fingerprint()


def test_threshold_counts_only_improvements_larger_than_its_share_of_the_best():
    w = nn.Parameter(torch.zeros(1))
    module = nn.Module()
    module.w = w

    def run(scores: list[float], mode: str = "min", **kw: object) -> History:
        it = iter(scores)
        cfg = TrainConfig(optimizer="sgd", lr=1.0, epochs=len(scores), batch_size=1,
                          schedule="plateau", early_stop_metric="val", early_stop_mode=mode,
                          early_stop_patience=2, restore_best=True, **kw)
        return fit(module, lambda m, _b: m.w.sum(), torch.zeros(1), cfg,
                   eval_fn=lambda m: {"val": next(it)})

    # 10 -> 9.95 is 0.5 % better, 9.95 -> 9.9 about 0.5 % better again
    scores = [10.0, 9.95, 9.9, 9.0, 8.99]
    h = run(scores)
    assert not h.stopped_early and h.best["val"] == 8.99
    assert [e.get("lr_scale") for e in h.evals] == [None] * 5
    # with a 1 % threshold neither small step counts: a cut each, and patience 2 stops it
    h = run(scores, early_stop_threshold=0.01)
    assert h.stopped_early and len(h.evals) == 3 and h.best["val"] == 10.0
    assert [e.get("lr_scale") for e in h.evals] == [None, 0.5, 0.25]
    assert h.restored_step == 1
    # "max" mode and a negative best: the margin is a share of the magnitude
    h = run([-10.0, -9.95, -9.0], mode="max", early_stop_threshold=0.01)
    assert [e.get("lr_scale") for e in h.evals] == [None, 0.5, None]
    assert h.best["val"] == -9.0
    with pytest.raises(ConfigError, match="early_stop_threshold"):
        TrainConfig(early_stop_threshold=1.0)
    with pytest.raises(ConfigError, match="early_stop_threshold"):
        TrainConfig(early_stop_threshold=-0.1)
    # at 0 the checkpoint fingerprint is the one from before the option
    assert TrainConfig(early_stop_threshold=0.0).fingerprint() == TrainConfig().fingerprint()
    assert TrainConfig(early_stop_threshold=0.01).fingerprint() != TrainConfig().fingerprint()
