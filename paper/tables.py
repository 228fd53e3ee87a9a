"""The comparison tables: the one writer of method-by-image tables (``write``), used by
reproduce.py and baselines.py, and the table of each task.

A table is made of groups (a set of images scored at one setting); each group compares methods:
a run of this code (its summary.json), a classic baseline (baselines.py's CSV) or a published
number (paper/published.py).  A result that does not exist yet reads "—" with the command that
produces it, never a number; a value a method does not measure reads "n/a".
"""
from __future__ import annotations

import ast
import csv
import datetime
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import dataset
from paper.experiments import task_runs
from paper.published import DISPLAY, MEANS, PER_IMAGE, setting_key
from paper.runner import is_toy
from utils.classic import METHODS
from utils.atomic import atomic_write_bytes, atomic_write_text
from utils.outdir import read_record
from utils.tables import MISSING as DASH, csv_number, csv_text, fmt, key_value, markdown

ROOT = Path(__file__).resolve().parents[1]
MISSING = object()       # no record (as opposed to a record without this value: None)
LABELS = {"psnr": "PSNR", "ssim": "SSIM", "psnr_b": "PSNR-B", "y_psnr": "Y-PSNR",
          "stop_iteration": "stop it.", "iterations": "iterations", "seconds": "seconds",
          "psnr_peak": "peak PSNR", "best_iteration": "peak it.", "psnr_last": "PSNR at end"}
RUN_KEYS = ("stop_iteration", "iterations", "seconds")


def number(v):
    """A number from a summary value (a multi-restart stop iteration, ``410 / - / 380`` or
    from before 2026-12-07 ``[410, None, 380]``, is averaged over the members that stopped)."""
    if isinstance(v, str) and (v.startswith("[") or " / " in v):
        vals = [x for x in ast.literal_eval(v) if x is not None] if v.startswith("[") else \
            [number(x) for x in v.split(" / ") if x != "-"]
        return None if not vals or None in vals else float(np.mean(vals))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return None if isinstance(v, float) and math.isnan(v) else float(v)
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def show(v, metric):
    return DASH if v is MISSING else "n/a" if v is None else fmt(v, metric)


# ----------------------------------------------------------------------------- methods
@dataclass
class Method:
    """A column of a table: ``get(image, metric)`` gives a number, None (not measured) or
    MISSING (no record yet); ``source`` is an experiment name, baselines.py or published."""
    label: str
    source: str
    get: Callable
    metrics: tuple


def run_method(ctx, label, run, keys: dict) -> Method:
    """A run of this code: ``keys`` maps a table metric to its summary.json key."""
    def get(image, metric):
        rec = record(ctx, run, image)
        return MISSING if rec is None else number(rec.get(keys[metric]))
    return Method(label, run.name, get, tuple(keys))


def same(*metrics) -> dict:
    """Table metrics that are the summary.json keys of the same name."""
    return {m: m for m in metrics}


def member_method(ctx, label, run, m: int, keys: dict) -> Method:
    """Member ``m`` of a batched run (its summary.json's ``members`` list), reported alone."""
    def get(image, metric):
        rec = record(ctx, run, image)
        if rec is None:
            return MISSING
        each = rec.get("members") or []
        return number(each[m].get(keys[metric])) if m < len(each) else None
    return Method(label, run.name, get, tuple(keys))


def csv_method(label, rows: dict, group, setting, column) -> Method:
    """A classic baseline: ``rows`` from baselines.py's CSV, ``column(metric)`` its column."""
    def get(image, metric):
        row = rows.get((group, setting, image))
        return MISSING if row is None else number(row.get(column(metric)))
    return Method(label, "baselines.py", get, ("psnr", "ssim", "psnr_b", "y_psnr"))


def published_method(label, values: dict, display: dict) -> Method:
    """Published per-image PSNR, by the paper's image names."""
    def get(image, metric):
        v = values.get(display.get(image, image))
        return MISSING if v is None else float(v)
    return Method(label, "published", get, ("psnr",))


@dataclass
class Group:
    """One table block: a set of images, the methods compared on them, published means."""
    title: str
    images: list
    methods: list
    metrics: tuple
    published: list = field(default_factory=list)   # (label, metric, value)
    display: dict = field(default_factory=dict)     # image -> display name

    def cells(self, m, metric):
        return [m.get(i, metric) if metric in m.metrics else None for i in self.images]


