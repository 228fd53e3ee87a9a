"""What stops the decay?  Every remedy on one protocol, one table.

    python -m benchmarks.decay [--shard 0/2] [--threads 1] [--report-only]
                               [--out results/decay.md]

DIP's quality peaks and then decays as the net fits the noise (Ulyanov et al., CVPR 2018).  The
remedies that other work proposes, each alone on the same fits:

- ``none``: the uncontrolled decoder (λ = 0), the raw output;
- ``lambda_1.0`` … ``lambda_1.8``: the Lipschitz-controlled convolution at λ (Shi et al., IJCV
  2022, Sec. 4.1);
- ``gaussian_1.8``: the Gaussian-controlled upsampling with the paper's σ (0.1, 0.1, 0.1, 0.5,
  0.5) and λ 1.8, as the paper combines them (Sec. 4.2);
- ``input_noise``: DIP's input perturbation, z + N(0, (1/30)²) at every iteration;
- ``ema``: the exponential moving average of outputs (weight 0.99) as the result;
- ``spectral``: the spectral objective in the style of Deep Spectral Prior (Cheng et al., arXiv
  2505.19873, 2025; ``utils.physics.DataTerm.spectral_loss`` says what was chosen);

and each stop rule replayed on the logged course of the best of them (the highest mean PSNR at
the horizon): the paper's ratio rule (Eq. 8), ES-WMV's variance rule and the validation rule
(plain, and centred with both candidates: ``utils.stopping.ValidationStop``), and
``validation_default``, ``--stop validation``'s rule (``utils.stopping.VALIDATION_OPTIONS``):
centred with both candidates and the stall guard, which was added after this benchmark's first
complete report showed the centred rule stopping in a stall (λ 1.0, grass σ 25: 5.28 dB), so its
row is not a test the rule was blind to.

The protocol, fixed before any run: the stopping benchmark's crops (128×128 centres of
``skimage.data``: camera, moon, coins, grass in gray; astronaut, chelsea, coffee, rocket in
colour), σ 25 and 50 (noise seed 0), the CPU quick preset's 64-channel decoder (Fourier input,
bilinear upsampling) with the stopping benchmark's lr 0.005, fp32 (``--amp none``, so that any
CPU continues the same runs), measures every 10 iterations, 5 % of the pixels held out in every
fit (so that the validation rule can be replayed on any of them), **2000 iterations**: the
stopping benchmark's uncontrolled fits at this scale lost 1.92 dB (σ 25) and 5.47 dB (σ 50) from
their peak in 1000 iterations, so twice that horizon makes the σ 25 loss ≥ 2 dB on average (the
report checks it).  Per remedy: the peak PSNR, the PSNR at the horizon, the decay (peak − end),
the seconds per fit; per stop rule: the oracle gap (the remedy's peak − the PSNR of the rule's
choice) and the iterations it needed.

One JSON per fit in ``--cache`` (crash-safe; ``--shard k/n`` processes share the work); the
cases run σ 50 first, case by case with every remedy, so a partial run reports complete rows on
the cases done (the report says how many).  At paper scale the same remedies are runs of the
figure image in ``paper/experiments.py`` (``decay_runs``).
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.stopping import (COLOUR, GRAY, VarianceWatch, crop, open_cache, replay, row_of,
                                 sharded_parser)
from denoising import TASK
from utils.args import integer
from utils.atomic import atomic_write_text
from utils.config import check_config, resolve_config
from utils.device import cpu_model
from utils.inmemory import from_memory
from utils.plots import pyplot, save_figure
from utils.stopping import VALIDATION_OPTIONS, RatioStop, ValidationStop
from utils.tables import csv_text, markdown
from utils.task import fit_problem

SIGMAS = (50.0, 25.0)
ITERS, LOG_EVERY, WINDOW, EPS, PATIENCE = 2000, 10, 10, 0.01, 200
HOLDS = 1.0        # a remedy holds on a case where it decays by at most this (dB)
SETTINGS = dict(crop=128, channels=64, lr=0.005, log_every=LOG_EVERY, iters=ITERS,
                stop="none", track_heldout=True, holdout=0.05, ln_lambda=0.0, use_ema=False,
                reg_noise_std=0.0, loss="mse", quiet=True, observed=False, amp="none", seed=0,
                backtrack_every=0, backtrack_recover=0)   # (the backtracking the fits ran with)
PAPER_SIGMAS = (0.1, 0.1, 0.1, 0.5, 0.5)
REMEDIES = {
    "none": {},
    **{f"lambda_{lam}": dict(ln_lambda=lam) for lam in (1.0, 1.2, 1.4, 1.8)},
    "gaussian_1.8": dict(upsample="gaussian", gaussian_sigmas=PAPER_SIGMAS, ln_lambda=1.8),
    "input_noise": dict(reg_noise_std=1 / 30),
    "ema": dict(use_ema=True),
    "spectral": dict(loss="spectral"),
}
RULES = {"ratio": None, "variance": None, "validation": {},
         "validation_centred_both": dict(centred=True, both=True),
         "validation_default": VALIDATION_OPTIONS}


def cases() -> list[tuple]:
    """(image, σ, remedy) of every fit, in the order they run."""
    names = [n for pair in zip(GRAY, COLOUR) for n in pair]      # gray and colour in turn
    return [(n, s, r) for s in SIGMAS for n in names for r in REMEDIES]


def key(case) -> str:
    name, sigma, remedy = case
    return f"{remedy}_{name}_s{sigma:g}"


def run_fit(name, sigma, remedy) -> dict:
    """One fit of the protocol with a remedy: the logged course and the variance rule's choice."""
    cfg, _ = resolve_config(TASK, {**SETTINGS, "sigma": sigma, **REMEDIES[remedy]}, "quick")
    err = check_config(TASK, cfg)
    if err:
        raise ValueError(err)
    img, _ = from_memory(crop(name, SETTINGS["crop"]))
    problem = TASK.make_problem(img, cfg)
    watch = VarianceWatch(problem.data_term.with_holdout(cfg["holdout"], cfg["seed"],
                                                         problem.region))
    res, _ = fit_problem(problem, cfg, observers=[watch])
    h = res.history
    var = watch.rule
    return dict(_its=h["iteration"].tolist(), _p_it=h["psnr_gt"][:, 0].tolist(),
                _p_ema=h["psnr_ema"][:, 0].tolist(), _held=h["heldout"][:, 0].tolist(),
                _held_raw=watch.held_raw, _ratio=h["ratio"][:, 0].tolist(),
                variance=([int(var.stop_iteration[0]), watch.decided]
                          if watch.decided is not None else None),
                seconds=res.seconds, psnr_in=problem.baseline["psnr_in"])


