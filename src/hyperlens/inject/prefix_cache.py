"""Run a causal LM once over what a header cannot change, then only over the rest.

Under causal masking, a header placed just before the answer cue cannot change any
position before it: their keys and values are the same in every arm, every seed and
every training step. :class:`PrefixCache` runs the LM once over each text's prefix
(instruction + text, right-padded batches sorted by length) and keeps every layer's keys
and values (float16 by default, one flat tensor with per-text offsets); it also records
the plain prompt's (prefix + cue, no header) hidden state at the last position for every
layer, and the next-token logits of the verbaliser words there.

:meth:`PrefixCache.suffix_forward` then runs only the suffix (pseudo-tokens + cue) for a
batch of texts, with gradients, attending to the cached prefix: a few positions per text
instead of the whole prompt. Positions continue from each text's prefix length, and the
attention mask covers the left padding of the re-assembled batch, so the result equals a
full forward pass of the spliced prompt (up to float16 rounding of the cache; pass
``kv_dtype=torch.float32`` for exact equality).

Shapes (``L`` layers, ``H`` key/value heads, ``dh`` head width, ``N`` texts):
    keys / values: ``[L, H, total_tokens, dh]``; states: ``[L + 1, N, d_model]``;
    verb_logits: ``[N, n_labels]``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import DataError, InputError
from ..models.arch import cache_kwarg
from ..utils import load_safetensors, progress as progress_bar, save_safetensors

__all__ = ["PrefixCache", "backbone_of", "output_rows", "sliding_window_of"]


def backbone_of(lm: nn.Module) -> Any:
    """The bare decoder stack of a Hugging Face causal LM (no LM head)."""
    base = getattr(lm, "base_model", None)
    if isinstance(base, nn.Module) and base is not lm:
        return base
    return getattr(lm, "model", lm)


def output_rows(lm: Any, token_ids: Sequence[int]) -> torch.Tensor:
    """Rows of the LM's output projection for ``token_ids`` (logits = h @ rows.T + bias).

    Shapes:
        returns ``[len(token_ids), d_model]``
    """
    out: Any = lm.get_output_embeddings()
    if out is None:
        raise InputError(f"{type(lm).__name__} has no output embeddings (LM head).")
    return out.weight[list(token_ids)].detach()


def _mixed_layer_types(config: Any) -> list[str]:
    """Each layer's attention type when a model mixes several (Gemma 3), else ``[]``."""
    types = getattr(config, "layer_types", None) or ()
    return list(types) if len(set(types)) > 1 else []


def sliding_window_of(config: Any, stack: Any = None) -> int | None:
    """The sliding window of a model with sliding-window layers (None: full attention only)."""
    types = getattr(config, "layer_types", None) or ()
    mixed = any(t != "full_attention" for t in types) or hasattr(stack, "rotary_emb_local")
    window = getattr(config, "sliding_window", None)
    if not mixed:
        return None
    if not window:
        raise InputError(f"{type(config).__name__} has sliding layers but no sliding_window.")
    return int(window)