def mean(vals):
    """(mean of the numbers, how many); the mean is MISSING when no image has a record and
    None when records exist without this value."""
    got = [v for v in vals if v is not MISSING and v is not None]
    if got:
        return float(np.mean(got)), len(got)
    return (MISSING if all(v is MISSING for v in vals) else None), 0


def group_markdown(g: Group) -> list[str]:
    """The means of a group, its published anchors, then one per-image table per metric."""
    md = [f"## {g.title}", ""]
    rows = []
    for m in g.methods:
        means = [mean(g.cells(m, k)) for k in g.metrics]
        n = max((c for _, c in means), default=0)
        rows.append([m.label, f"{n}/{len(g.images)}"] + [
            show(v, k) if k in m.metrics else "" for (v, _), k in zip(means, g.metrics)])
    md += markdown(["method", "images", *(f"mean {LABELS.get(k, k)}" for k in g.metrics)],
                   rows) + [""]
    if g.published:
        md += ["Published means (the papers):", ""]
        md += markdown(["published", "metric", "value"],
                       [(lab, LABELS.get(k, k), f"{v:.2f}") for lab, k, v in g.published]) + [""]
    for k in g.metrics:
        cols = [m for m in g.methods if k in m.metrics]
        if not cols:
            continue
        table = [[g.display.get(i, i)] + [show(m.get(i, k), k) for m in cols] for i in g.images]
        table.append(["mean"] + [show(mean(g.cells(m, k))[0], k) for m in cols])
        md += [f"### {LABELS.get(k, k)}", ""] + markdown(["image", *(m.label for m in cols)],
                                                         table) + [""]
    return md


def group_csv_rows(g: Group, metrics) -> list[list]:
    """Long format: group, method, experiment, image, metrics (empty where missing)."""
    out = []
    for m in g.methods:
        for i in g.images + ["mean"]:
            vals = {k: (mean(g.cells(m, k))[0] if i == "mean" else
                        m.get(i, k) if k in m.metrics else None) for k in g.metrics}
            out.append([g.title, m.label, m.source, g.display.get(i, i)] + [
                "" if vals.get(k) is MISSING else csv_number(vals.get(k)) for k in metrics])
    for lab, k, v in g.published:
        out.append([g.title, lab, "published", "mean"] + [csv_number(v) if kk == k else ""
                                                          for kk in metrics])
    return out


def render(header: list[str], groups: list[Group], footer=()) -> str:
    """The Markdown of a comparison table: header lines, the groups, footer lines."""
    md = list(header)
    for g in groups:
        md += group_markdown(g)
    return "\n".join(md + list(footer)) + "\n"


def write(out_dir, stem, header: list[str], groups: list[Group], footer=()):
    """The one table writer: ``OUT/<stem>.md`` (see ``render``) and ``OUT/<stem>.csv`` (long
    format); returns the two paths."""
    metrics = list(dict.fromkeys(k for g in groups for k in g.metrics))
    rows = [r for g in groups for r in group_csv_rows(g, metrics)]
    out_dir = Path(out_dir)
    return (atomic_write_text(out_dir / f"{stem}.csv",
                              csv_text(["group", "method", "experiment", "image", *metrics], rows)),
            atomic_write_text(out_dir / f"{stem}.md", render(header, groups, footer)))


# ----------------------------------------------------------------------------- run records
def record(ctx, run, image):
    """A run's summary.json for an image, or None: also for a fit that did not finish (an
    interrupted one is pending, as ``paper.budget.finished`` counts it) and for a record of the
    other scale (toy records never show in a paper-scale table, nor the reverse)."""
    rec = read_record(ctx.out / "runs" / run.name / image)
    ok = rec is not None and rec.get("status") == "ok"
    return rec if ok and is_toy(rec) == bool(ctx.toy) else None


def run_images(ctx, run):
    """The expected image names of a run: the selection, or what its folder holds."""
    paths = ctx.images(run.group)
    if paths is not None:
        return [p.stem for p in paths]
    d = ctx.out / "runs" / run.name
    return sorted(p.parent.name for p in d.glob("*/summary.json")) if d.is_dir() else []


def read_log(ctx, run, image=None):
    """log.csv of a run as {column: array} (member 0), or None."""
    if image is None:
        fi = ctx.images(None)
        image = fi[0].stem if fi else (run_images(ctx, run) or [None])[0]
    f = ctx.out / "runs" / run.name / str(image) / "log.csv"
    if image is None or not f.exists() or record(ctx, run, str(image)) is None:
        return None
    with f.open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("member", "0") in ("", "0")]
    if not rows:
        return None
    return {k: np.array([float(r[k]) if r[k] not in ("", "nan", "None") else math.nan
                         for r in rows]) for k in rows[0] if k != "member"}