def run_case(case, cache: Path) -> dict:
    f = cache / f"{key(case)}.json"
    if f.exists():
        return json.loads(f.read_text())
    rec = run_fit(*case)
    rec.update(image=case[0], sigma=case[1], remedy=case[2])
    atomic_write_text(f, json.dumps(rec))
    print(f"{key(case)}: {rec['seconds']:.0f} s", flush=True)
    return rec


def course(rec) -> np.ndarray:
    """The PSNR of the remedy's result along the fit (the moving average for ``ema``)."""
    return np.asarray(rec["_p_ema"] if rec["remedy"] == "ema" else rec["_p_it"])


def peak_end(rec) -> tuple[float, float]:
    """The best PSNR of the remedy's result along the fit and its PSNR at the horizon."""
    p = course(rec)
    return float(np.nanmax(p)), float(p[-1])


def remedy_rows(recs, done) -> list[list]:
    """Per remedy over the complete cases ``done``: mean peak, mean end, mean and max decay, the
    cases that decayed ≤ ``HOLDS`` dB, s/fit."""
    rows = []
    for remedy in REMEDIES:
        mine = [recs[(n, s, remedy)] for n, s in done]
        peak, end = np.array([peak_end(r) for r in mine]).T
        rows.append([remedy, peak.mean(), end.mean(), (peak - end).mean(), (peak - end).max(),
                     int(np.sum(peak - end <= HOLDS)), np.mean([r["seconds"] for r in mine])])
    return rows