def _common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Leading tokens shared by every sequence, leaving each at least one of its own."""
    first = list(seqs[0])
    n = min(len(x) for x in seqs) - 1
    for x in seqs[1:]:
        m = 0
        while m < n and x[m] == first[m]:
            m += 1
        n = m
        if n == 0:
            break
    return max(n, 0)


def _inconsistent(t: dict[str, torch.Tensor]) -> str:
    """Why the tensors of a stored cache do not fit together ("" when they do)."""
    missing = [n for n in PrefixCache.STORED if n not in t]
    if missing:
        return f"tensors {missing} are missing"
    n = t["lengths"].numel()
    k, v, off = t["keys"], t["values"], t["offsets"]
    if k.dim() != 4 or v.shape != k.shape or off.shape != (n + 1,):
        return (f"keys {tuple(k.shape)}, values {tuple(v.shape)} and offsets "
                f"{tuple(off.shape)} do not fit {n} texts")
    if int(off[-1]) != k.shape[2] or not torch.equal(off[1:] - off[:-1], t["lengths"]):
        return "the text offsets do not match the stored lengths"
    if (t["states"].dim() != 3 or t["states"].shape[1] != n or t["verb_logits"].shape[0] != n
            or t["cue_states"].shape[0] != n):
        return f"states, verbaliser logits or cue states do not have {n} rows"
    return ""


class PrefixCache:
    """Cached prefixes of ``N`` prompts (see the module docstring).

    Args:
        lm: a Hugging Face causal LM (frozen; put in eval mode here).
        prefix_ids: token ids of each text's prefix (instruction + text).
        cue_ids: token ids of the answer cue appended after the header.
        verbalizer_ids: one token id per label (for the zero-shot logits).
        batch_size: texts per LM batch while building.
        kv_dtype: storage precision of keys and values.
        layer: block where the header enters the residual stream (0 = input embeddings).
            Below it the cue tokens cannot see the header either, so their states there
            are cached too and :meth:`suffix_forward` runs only blocks ``layer..L-1``
            (Llama-style stacks, Gemma 3 included; other architectures take ``layer=0``).
        extra_tokens: pseudo-tokens that will be inserted (checked against a sliding window).

    Models with sliding-window layers (Gemma 3) are accepted while every prompt, prefix +
    pseudo-tokens + cue, fits inside the window: then no layer drops a cached position and
    the cache is exact; longer prompts are refused with an :class:`InputError`.
    """

    def __init__(self, lm: Any, prefix_ids: Sequence[Sequence[int]], cue_ids: Sequence[int],
                 verbalizer_ids: Sequence[int], *, batch_size: int = 32,
                 kv_dtype: torch.dtype = torch.float16, layer: int = 0,
                 extra_tokens: int = 0, progress: bool | None = None) -> None:
        from transformers import DynamicCache

        self.lm: Any = lm.eval()
        self.stack: Any = backbone_of(lm)
        self.cfg: Any = lm.config
        self.cue = torch.tensor(list(cue_ids), dtype=torch.long)
        self.verb_rows = output_rows(lm, verbalizer_ids).float()  # [C, d]
        n = len(prefix_ids)
        lens = np.array([len(p) for p in prefix_ids], dtype=np.int64)
        if n == 0 or (lens == 0).any():
            raise InputError("every prefix needs at least one token.")
        self.lengths = torch.from_numpy(lens)
        self.offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lens)]))
        dev = next(lm.parameters()).device
        self.device = dev
        self.dtype: torch.dtype = next(lm.parameters()).dtype  # the suffix runs in it
        total = int(lens.sum())
        L = int(self.cfg.num_hidden_layers)
        H = int(getattr(self.cfg, "num_key_value_heads", None) or self.cfg.num_attention_heads)
        dh = int(getattr(self.cfg, "head_dim", None) or self.cfg.hidden_size //
                 self.cfg.num_attention_heads)
        d = int(self.cfg.hidden_size)
        if not 0 <= layer < L:
            raise InputError(f"layer must be in 0..{L - 1} (the block where the header enters), "
                             f"got {layer}.")
        self.window = sliding_window_of(self.cfg, self.stack)
        c = len(cue_ids)
        if self.window is not None:
            # a sliding-window layer keeps only the last window of a prefix; while the whole
            # prompt (prefix + header + cue) fits inside the window nothing is dropped
            need = int(lens.max()) + int(extra_tokens) + c
            if need > self.window:
                raise InputError(
                    f"{type(lm).__name__} has sliding-window layers (window {self.window}), and "
                    f"the longest prompt would be {need} tokens (prefix {int(lens.max())} + "
                    f"header {int(extra_tokens)} + cue {c}): its cache would drop the start of "
                    "the prefix. Shorten the texts (e.g. --max-tokens) below the window, or use "
                    "the header through hyperlens.inject.attach (full forward passes).")
        if layer > 0 and not (hasattr(self.stack, "rotary_emb") and hasattr(self.stack, "norm")):
            raise InputError(f"{type(lm).__name__} is not a Llama-style stack; insert the header "
                             "at layer 0 (the input embeddings).")
        self.layer_types: list[str] = _mixed_layer_types(self.cfg)
        self.layer = layer
        self.keys = torch.empty(L - layer, H, total, dh, dtype=kv_dtype)
        self.values = torch.empty(L - layer, H, total, dh, dtype=kv_dtype)
        self.cue_states = torch.empty(n, c, d, dtype=torch.float32)  # input of block `layer`
        self.states = torch.empty(L + 1, n, d, dtype=torch.float32)
        self.verb_logits = torch.empty(n, len(verbalizer_ids), dtype=torch.float32)
        order = np.argsort(-lens, kind="stable")
        batches = [order[i: i + batch_size] for i in range(0, n, batch_size)]
        cue = self.cue.to(dev)
        # the instruction every prompt starts with does not depend on the text: run it once
        shared = _common_prefix(prefix_ids)
        self.shared_tokens = shared
        kv = cache_kwarg(self.stack)
        with torch.inference_mode():
            head_kv: list[tuple[Any, Any]] = []
            if shared:
                c0 = DynamicCache(config=self.cfg)
                self.stack(input_ids=torch.tensor([list(prefix_ids[0][:shared])], device=dev),
                           use_cache=True, **{kv: c0})
                layers: Any = c0.layers
                head_kv = [(layers[li].keys, layers[li].values) for li in range(L)]
            for idx in progress_bar(batches, total=len(batches), desc="prefix cache",
                                    enabled=progress, unit="batch"):
                bl = lens[idx]
                T = int(bl.max())
                b = len(idx)
                ids = torch.zeros(b, T - shared, dtype=torch.long)
                for r, j in enumerate(idx):
                    ids[r, : bl[r] - shared] = torch.tensor(prefix_ids[j][shared:])
                mask = (torch.arange(T)[None] < torch.from_numpy(bl)[:, None]).long()
                cache = DynamicCache(config=self.cfg)
                for li, (k0, v0) in enumerate(head_kv):
                    cache.update(k0.expand(b, -1, -1, -1).contiguous(),
                                 v0.expand(b, -1, -1, -1).contiguous(), li)
                self.stack(input_ids=ids.to(dev), attention_mask=mask.to(dev),
                           position_ids=torch.arange(shared, T, device=dev)[None].expand(b, -1),
                           use_cache=True, **{kv: cache})
                for li in range(layer, L):
                    lc: Any = cache.layers[li]
                    kl, vl = lc.keys, lc.values  # [b, H, T, dh]
                    for r, j in enumerate(idx):
                        o, m = int(self.offsets[j]), int(bl[r])
                        self.keys[li - layer, :, o: o + m] = kl[r, :, :m].to(kv_dtype).cpu()
                        self.values[li - layer, :, o: o + m] = vl[r, :, :m].to(kv_dtype).cpu()
                # the plain prompt: the cue right after the prefix, no header
                full_mask = torch.cat([mask, torch.ones(b, c, dtype=torch.long)], 1).to(dev)
                pos = torch.from_numpy(bl)[:, None].to(dev) + torch.arange(c, device=dev)[None]
                out = self.stack(input_ids=cue[None].expand(b, c), attention_mask=full_mask,
                                 position_ids=pos, use_cache=True, output_hidden_states=True,
                                 **{kv: cache})
                sel = torch.from_numpy(idx)
                self.cue_states[sel] = out.hidden_states[layer].float().cpu()
                for li, h in enumerate(out.hidden_states):
                    self.states[li, sel] = h[:, -1].float().cpu()
                last = out.last_hidden_state[:, -1].float()
                self.verb_logits[sel] = self.label_logits(last).cpu()

    #: tensors that :meth:`save` writes and :meth:`load` reads
    STORED = ("keys", "values", "states", "verb_logits", "cue_states", "lengths", "offsets")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the cached tensors to one safetensors file, atomically (umask's mode)."""
        return save_safetensors(path, {n: getattr(self, n) for n in self.STORED})

    @classmethod
    def load(cls, path: str | os.PathLike[str], lm: Any, cue_ids: Sequence[int],
             verbalizer_ids: Sequence[int], *, layer: int = 0) -> PrefixCache:
        """A cache written by :meth:`save` for the same ``lm``, prompts, cue and ``layer``.

        A damaged file (truncated, garbage, tensors missing or of clashing shapes) raises
        :class:`~hyperlens.errors.DataError` naming it; :meth:`cached` rebuilds it instead.
        """
        return cls._load(path, lm, cue_ids, verbalizer_ids, layer=layer,
                         fix="delete it; the next run rebuilds it")

    @classmethod
    def cached(cls, path: str | os.PathLike[str], lm: Any, prefix_ids: Sequence[Sequence[int]],
               cue_ids: Sequence[int], verbalizer_ids: Sequence[int], *, batch_size: int = 32,
               kv_dtype: torch.dtype = torch.float16, layer: int = 0, extra_tokens: int = 0,
               progress: bool | None = None) -> tuple[PrefixCache, bool]:
        """The cache stored at ``path`` if it is readable, else one built and saved there.

        Returns ``(cache, reused)``. A damaged file is rebuilt and replaced, with a one-line
        warning; the file is written atomically, so a crash leaves no half-written cache.
        ``path`` must name these prompts, cue, verbaliser, layer and ``kv_dtype`` (a hash of
        them in the file name): a readable file is trusted to match.
        """
        if Path(path).exists():
            try:
                return cls._load(path, lm, cue_ids, verbalizer_ids, layer=layer,
                                 fix="rebuilding it"), True
            except DataError as exc:
                warnings.warn(str(exc), stacklevel=2)
        pc = cls(lm, prefix_ids, cue_ids, verbalizer_ids, batch_size=batch_size,
                 kv_dtype=kv_dtype, layer=layer, extra_tokens=extra_tokens, progress=progress)
        pc.save(path)
        return pc, False

    @classmethod
    def _load(cls, path: str | os.PathLike[str], lm: Any, cue_ids: Sequence[int],
              verbalizer_ids: Sequence[int], *, layer: int, fix: str) -> PrefixCache:
        t, _ = load_safetensors(path, what="prefix cache", fix=fix)
        why = _inconsistent(t)
        if why:
            raise DataError(f"prefix cache {str(path)!r} is damaged ({why}); {fix}.")
        pc = cls.__new__(cls)
        pc.lm = lm.eval()
        pc.stack, pc.cfg = backbone_of(lm), lm.config
        pc.cue = torch.tensor(list(cue_ids), dtype=torch.long)
        pc.verb_rows = output_rows(lm, verbalizer_ids).float()
        pc.device, pc.layer = next(lm.parameters()).device, layer
        pc.dtype = next(lm.parameters()).dtype
        pc.window = sliding_window_of(pc.cfg, pc.stack)
        pc.layer_types = _mixed_layer_types(pc.cfg)
        for name in cls.STORED:
            setattr(pc, name, t[name])
        pc.shared_tokens = 0
        if pc.keys.shape[0] != int(pc.cfg.num_hidden_layers) - layer:
            raise InputError(f"{path} holds {pc.keys.shape[0]} layers of keys, not the "
                             f"{int(pc.cfg.num_hidden_layers) - layer} above layer {layer}.")
        return pc

    def label_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The LM's next-token logits of the verbaliser words from final states ``[b, d]``.

        Applies the output softcap of models that have one (``final_logit_softcapping``).
        """
        z = hidden @ self.verb_rows.to(hidden).T
        cap = getattr(self.cfg, "final_logit_softcapping", None)
        if cap:
            z = torch.tanh(z / cap) * cap
        return z

    def __len__(self) -> int:
        return int(self.lengths.numel())

    @property
    def nbytes(self) -> int:
        return int(self.keys.numel() * self.keys.element_size() * 2)

    def _assemble(self, rows: torch.Tensor) -> tuple[Any, torch.Tensor, torch.Tensor]:
        """A fresh cache for ``rows`` (left-padded), its mask ``[b, T]`` and lengths ``[b]``."""
        from transformers import DynamicCache

        lens = self.lengths[rows]
        T = int(lens.max())
        b = rows.numel()
        n_kv, H, _, dh = self.keys.shape
        k = torch.zeros(n_kv, b, H, T, dh, dtype=self.dtype)
        v = torch.zeros_like(k)
        for r, j in enumerate(rows.tolist()):
            o, n = int(self.offsets[j]), int(self.lengths[j])
            k[:, r, :, T - n:] = self.keys[:, :, o: o + n]
            v[:, r, :, T - n:] = self.values[:, :, o: o + n]
        mask = (torch.arange(T)[None] >= (T - lens)[:, None]).long()
        cache = DynamicCache(config=self.cfg)
        for i in range(n_kv):
            cache.update(k[i].to(self.device), v[i].to(self.device), self.layer + i)
        return cache, mask, lens

    def suffix_forward(self, rows: torch.Tensor, pseudo: torch.Tensor | None) -> torch.Tensor:
        """Final hidden state at the cue's last position for texts ``rows`` (float32; the
        blocks run in the LM's precision, the cached keys and values cast to it).

        ``pseudo`` ``[b, k, d]`` is inserted between prefix and cue (``None``: no header).
        Gradients flow into ``pseudo``; the LM's weights are untouched.

        Shapes:
            rows: ``[b]`` -> ``[b, d_model]``
        """
        cache, mask, lens = self._assemble(rows)
        dev = self.device
        b = rows.numel()
        if self.layer == 0:  # token embeddings (the model applies any embedding scale itself)
            suffix = self.lm.get_input_embeddings()(self.cue.to(dev)).unsqueeze(0).expand(b, -1, -1)
        else:
            suffix = self.cue_states[rows].to(dev, self.dtype)  # [b, c, d]: input of `layer`
        if pseudo is not None:
            suffix = torch.cat([pseudo.to(suffix), suffix], dim=1)
        s = suffix.shape[1]
        if self.window is not None and int(lens.max()) + s > self.window:
            raise InputError(f"prefix {int(lens.max())} + suffix {s} tokens exceed the sliding "
                             f"window ({self.window}); the cached forward would not be exact.")
        pos = lens[:, None].to(dev) + torch.arange(s, device=dev)[None]
        if self.layer == 0:
            full_mask = torch.cat([mask, torch.ones(b, s, dtype=torch.long)], 1).to(dev)
            out = self.stack(inputs_embeds=suffix, attention_mask=full_mask, position_ids=pos,
                             use_cache=True, **{cache_kwarg(self.stack): cache})
            return out.last_hidden_state[:, -1].float()
        # blocks layer..L-1 by hand, with the explicit boolean mask [b, 1, s, T + s]
        T = mask.shape[1]
        causal = torch.ones(s, s, dtype=torch.bool, device=dev).tril()
        allowed = torch.cat([mask.bool().to(dev)[:, None, :].expand(b, s, T),
                             causal[None].expand(b, s, s)], dim=2)[:, None]
        mask_arg: torch.Tensor = allowed
        if getattr(self.cfg, "_attn_implementation", "sdpa") == "eager":  # adds its mask
            mask_arg = torch.zeros(allowed.shape, dtype=suffix.dtype, device=dev).masked_fill(
                ~allowed, torch.finfo(suffix.dtype).min)
        hidden = suffix
        if self.layer_types:  # Gemma 3: one rotary table per layer type (local and global)
            pes = {t: self.stack.rotary_emb(hidden, pos, t) for t in set(self.layer_types)}
        else:
            pe = self.stack.rotary_emb(hidden, position_ids=pos)
        # inside the window a sliding layer sees every position, so one mask serves both kinds
        for li in range(self.layer, len(self.stack.layers)):
            block = self.stack.layers[li]
            if self.layer_types:
                pe = pes[self.layer_types[li]]
            hidden = block(hidden, attention_mask=mask_arg, position_ids=pos, use_cache=True,
                           position_embeddings=pe, **{cache_kwarg(block): cache})
            if isinstance(hidden, tuple):
                hidden = hidden[0]
        return self.stack.norm(hidden)[:, -1].float()
