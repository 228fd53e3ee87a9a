"""The papers' figures from whatever figure runs exist (paper/experiments.figure_runs): FBC of
DIP vs ours (Shi et al. Fig. 2), the λ and Gaussian-σ sweeps, the architecture ablation, the
ratio stop replayed on a no-stop run, and a montage of every task; OUT/figures.md and .csv index
them with their numbers.  Every panel is drawn by utils/plots.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from paper.experiments import figure_runs
from paper.tables import experiments_lines, meta_lines, missing_lines, read_log, record, run_images
from utils.atomic import atomic_write_text
from utils.imageio import load_image
from utils.plots import fbc_panel, montage, psnr_panel, psnr_ratio_panel, pyplot, save_figure
from utils.stopping import RatioStop
from utils.tables import MISSING as DASH, csv_text, markdown


def _save(fig, path):
    return save_figure(fig, path, dpi=100)


def _peak(log):
    i = int(np.nanargmax(log["psnr_gt"]))
    return int(log["iteration"][i]), float(log["psnr_gt"][i])


def _fbc(ax, log, title):
    it, p = _peak(log)
    fbc_panel(ax, log["iteration"], [log[f"fbc{b + 1}"] for b in range(5)], title,
              (it, f"peak PSNR {p:.2f} dB at {it}"))


def _curve_rows(fig_name, sweep):
    return [[fig_name, lab, run.name, *_peak(log), int(log["iteration"][-1]),
             float(log["psnr_gt"][-1])] for lab, run, log in sweep]


def replay_ratio_stop(ctx, run, log):
    """The iteration the ratio rule (the run's window and ε) picks on a logged ratio series."""
    rec = record(ctx, run, (run_images(ctx, run) or [""])[0]) or {}
    h = rec.get("hyperparameters", {})
    rule = RatioStop(h.get("stop_window", 100), h.get("stop_eps", 0.01))
    for it, r in zip(log["iteration"], log["ratio"]):
        if bool(rule.update(int(it), ratio=torch.tensor([r]))[0]):
            return int(rule.stop_iteration[0])
    return None


def _sweeps(ctx, logs, fig_runs, lam, sig, arch):
    """The FBC pair, the two sweeps and the architecture figure: (made, rows)."""
    made, rows = [], []

    def sweep(d, fmt):
        return [(fmt(k), r, logs[r.name]) for k, r in d.items() if logs[r.name] is not None]

    pair = [(lab, fig_runs[k], logs[fig_runs[k].name]) for lab, k in
            (("DIP: hourglass, no control", "dip"), ("ours: decoder, λ 1.4", "ours"))
            if logs[fig_runs[k].name] is not None]
    if pair:
        fig, axes = pyplot().subplots(1, len(pair), figsize=(6 * len(pair), 3.6), squeeze=False)
        for ax, (lab, _, log) in zip(axes[0], pair):
            _fbc(ax, log, lab)
        made.append(("fig_fbc_dip_vs_ours.png", "FBC of the five bands, DIP vs ours, peak-PSNR "
                     "iteration marked", _save(fig, ctx.out / "fig_fbc_dip_vs_ours.png")))
        rows += _curve_rows("fbc", [(lab.split(":")[0], r, log) for lab, r, log in pair])
    for name, d, fmt, what in (
            ("fig_lambda_sweep.png", lam, lambda k: f"λ {k}", "PSNR vs iteration per λ"),
            ("fig_gaussian_sigma_sweep.png", sig, lambda k: f"σ {k}",
             "PSNR vs iteration per Gaussian σ list (λ 1.8)")):
        s = sweep(d, fmt)
        if s:
            fig, ax = pyplot().subplots(figsize=(6, 3.6))
            psnr_panel(ax, [(lab, log["iteration"], log["psnr_gt"]) for lab, _, log in s], what)
            made.append((name, what, _save(fig, ctx.out / name)))
            rows += _curve_rows(name[4:-4], s)
    s = sweep(arch, str)
    if s:
        fig, axes = pyplot().subplots(1, 1 + len(s), figsize=(4.5 * (1 + len(s)), 3.4))
        psnr_panel(axes[0], [(lab, log["iteration"], log["psnr_gt"]) for lab, _, log in s],
                   "PSNR, no control")
        for ax, (lab, _, log) in zip(axes[1:], s):
            _fbc(ax, log, f"FBC: {lab}")
        made.append(("fig_architectures.png", "architecture ablation: PSNR and FBC (convnet "
                     "runs at full resolution: slow)",
                     _save(fig, ctx.out / "fig_architectures.png")))
        rows += _curve_rows("architectures", s)
    return made, rows


def _auto_stop(ctx, run, log):
    """The ratio stop replayed on the no-stop run: (made, row)."""
    stop = replay_ratio_stop(ctx, run, log)
    last_it, last = int(log["iteration"][-1]), float(log["psnr_gt"][-1])
    peak_it, peak = _peak(log)
    if stop is not None:
        at = float(log["psnr_gt"][np.searchsorted(log["iteration"], stop)])
        text = (f"stop {stop}: {at:.2f} dB; at {last_it}: {last:.2f} dB "
                f"(Δ {at - last:+.2f}); peak {peak:.2f} dB at {peak_it}")
    else:
        at, text = None, f"the ratio rule did not fire within {last_it} iterations"
    fig, ax = pyplot().subplots(figsize=(6, 3.6))
    psnr_ratio_panel(ax, log["iteration"], log["psnr_gt"], log["ratio"],
                     stop=None if stop is None else (stop, f"ratio stop at {stop}"), title=text)
    made = ("fig_auto_stop.png", "the ratio stop on the no-stop run (the rule replayed on its "
            "logged ratio): " + text, _save(fig, ctx.out / "fig_auto_stop.png"))
    return made, ["auto_stop", "ratio stop", run.name, stop, at, last_it, last]


def montage_files(ctx, tasks):
    """(PNG path, title) pairs: the degraded input and the output of the first finished image
    of each task (its first experiment that has one); a task without inputs shows its files."""
    from paper.experiments import task_runs
    out = []
    for task in tasks.values():
        ours_first = sorted(task_runs(task, ctx.seeds), key=lambda r: "dip" in r.name.split("_"))
        for run in ours_first:
            d = ctx.out / "runs" / run.name
            done = sorted((p.parent, rec) for p in d.glob("*/summary.json")
                          if (rec := record(ctx, run, p.parent.name))) if d.is_dir() else []
            if not done:
                continue
            f, rec = done[0]
            inputs = rec.get("inputs") or []
            # enhancement: its base (a record before 2026-12-07 has it as output.png only)
            base = "base" if (f / "base.png").exists() else "output"
            shown = ([inputs[0], "output"] if inputs else [base, "enhanced"])
            pair = [(f / f"{n}.png", f"{task.name}: {n if n != 'output' else run.name}")
                    for n in shown]
            if all(p.exists() for p, _ in pair):
                out += pair
                break
    return out


def pictures(ctx, tasks):
    """The per-image PNGs the figures and tables show (what --pack keeps of the PNGs)."""
    from paper.experiments import task_runs
    out = [p for p, _ in montage_files(ctx, tasks)]
    for task in tasks.values():
        if task.name == "enhancement":
            out += sorted((ctx.out / "runs").glob(
                f"{task_runs(task, ctx.seeds)[0].name}/*/side_by_side.png"))
    return out


def figure_image_name(ctx, run) -> str:
    """The figure runs' image: the data folder's, else the one the run's records name (figures
    rebuilt from an unpacked lease here, without the data), else the embedded default."""
    fi = ctx.images(None)
    if fi:
        return fi[0].stem
    recs = filter(None, (record(ctx, run, i) for i in run_images(ctx, run)))
    src = next((Path(p).stem for r in recs if (p := (r.get("source") or {}).get("path"))), None)
    return f"{src} (as its records name it)" if src else "the embedded default"


def make_figures(ctx, tasks):
    """The figures from whatever figure runs exist; returns the paths written."""
    fig_runs, lam, sig, arch = figure_runs(ctx.toy)
    runs = list({r.name: r for d in (fig_runs, lam, sig, arch) for r in d.values()}.values())
    logs = {r.name: read_log(ctx, r) for r in runs}
    made, rows = _sweeps(ctx, logs, fig_runs, lam, sig, arch)
    if logs["fig_ours"] is not None:
        m, row = _auto_stop(ctx, fig_runs["ours"], logs["fig_ours"])
        made.append(m)
        rows.append(row)
    panels = [(load_image(p).array, t) for p, t in montage_files(ctx, tasks)]
    if panels:
        montage([a for a, _ in panels], [t for _, t in panels], ctx.out / "fig_montage.png",
                cols=min(len(panels), 4))
        made.append(("fig_montage.png", "degraded inputs and outputs of every task run so far",
                     ctx.out / "fig_montage.png"))
    md = meta_lines(ctx, runs, "Figures") + missing_lines(ctx, runs, "figures") + [""]
    md += [f"Figure image: {figure_image_name(ctx, fig_runs['ours'])}.", ""]
    md += markdown(["figure", "what"], [(f"![{n}]({n})", w) for n, w, _ in made]) + [""]
    md += ["## Numbers", ""] + markdown(["figure", "curve", "run", "peak it. / stop it.",
                                         "peak PSNR / PSNR at stop", "last it.", "last PSNR"], [
        [r[0], r[1], r[2]] + [DASH if v is None else f"{v:.2f}" if isinstance(v, float) else v
                              for v in r[3:]] for r in rows]) + [""]
    md += experiments_lines(ctx, runs)
    atomic_write_text(ctx.out / "figures.csv", csv_text(
        ["figure", "curve", "run", "peak_or_stop_iteration", "psnr_at_it", "last_iteration",
         "last_psnr"], rows))
    atomic_write_text(ctx.out / "figures.md", "\n".join(md) + "\n")
    return [p for _, _, p in made]