def by_sigma(done) -> list[tuple[str, list]]:
    """The complete cases per σ (σ 50 first), then all of them where there are several σ."""
    groups = [(f"{s:g}", [c for c in done if c[1] == s])
              for s in SIGMAS if any(c[1] == s for c in done)]
    return groups + ([("all", list(done))] if len(groups) > 1 else [])


def rule_choice(rule, rec) -> tuple[float, int]:
    """(PSNR of what ``rule`` keeps, iterations it needed) on one logged fit."""
    its, p = np.asarray(rec["_its"]), course(rec)
    if rule == "ratio":
        row, decided = replay(RatioStop(WINDOW, EPS), its, ITERS, ratio=np.asarray(rec["_ratio"]))
        return float(p[row]), decided
    if rule == "variance":
        if rec["variance"] is None:
            return float(p[-1]), ITERS
        return float(p[row_of(its, rec["variance"][0])]), rec["variance"][1]
    v = ValidationStop(WINDOW, PATIENCE, **RULES[rule])
    extra = dict(heldout_output=np.asarray(rec["_held_raw"])) if rec["remedy"] == "ema" else {}
    row, decided = replay(v, its, ITERS, heldout=np.asarray(rec["_held"]), **extra)
    raw = v.stopped is not None and bool(v.stopped[0] & (v.kept[0] == 1))
    return float((np.asarray(rec["_p_it"]) if raw else p)[row]), decided


def rule_rows(recs, done, remedy) -> list[list]:
    """Per stop rule on ``remedy``'s fits: mean and max oracle gap, mean iterations."""
    rows = []
    for rule in RULES:
        got = [(peak_end(recs[(n, s, remedy)])[0], *rule_choice(rule, recs[(n, s, remedy)]))
               for n, s in done]
        gap = np.array([peak - p for peak, p, _ in got])
        rows.append([rule, gap.mean(), gap.max(), np.mean([d for _, _, d in got])])
    return rows