def baseline_rows(ctx, task):
    """Rows of baselines_<task>.csv (OUT first, then results/paper) by (group, setting,
    image)."""
    for d in (ctx.out, ROOT / "results" / "paper"):
        f = d / f"baselines_{task}.csv"
        if f.exists():
            with f.open(newline="") as fh:
                return {(r.get("group"), r.get("setting"), r["image"]): r
                        for r in csv.DictReader(fh) if r["image"] != "mean"}
    return {}


def numeric_mode(rec: dict) -> str:
    """How a record's fit computed: fp32 (TF32 convolutions on CUDA unless strict), or bf16
    autocast; '+ compile' when compiled."""
    h = rec.get("hyperparameters", {})
    cuda = str(rec.get("device", "cpu")) != "cpu"
    base = ("bf16 autocast" if h.get("amp") == "bf16" else
            "fp32 (TF32 convolutions)" if cuda and h.get("tf32", True) else "fp32")
    return base + (" + compile" if h.get("compile") else "")


def meta_lines(ctx, runs, title):
    """Header of a table: device, torch, seeds, command, scale, date."""
    recs = [r for run in runs for i in run_images(ctx, run) if (r := record(ctx, run, i))]
    devices = sorted({str(r.get("device")) for r in recs}) or ["no run yet"]
    torches = sorted({str(r.get("torch")) for r in recs}) or [torch.__version__ + " (here)"]
    seeds = sorted({r.get("hyperparameters", {}).get("seed") for r in recs} - {None})
    cudas = sorted({str(r["cuda"]) for r in recs if r.get("cuda")})
    modes = sorted({numeric_mode(r) for r in recs}) or [DASH]
    rows = [("device", ", ".join(devices)), ("torch", ", ".join(torches)
                                             + (f" (CUDA {', '.join(cudas)})" if cudas else "")),
            ("numeric mode", ", ".join(modes)),
            ("seeds", ", ".join(map(str, seeds)) or ", ".join(map(str, ctx.seeds))),
            ("command", f"`{ctx.command}`"),
            ("images", images_line(ctx, recs)),
            ("scale", "TOY (tiny nets, 64×64 crops, 6 iterations): not the paper's numbers"
             if ctx.toy else "full (--full --crop32)"),
            ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))]
    return [f"# {title}", ""] + key_value(rows) + [""]


def images_line(ctx, recs) -> str:
    """What the runs were fitted on: the paper's images where this machine has them, or where
    the records name them (tables rebuilt from an unpacked lease, with no data folder here)."""
    chosen = f" (--images {' '.join(ctx.args.images)})" if ctx.args.images else ""
    if ctx.data_dir:
        return "the paper's images" + chosen
    paper = {Path(r["path"]).name for r in dataset.manifest()}
    named = {Path(str((r.get("source") or {}).get("path", ""))).name for r in recs}
    if named & paper:
        return "the paper's images, as the records name them (no data folder here)" + chosen
    return "NO DATA FOLDER: each script's embedded skimage image, not the paper's sets"


def missing_lines(ctx, runs, part):
    out = []
    for run in runs:
        if ctx.images(run.group) == []:   # not selected (--images)
            continue
        imgs = run_images(ctx, run)
        miss = [i for i in imgs if record(ctx, run, i) is None]
        if miss or not imgs:
            out.append(f"- `{run.name}`: {len(miss)}/{len(imgs)} images not run yet (\"{DASH}\"); "
                       f"`{ctx.rerun_hint(part)}` produces them.")
    return out


def experiments_lines(ctx, runs):
    return ["## Experiments", ""] + markdown(["experiment", "setting", "task script command"], [
        (r.name, r.about, f"`{r.script}.py {shlex.join(ctx.run_argv(r))}`") for r in runs]) + [""]


def toy_note(ctx, groups) -> list[str]:
    """A toy table's warning where it shows baselines.py rows: those are of the full images."""
    baselines = any(m.source == "baselines.py" for g in groups for m in g.methods)
    return ["TOY: the baselines.py rows are full-image numbers, the runs 64×64 crops."] \
        if ctx.toy and baselines else []


def write_tables(ctx, part, title, runs, groups, notes=()):
    header = meta_lines(ctx, runs, title) + [f"- {n}" for n in [*notes, *toy_note(ctx, groups)]]
    header += missing_lines(ctx, runs, part) + [""]
    return write(ctx.out, part, header, groups, experiments_lines(ctx, runs))


