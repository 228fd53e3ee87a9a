"""When to stop, and which λ, without the ground truth: every stop rule measured on the CPU.

    python -m benchmarks.stopping [--shard 0/2] [--threads 1] [--report-only]
                                  [--out results/stopping.md]

Denoising at reduced scale: 8 centre crops of 128×128 from ``skimage.data`` (gray: camera,
moon, coins, grass; colour: astronaut, chelsea, coffee, rocket), σ ∈ {15, 25, 50}, the CPU quick
preset's 64-channel decoder (lr 0.005, measures every 10 iterations, the moving average of
outputs as the result) **without** Lipschitz control (λ = 0: DIP's behaviour, whose quality
peaks and decays, so that stopping matters), 1000 iterations.  The rules' parameters are fixed
before any run, in iterations as the paper's: windows of 100 iterations (10 evaluations), ε 0.01,
patience 200 iterations.  Parts:

- ``rules`` (every crop × σ): one fit with 5 % of the pixels held out (Self-Validation DIP, Li
  et al. BMVC 2021) and no stop.  Every rule is replayed on this one trajectory: ``ratio`` (Shi
  et al. 2022, Eq. 8) and ``validation`` from the logged ratio and held-out loss, ``variance``
  (ES-WMV) fed the outputs during the fit; ``last`` is no stop.  A rule's output is the moving
  average at the iteration it chose; its gap is the oracle's peak (the best PSNR of any iterate
  or moving average of the fit) minus the PSNR of that output; its iterations are those run
  until the rule decided.
- ``pair`` (σ 25, 4 crops): the same seed with 1 % held out instead of 5 %: does the 1 % held-out loss
  track the true MSE, and would the held-out pixels rejoining the fit help (the 1 % fit's PSNR
  at the iteration the 5 % validation rule chose)?
The parts beyond ``rules`` use fewer crops to fit in the CPU time of one working session
(about 100 minutes on 2 cores).
- ``lambda`` (σ 25, 2 crops): ``--lambda auto`` (λ ∈ 1.2, 1.4, 1.8, 2.4, none as members of one
  batched fit, each stopped by the validation rule): the chosen λ's PSNR vs the best λ in
  hindsight.
- ``spread`` (σ 25, 2 crops): 4 seeds, validation stop: the spread of single runs and of
  2-restart averages.

Each case is written to ``--cache`` as it finishes (JSON), so an interrupted run resumes and
several processes (``--shard k/n``) share the work; the report (``--out`` and the CSV beside
it, columns rule, mean_gap_db, max_gap_db, mean_iterations; every case in ``*_cases.csv``) is
written from the cache.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from denoising import TASK
from utils.args import integer, shard
from utils.atomic import atomic_write_text
from utils.config import check_config, resolve_config
from utils.device import cpu_model
from utils.inmemory import from_memory
from utils.metrics import psnr
from utils.stopping import VALIDATION_OPTIONS, RatioStop, ValidationStop, VarianceStop
from utils.tables import csv_text, markdown
from utils.task import fit_problem

GRAY, COLOUR = ("camera", "moon", "coins", "grass"), ("astronaut", "chelsea", "coffee", "rocket")
SIGMAS = (15.0, 25.0, 50.0)
ITERS, LOG_EVERY, WINDOW, EPS, PATIENCE = 1000, 10, 10, 0.01, 200
SETTINGS = dict(crop=128, channels=64, lr=0.005, log_every=LOG_EVERY, use_ema=True,
                ln_lambda=0.0, iters=ITERS, stop_window=WINDOW, stop_eps=EPS,
                stop_patience=PATIENCE, quiet=True, observed=False, amp="none",
                backtrack_every=0, backtrack_recover=0)   # (the backtracking the fits ran with)
# the validation rule as Li et al. describe it, and its two remedies for the lag (declared before
# the replays that measure them: utils.stopping.ValidationStop says what each does)
VALIDATION = {"validation": {}, "validation_centred": dict(centred=True),
              "validation_both": dict(both=True),
              "validation_centred_both": dict(centred=True, both=True)}
RULES = ("ratio", "variance", *VALIDATION, "last")
# the window sweep of the report (replays of --stop validation's rule on the logged series; the
# rule's window stays WINDOW: the sweep shows how much the gaps depend on that choice)
WINDOW_SWEEP = (3, 5, 7, 10, 15, 20)
# the sweep of the rule's min_gain (replays as the window's)
GAIN_SWEEP = (0.0, 1e-3, 2e-3, 5e-3)


def crop(name: str, size: int = 128) -> np.ndarray:
    """The size×size centre of a ``skimage.data`` image, uint8."""
    from skimage import data
    a = getattr(data, name)()
    top, left = (a.shape[0] - size) // 2, (a.shape[1] - size) // 2
    return np.ascontiguousarray(a[top:top + size, left:left + size])


def cases() -> list[tuple]:
    """(part, image, σ) of every case, in the order they run."""
    order = sorted(SIGMAS, key=lambda s: (s != 25.0, -s))      # σ 25 first, then 50, 15
    out = [("rules", n, s) for s in order for n in GRAY + COLOUR]
    out += [("lambda", n, 25.0) for n in (GRAY[0], COLOUR[0])]
    out += [("spread", n, 25.0) for n in (GRAY[0], COLOUR[0])]
    out += [("pair", n, 25.0) for n in GRAY[:2] + COLOUR[:2]]
    return out


def setup(name, sigma, **given):
    cfg, _ = resolve_config(TASK, {**SETTINGS, "sigma": sigma, **given}, "quick")
    err = check_config(TASK, cfg)
    if err:
        raise ValueError(err)
    img, _ = from_memory(crop(name, SETTINGS["crop"]))
    return cfg, TASK.make_problem(img, cfg)


def row_of(its, iteration) -> int:
    return int(np.searchsorted(its, iteration))


def replay(rule, its, horizon=None, **series) -> tuple[int, int]:
    """Feed a rule a logged series; (row it chose, iteration it decided at), the last row and
    the fit's length (``horizon``, default ``ITERS``) when it never decides."""
    for k, it in enumerate(its):
        stopped = rule.update(int(it), **{key: torch.tensor([v[k]]) for key, v in series.items()})
        if bool(stopped[0]):
            return row_of(its, int(rule.stop_iteration[0])), int(it)
    end = ITERS if horizon is None else horizon
    stopped = rule.finish()                 # the fit's end: the decision it allows (Fit's)
    if stopped is not None and bool(stopped[0]):
        return row_of(its, int(rule.stop_iteration[0])), end
    return len(its) - 1, end