def figure(recs, done, path: Path):
    """Mean PSNR against iteration per remedy, one panel per σ."""
    sig = sorted({s for _, s in done})
    fig, axes = pyplot().subplots(1, len(sig), figsize=(6 * len(sig), 4), squeeze=False)
    for ax, s in zip(axes[0], sig):
        for remedy in REMEDIES:
            mine = [recs[(n, t, remedy)] for n, t in done if t == s]
            ax.plot(mine[0]["_its"], np.mean([course(r) for r in mine], 0), lw=1, label=remedy)
        ax.set(xlabel="iteration", ylabel="mean PSNR (dB)", title=f"σ {s:g}: {len(mine)} crops")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def report(recs, argv, out: Path):
    names = [n for pair in zip(GRAY, COLOUR) for n in pair]
    done = [(n, s) for s in SIGMAS for n in names
            if all((n, s, r) in recs for r in REMEDIES)]
    f2 = lambda v: f"{v:.2f}"  # noqa: E731
    md = ["# What stops the decay? Every remedy on one protocol (CPU, reduced scale)", "",
          f"- device: CPU {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}",
          f"- command: `python -m benchmarks.decay {' '.join(argv)}`".rstrip(),
          f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; "
          f"{sum(r['seconds'] for r in recs.values()) / 60:.0f} min of fitting in {len(recs)} "
          f"fits; **{len(done)} of {len(names) * len(SIGMAS)} cases** complete for every remedy "
          f"({', '.join(f'{n} σ {s:g}' for n, s in done) or 'none'})",
          f"- denoising, {SETTINGS['crop']}² centre crops, {SETTINGS['channels']}-channel "
          f"decoder, lr {SETTINGS['lr']:g}, fp32, {ITERS} "
          f"iterations, measures every {LOG_EVERY}, 5 % of the pixels held out "
          "(benchmarks/decay.py says why)", ""]
    if not done:
        atomic_write_text(out, "\n".join(md + ["No case is complete yet."]) + "\n")
        return
    groups = [(sig, cases, remedy_rows(recs, cases)) for sig, cases in by_sigma(done)]
    md += ["## Per remedy", "",
           "peak = the best PSNR of the remedy's result along the fit, end = at iteration "
           f"{ITERS}, decay = peak − end (mean and worst over the cases), holds = the cases "
           f"whose decay is at most {HOLDS:g} dB; seconds per fit.", ""]
    md += markdown(["σ", "remedy", "peak (dB)", "end (dB)", "decay (dB)", "worst decay",
                    "holds", "s / fit"],
                   [[sig, r[0], f2(r[1]), f2(r[2]), f2(r[3]), f2(r[4]),
                     f"{r[5]} of {len(cases)}", f"{r[6]:.0f}"]
                    for sig, cases, rows in groups for r in rows])
    md.append("")
    for sig, _, rows in groups:
        if sig == "all":
            continue
        d = rows[0][3]                                  # the uncontrolled fit's mean decay
        md.append(f"- the uncontrolled fit's decay at σ {sig}: {d:.2f} dB mean "
                  f"({'≥' if d >= 2 else '<'} 2 dB: the horizon "
                  f"{'is' if d >= 2 else 'is NOT'} long enough)")
    md += ["", "## Decay per case", "",
           "peak − end (dB) of each remedy on each complete case; the uncontrolled fit's peak "
           "beside it.", ""]
    md += markdown(["case", "peak of none", *REMEDIES],
                   [[f"{n} σ {s:g}", f2(peak_end(recs[(n, s, 'none')])[0]),
                     *(f2(np.subtract(*peak_end(recs[(n, s, r)]))) for r in REMEDIES)]
                    for n, s in done])
    rows = groups[-1][2]                # over every complete case
    none, best = rows[0], max(rows, key=lambda r: r[2])
    md += ["", f"## Stop rules on the best remedy at the horizon: {best[0]}", "",
           "The best remedy: the highest mean PSNR at the horizon over every complete case. "
           "gap = the remedy's peak − the PSNR of the rule's choice (its result at that "
           "iteration; the centred validation rule with both candidates may keep the raw "
           "output where the result is the moving average); iterations = those run until the "
           "rule decided.", ""]
    md += markdown(["σ", "rule", "mean gap (dB)", "max gap (dB)", "mean iterations"],
                   [[sig, r[0], f2(r[1]), f2(r[2]), f"{r[3]:.0f}"]
                    for sig, cases, _ in groups for r in rule_rows(recs, cases, best[0])])
    md += ["", f"The uncontrolled fit for reference: peak {f2(none[1])}, end {f2(none[2])} dB.",
           "", f"![mean PSNR per remedy]({out.with_suffix('.png').name})"]
    figure(recs, done, out.with_suffix(".png"))
    atomic_write_text(out, "\n".join(md) + "\n")
    atomic_write_text(out.with_suffix(".csv"), csv_text(
        ["sigma", "remedy", "peak_db", "end_db", "decay_db", "worst_decay_db", "cases_held",
         "cases", "seconds_per_fit"],
        [[sig, r[0], *(f"{v:.4f}" for v in r[1:5]), r[5], len(cases), f"{r[6]:.1f}"]
         for sig, cases, rows in groups for r in rows]))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = sharded_parser(__doc__, "results/decay.md", "fit")
    p.add_argument("--max-fits", type=integer(0), help="stop after this many new fits")
    args = p.parse_args(argv)
    cache, k, n = open_cache(args)
    if not args.report_only:
        new = 0
        for case in cases()[k::n]:
            if args.max_fits is not None and new >= args.max_fits:
                break
            if not (cache / f"{key(case)}.json").exists():
                run_case(case, cache)
                new += 1
    recs = {(c[0], c[1], c[2]): json.loads((cache / f"{key(c)}.json").read_text())
            for c in cases() if (cache / f"{key(c)}.json").exists()}
    if n == 1 or args.report_only:
        report(recs, [a for a in argv if not a.startswith(("--shard", "--max-fits"))],
               Path(args.out))
        print(f"wrote {args.out}")
    return recs


if __name__ == "__main__":
    main()
