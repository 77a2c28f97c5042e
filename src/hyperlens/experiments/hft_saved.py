"""``hyperlens hft eval|generate``: a student saved by ``hyperlens hft train``.

``eval`` re-scores it on its capture (or another with the same settings) beside unigram,
KN-5 and the teacher, and times it against the teacher; ``generate`` continues a prompt from
its rolling buffer, no teacher.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import Command, Config, RunContext, at_least, option, start_report
from ..errors import InputError
from ..hft.evaluate import MIXTURE, count_baselines, mix_fn
from ..hft.sections import metric_table
from ..report import Report
from ..utils import peak_rss_mb
from .hft import _CPU_ONLY

__all__ = ["HftEvalConfig", "HftGenerateConfig", "COMMANDS", "run_eval", "run_generate"]


@dataclass(frozen=True, kw_only=True)
class HftEvalConfig(Config):
    """Options of ``hyperlens hft eval``."""

    CONTEXT = _CPU_ONLY
    RANDOM = "the bootstrap resamples over held-out texts"

    student: Path = option(help="the --out folder of `hyperlens hft train` (or its 'student' "
                           "sub-folder)")
    capture_dir: Path | None = option(None, help="capture to score on (default: the one the "
                                      "student was trained on)")
    n_boot: int = option(1000, help="bootstrap resamples over texts", check=at_least(10),
                         aliases=("--boot",))


@dataclass(frozen=True, kw_only=True)
class HftGenerateConfig(Config):
    """Options of ``hyperlens hft generate``."""

    CONTEXT = _CPU_ONLY
    RANDOM = ""  # greedy decoding draws nothing (the seed is recorded)

    student: Path = option(help="the --out folder of `hyperlens hft train` (or its 'student' "
                           "sub-folder)")
    prompt: str = option("The stock market", help="prompt text")
    n_tokens: int = option(30, help="tokens to produce", check=at_least(1))



def run_eval(cfg: HftEvalConfig, ctx: RunContext | None = None) -> Report:
    """Re-score a saved student on its capture beside unigram, KN-5 and the teacher, and
    time it against the teacher (fastest precision of each)."""
    from ..hft import checks
    from ..hft.capture import Unembedding, load_capture, read_manifest, start_token
    from ..hft.evaluate import last_batch, logprobs_from_final, score_many, summarise
    from ..hft.generate import check_student_capture, load_student, load_student_state
    from ..hft.model import count_parameters, log_unigram
    from ..hft.sections import speed_section

    ctx = ctx or RunContext()
    rep = start_report("hft-eval", cfg, ctx)
    # every check that needs no teacher first: the student's files, then the capture
    fc, meta, state, _ = load_student_state(cfg.student)
    cap_dir = Path(cfg.capture_dir or meta["capture"])
    manifest = read_manifest(cap_dir)
    if manifest is None:
        raise InputError(f"--capture-dir {cap_dir} holds no capture; pass the capture the "
                         "student was trained on (`hyperlens hft capture --capture-dir DIR`).")
    check_student_capture(meta, fc, int(state["unigram"].numel()), manifest, cap_dir)
    cap = load_capture(cap_dir)
    st, teacher, meta = load_student(cfg.student)
    tr, he = cap.train, cap.heldout
    U = Unembedding.from_model(teacher)
    V = U.vocab_size
    start = start_token(teacher.tokenizer)
    rep.data["capture"] = str(cap.root)
    results: dict[str, dict[str, np.ndarray]] = {}
    with rep.timer("baselines"):  # fitted on the capture's training texts, as in train
        lu = log_unigram(torch.from_numpy(np.asarray(tr["target"]).astype(np.int64)), V)
        counts = count_baselines(lu, tr, he, start, (5,))
        results |= score_many({**counts, "teacher": logprobs_from_final(U, he)}, he, U)
    student = last_batch(lambda r: st.logprobs(np.array(he["ctx"][r]), np.array(he["pos"][r])))
    with rep.timer("score"):  # the mixture reuses the student's batch
        results |= score_many({"A: HyperField (saved)": student,
                               MIXTURE: mix_fn(student, counts["KN-5"])}, he, U)
    text = np.asarray(he["text"])
    summ = {k: summarise(v, text, n_boot=cfg.n_boot, seed=ctx.seed) for k, v in results.items()}
    cols, rows = metric_table(summ)
    rep.section("Held-out metrics", (
        f"The saved student on the capture's {len(he):,} held-out positions ({he.n_texts} "
        "texts), features recomputed from token ids, beside baselines fitted on the capture's "
        "training texts; 95 % percentile-bootstrap intervals over held-out texts. The mixture "
        "weights the student and KN-5 equally (a fixed weight, not fitted).")).table(
        "Held-out metrics", cols, rows)
    rep.data["summary"] = {k: {m: e.as_dict() for m, e in v.items()} for k, v in summ.items()}
    with rep.timer("speed"):
        rep.data["throughput"] = tp = checks.throughput(st, teacher, he)
    assert teacher.module is not None  # load_student loads a causal LM
    n_st, n_te = count_parameters(st.model), count_parameters(teacher.module)
    speed_section(rep, tp, n_st, n_te, peak_rss_mb())
    rep.summary([[r[0], f"ppl {r[1]:.1f}", f"KL {r[4]:.3f}", f"agree {r[7]:.3f}"] for r in rows])
    rep.save()
    return rep


def run_generate(cfg: HftGenerateConfig, ctx: RunContext | None = None) -> Report:
    """Continue a prompt greedily from the student's rolling buffer (no teacher)."""
    from ..hft.capture import start_token
    from ..hft.generate import load_student

    ctx = ctx or RunContext()
    rep = start_report("hft-generate", cfg, ctx)
    st, teacher, _ = load_student(cfg.student)  # checks the folder before loading the teacher
    tok = teacher.tokenizer
    prompt = tok(cfg.prompt, add_special_tokens=False)["input_ids"]
    with rep.timer("generate"):
        ids = st.generate(prompt, cfg.n_tokens, start_token(tok), seed=ctx.seed)
    text = tok.decode(ids)
    rep.section("Generation", "Greedy continuation from the rolling buffer (no teacher).").table(
        "Output", ["prompt", "continuation"], [[cfg.prompt, text]])
    rep.summary([["prompt", cfg.prompt], ["continuation", text]])
    rep.save()
    return rep


COMMANDS = (
    Command("hft eval", "re-score a saved student beside unigram, KN-5 and the teacher",
            HftEvalConfig, run_eval),
    Command("hft generate", "continue a prompt with a saved student", HftGenerateConfig,
            run_generate),
)
