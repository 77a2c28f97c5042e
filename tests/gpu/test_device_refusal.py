"""Device handling that the CPU can check: asking for CUDA where none is visible is refused
before any work, a command that runs on the CPU only records the CPU, the hft commands that
take a device offer it, the KV cache reaches
the model under the name its transformers release reads, and the padded integer GEMM that
CUDA runs is exact."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hyperlens import cli
from hyperlens.config import RunContext
from hyperlens.config.commandline import build
from hyperlens.errors import ConfigError
from hyperlens.experiments.hft import COMMANDS as HFT_COMMANDS
from hyperlens.experiments.hft_saved import COMMANDS as SAVED_COMMANDS
from hyperlens.experiments.hft_scale import COMMANDS as SCALE_COMMANDS
from hyperlens.functional.hdc import int_mm_padded
from hyperlens.models.arch import cache_kwarg

no_gpu = pytest.mark.skipif(torch.cuda.is_available(),
                            reason="a GPU is visible, so cuda is a valid device here")


@no_gpu
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_a_config_error_naming_the_option(device):
    with pytest.raises(ConfigError, match=f"--device {device}: .*no CUDA GPU is visible"):
        RunContext(device=device).check()


@no_gpu
def test_the_command_line_refuses_cuda_before_any_work(tmp_path, capsys):
    out = tmp_path / "never"
    rc = cli.main(["mha-cv", "--device", "cuda", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("hyperlens mha-cv: error: --device cuda: ")
    assert "use --device cpu or --device auto" in err[0]
    assert not out.exists()  # refused before the report folder was made


@pytest.mark.parametrize("command", SAVED_COMMANDS, ids=lambda c: c.name)
def test_a_command_that_runs_on_the_cpu_records_the_cpu(command, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # even beside a GPU
    _, ctx = build(command, {"student": "s"} if "student" in _fields(command) else {}, env={})
    assert ctx.device == "cpu" and ctx.record()["device"] == "cpu"


@pytest.mark.parametrize("command", HFT_COMMANDS + SCALE_COMMANDS, ids=lambda c: c.name)
def test_the_hft_capture_train_and_scale_commands_take_the_device(command):
    """hft capture / train / scale run the teacher's capture and the students on --device
    (default auto: a GPU where one is visible)."""
    assert "device" in command.config.CONTEXT
    _, ctx = build(command, {"device": "cpu"}, env={})
    assert ctx.device == "cpu"
    _, ctx = build(command, {}, env={})
    assert ctx.device == "auto"


def test_hft_refuses_a_numbered_gpu_on_ray_before_any_work(monkeypatch):
    from hyperlens import utils
    from hyperlens.experiments.hft import run_device

    monkeypatch.setattr(utils, "resolve_device", lambda d: torch.device(d))  # as if visible
    assert run_device(RunContext(device="cuda:1")) == torch.device("cuda:1")  # local: any GPU
    assert run_device(RunContext(device="cuda", executor="ray")) == torch.device("cuda")
    with pytest.raises(ConfigError, match="--device cuda:1 with --executor ray.*--device cuda"):
        run_device(RunContext(device="cuda:1", executor="ray"))


def test_hft_scale_refuses_a_numbered_gpu_on_ray_before_its_report_folder(monkeypatch,
                                                                          tmp_path):
    from hyperlens import utils
    from hyperlens.experiments.hft_scale import HftScaleConfig, run_scale

    monkeypatch.setattr(utils, "resolve_device", lambda d: torch.device(d))  # as if visible
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match="--executor ray"):
        run_scale(HftScaleConfig(), RunContext(device="cuda:1", executor="ray", out=out))
    assert not out.exists()


def _fields(command) -> set[str]:
    return set(command.config.__dataclass_fields__)


class _Old(nn.Module):
    def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs):
        return input_ids


class _New(nn.Module):
    def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs):
        return input_ids


def test_the_kv_cache_goes_under_the_name_the_model_reads(tiny_llama):
    assert cache_kwarg(_Old()) == "past_key_values"
    assert cache_kwarg(_New()) == "cache"
    stack = tiny_llama.model
    assert cache_kwarg(stack) in __import__("inspect").signature(stack.forward).parameters


@pytest.mark.parametrize(("n", "d", "m"), [(1, 1, 1), (3, 13, 5), (17, 8, 8), (40, 100, 33)])
def test_padded_integer_gemm_is_exact(n, d, m):
    g = torch.Generator().manual_seed(n * d * m)
    a = torch.randint(-1, 2, (n, d), generator=g, dtype=torch.int8)
    b = torch.randint(-1, 2, (m + 3, d + 5), generator=g, dtype=torch.int8)[3:, :d]  # a view
    got = int_mm_padded(a, b)
    assert got.dtype == torch.int32 and got.shape == (n, m)
    assert torch.equal(got, (a.double() @ b.double().T).round().to(torch.int32))