def baseline_methods(ctx, task, group, setting):
    """The task's classic baselines measured by baselines.py, if its CSV exists."""
    rows = baseline_rows(ctx, task.name)
    if not rows:
        return []
    return [csv_method(f"{METHODS[m][1]} (baselines.py)", rows, group, setting,
                       lambda k, m=m: f"{m}_{k}") for m in task.baselines]


# ----------------------------------------------------------------------------- the tables
def denoising_table(ctx, task):
    runs = task_runs(task, ctx.seeds)
    by = {r.name: r for r in runs}
    images = run_images(ctx, runs[0])
    k = same("psnr", "ssim", *RUN_KEYS)
    course = ("psnr_peak", "best_iteration", "psnr_last")
    methods = [run_method(ctx, "DIP 1800 it.", by["dip_1800"], {**k, **same(*course[:2])}),
               run_method(ctx, "DIP 1800 it., EMA", by["dip_1800"],
                          {"psnr": "psnr_ema", "ssim": "ssim_ema"})]
    # the batched run: each restart alone (at its stop, its moving average, its course to the
    # end: the fit runs on after the stop), then their average
    two = by["ours_2restarts"]
    for m in range(2):
        methods += [member_method(ctx, f"ours, restart {m} of 2", two, m,
                                  same("psnr", "ssim", "stop_iteration", *course)),
                    member_method(ctx, f"ours, restart {m} of 2, EMA", two, m,
                                  {"psnr": "psnr_ema", "ssim": "ssim_ema"})]
    methods += [run_method(ctx, "ours, 2 restarts averaged", two, {**k, **same("psnr_last")})]
    methods += [run_method(ctx, f"ours (seed {s})", by[f"ours_seed{s}"], k) for s in ctx.seeds]
    methods += [run_method(ctx, "ours, Gaussian upsampling λ 1.8", by["ours_gaussian"], k),
                run_method(ctx, "ours, variance stop", by["ours_variance"], k),
                run_method(ctx, "ours, validation stop", by["ours_validation"], k)]
    group, setting = runs[0].group, runs[0].setting
    methods += baseline_methods(ctx, task, group, setting)
    g = Group("denoising, σ = 25", images, methods, ("psnr", "ssim", *RUN_KEYS, *course),
              MEANS["denoising"][(group, setting)])
    def spread(pick, what):
        got = [mean(g.cells(m, "psnr")) for m in methods if pick(m.label)]
        full = [v for v, n in got if v is not MISSING and n == len(images)]
        return (f"{np.mean(full):.2f} ± {np.std(full, ddof=1):.2f} (mean ± std over {len(full)} "
                f"{what} of the per-{what[:-1]} mean)" if len(full) > 1 else
                f"{DASH} (needs two {what} with every image)")
    notes = [f"Seed spread of ours (seeds {', '.join(map(str, ctx.seeds))}; the seed sets the "
             "noise realisation, the init and the code): mean PSNR "
             + spread(lambda lab: lab.startswith("ours ("), "seeds"),
             "Restart spread (the 2-restart run: the same noisy image, two inits): mean PSNR "
             + spread(lambda lab: lab.startswith("ours, restart") and "EMA" not in lab,
                      "restarts"),
             "PSNR/SSIM on RGB in [0, 1] against the clean crop; 'stop it.' is the iteration "
             "the stop rule chose (n/a: no stop), 'iterations' those run, 'seconds' the fit time.",
             "The 2-restart run fits on after its stops (--run-on) to 10 000 iterations: each "
             "restart's PSNR at its stop, its moving average, the oracle's peak (the best "
             "logged PSNR; 'peak it.' its iteration) and its PSNR at the end; the average is "
             "of the outputs at the stops. Restart k is seeded seed + 1000 k (same noisy "
             "image).",
             "Measured baselines: baselines_denoising.csv (noise seed 0: the same noisy images "
             "as the seed-0 runs here)."]
    return write_tables(ctx, "denoising", "Denoising, σ = 25: DIP (Ulyanov et al. 2018) vs "
                        "spectral-bias control (Shi et al. 2022)", runs, [g], notes)


