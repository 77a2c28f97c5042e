"""Reconstruction: how much of a withheld text does the header give the frozen LM?

The LM reads ``<instruction>`` + ``k`` pseudo-tokens (the header of the text's code, at the
input embeddings) and then the text itself, and pays the negative log-likelihood of the
text's tokens. Training the header to lower it is xRAG's paraphrase objective: the header
must carry what the LM needs to predict the text. Scored on the evaluation texts against
the same LM without a header (its own prior over the text) and with the header of another
text's code (shuffled): in nats per token and bits per text, per text and paired, so the
intervals are two-level (replicate seeds x texts) where several seeds ran.

One stage-R cell per replicate seed (:func:`recon_arm`): the projector header (the same
:class:`~hyperlens.inject.header.SemanticHeader` as the classification arms, its output at
the input embeddings' norm) is trained with :func:`hyperlens.inject.header_train.train_loop`
on the training texts, the held-out slice choosing the kept step (lowest NLL) and stopping
on a plateau when ``--patience`` is set; the evaluation texts are only scored.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..utils import derive_seed, make_generator, save_safetensors
from .header_train import _torch_seeded, train_loop

__all__ = ["INSTRUCTION", "ReconHeader", "recon_arm", "recon_header_path"]

#: what the LM reads before the header and the text
INSTRUCTION = "Repeat the text.\nText:"


class ReconHeader(nn.Module):
    """A projector header at the input embeddings and the batching of the reconstruction
    prompts (instruction, header, text; right-padded)."""

    def __init__(self, run: Any, codes: torch.Tensor, seed: int) -> None:
        super().__init__()
        from .header import HeaderConfig, SemanticHeader, embedding_norm

        tok, lm = run.lm.tokenizer, run.lm.module
        self.run_, self.codes = run, codes
        self.instr = tok(INSTRUCTION, add_special_tokens=True)["input_ids"]
        body = tok(run.split.texts, add_special_tokens=False, truncation=True,
                   max_length=run.p.max_tokens)["input_ids"]
        self.body = [b if b else [int(tok.eos_token_id or 0)] for b in body]
        with _torch_seeded(seed):
            self.header = SemanticHeader(HeaderConfig(
                code_dim=int(codes.shape[1]), d_model=run.d_model, k=run.p.k,
                variant="projector", placement="prefix",
                target_norm=embedding_norm(lm, torch.tensor(self.instr)),
                code_kind="float" if codes.is_floating_point() else "ternary"))
        self.to(run.pc.device)

    def nll(self, rows: torch.Tensor, codes: torch.Tensor | None = None,
            header: bool = True) -> torch.Tensor:
        """Mean NLL per text token ``[b]`` of texts ``rows`` (nats), after the header of
        ``codes[rows]`` (default: their own), or with no header (``header=False``)."""
        lm, dev = self.run_.lm.module, self.run_.pc.device
        emb = lm.get_input_embeddings()
        b = rows.numel()
        bodies = [self.body[int(r)] for r in rows]
        k = self.run_.p.k if header else 0
        lead = len(self.instr) + k
        width = lead + max(len(x) for x in bodies)
        ids = torch.zeros(b, width, dtype=torch.long)
        mask = torch.zeros(b, width, dtype=torch.long)
        for i, x in enumerate(bodies):
            ids[i, : len(self.instr)] = torch.tensor(self.instr)
            ids[i, lead: lead + len(x)] = torch.tensor(x)
            mask[i, : lead + len(x)] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        x = emb(ids)
        if header:
            c = (self.codes if codes is None else codes)[rows.cpu()]
            pseudo = self.header(c.to(dev)).to(x)
            x = torch.cat([x[:, : len(self.instr)], pseudo, x[:, lead:]], dim=1)
        logits = lm(inputs_embeds=x, attention_mask=mask).logits[:, lead - 1: -1].float()
        target = ids[:, lead:]
        valid = mask[:, lead:].float()
        lp = torch.log_softmax(logits, -1).gather(-1, target[..., None]).squeeze(-1)
        return -(lp * valid).sum(1) / valid.sum(1).clamp_min(1.0)

    @torch.no_grad()
    def score(self, rows: np.ndarray, codes: torch.Tensor | None = None, header: bool = True,
              batch: int = 16) -> np.ndarray:
        """Per-text mean NLL (nats per token) of ``rows``, in the order given; the texts run
        in batches of similar length (little padding: each text's NLL does not depend on
        its batch, the causal mask hides the padding after it)."""
        rows = np.asarray(rows)
        order = np.argsort([len(self.body[int(r)]) for r in rows], kind="stable")
        out = [self.nll(torch.from_numpy(rows[order[i: i + batch]]), codes, header).cpu()
               for i in range(0, len(rows), batch)]
        nll = np.empty(len(rows), dtype=np.float32)
        nll[order] = torch.cat(out).numpy() if out else np.empty(0, dtype=np.float32)
        return nll


def recon_header_path(out: Path, seed: int) -> Path:
    """Where stage R keeps the trained reconstruction header of replicate ``seed`` (the
    ``hdc-recon`` classification arm starts from it)."""
    return Path(out) / f"recon-header-seed{seed}.safetensors"


def recon_arm(run: Any, seed: int, lr: float) -> dict[str, Any]:
    """Train one reconstruction header (replicate ``seed``: the HDC projection, the
    initialisation, the batch order and the shuffle) and score the evaluation texts with
    it, without a header and with shuffled codes."""

    p, r = run.p, run.split.rows
    codes = run.hdc_codes(seed)
    model = ReconHeader(run, codes, seed)
    train_rows = torch.from_numpy(r["train"])

    def loss_fn(rows: torch.Tensor) -> torch.Tensor:
        return model.nll(train_rows[rows]).mean()

    def val() -> float:  # train_loop keeps the highest: the negative held-out NLL
        return -float(model.score(r["val"]).mean())

    ckpt = run.checkpoint_dir("recon", seed, lr)
    hist = train_loop(model, loss_fn, len(r["train"]), lr=lr, param_lr={}, steps=p.steps,
                      batch_size=p.batch_size, seed=seed, eval_fn=val,
                      eval_every=p.eval_every, frozen=run.lm.module, patience=p.patience,
                      checkpoint_dir=ckpt)
    state = model.header.state_dict()
    save_safetensors(recon_header_path(run.out, seed),
                     {k: v.detach().cpu().contiguous() for k, v in state.items()})
    gen = make_generator(derive_seed(seed, "recon-shuffle"))
    ev = torch.from_numpy(r["eval"])
    perm = torch.arange(codes.shape[0])
    perm[ev] = ev[torch.randperm(ev.numel(), generator=gen)]
    n_tok = np.array([len(model.body[i]) for i in r["eval"]], dtype=np.float64)
    out = {"header": model.score(r["eval"]), "none": model.score(r["eval"], header=False),
           "shuffled": model.score(r["eval"], codes=codes[perm])}
    shutil.rmtree(ckpt, ignore_errors=True)  # the ledger now takes the cell
    return {"nll": {k: v.tolist() for k, v in out.items()}, "tokens": n_tok.tolist(),
            "curve": hist, "lr": lr, "bits_per_nat": 1 / math.log(2)}