class VarianceWatch:
    """ES-WMV on the fit's outputs as they come, and the held-out loss of the raw output beside
    the moving average's the fit logs (an observer of utils.fit.Fit).  term: the fit's data term
    with the same held-out pixels (the same fraction and seed)."""

    def __init__(self, term=None):
        self.rule, self.decided = VarianceStop(WINDOW, PATIENCE), None
        self.term, self.held_raw, self.mismatch = term, [], 0.0

    def __call__(self, i, output, ema, ratio, heldout):
        if self.decided is None and bool(self.rule.update(i, output)[0]):
            self.decided = i
        if self.term is not None:
            t = self.term.to(output.device)
            self.held_raw.append(float(t.heldout_loss(t(output))[0]))
            # the same pixels as the fit's: the moving average's loss as it logged it
            self.mismatch = max(self.mismatch,
                                abs(float(t.heldout_loss(t(ema))[0]) - float(heldout[0])))


def run_rules(name, sigma, seed=0, holdout=0.05):
    """One fit, no stop, ``holdout`` held out; every rule replayed on it."""
    cfg, problem = setup(name, sigma, seed=seed, stop="none", track_heldout=True, holdout=holdout)
    watch = VarianceWatch(problem.data_term.with_holdout(holdout, cfg["seed"], problem.region))
    t0 = time.perf_counter()
    res, _ = fit_problem(problem, cfg, observers=[watch])
    h = res.history
    its, p_it, p_ema = h["iteration"], h["psnr_gt"][:, 0], h["psnr_ema"][:, 0]
    held, ratio = h["heldout"][:, 0], h["ratio"][:, 0]
    held_raw = np.asarray(watch.held_raw)
    if watch.mismatch > 1e-6:
        raise RuntimeError(f"the observer's held-out pixels are not the fit's ({watch.mismatch})")
    chosen = {"ratio": replay(RatioStop(WINDOW, EPS), its, ratio=ratio),
              "last": (len(its) - 1, ITERS)}
    raw_kept = {}
    for rule, opts in VALIDATION.items():
        v = ValidationStop(WINDOW, PATIENCE, **opts)
        chosen[rule] = replay(v, its, heldout=held, heldout_output=held_raw)
        raw_kept[rule] = v.stopped is not None and bool(v.stopped[0] & (v.kept[0] == 1))
    var = watch.rule
    chosen["variance"] = ((row_of(its, int(var.stop_iteration[0])), watch.decided)
                          if watch.decided is not None else (len(its) - 1, ITERS))
    oracle = float(np.nanmax(np.maximum(p_it, p_ema)))
    mse = 10 ** (-p_ema / 10)
    est = held - (sigma / 255) ** 2
    late = slice(len(its) // 10, None)      # the first 100 iterations are off any scale
    out = dict(oracle=oracle, oracle_iteration=int(its[np.nanargmax(np.maximum(p_it, p_ema))]),
               seconds=time.perf_counter() - t0, psnr_in=problem.baseline["psnr_in"],
               tracking_r=float(np.corrcoef(est[late], mse[late])[0, 1]),
               tracking_db=float(np.nanmean(np.abs(10 * np.log10(np.clip(est[late], 1e-6, None))
                                                   + p_ema[late]))))
    for rule, (row, decided) in chosen.items():
        p = float((p_it if raw_kept.get(rule) else p_ema)[row])
        out[rule] = dict(psnr=p, gap=oracle - p, iteration=int(its[row]),
                         iterations=int(decided), raw=bool(raw_kept.get(rule)))
    # the series, so that other rules or parameters can be replayed later without refitting
    out.update(_its=its.tolist(), _p_ema=p_ema.tolist(), _p_it=p_it.tolist(),
               _held=held.tolist(), _held_raw=held_raw.tolist(), _ratio=ratio.tolist())
    return out


def run_lambda(name, sigma, seed=0):
    """``--lambda auto``: the chosen λ vs the best λ in hindsight (each at its own stop)."""
    cfg, problem = setup(name, sigma, seed=seed, ln_lambda="auto", stop="validation")
    res, _ = fit_problem(problem, cfg)
    h, w = problem.region
    gt = problem.target[..., :h, :w]
    each = [float(psnr(res.output[m:m + 1, :, :h, :w], gt)[0]) for m in range(res.output.shape[0])]
    names = list(res.selection["heldout"])
    chosen = names.index(res.selection["lambda"])
    stops = [s if s is not None else ITERS for s in res.stop_iteration]
    return dict(lambdas=names, psnr=each, chosen=res.selection["lambda"],
                gap=max(each) - each[chosen], best=names[int(np.argmax(each))],
                heldout=res.selection["heldout"], iterations=res.iterations,
                stop_iterations=stops, seconds=res.seconds)


def run_spread(name, sigma, seed=0):
    """4 seeds, validation stop: single-run and 2-restart-average spreads."""
    cfg, problem = setup(name, sigma, seed=seed, restarts=4, stop="validation")
    res, _ = fit_problem(problem, cfg)
    h, w = problem.region
    gt = problem.target[..., :h, :w]
    p = lambda idx: float(psnr(res.output[idx, :, :h, :w].mean(0, keepdim=True), gt)[0])  # noqa
    single = [p([m]) for m in range(4)]
    pairs = [p([0, 1]), p([2, 3])]
    return dict(single=single, pairs=pairs, single_spread=max(single) - min(single),
                single_pair_spread=abs(single[0] - single[2]), pair_spread=abs(pairs[0] - pairs[1]),
                seconds=res.seconds)


def key(case) -> str:
    part, name, sigma = case
    return f"{part}_{name}_s{sigma:g}"


def run_case(case, cache: Path):
    part, name, sigma = case
    f = cache / f"{key(case)}.json"
    if f.exists():
        return json.loads(f.read_text())
    t0 = time.perf_counter()
    if part == "rules":
        rec = run_rules(name, sigma)
    elif part == "pair":
        rec = run_rules(name, sigma, holdout=0.01)
    elif part == "lambda":
        rec = run_lambda(name, sigma)
    else:
        rec = run_spread(name, sigma)
    rec.update(part=part, image=name, sigma=sigma, wall=time.perf_counter() - t0)
    atomic_write_text(f, json.dumps(rec))
    print(f"{key(case)}: {time.perf_counter() - t0:.0f} s", flush=True)
    return rec


def _mean(v):
    return float(np.mean(v)) if len(v) else float("nan")


def summary_rows(recs) -> list[list]:
    """The CSV's rows: rule, mean gap, max gap, mean iterations."""
    rules = [r for r in recs if r["part"] == "rules"]
    rows = [[rule, _mean([r[rule]["gap"] for r in rules]), max(r[rule]["gap"] for r in rules),
             _mean([r[rule]["iterations"] for r in rules])] for rule in RULES] if rules else []
    lam = [r for r in recs if r["part"] == "lambda"]
    if lam:
        rows.append(["lambda auto", _mean([r["gap"] for r in lam]), max(r["gap"] for r in lam),
                     _mean([r["iterations"] for r in lam])])
    return rows


def report(recs, argv) -> list[str]:
    by = {p: [r for r in recs if r["part"] == p] for p in ("rules", "pair", "lambda", "spread")}
    rows = summary_rows(recs)
    f2 = lambda v: f"{v:.2f}"  # noqa: E731
    md = ["# Stopping rules and λ without the ground truth (CPU, reduced scale)", "",
          f"- device: CPU {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}",
          f"- command: `python -m benchmarks.stopping {' '.join(argv)}`".rstrip()
          + ("; the cases were fitted before by `--shard k/n --threads 1` processes (here k = "
             "0, 1 of 2, one per core) and read back from the cache"
             if "--report-only" in argv else ""),
          f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; "
          f"{sum(r['wall'] for r in recs) / 60:.0f} min of fitting in {len(recs)} cases",
          f"- denoising, {SETTINGS['crop']}² centre crops of skimage.data, "
          f"{SETTINGS['channels']}-channel decoder without Lipschitz control (λ = 0), "
          f"lr {SETTINGS['lr']:g}, {ITERS} iterations, measures every {LOG_EVERY}; "
          "the output is the moving average of outputs at the chosen iteration (the `_both` "
          "variants of the validation rule may keep the raw output instead); windows "
          f"{WINDOW * LOG_EVERY} iterations, ε {EPS}, patience {PATIENCE} iterations "
          "(benchmarks/stopping.py says why)", "",
          "## Gap to the oracle's peak", "",
          "gap = the best PSNR of any output of the fit (the oracle) − the PSNR of the rule's "
          "output; iterations = those run until the rule decided (ratio: its stop; variance and "
          f"validation: the minimum + the patience; last: all {ITERS}).", ""]
    md += markdown(["rule", "mean gap (dB)", "max gap (dB)", "mean iterations"],
                   [[r[0], f2(r[1]), f2(r[2]), f"{r[3]:.0f}"] for r in rows])
    rules = by["rules"]
    if rules:
        sig = sorted({r["sigma"] for r in rules})
        md += ["", "Mean gap (dB) per σ and per kind of image:", ""]
        head = ["rule"] + [f"σ {s:g}" for s in sig] + ["gray", "colour"]
        body = []
        for rule in RULES:
            cells = [f2(_mean([r[rule]["gap"] for r in rules if r["sigma"] == s])) for s in sig]
            cells += [f2(_mean([r[rule]["gap"] for r in rules if r["image"] in kind]))
                      for kind in (GRAY, COLOUR)]
            body.append([rule] + cells)
        md += markdown(head, body)
        md += ["", "Every case (PSNR in dB of the oracle's peak and of each rule's output, with "
               "the iteration it chose):", ""]
        md += markdown(["image", "σ", "noisy", "oracle (iteration)"] + list(RULES),
                       [[r["image"], f"{r['sigma']:g}", f2(r["psnr_in"]),
                         f"{r['oracle']:.2f} ({r['oracle_iteration']})"]
                        + [f"{r[k]['psnr']:.2f} ({r[k]['iteration']})" for k in RULES]
                        for r in rules])
    if rules:
        md += window_sweep(rules)
    pairs = {r["image"]: r for r in by["pair"]}
    five = {r["image"]: r for r in rules if r["sigma"] == 25.0}
    both = [n for n in pairs if n in five]
    if both:
        gain = [pairs[n]["_p_ema"][row_of(np.array(pairs[n]["_its"]),
                                          five[n]["validation"]["iteration"])]
                - five[n]["validation"]["psnr"] for n in both]
        md += ["", "## The held-out loss as an estimate of the error (σ 25)", "",
               "MSE estimate = held-out loss − σ² (the held-out pixels' noise is independent of "
               "the fit); r = its correlation with the true MSE of the moving average over the "
               "trajectory (after the first 100 iterations), error = mean |estimated − true "
               "PSNR|.  The observation is clipped to [0, 1], so the noise left on it has less "
               "power than σ² where the image is dark or bright and its mean is not 0: the "
               "estimate follows the MSE's course (r) but not its level (too low, or negative: "
               "counted as 60 dB), which is why the summaries report the held-out loss and no "
               "PSNR estimate.", ""]
        md += markdown(["held out", "mean r", "min r", "mean error (dB)"],
                       [[f"{p}", f"{_mean([d[n]['tracking_r'] for n in both]):.3f}",
                         f"{min(d[n]['tracking_r'] for n in both):.3f}",
                         f2(_mean([d[n]['tracking_db'] for n in both]))]
                        for p, d in (("5 %", five), ("1 %", pairs))])
        verdict = ("rejoining does not help: the held-out pixels stay out" if _mean(gain) <= 0
                   else "rejoining would help")
        md += ["", f"Rejoining: the fit with only 1 % held out, at the iteration the 5 % "
               f"validation rule chose, is {_mean(gain):+.2f} dB (min {min(gain):+.2f}, max "
               f"{max(gain):+.2f}) from the 5 % fit's output ({len(both)} images): {verdict} "
               "(the two fits follow different trajectories, so the iteration chosen on one does "
               "not transfer)."]
    if by["lambda"]:
        md += ["", "## --lambda auto (σ 25)", "",
               "Members λ ∈ " + ", ".join(by["lambda"][0]["lambdas"]) + " in one batched fit, each "
               "stopped by the validation rule; the choice is the lowest held-out loss at each "
               "member's stop.", ""]
        md += markdown(["image", "chosen", "best in hindsight", "gap (dB)"]
                       + [f"λ {n}" for n in by["lambda"][0]["lambdas"]],
                       [[r["image"], r["chosen"], r["best"], f2(r["gap"])]
                        + [f2(v) for v in r["psnr"]] for r in by["lambda"]])
    if by["spread"]:
        sp = by["spread"]
        md += ["", "## Seed-to-seed spread (σ 25, validation stop)", "",
               "4 seeds per image: the spread of single runs (max − min over the 4, and |seed 0 − "
               "seed 2|) and of 2-restart averages (|mean(0, 1) − mean(2, 3)|).", ""]
        md += markdown(["image", "single runs (dB)", "single: range", "single: |0 − 2|",
                        "2-run averages (dB)", "2-run: spread"],
                       [[r["image"], " / ".join(f2(v) for v in r["single"]),
                         f2(r["single_spread"]), f2(r["single_pair_spread"]),
                         " / ".join(f2(v) for v in r["pairs"]), f2(r["pair_spread"])]
                        for r in sp])
    md += ["", "## Targets", ""] + targets(rows, by)
    return md


def window_gaps(rec, window, options=None) -> float:
    """The oracle gap of --stop validation's rule (``VALIDATION_OPTIONS``, or ``options``) with
    ``window`` evaluations, replayed on one case's logged series."""
    its = np.array(rec["_its"])
    rule = ValidationStop(window, PATIENCE, **(VALIDATION_OPTIONS if options is None else options))
    row, _ = replay(rule, its, heldout=rec["_held"], heldout_output=rec["_held_raw"])
    raw = rule.stopped is not None and bool(rule.stopped[0] & (rule.kept[0] == 1))
    return rec["oracle"] - rec["_p_it" if raw else "_p_ema"][row]


def _sweep(rules, variants: dict) -> list[list]:
    """Rows (variant, mean gap, max gap, worst case) of ``{label: (window, options)}`` replays."""
    out = []
    for label, (window, options) in variants.items():
        g = np.array([window_gaps(r, window, options) for r in rules])
        worst = rules[int(g.argmax())]
        out.append([label, f"{g.mean():.2f}", f"{g.max():.2f}",
                    f"{worst['image']} σ {worst['sigma']:g}", g])
    return out


def window_sweep(rules) -> list[str]:
    """The report's sections on the validation rule's window and its ``min_gain`` (replays of
    the logged series, no fit)."""
    rows = _sweep(rules, {f"{w}" + (" (the rule's)" if w == WINDOW else ""): (w, None)
                          for w in WINDOW_SWEEP})
    md = ["", "## The validation rule's window", "",
          f"`--stop validation`'s rule (centred, both candidates, the stall guard) replayed "
          f"with other windows on the same {len(rules)} fits (evaluations every {LOG_EVERY} "
          f"iterations; the rule uses {WINDOW}, fixed before any run).  A shorter window lags less but averages "
          "fewer held-out losses (5 % of the pixels: 819 of a 128² crop); a window chosen on "
          "this table would be chosen on its own test cases.", ""]
    md += markdown(["window (evaluations)", "mean gap (dB)", "max gap (dB)", "worst case"],
                   [r[:4] for r in rows])
    meet = [r[0].split()[0] for r in rows if r[4].mean() <= 0.3 and r[4].max() <= 0.8]
    md += ["", "Windows that meet both targets (mean ≤ 0.3 dB, max ≤ 0.8 dB): "
           + (", ".join(meet) if meet else "none") + "."]
    marks = {(0.0, False): " (--stop validation's default)",
             (TASK.quick.get("stop_min_gain", 0.0), TASK.quick.get("stop_decide_at_end", False)):
             " (denoising's quick preset)"}
    gains = {f"{g:g}, {'yes' if end else 'no'}" + marks.get((g, end), ""):
             (WINDOW, {**VALIDATION_OPTIONS, "min_gain": g, "decide_at_end": end})
             for end in (False, True) for g in GAIN_SWEEP}
    md += ["", "## The validation rule's min_gain and decision at the end", "",
           "min_gain: the output kept moves to a new minimum of the smoothed held-out loss only "
           "where that is below the kept one's by more than this fraction (0: every new "
           "minimum: `--stop validation`'s default; denoising's quick preset sets "
           "`stop_min_gain`, measured at its λ 1.4 in "
           "results/cpu_modes_denoising_amx_before_decide_at_end.md); "
           "decide_at_end (`--stop-decide-at-end`, also set by that preset): a fit that ends "
           "before the "
           "patience has run out returns the output kept at the minimum where the loss has "
           "risen above it by the stall guard's margin (no: its last output; "
           "`utils.stopping.ValidationStop`).  Replayed on the same fits with the rule's window.",
           ""]
    md += markdown(["min_gain, decide at the end", "mean gap (dB)", "max gap (dB)", "worst case"],
                   [r[:4] for r in _sweep(rules, gains)])
    return md


def targets(rows, by) -> list[str]:
    out = []
    free = [r for r in rows if r[0] not in ("last", "lambda auto")]
    if free:
        best = min(free, key=lambda r: r[1])
        ok = best[1] <= 0.3 and best[2] <= 0.8
        out.append(f"- best oracle-free rule: **{best[0]}**, mean gap {best[1]:.2f} dB (target "
                   f"≤ 0.3), max {best[2]:.2f} dB (target ≤ 0.8): "
                   f"{'met' if ok else 'NOT met'}")
    lam = [r for r in rows if r[0] == "lambda auto"]
    if lam:
        out.append(f"- lambda auto: mean gap to the best λ in hindsight {lam[0][1]:.2f} dB "
                   f"(target ≤ 0.3): {'met' if lam[0][1] <= 0.3 else 'NOT met'}")
    if by["spread"]:
        s = max(r["pair_spread"] for r in by["spread"])
        out.append(f"- 2-restart average seed spread: max {s:.2f} dB (target ≤ 0.1): "
                   f"{'met' if s <= 0.1 else 'NOT met'}")
    return out


def write_report(recs, out: Path, argv):
    atomic_write_text(out, "\n".join(report(recs, argv)) + "\n")
    atomic_write_text(out.with_suffix(".csv"), csv_text(
        ["rule", "mean_gap_db", "max_gap_db", "mean_iterations"],
        [[r[0], f"{r[1]:.4f}", f"{r[2]:.4f}", f"{r[3]:.1f}"] for r in summary_rows(recs)]))
    rules = [r for r in recs if r["part"] == "rules"]
    atomic_write_text(out.with_name(out.stem + "_cases.csv"), csv_text(
        ["image", "sigma", "psnr_in", "oracle", "oracle_iteration"]
        + [f"{k}_{c}" for k in RULES for c in ("psnr", "iteration", "iterations")],
        [[r["image"], r["sigma"], f"{r['psnr_in']:.4f}", f"{r['oracle']:.4f}",
          r["oracle_iteration"]] + [v for k in RULES for v in
                                    (f"{r[k]['psnr']:.4f}", r[k]["iteration"], r[k]["iterations"])]
         for r in rules]))


def sharded_parser(doc: str, out: str, unit: str) -> argparse.ArgumentParser:
    """The options of a cached, sharded benchmark (this one and benchmarks/decay.py): --out, a
    --cache of one JSON per finished ``unit``, --shard k/n, --threads, --report-only."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--out", default=out, help=f"the report (default {out}, committed: a "
                   "run replaces it; give another file for a trial)")
    p.add_argument("--cache", default=str(Path(out).with_suffix("")) + "_runs",
                   help=f"one JSON per finished {unit} (resume, shards)")
    p.add_argument("--shard", default=(0, 1), type=shard,
                   help=f"k/n: run every n-th {unit} from the k-th")
    p.add_argument("--threads", type=integer(1), help="torch CPU threads (default: torch's)")
    p.add_argument("--report-only", action="store_true", help="write the report from the cache")
    return p


def open_cache(args) -> tuple[Path, int, int]:
    """Set the threads, make the cache; (cache, k, n) of ``--shard k/n``.  ``--report-only``
    with no cache is an error (a report of nothing would replace the committed one)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    if args.report_only and not any(cache.glob("*.json")):
        raise SystemExit(f"error: {cache}: no finished record to report (run without "
                         "--report-only first, or give --cache)")
    cache.mkdir(parents=True, exist_ok=True)
    return cache, *args.shard


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = sharded_parser(__doc__, "results/stopping.md", "case")
    parts = ["rules", "pair", "lambda", "spread"]
    p.add_argument("--parts", nargs="+", default=parts, choices=parts, help="(default: all) "
                   "the rules' replays, the 1 %%/5 %% pair, --lambda auto, restarts' spread")
    args = p.parse_args(argv)
    cache, k, n = open_cache(args)
    todo = [c for c in cases() if c[0] in args.parts]
    if not args.report_only:
        for case in todo[k::n]:
            run_case(case, cache)
    recs = [json.loads((cache / f"{key(c)}.json").read_text()) for c in todo
            if (cache / f"{key(c)}.json").exists()]
    if recs and (n == 1 or args.report_only):
        write_report(recs, Path(args.out), [a for a in argv if not a.startswith("--shard")])
        print(f"wrote {args.out}")
    return recs


if __name__ == "__main__":
    main()