def inpainting_table(ctx, task):
    runs = task_runs(task, ctx.seeds)
    run = runs[0]
    images = run_images(ctx, run)
    display = DISPLAY["inpainting"]
    methods = [run_method(ctx, "ours (λ 1.6, ratio stop)", run,
                          {m: m for m in ("psnr", "ssim", "stop_iteration", "seconds")}),
               run_method(ctx, "mean fill", run, {"psnr": "psnr_in", "ssim": "ssim_in"})]
    methods += [m for m in baseline_methods(ctx, task, run.group, run.setting)
                if not m.label.startswith("mean fill")]
    methods += [published_method(label, values, display)
                for label, values in PER_IMAGE["inpainting"].items()]
    g = Group("inpainting, 50 % Bernoulli", images, methods,
              ("psnr", "ssim", "stop_iteration", "seconds"),
              MEANS["inpainting"][(run.group, run.setting)],
              {i: display.get(i, i) for i in images})
    notes = ["Images in the column order of DIP's Table 1; file names mapped to its names "
             + ", ".join(f"{a} → {b}" for a, b in display.items()) + ".",
             "PSNR over the whole image; the published means cover all 11 images."]
    return write_tables(ctx, "inpainting", "Inpainting, 50 % Bernoulli mask (DIP Table 1)",
                        runs, [g], notes)


def sr_table(ctx, task):
    runs = task_runs(task, ctx.seeds)
    by = {r.name: r for r in runs}
    groups = []
    for group, settings in task.protocol:
        f, s = settings["factor"], group.split("/")[-1]
        dip, ours = by[f"sr_x{f}_{s}_dip"], by[f"sr_x{f}_{s}_ours"]
        keys = {"y_psnr": "y_psnr", "seconds": "seconds"}
        groups.append(Group(f"{s}, ×{f}", run_images(ctx, dip), [
            run_method(ctx, "bicubic", dip, {"y_psnr": "y_psnr_bicubic"}),
            run_method(ctx, "DIP", dip, keys), run_method(ctx, "ours (λ 1.4)", ours, keys)],
            ("y_psnr", "seconds"), MEANS["super_resolution"].get((group, setting_key(settings)),
                                                                 [])))
    notes = ["Y-PSNR: BT.601 Y channel, 4-pixel border removed (DIP's evaluation); bicubic = "
             "Pillow bicubic upscaling of the same LR image.",
             "ours = DIP's recipe with every conv Lipschitz-bounded (λ 1.4); nothing else "
             "changed. No published ×8 anchors are quoted."]
    return write_tables(ctx, "super_resolution", "Super-resolution ×4 / ×8, Set5 and Set14",
                        runs, groups, notes)


def default_table(ctx, task):
    """Any task: per protocol entry, the degraded input, the run, the classic baselines and
    the published means."""
    runs = task_runs(task, ctx.seeds)
    groups = []
    for run in runs:
        m = task.metrics
        methods = [run_method(ctx, "degraded input", run, {k: k + "_in" for k in m}),
                   run_method(ctx, "ours", run, {**{k: k for k in m},
                                                 **{k: k for k in ("stop_iteration", "seconds")}})]
        methods += baseline_methods(ctx, task, run.group, run.setting)
        title = run.group.split("/")[-1] + (f", {run.setting}" if run.setting else "")
        groups.append(Group(title, run_images(ctx, run), methods, (*m, "stop_iteration",
                                                                    "seconds"),
                            MEANS.get(task.name, {}).get((run.group, run.setting), [])))
    return write_tables(ctx, task.name, task.about.rstrip("."), runs, groups)


def enhancement_table(ctx, task):
    runs = task_runs(task, ctx.seeds)
    run, md = runs[0], meta_lines(ctx, runs, "Detail enhancement (Shi et al. Sec. 5.5)")
    rows = []
    for i in run_images(ctx, run):
        rec, src = record(ctx, run, i), ctx.out / "runs" / run.name / i / "side_by_side.png"
        if rec is None or not src.exists():
            rows.append([i, DASH, DASH, DASH])
            continue
        dst = atomic_write_bytes(ctx.out / f"enhancement_{i}.png", src.read_bytes())
        rows.append([i, rec.get("iterations"), rec.get("seconds"), f"![{i}]({dst.name})"])
    md += missing_lines(ctx, runs, "enhancement") + [""]
    md += markdown(["image", "iterations", "seconds", "input, base, enhanced"], rows)
    md += [""] + experiments_lines(ctx, runs)
    header = ["image", "iterations", "seconds", "side_by_side"]
    return (atomic_write_text(ctx.out / "enhancement.csv", csv_text(header, rows)),
            atomic_write_text(ctx.out / "enhancement.md", "\n".join(md) + "\n"))


TABLES = {"denoising": denoising_table, "inpainting": inpainting_table,
          "super_resolution": sr_table, "enhancement": enhancement_table}


def make_table(ctx, task):
    return TABLES.get(task.name, default_table)(ctx, task)
