"""``hyperlens header``: does a semantic header (codes as pseudo-tokens) help a frozen LM?

Text -> MiniLM -> ternary HDC code -> :class:`~hyperlens.inject.header.SemanticHeader` ->
``k`` pseudo-tokens placed just before the answer cue of a frozen causal LM's prompt
(``...Text: {text}`` + header + ``\\nSentiment:``). One split (a training subset of the
task's train split, with a held-out slice of it for every choice of hyperparameters or
checkpoint; evaluation on all 872 SST-2 dev sentences, or an AG News test subset), several
replicate seeds (``--seeds``: each redraws the HDC projection, initialisations and batch
order); ``--seed`` draws the training pool, its held-out slice and any evaluation subset.

Stage A (cached, no gradients through the LM): the original classifier head on the
prompt's last hidden state (the baseline), logistic regression on it, one probe per
layer, MiniLM float -> logistic, HDC -> logistic, late fusion [LM state; MiniLM] -> head,
and the LM's own zero-shot answer (verbaliser logits), raw and calibrated on training data.

Stage B (trained through the frozen LM): HDC header + head; float (MiniLM) header + head;
shuffled HDC (codes permuted across texts); random ternary codes; input-independent prompt
tuning with the same ``k``; on the LM side without a head (the LM answers with the label
word): a static prompt vs an HDC header gated to start exactly at that prompt; and a
test-time ablation (the trained HDC headers, head side and LM side, fed shuffled codes).

Cost: under causal masking the header cannot change any position before it, so each
prefix's keys and values are computed once (:class:`~hyperlens.inject.prefix_cache.PrefixCache`,
kept on disk) and training runs only the pseudo-tokens and the cue; inserting the header at
block ``--insert-layer`` also caches every layer below it. The full-depth prefix header
(every position changes, nothing is cached) is available in Python through
:func:`hyperlens.inject.attach`. Finished (arm, seed) cells are appended to
``OUT/cells.jsonl``; a rerun resumes. The cells run on the context's executor (in this
process, or as Ray tasks with ``--executor ray``; a worker prepares the models and the
prefix cache once). The arms live in :mod:`hyperlens.inject.header_arms`,
the rule in :mod:`hyperlens.inject.header_verdict`; this module holds the options and the
report layout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..config import Command, Config, RunContext, at_least, between, option, start_report
from ..errors import ConfigError
from ..inject.header_arms import HeaderRun, prepare, release, stage_a, stage_b, stage_r
from ..inject.header_recon import INSTRUCTION
from ..inject.header_task import (
    ARM_TITLES,
    ARMS_B,
    FROM_RECON,
    FULL_DEPTH,
    LR_FAMILIES,
    PRESENT_ONLY,
    PROMPTS,
    HeaderProtocol,
    check_header_inputs,
    set_threads,
    verbalizer_words,
)
from ..inject.header_verdict import (
    MEMO_ARMS,
    efficiency_rows,
    memorisation_rows,
    paired_rows,
    planned_power,
    summarise,
    verdict,
    withheld_verdict,
)
from ..report import Report

__all__ = ["HeaderRunConfig", "run", "COMMANDS", "ARMS_B", "PROMPTS", "LR_FAMILIES",
           "tour_section", "verbalizer_words"]

_RATE = between(0, 10, closed=False)
Text = Literal["withheld", "present"]


def _fits(arm: str, text: str, *, recon: bool) -> bool:
    """Whether stage B arm ``arm`` can run with the text ``text`` (the frozen head needs the
    text present; the header started from stage R's needs ``recon``, stage R ready)."""
    return not (text == "withheld" and arm in PRESENT_ONLY) and not (
        arm in FROM_RECON and not recon)


@dataclass(frozen=True, kw_only=True)
class HeaderRunConfig(Config):
    """Options of ``hyperlens header`` (the defaults are the measured protocol)."""

    CONTEXT = frozenset({"seed", "device", "dtype", "executor"})
    RANDOM = ("which training texts form the pool and which of them are held out, the "
              "evaluation subset where one is drawn, and the bootstrap over texts")

    dataset: str = option("sst2", help="sst2, agnews, rotten-tomatoes or a local file (a file "
                                       "needs --verbalizer)")
    data_dir: Path | None = option(None, help="folder holding sst2/ and agnews/")
    model: str = option("smollm2", help="frozen causal LM: smollm2, gemma3 or an HF id")
    encoder: str = option("minilm", help="sentence encoder whose vectors become the codes")
    n_train: int = option(640, check=at_least(1), help="training texts")
    n_val: int = option(160, check=at_least(1),
                        help="held-out training texts for every choice (C, epoch, checkpoint, "
                             "learning rate)")
    n_eval: int = option(0, check=at_least(0),
                         help="evaluation texts (0: all 872 SST-2 dev sentences; AG News "
                              "1000; a local file a fifth)")
    seeds: tuple[int, ...] = option(
        (0, 1, 2), check=at_least(0),
        help="replicate seeds: each redraws the HDC projection, initialisations and batch "
             "order", unique=True)
    stages: tuple[Literal["A", "B", "R"], ...] = option(
        ("A", "R", "B"), help="A: cached arms (no gradients through the LM); B: headers trained "
                         "through the frozen LM; R: reconstruction (the LM's NLL of the text "
                         "after its header, against no header and shuffled codes)",
        unique=True)
    arms: tuple[Literal["hdc", "hdc-frozen", "float", "shuffled", "random", "prompt",
                        "lm-static", "lm-hdc", "hdc-recon", "hdc-prefix"], ...] | None = option(
        None, help="stage B arms (none: every arm; with --text withheld every arm but "
                   "hdc-frozen, which keeps the head trained on the text; hdc-recon, the HDC "
                   "header started from stage R's, only with --stages R B --insert-layer 0; "
                   "hdc-prefix, the seed's full-depth prefix at layer 0, only when named)",
        unique=True)
    prefix_texts: int = option(1000, check=at_least(1),
                               help="training texts of the hdc-prefix arm (it runs the whole "
                                    "prompt through the LM on every step; a seeded subset of "
                                    "the training texts, the same for every seed)")
    k: tuple[int, ...] = option(
        (4,), check=at_least(1),
        help="pseudo-tokens of the header; with several, each is a study of its own (in "
             "OUT/k<K>/, or OUT/<setting>-k<K>/ with several --text settings), stage R "
             "with the first --text setting of each",
        unique=True)
    text: tuple[Text, ...] = option(
        ("withheld", "present"),
        help="where the text is, one setting after the other: withheld (the prompt holds the "
             "instruction and the cue, so the header is the text's only carrier; the report "
             "gives each header's channel efficiency) and present (in the prompt beside the "
             "header, the seed's setting). With two, each keeps its cells and report in "
             "OUT/<setting>/, stage R runs with the first, and the report holds both",
        unique=True)
    variant: Literal["mlp", "projector", "gated"] = option(
        "projector", help="header of the head arms")
    insert_layer: int | None = option(
        None, check=at_least(0),
        help="block where the header enters (0 = input embeddings, full depth; default: two "
             "thirds of the depth)")
    hdc_dim: int = option(10_000, check=at_least(1), help="width of the ternary HDC codes")
    sparsity: float = option(0.7, check=between(0, 1, closed=False),
                             help="share of zeros in each HDC code")
    steps: int = option(80, check=at_least(1), help="training steps per stage B arm (with "
                                                    "--patience: the most)")
    patience: int | None = option(
        None, check=at_least(1),
        help="stop a stage B arm once this many held-out evaluations in a row have not "
             "improved its accuracy (none: train all --steps; the best evaluation is kept "
             "either way)")
    batch_size: int = option(16, check=at_least(1), help="texts per training step")
    weight_decay: float = option(0.0, check=at_least(0),
                                 help="AdamW weight decay of the stage B header and head")
    code_dropout: float = option(0.0, check=between(0, 0.9),
                                 help="share of each code's entries zeroed while training a "
                                      "stage B header (inverted dropout; against memorising "
                                      "fixed codes)")
    lr: float = option(1e-2, check=_RATE,
                       help="header learning rate when --lr-grid is given no values")
    lr_grid: tuple[float, ...] = option(
        (1e-4, 1e-3, 1e-2), check=_RATE, min_items=0,
        help="header learning rates tried on the held-out slice, one search per family of "
             "arms (no values: use --lr)")
    head_lr: float = option(1e-3, check=_RATE, help="learning rate of the classifier heads")
    eval_every: int = option(20, check=at_least(1),
                             help="steps between held-out evaluations (checkpoint choice)")
    max_tokens: int = option(64, check=at_least(1), help="text tokens kept per prompt")
    verbalizer: tuple[str, ...] | None = option(
        None, help="one answer word per class, in label order (default: the dataset's "
                   "built-in words)")
    kv_dtype: Literal["float16", "bfloat16", "float32"] = option(
        "float16", help="precision of the cached prefix keys and values")
    threads: int | None = option(
        None, check=at_least(1),
        help="CPU threads for torch (default: the cores that other running work "
             "leaves free)")
    n_boot: int = option(2000, check=at_least(100),
                         help="bootstrap resamples per interval")
    margin: float = option(
        0.02, check=between(0, 1),
        help="the verdict's rule with the text present: the header helps when, in every seed, "
             "it is at least this far above the baseline head (accuracy) with the paired 95 % "
             "interval above 0, and beats the shuffled-code and prompt-tuning controls")
    fresh: bool = option(False, help="ignore finished cells in OUT/cells.jsonl and recompute "
                                     "everything")

    def check(self) -> None:
        frozen = set(self.arms or ()) & set(PRESENT_ONLY)
        if "withheld" in self.text and frozen and (
                len(self.text) == 1 or set(self.arms or ()) <= frozen):
            raise ConfigError("--arms hdc-frozen needs the text in the prompt (it keeps the "
                              "baseline head trained on it); drop it, or use --text present "
                              "(with --text withheld present it runs in the second setting "
                              "beside another arm).")
        if len(self.text) > 1 and set(self.stages) == {"R"}:
            raise ConfigError("stage R runs once, with the first --text setting; with --stages "
                              "R alone give one --text setting.")
        if set(self.arms or ()) & set(FROM_RECON) and not self._recon_ready:
            raise ConfigError("--arms hdc-recon starts the header from stage R's, which reads "
                              "it at the input embeddings: add R to --stages and use "
                              "--insert-layer 0 with --variant projector.")
        if self.dataset not in PROMPTS and self.verbalizer is None:
            raise ConfigError(f"--dataset {self.dataset!r} has no built-in prompt; use one of "
                              f"{sorted(PROMPTS)} or give --verbalizer (one word per class).")

    def setting(self, text: Text, k: int | None = None) -> HeaderRunConfig:
        """These options for one ``--text`` setting and one ``--k`` (default the first):
        stage R only with the first text setting, and the arms that fit it (the frozen head
        needs the text present; the header started from stage R's needs R)."""
        stages = tuple(s for s in self.stages if s != "R" or text == self.text[0])
        arms = self.arms
        if arms is not None:
            arms = tuple(a for a in arms if _fits(a, text, recon="R" in stages))
        return dataclasses.replace(self, text=(text,), k=(self.k[0] if k is None else k,),
                                   stages=stages, arms=arms or None)

    def settings(self) -> list[tuple[str, str, HeaderRunConfig]]:
        """Every study of this run as (folder name, section label, options): one per
        ``--text`` setting and ``--k``, texts outer; a name and label hold only the options
        given more than one value."""
        out = []
        for text in self.text:
            for k in self.k:
                name = "-".join([text] * (len(self.text) > 1) + [f"k{k}"] * (len(self.k) > 1))
                label = ", ".join([f"Text {text}"] * (len(self.text) > 1)
                                  + [f"k = {k}"] * (len(self.k) > 1))
                out.append((name, label, self.setting(text, k)))
        return out

    @property
    def stage_b_arms(self) -> tuple[str, ...]:
        """The stage B arms of the first ``--text`` setting: those given, or every arm that
        fits it."""
        if self.arms is not None:
            return tuple(self.arms)
        return tuple(a for a in ARMS_B if _fits(a, self.text[0], recon=self._recon_ready)
                     and a not in FULL_DEPTH)

    @property
    def _recon_ready(self) -> bool:
        """Whether stage B can start a header from stage R: R runs, the head arms' header is
        the projector and it enters at the input embeddings, as stage R's does."""
        return "R" in self.stages and self.variant == "projector" and self.insert_layer == 0

    def protocol(self, ctx: RunContext) -> HeaderProtocol:
        """The study of the first ``--text`` setting (:meth:`setting` gives the others):
        these options, the context's device and ``--seed``."""
        c = self.setting(self.text[0])
        return HeaderProtocol(
            dataset=self.dataset, data_dir=None if self.data_dir is None else str(self.data_dir),
            model=self.model, encoder=self.encoder, n_train=self.n_train, n_val=self.n_val,
            n_eval=self.n_eval, seeds=self.seeds, stages=c.stages, arms=c.stage_b_arms,
            k=c.k[0], variant=self.variant, insert_layer=self.insert_layer, hdc_dim=self.hdc_dim,
            sparsity=self.sparsity, steps=self.steps, batch_size=self.batch_size, lr=self.lr,
            lr_grid=self.lr_grid, head_lr=self.head_lr, eval_every=self.eval_every,
            max_tokens=self.max_tokens, verbalizer=self.verbalizer, kv_dtype=self.kv_dtype,
            n_boot=self.n_boot, margin=self.margin, base_seed=ctx.seed,
            device=str(ctx.torch_device), text=self.text[0], patience=self.patience,
            weight_decay=self.weight_decay, code_dropout=self.code_dropout,
            prefix_texts=self.prefix_texts,
            dtype=ctx.resolve_dtype(ctx.torch_device))


# --------------------------------------------------------------------------- pipeline
def _run_stages(p: HeaderProtocol, out: Path, rep: Report, *, fresh: bool = False,
                after_seed: Callable[[HeaderRun], Any] | None = None,
                ctx: RunContext | None = None) -> HeaderRun:
    """Load the models, build the inputs and run the chosen stages; the (arm, seed) cells
    run on the context's executor and land in ``out/cells.jsonl``."""
    hrun = prepare(p, out, rep, fresh=fresh)
    try:
        rep.data["split"] = {k: int(len(v)) for k, v in hrun.split.rows.items()}
        with (ctx or RunContext()).make_executor() as executor:
            rep.data["executor"] = executor.describe()
            if "A" in p.stages:
                with rep.timer("stage A"):
                    stage_a(hrun, executor)
                plan = planned_power(hrun)  # before any header trains
                if plan is not None:
                    rep.data["power_planned"] = plan
            if "R" in p.stages:
                with rep.timer("stage R"):
                    stage_r(hrun, executor)
            if "B" in p.stages:
                with rep.timer("stage B"):
                    stage_b(hrun, after_seed=None if after_seed is None
                            else lambda: after_seed(hrun), executor=executor)
    finally:
        release(hrun)
    hrun.store.report_into(rep)
    return hrun


def run(config: HeaderRunConfig, ctx: RunContext | None = None) -> Report:
    """Check the inputs, run the stages and write the report folder (saved, and returned).

    The report is rewritten after each replicate seed of stage B, so a long run shows what
    has finished; the cells in ``cells.jsonl`` let a rerun resume. With several ``--text``
    settings or several ``--k`` each runs as its own study in ``OUT/<setting>/`` (cells,
    report; :meth:`HeaderRunConfig.settings` names them) and the report in ``OUT`` holds
    them all, rewritten after each.
    """
    ctx = ctx or RunContext()
    parts = config.settings()
    if len(parts) == 1:
        return _run_setting(config, ctx)
    for _, _, part in parts:  # labels, verbaliser and the model's kind, before any model loads
        check_header_inputs(part.protocol(ctx))
    rep = start_report("header", config, ctx, description=_DESCRIPTION)
    out = rep.save(final=False)  # the folder is a report (part-way) before a setting writes
    intro = rep.section("Settings", "The settings of this run, one after the other: each is "
                        "a study of its own, with its cells and its own report in the folder "
                        "named after it; the sections below carry its name.")
    rows: list[list[Any]] = []
    done: list[list[Any]] = []
    for name, label, part in parts:
        with rep.timer(f"text {name}"):
            sub = _run_setting(part, dataclasses.replace(ctx, out=out / name))
        done.append([name, part.text[0], part.k[0], f"{name}/", " ".join(part.stages),
                     " ".join(part.stage_b_arms), f"{rep.timings[f'text {name}']:.0f}"])
        intro.tables.clear()
        intro.table("Settings", ["setting", "text", "k", "folder", "stages", "stage B arms",
                                 "seconds"], done)
        _merge(rep, sub, name, label)
        rows += [[f"{label.replace('Text ', 'text ', 1)}: {k}", v] for k, v in sub.summary_rows]
        rep.summary(rows)
        rep.save(final=name == parts[-1][0])
    return rep


_DESCRIPTION = ("Semantic header: codes of a text as pseudo-tokens for a frozen causal LM, "
                "against the controls that say whether it helps.")


def _run_setting(config: HeaderRunConfig, ctx: RunContext) -> Report:
    """One ``--text`` setting: its stages, cells and report in the context's folder."""
    p = config.protocol(ctx)
    check_header_inputs(p)  # labels, verbaliser and the model's kind, before any model loads
    rep = start_report("header", config, ctx, description=_DESCRIPTION)
    rep.config["context"]["threads"] = set_threads(config.threads)
    out = Path(rep.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def after_seed(hrun: HeaderRun) -> None:  # a complete report of what has finished so far
        _write_report(hrun, rep)
        rep.save()

    hrun = _run_stages(p, out, rep, fresh=config.fresh, after_seed=after_seed, ctx=ctx)
    _write_report(hrun, rep)
    rep.save()
    return rep


def _merge(rep: Report, sub: Report, name: str, label: str) -> None:
    """Copy one setting's report into the report of the whole run: its sections under
    '<label>: ', its plots with the setting's name before their file names, its data under
    ``data[name]`` and its timings named after it."""
    for s in sub.sections:
        sec = rep.section(f"{label}: {s.title}", s.text)
        for t in s.tables:
            sec.table(t["title"], t["columns"], t["rows"], note=t["note"])
        for pl in s.plots:
            sec.plot(f"{name}-{pl['file']}", pl["spec"], pl["caption"])
        sec.metrics(s.metrics_)
    rep.data[name] = sub.data
    rep.data.setdefault("settings", {})[name] = str(Path(sub.out_dir).name)
    rep.timings.update({f"{name}: {k}": v for k, v in sub.timings.items()})


# --------------------------------------------------------------------------- report
def _arm_row(title: str, rec: dict[str, Any]) -> list[str]:
    acc, vb = rec["acc"], rec.get("vs_baseline")
    pmax = max(rec.get("mcnemar_p", [float("nan")]))
    return [title, f"{acc['value']:.3f} [{acc['lo']:.3f}, {acc['hi']:.3f}]",
            " ".join(f"{a:.3f}" for a in rec["per_seed"]),
            "" if not vb else f"{vb['value']:+.3f} [{vb['lo']:+.3f}, {vb['hi']:+.3f}]",
            "" if not vb else f"{pmax:.3g}"]


def _arms_section(hrun: HeaderRun, rep: Report, table: dict[str, Any], text: str) -> None:
    p = hrun.p
    order = [a for a in ARM_TITLES if a in table]
    y = hrun.split.labels[hrun.split.rows["eval"]]
    majority = float(np.bincount(y).max() / len(y))
    sec = rep.section(
        "Arms", f"{p.model} frozen, {p.dataset}: {p.n_train} training texts, {p.n_val} "
        f"held out for every choice (C, epoch, checkpoint, learning rate), {len(y)} "
        f"evaluation texts; "
        f"k = {p.k} pseudo-tokens before the answer cue, entering at block "
        f"{hrun.layer}; {p.steps} steps of {p.batch_size}; seeds {list(p.seeds)}. "
        "Accuracy and Δ vs baseline (paired per text): mean over seeds and texts with a "
        "two-level bootstrap interval (replicate seeds x evaluation texts, 95 %; an arm that "
        "runs once has the same answers under every seed); McNemar p: the largest over "
        "seeds. "
        f"Majority class {majority:.3f}. Verdict: {text}")
    sec.table("Accuracy per arm", ["arm", "accuracy [95 % CI]", "per seed",
                                   "Δ vs baseline [paired CI]", "McNemar p"],
              [_arm_row(ARM_TITLES[a], table[a]) for a in order])
    sec.plot("arms.png", {"kind": "bar", "title": f"Accuracy per arm ({p.dataset})",
                          "ylabel": "evaluation accuracy", "categories": order,
                          "series": [{"label": "accuracy",
                                      "values": [table[a]["acc"]["value"] for a in order],
                                      "lo": [table[a]["acc"]["lo"] for a in order],
                                      "hi": [table[a]["acc"]["hi"] for a in order]}],
                          "hlines": [{"y": majority, "label": "majority class"}]})


def _efficiency_section(hrun: HeaderRun, rep: Report, eff: dict[str, Any]) -> None:
    """Text withheld: each arm's gain over the floor as a share of its code's ceiling."""
    def ci(e: dict[str, Any] | None, nd: int = 3) -> str:
        if e is None:
            return "ceiling not above the floor"
        return f"{e['value']:.{nd}f} [{e['lo']:.{nd}f}, {e['hi']:.{nd}f}]"

    floor = hrun.correct["notext"][hrun.p.seeds[0]].mean()
    rep.data["efficiency"] = eff
    rep.section(
        "Channel efficiency (text withheld)",
        "The prompt holds the instruction and the answer cue but not the text, so a header "
        f"is the only way the text reaches the LM. Floor: no text ({floor:.3f}, the training "
        "majority, which is what the LM's answer calibrated without the text can do). "
        "Ceiling: the code the arm reads, fed to a logistic regression without any LM "
        "(HDC -> logistic; MiniLM -> logistic for the float header). Channel efficiency = "
        "(arm - floor) / (ceiling - floor): 1 means the header carries into the LM all that "
        "its code carries. Intervals: two-level bootstrap (replicate seeds x evaluation "
        "texts, 95 %), numerator and denominator on the same draws. The full-text rows are "
        "the upper bound (the text itself in the prompt).",
    ).table("Channel efficiency",
            ["arm", "accuracy [CI]", "gain over no text [CI]", "ceiling", "efficiency [CI]"],
            [[ARM_TITLES[a], ci(r["acc"]), ci(r["gain"]), ARM_TITLES[r["ceiling"]],
              ci(r.get("efficiency"), 2)] for a, r in eff.items()])


def _paired_section(hrun: HeaderRun, rep: Report) -> None:
    """Each code-carrying arm minus each of its controls, text by text, with its power."""
    rows = paired_rows(hrun)
    rep.data["paired"] = rows
    if not rows:
        return

    def ci(e: dict[str, Any]) -> str:
        return f"{e['value']:+.3f} [{e['lo']:+.3f}, {e['hi']:+.3f}]"

    rep.section(
        "Paired comparisons",
        "Each arm that carries the text's code against each control that ran, on the same "
        "evaluation texts and the seeds both have: accuracy difference (arm minus control) "
        "with a two-level bootstrap interval (seeds x texts, 95 %), and the smallest "
        "difference the comparison could detect (80 % power, two-sided 95 %, from the "
        "interval's standard error). 'no difference of x or more' is a negative with that "
        "power; an arm that runs once (A arms) has the same answers under every seed.",
    ).table("Arm minus control", ["arm", "control", "seeds", "difference [95 % CI]",
                                  "detectable", "says"],
            [[ARM_TITLES[r["arm"]], ARM_TITLES[r["control"]], r["seeds"],
              ci(r["difference"]), f"{r['detectable']:.3f}", r["says"]] for r in rows])


def _recon_section(hrun: HeaderRun, rep: Report) -> None:
    """Stage R: the withheld text's NLL after its header, without one, and after another
    text's header; two-level intervals over replicate seeds and evaluation texts."""
    from ..functional.stats import detectable_difference, two_level_bootstrap, two_level_ratio

    p = hrun.p
    seeds = sorted(hrun.recon)
    tokens = np.asarray(hrun.recon[seeds[0]]["tokens"])
    # per text and seed: total nats of the text under each condition [S, N]
    total = {c: np.stack([np.asarray(hrun.recon[s]["nll"][c]) * tokens for s in seeds])
             for c in ("header", "none", "shuffled")}
    n_tok = float(tokens.sum())
    rows: list[list[str]] = []
    data: dict[str, Any] = {}
    for c, title in (("none", "no header (the LM's prior)"), ("shuffled", "shuffled codes"),
                     ("header", "the text's own header")):
        bits = two_level_bootstrap(total[c] / np.log(2), n_boot=p.n_boot, seed=p.base_seed)
        per_tok = float(total[c].sum(1).mean() / n_tok)
        data[c] = {"nats_per_token": per_tok, "bits_per_text": bits.as_dict()}
        rows.append([title, f"{per_tok:.3f}",
                     f"{bits.value:.1f} [{bits.lo:.1f}, {bits.hi:.1f}]"])
    cut: dict[str, Any] = {}
    for base in ("shuffled", "none"):
        e = two_level_ratio(total[base] - total["header"], total[base], n_boot=p.n_boot,
                            seed=p.base_seed)
        cut[base] = {**e.as_dict(), "detectable": detectable_difference(e.std)}
    data["reduction"] = cut
    rep.data["reconstruction"] = data
    best = [hrun.recon[s]["curve"] for s in seeds]
    rep.section(
        "Reconstruction (stage R)",
        f"The frozen {p.model} reads '{INSTRUCTION.replace(chr(10), ' ')}', then {p.k} "
        "pseudo-tokens (a projector header of the text's HDC code at the input embeddings), "
        "then the text, and pays the NLL of the text's tokens; the header is trained to lower "
        f"it on {p.n_train} training texts (the held-out slice keeps the best step). "
        f"Evaluation: {len(tokens)} texts, {int(n_tok):,} tokens; seeds {seeds}. Bits per "
        "text: two-level bootstrap (seeds x texts, 95 %). Reduction: the share of the "
        "condition's NLL the text's own header removes, on the same draws (target: at least "
        "10 % against shuffled codes), and the smallest reduction the comparison could tell "
        "from none (80 % power, two-sided 95 %, from the interval's standard error).",
    ).table("NLL of the withheld text", ["condition", "nats per token", "bits per text [CI]"],
            rows + [[f"reduction vs {b}", f"{100 * e['value']:.1f} %",
                     f"[{100 * e['lo']:.1f} %, {100 * e['hi']:.1f} %], detectable "
                     f"{100 * e['detectable']:.1f} %"] for b, e in cut.items()],
            note="Kept steps per seed: " + ", ".join(str(c.get("best_step")) for c in best)
                 + "; stopped on a plateau: " + ", ".join(
                     str(bool(c.get("stopped_early"))) for c in best) + ".")


def _lr_section(hrun: HeaderRun, rep: Report) -> None:
    search, p = hrun.lr_search, hrun.p
    if not search:
        return
    rep.data["lr_search"] = search
    grid = next(iter(search.values()))["grid"]
    rep.section("Learning-rate search", "Header learning rate of each family of stage B "
                f"arms, chosen by held-out accuracy ({p.n_val} texts of the training "
                f"split, seed {p.seeds[0]}, {p.steps} steps); the evaluation texts take "
                "no part.").table(
        "Held-out accuracy per learning rate",
        ["searched on", "serves", *[f"lr {x:g}" for x in grid], "chosen"],
        [[probe, " ".join(v["arms"]), *[f"{a:.3f}" for a in v["val_acc"]], f"{v['chosen']:g}"]
         for probe, v in search.items()])


def _layers_section(hrun: HeaderRun, rep: Report) -> None:
    bl = hrun.store.get({"arm": "best-layer", "seed": hrun.p.seeds[0]})
    if bl is None:
        return
    x = list(range(len(bl["val_acc"])))
    rep.section("Per-layer probes", "Logistic probe on the prompt's last-position state of "
                "each layer (hidden.0 = embeddings).").plot("layers.png", {
                    "kind": "line", "title": "Probe accuracy per layer", "xlabel": "layer",
                    "ylabel": "accuracy", "series": [
                        {"label": "held-out slice", "x": x, "y": bl["val_acc"]},
                        {"label": "evaluation", "x": x, "y": bl["eval_acc"]}]})


def _acc_series(arm: str, c: dict[str, Any]) -> list[dict[str, Any]]:
    ev = [e for e in c["evals"] if "train_acc" in e]
    x = [e["step"] for e in ev]
    return [{"label": f"{arm} T", "x": x, "y": [e["train_acc"] for e in ev]},
            {"label": f"{arm} H", "x": x, "y": [e["val_acc"] for e in ev]}]


def _curves_section(hrun: HeaderRun, rep: Report) -> None:
    if not hrun.curves:
        return
    s0 = hrun.p.seeds[0]
    series_loss, series_val = [], []
    for arm, per in hrun.curves.items():
        c = per.get(str(s0))
        if not c:
            continue
        series_loss.append({"label": arm, "x": c["steps"], "y": c["train_loss"]})
        series_val.append({"label": arm, "x": [e["step"] for e in c["evals"]],
                           "y": [e["val_acc"] for e in c["evals"]]})
    stops = []
    for arm, per in hrun.curves.items():
        for sd, c in per.items():
            stops.append([arm, sd, len(c.get("train_loss", [])), c.get("best_step"),
                          round(float(c.get("best_val_acc", float("nan"))), 4),
                          "plateau" if c.get("stopped_early") else "step cap"])
    s = rep.section("Training curves", f"Stage B, seed {s0}: training loss per step and "
                    "held-out accuracy at each evaluation; for every arm and seed, where "
                    "training stopped (a plateau of the held-out accuracy with --patience, "
                    "else the step cap) and which evaluation's header was kept.")
    s.table("Where training stopped", ["arm", "seed", "steps", "kept step",
                                       "held-out accuracy", "stopped at"], stops)
    s.plot("train_loss.png", {"kind": "line", "title": "Training loss", "xlabel": "step",
                              "ylabel": "cross-entropy", "series": series_loss})
    s.plot("val_acc.png", {"kind": "line", "title": "Held-out accuracy", "xlabel": "step",
                           "ylabel": "accuracy", "series": series_val})
    memo = memorisation_rows(hrun.curves)
    if memo:
        s.table("Memorisation: training against held-out accuracy", [
            "arm", "seeds", "train acc (kept)", "held-out acc (kept)", "gap (kept)",
            "train acc (last)", "held-out acc (last)", "gap (last)"], memo,
            note="Training accuracy on a seeded sample of training texts as large as the "
                 "held-out slice, at the kept evaluation and at the last one, mean over seeds. "
                 "Fixed codes can be memorised whatever they carry: a gap that grows as much "
                 "for shuffled and random codes as for HDC codes is memorisation, a held-out "
                 "accuracy that rises only for HDC codes is information.")
        s.plot("train_vs_heldout.png", {
            "kind": "line", "title": f"Training (T) and held-out (H) accuracy, seed {s0}",
            "xlabel": "step", "ylabel": "accuracy",
            "series": [x for arm in MEMO_ARMS if str(s0) in hrun.curves.get(arm, {})
                       for x in _acc_series(arm, hrun.curves[arm][str(s0)])]})
    rep.data["curves"] = hrun.curves


def _write_report(hrun: HeaderRun, rep: Report) -> None:
    """Lay out the report from the finished cells (rewritten after every seed and at the end)."""
    rep.sections.clear()
    table = summarise(hrun)
    eff = efficiency_rows(hrun) if hrun.p.withheld else {}
    text = withheld_verdict(hrun, eff) if hrun.p.withheld else verdict(hrun)
    rep.data["arms"] = table
    rep.data["verdict"] = text
    if table:  # stage R alone scores no arm: no empty table or plot
        _arms_section(hrun, rep, table, text)
    if eff:
        _efficiency_section(hrun, rep, eff)
    _paired_section(hrun, rep)
    if hrun.recon:
        _recon_section(hrun, rep)
    _lr_section(hrun, rep)
    _layers_section(hrun, rep)
    _curves_section(hrun, rep)
    rep.summary([["verdict", text]] + [[ARM_TITLES[a], f"{table[a]['acc']['value']:.3f}"]
                                        for a in ARM_TITLES if a in table])


# --------------------------------------------------------------------------- tour
def tour_section(report: Report, *, seed: int = 0, device: str = "cpu") -> None:
    """Stage A at a glance on the tour's dataset: cached LM states, no training through the LM.

    400 texts (200 train, 100 held out, 100 evaluation) of the tour's dataset
    (rotten-tomatoes by default), one seed. `hyperlens header` runs both stages.
    """
    conf = report.config or {}
    dataset = str(conf.get("dataset", "rotten-tomatoes"))
    if dataset not in PROMPTS:
        dataset = "rotten-tomatoes"
    config = HeaderRunConfig(dataset=dataset, data_dir=conf.get("data_dir"), n_train=200,
                             n_val=100, n_eval=100, seeds=(seed,), stages=("A",),
                             text=("present",))
    p = config.protocol(RunContext(seed=seed, device=device, dtype="float32"))  # the tour's
    out = Path(report.out_dir) / "header"
    out.mkdir(parents=True, exist_ok=True)
    sub = Report("header", config.to_dict(), out_dir=out, seed=seed, device=device)
    with report.timer("header:stage A"):
        hrun = _run_stages(p, out, sub)
    table = summarise(hrun)
    rows = [[ARM_TITLES[a], f"{table[a]['acc']['value']:.3f}",
             f"[{table[a]['acc']['lo']:.3f}, {table[a]['acc']['hi']:.3f}]"]
            for a in ARM_TITLES if a in table]
    report.section(
        "Semantic header (stage A)",
        f"The cached arms of `hyperlens header` on {dataset} ({p.n_train} training texts, "
        f"{p.n_val} held out for every choice, {p.n_eval} evaluation texts, one seed, "
        f"{p.model}): the classifier head and probes on the prompt's last hidden state, "
        "MiniLM and HDC probes, late fusion and the LM's zero-shot answer (95 % bootstrap "
        "intervals over texts). `hyperlens header` adds the headers trained through the "
        "frozen LM and their controls.").table("Stage A", ["arm", "accuracy", "95 % CI"], rows)


COMMANDS = (
    Command("header", "semantic header: HDC codes as pseudo-tokens for a frozen causal LM, "
            "with controls", HeaderRunConfig, run, description=__doc__ or ""),
)
