"""Reproduce the experiments of Deep Image Prior (Ulyanov et al., CVPR 2018) and of the
spectral-bias paper (Shi et al., IJCV 2022) with this code, then write tables and figures.

    python reproduce.py                          # every experiment, then the tables and figures
    python reproduce.py --only denoising         # one task (repeatable); or --only figures
    python reproduce.py --images 2               # the first 2 images of every set
    python reproduce.py --images kodim01 house   # these images only (file stems)
    python reproduce.py --dry-run                # the plan: every run, its command, GPU minutes
    python reproduce.py --no-run                 # tables and figures from the runs that exist
    python reproduce.py --toy --out /tmp/toy     # the same code path at toy scale (CPU tests)

One experiment is one task script called in-process (``main(TASK, argv)``) with one stated
setting and one output folder ``OUT/runs/<experiment>/<image>/``; every run uses the authors'
centre crop (``--crop32``) and the paper's configuration (``--full``) on any device.  Runs are
resumable: the framework skips an image whose summary.json holds the same hyperparameters.
Tables (``OUT/<task>.md`` and ``.csv``) and figures (``OUT/fig_*.png``, indexed in
``OUT/figures.md``) are rebuilt from the runs' summary.json and log.csv files; a result that
does not exist yet reads "—" with the command that produces it.  No hyperparameter is tuned on
the ground truth: each method has one setting for all images.

Note: the task scripts' config blocks are extended with the hourglass width options
(``channels_down``, ``channels_up``, ``channels_skip``, ``scales``) at the networks' defaults,
so that ``--toy`` can shrink the hourglass in every task; the full-scale networks are unchanged.
"""
from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import datetime
import importlib
import io
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import dataset
from baselines import CSC_INPAINT, DIP_INPAINT, INPAINT_NAMES
from utils.imageio import atomic_write_bytes, atomic_write_text
from utils.task import build_parser as task_parser, main as task_main, resolve_config

ROOT = Path(__file__).resolve().parent
TASKS = ("denoising", "inpainting", "super_resolution", "deblocking", "enhancement")
MS_PER_IT = 4.0          # GPU cost assumed by --dry-run (decoder, 512×512, one member)
FIG_IMAGE = "image_F16_512rgb"
MISSING = object()       # no run record (as opposed to a record without this value)
DASH = "—"
# toy scale: the stop rules get the smallest window (ratio 1, variance 2) and a huge ε so that
# they fire (and their code path runs) within 6 iterations
TOY = ["--quick", "--crop", "64", "--iters", "6", "--log-every", "2", "--stop-eps", "1e9"]
TOY_WIDTH = {"hourglass": ["--channels-down", "8", "--channels-up", "8", "--scales", "3"],
             "decoder": ["--channels", "8"], "convnet": ["--channels", "8"]}


# ----------------------------------------------------------------------------- experiments
@dataclass(frozen=True)
class Run:
    """One experiment: a task script, a setting on top of its defaults, a set of images."""
    name: str               # folder under OUT/runs/
    script: str             # task module (denoising, inpainting, ...)
    args: tuple             # hyperparameters on top of the script's config block
    group: str | None       # dataset group of the images; None = the one figure image
    about: str              # the setting, in words


DIP_DENOISE = ("--net", "hourglass", "--input", "noise", "--input-var", "0.1", "--lambda", "0",
               "--norm", "batch", "--lr", "0.01", "--reg-noise-std", "0.0333")
NO_STOP = ("--stop", "none", "--log-every", "10")
SIGMA_LISTS = {"all 0.1": ("0.1",) * 5, "paper": ("0.1", "0.1", "0.1", "0.5", "0.5"),
               "all 0.5": ("0.5",) * 5, "all 1.0": ("1.0",) * 5}


def denoising_runs(seeds):
    """Denoising σ = 25 on the 9 images: DIP's setting, ours per seed, and three variants."""
    runs = [Run("dip_1800", "denoising", DIP_DENOISE + ("--iters", "1800", "--stop", "none",
                                                         "--log-every", "10"), "denoising",
                "DIP's setting: hourglass, noise input (var 0.1), batch norm, no control, lr 0.01, "
                "1800 it., input noise 1/30")]
    runs += [Run(f"ours_seed{s}", "denoising", ("--seed", str(s)), "denoising",
                 f"ours: the script defaults (decoder, λ 1.4, bilinear, ratio stop), seed {s}")
             for s in seeds]
    runs += [Run("ours_gaussian", "denoising", ("--upsample", "gaussian", "--lambda", "1.8"),
                 "denoising", "ours with Gaussian upsampling (σ 0.1,0.1,0.1,0.5,0.5), λ 1.8"),
             Run("ours_variance", "denoising", ("--stop", "variance"), "denoising",
                 "ours with the variance stop (ES-WMV) instead of the ratio stop"),
             Run("ours_2restarts", "denoising", ("--restarts", "2"), "denoising",
                 "ours, two independent fits averaged")]
    return runs


def inpainting_runs():
    return [Run("inpainting", "inpainting", (), "inpainting/bernoulli",
                "the script defaults: decoder, λ 1.6, ratio stop, 50 % Bernoulli mask (seed 100)")]


def sr_runs():
    """×4 and ×8 on Set5 and Set14: DIP's recipe, with and without the Lipschitz bound."""
    out = []
    for f in (4, 8):
        for s in ("Set5", "Set14"):
            g = f"super_resolution/{s}"
            out += [Run(f"sr_x{f}_{s}_dip", "super_resolution", ("--factor", str(f)), g,
                        f"DIP's recipe, ×{f}: hourglass, noise input, lr 0.01, "
                        f"{2000 if f == 4 else 4000} it., no control"),
                    Run(f"sr_x{f}_{s}_ours", "super_resolution", ("--factor", str(f), "--lambda",
                                                                  "1.4"), g,
                        f"DIP's recipe, ×{f}, with every conv Lipschitz-bounded at λ 1.4")]
    return out


def deblocking_runs():
    """classic5 at q 10/20/30 and LIVE1 at q 10, the script defaults."""
    return [Run(f"deblock_{s}_q{q}", "deblocking", ("--quality", str(q)), f"deblocking/{s}",
                f"the script defaults (decoder, λ 1.4, ratio stop), JPEG q {q}"
                + (", Y channel" if s == "LIVE1" else ""))
            for s, q in (("classic5", 10), ("classic5", 20), ("classic5", 30), ("LIVE1", 10))]


def enhancement_runs():
    return [Run("enhancement", "enhancement", (), "enhancement",
                "the script defaults: decoder, λ 1, 100 it.")]


def figure_runs(toy):
    """The runs behind the figures (all on the figure image, 10 000 it., no stop); in toy mode
    each sweep keeps two values."""
    d = "denoising"
    fig = dict(
        dip=Run("fig_dip", d, DIP_DENOISE + ("--iters", "10000") + NO_STOP, None,
                "DIP: hourglass, no control, 10 000 it."),
        ours=Run("fig_ours", d, ("--stop", "none"), None,
                 "ours: decoder, λ 1.4, 10 000 it., no stop, measured every iteration"))
    lam = {"1": Run("fig_lambda1", d, ("--lambda", "1") + NO_STOP, None, "decoder, λ 1"),
           "1.4": fig["ours"],
           "2": Run("fig_lambda2", d, ("--lambda", "2") + NO_STOP, None, "decoder, λ 2"),
           "none": Run("fig_lambda0", d, ("--lambda", "0") + NO_STOP, None, "decoder, no control")}
    sig = {k: Run("fig_sigma_" + k.replace(" ", "").replace(".", ""), d,
                  ("--upsample", "gaussian", "--lambda", "1.8", "--gaussian-sigmas", *v) + NO_STOP,
                  None, f"decoder, Gaussian upsampling σ ({', '.join(v)}), λ 1.8")
           for k, v in SIGMA_LISTS.items()}
    arch = {"hourglass": Run("fig_arch_hourglass", d, ("--net", "hourglass", "--lambda", "0")
                             + NO_STOP, None, "hourglass, no control, the denoising setting"),
            "decoder": lam["none"],
            "convnet": Run("fig_arch_convnet", d, ("--net", "convnet", "--lambda", "0") + NO_STOP,
                           None, "convnet (no upsampling, full-resolution code), no control")}
    if toy:
        lam = {k: lam[k] for k in ("1.4", "none")}
        sig = {k: sig[k] for k in ("paper", "all 0.5")}
        arch = {k: arch[k] for k in ("decoder", "convnet")}
    return fig, lam, sig, arch


def all_runs(only, seeds, toy):
    """The runs of the selected parts, in order, without duplicates."""
    parts = {"denoising": lambda: denoising_runs(seeds), "inpainting": inpainting_runs,
             "super_resolution": sr_runs, "deblocking": deblocking_runs,
             "enhancement": enhancement_runs}
    runs = [r for t in TASKS if t in only for r in parts[t]()]
    if "figures" in only:
        fig, lam, sig, arch = figure_runs(toy)
        runs += [*fig.values(), *lam.values(), *sig.values(), *arch.values()]
    return list({r.name: r for r in runs}.values())


# ----------------------------------------------------------------------------- running
def load_task(script):
    """The script's Task, its config block extended with the hourglass width options."""
    task = importlib.import_module(script).TASK
    from models.nets import DEFAULTS
    extra = {k: DEFAULTS["hourglass"][k] for k in ("channels_down", "channels_up",
                                                    "channels_skip")}
    extra["scales"] = DEFAULTS["common"]["scales"]
    return dataclasses.replace(task, config={**task.config, **{k: v for k, v in extra.items()
                                                               if k not in task.config}})


class Context:
    """Options of one invocation: output folder, images, scale, and the command line."""

    def __init__(self, args, argv):
        self.out, self.toy, self.seeds = Path(args.out), args.toy, args.seeds
        self.data_dir = dataset.resolve_data_dir(args.data_dir)
        if self.data_dir is not None and not self.data_dir.is_dir():
            self.data_dir = None
        imgs = args.images or (["1"] if args.toy else None)
        self.limit = int(imgs[0]) if imgs and len(imgs) == 1 and imgs[0].isdigit() else None
        self.names = None if imgs is None or self.limit is not None else {n.lower() for n in imgs}
        self.figure_name = args.figure_image
        self.args, self.argv = args, argv
        env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("PYTHONPATH", "DIP_DATA_DIR")
                       if os.environ.get(k))
        self.command = f"{env + ' ' if env else ''}python reproduce.py {shlex.join(argv)}".strip()

    def images(self, group):
        """Image paths of a group (first N / named), or None when there is no data folder (the
        scripts then use their embedded skimage image)."""
        if self.data_dir is None:
            return None
        if group is None:
            return [self.figure_image()] if self.figure_image() else None
        paths = dataset.task_images(self.data_dir, group)
        if group == "inpainting/bernoulli":   # the column order of DIP's Table 1
            order = list(INPAINT_NAMES)
            paths.sort(key=lambda p: order.index(p.stem) if p.stem in order else len(order))
        if self.names is not None:
            paths = [p for p in paths if p.stem.lower() in self.names]
        return paths[:self.limit] if self.limit else paths

    def figure_image(self):
        paths = dataset.task_images(self.data_dir, "denoising") if self.data_dir else []
        named = [p for p in paths if p.stem.lower() == self.figure_name.lower()]
        return (named or paths or [None])[0]

    def run_argv(self, run):
        """The task script's command line for a run (without the images)."""
        argv = ["--crop32", "--quiet", "--out", str(self.out / "runs" / run.name)]
        argv += ["--seed", str(self.seeds[0])] if "--seed" not in run.args else []
        argv += list(run.args)
        if self.toy:
            net = run.args[run.args.index("--net") + 1] if "--net" in run.args else \
                importlib.import_module(run.script).config["net"]
            argv += TOY + TOY_WIDTH[net]
            argv += ["--stop-window", "2" if "variance" in run.args else "1"]
        else:
            argv.insert(0, "--full")
        return argv

    def rerun_hint(self, part):
        """The command that produces the missing results of a part."""
        a = self.args
        opts = [f"--only {part}"]
        opts += [f"--out {shlex.quote(str(a.out))}"] if a.out != "results/paper" else []
        opts += [f"--images {' '.join(a.images)}"] if a.images else []
        opts += ["--seeds " + " ".join(map(str, a.seeds))] if a.seeds != [0, 1] else []
        opts += ["--toy"] if a.toy else []
        return f"python reproduce.py {' '.join(opts)}"


def execute(run, ctx):
    """Run one experiment in-process; returns the script's exit status."""
    paths = ctx.images(run.group)
    if paths == []:
        print(f"[{run.name}] no images selected, skipped")
        return 0
    task = load_task(run.script)
    print(f"[{run.name}] {run.script}.py {shlex.join(ctx.run_argv(run))}")
    with tempfile.TemporaryDirectory(prefix="reproduce-") as tmp:
        image = []
        if paths is not None:   # a folder of links to the selected images (names unchanged)
            for p in paths:
                try:
                    os.symlink(p.resolve(), Path(tmp) / p.name)
                except OSError:
                    shutil.copy(p, Path(tmp) / p.name)
            image = ["--image", tmp]
        status = task_main(task, ctx.run_argv(run) + image)
    if status:
        print(f"[{run.name}] exit status {status}", file=sys.stderr)
    return status


def plan(runs, ctx):
    """Print every run, its command and an upper bound of its GPU time (no early stop)."""
    total = 0.0
    for run in runs:
        task = load_task(run.script)
        a = task_parser(task).parse_args(ctx.run_argv(run))
        cfg, _ = resolve_config(task, a)
        if task.validate:
            task.validate(cfg, a)
        paths = ctx.images(run.group)
        n = 1 if paths is None else len(paths)
        its = cfg["iters"] * n * max(cfg.get("restarts", 1), 1)
        total += its * MS_PER_IT / 6e4
        print(f"{run.name:22s} {n:3d} images × {cfg['iters']:5d} it. (×{cfg.get('restarts', 1)}) "
              f"≤ {its * MS_PER_IT / 6e4:5.1f} GPU-min   {run.script}.py "
              f"{shlex.join(ctx.run_argv(run))}")
    print(f"total ≤ {total:.0f} GPU-minutes at {MS_PER_IT} ms/iteration (ratio/variance stops "
          "end most fits earlier; convnet and batched restarts cost more per iteration)")


# ----------------------------------------------------------------------------- results
def record(ctx, run, image):
    """A run's summary.json for an image, or None."""
    f = ctx.out / "runs" / run.name / image / "summary.json"
    try:
        return json.loads(f.read_text())
    except (OSError, ValueError):
        return None


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
    if image is None or not f.exists():
        return None
    rows = [r for r in csv.DictReader(f.open()) if r.get("member", "0") in ("", "0")]
    if not rows:
        return None
    return {k: np.array([float(r[k]) if r[k] not in ("", "nan", "None") else math.nan
                         for r in rows]) for k in rows[0] if k != "member"}


def baseline_rows(ctx, task):
    """Rows of baselines_<task>.csv (OUT first, then results/paper), by image name."""
    for d in (ctx.out, ROOT / "results" / "paper"):
        f = d / f"baselines_{task}.csv"
        if f.exists():
            return {r["image"]: r for r in csv.DictReader(f.open()) if r["image"] != "mean"}
    return {}


def _num(v):
    """A number from a summary value (the list of a multi-restart stop iteration is averaged)."""
    if isinstance(v, str) and v.startswith("["):
        vals = [x for x in ast.literal_eval(v) if x is not None]
        return float(np.mean(vals)) if vals else None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return None if isinstance(v, float) and math.isnan(v) else float(v)
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


@dataclass
class Method:
    """A column of a table: a run's summary keys, a baseline CSV's columns, or published
    per-image values ({display name: value})."""
    label: str
    run: Run | None = None
    keys: dict = dataclasses.field(default_factory=dict)    # metric -> summary key / csv column
    csv: dict | None = None
    published: dict | None = None

    def value(self, ctx, image, display, metric):
        if metric not in self.keys and not (self.published and metric == "psnr"):
            return None
        if self.run is not None:
            rec = record(ctx, self.run, image)
            return MISSING if rec is None else _num(rec.get(self.keys[metric]))
        if self.csv is not None:
            row = self.csv.get(display)
            return MISSING if row is None else _num(row.get(self.keys[metric]))
        v = self.published.get(display)
        return MISSING if v is None else float(v)


RUN_KEYS = {"psnr": "psnr", "ssim": "ssim", "stop_iteration": "stop_iteration",
            "iterations": "iterations", "seconds": "seconds"}
LABELS = {"psnr": "PSNR", "ssim": "SSIM", "psnr_b": "PSNR-B", "y_psnr": "Y-PSNR",
          "stop_iteration": "stop it.", "iterations": "iterations", "seconds": "seconds"}


@dataclass
class Group:
    """One table block: a set of images, the methods compared on them, published means."""
    title: str
    images: list
    methods: list
    metrics: tuple
    published: list = dataclasses.field(default_factory=list)   # (label, metric, value)
    display: dict = dataclasses.field(default_factory=dict)     # image -> display name


def _fmt(v, metric):
    if v is MISSING:
        return DASH
    if v is None:
        return "n/a"
    if metric in ("stop_iteration", "iterations"):
        return f"{v:.0f}"
    return f"{v:.4f}" if metric == "ssim" else f"{v:.2f}" if metric != "seconds" else f"{v:.1f}"


def _md(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(map(str, r)) + " |" for r in rows]


def _cells(ctx, g, m, metric):
    return [m.value(ctx, i, g.display.get(i, i), metric) for i in g.images]


def _mean(vals):
    """(mean of the numbers, how many); the mean is MISSING when no image has a record and
    None when records exist without this value."""
    got = [v for v in vals if v is not MISSING and v is not None]
    if got:
        return float(np.mean(got)), len(got)
    return (MISSING if all(v is MISSING for v in vals) else None), 0


def group_markdown(ctx, g):
    """The means table of a group, its published anchors, then one per-image table per metric."""
    md = [f"## {g.title}", ""]
    rows = []
    for m in g.methods:
        means = [_mean(_cells(ctx, g, m, k)) for k in g.metrics]
        n = max(c for _, c in means)
        rows.append([m.label, f"{n}/{len(g.images)}"] + [
            _fmt(v, k) if k in m.keys or (m.published and k == "psnr") else ""
            for (v, _), k in zip(means, g.metrics)])
    md += _md(["method", "images", *(f"mean {LABELS[k]}" for k in g.metrics)], rows) + [""]
    if g.published:
        md += ["Published means (the papers):", ""]
        md += _md(["published", "metric", "value"],
                  [(lab, LABELS[k], f"{v:.2f}") for lab, k, v in g.published]) + [""]
    for k in g.metrics:
        cols = [m for m in g.methods if k in m.keys or (m.published and k == "psnr")]
        if not cols:
            continue
        table = [[g.display.get(i, i)] + [_fmt(m.value(ctx, i, g.display.get(i, i), k), k)
                                          for m in cols] for i in g.images]
        table.append(["mean"] + [_fmt(_mean(_cells(ctx, g, m, k))[0], k) for m in cols])
        md += [f"### {LABELS[k]}", ""] + _md(["image", *(m.label for m in cols)], table) + [""]
    return md


def group_csv_rows(ctx, g):
    """Long format: group, method, experiment, image, metrics (empty where missing)."""
    out = []
    for m in g.methods:
        src = m.run.name if m.run else "baselines.py" if m.csv is not None else "published"
        for i in g.images + ["mean"]:
            vals = [(_mean(_cells(ctx, g, m, k))[0] if i == "mean" else
                     m.value(ctx, i, g.display.get(i, i), k)) for k in g.metrics]
            out.append([g.title, m.label, src, g.display.get(i, i)] + [
                "" if v is MISSING or v is None else f"{v:.4f}" for v in vals])
    for lab, k, v in g.published:
        out.append([g.title, lab, "published", "mean"] + [f"{v:.4f}" if kk == k else ""
                                                          for kk in g.metrics])
    return out


def meta_lines(ctx, runs, title):
    """Header of a table: device, torch, seeds, command, scale, date."""
    recs = [r for run in runs for i in run_images(ctx, run) if (r := record(ctx, run, i))]
    devices = sorted({str(r.get("device")) for r in recs}) or ["no run yet"]
    torches = sorted({str(r.get("torch")) for r in recs}) or [torch.__version__ + " (here)"]
    seeds = sorted({r.get("hyperparameters", {}).get("seed") for r in recs} - {None})
    rows = [("device", ", ".join(devices)), ("torch", ", ".join(torches)),
            ("seeds", ", ".join(map(str, seeds)) or ", ".join(map(str, ctx.seeds))),
            ("command", f"`{ctx.command}`"),
            ("images", "the paper's images" + (f" (--images {' '.join(ctx.args.images)})"
                                              if ctx.args.images else "")
             if ctx.data_dir else "NO DATA FOLDER: each script's embedded skimage image, not "
             "the paper's sets"),
            ("scale", "TOY (tiny nets, 64×64 crops, 6 iterations): not the paper's numbers"
             if ctx.toy else "full (--full --crop32)"),
            ("date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))]
    return [f"# {title}", ""] + _md(["", ""], rows) + [""]


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
    return ["## Experiments", ""] + _md(["experiment", "setting", "task script command"], [
        (r.name, r.about, f"`{r.script}.py {shlex.join(ctx.run_argv(r))}`") for r in runs]) + [""]


def write_tables(ctx, part, title, runs, groups, notes=()):
    """OUT/<part>.md and .csv from the groups; returns the two paths."""
    metrics = list(dict.fromkeys(k for g in groups for k in g.metrics))
    md = meta_lines(ctx, runs, title) + [f"- {n}" for n in notes]
    md += missing_lines(ctx, runs, part) + [""]
    rows = []
    for g in groups:
        md += group_markdown(ctx, g)
        for r in group_csv_rows(ctx, g):
            vals = dict(zip(g.metrics, r[4:]))
            rows.append(r[:4] + [vals.get(k, "") for k in metrics])
    md += experiments_lines(ctx, runs)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(
        [["group", "method", "experiment", "image", *metrics], *rows])
    return (atomic_write_text(ctx.out / f"{part}.csv", buf.getvalue()),
            atomic_write_text(ctx.out / f"{part}.md", "\n".join(md) + "\n"))


# ----------------------------------------------------------------------------- the tables
def denoising_table(ctx):
    runs = denoising_runs(ctx.seeds)
    by = {r.name: r for r in runs}
    images = run_images(ctx, runs[0])
    k = dict(RUN_KEYS)
    methods = [Method("DIP 1800 it.", by["dip_1800"], k),
               Method("DIP 1800 it., EMA", by["dip_1800"], {"psnr": "psnr_ema",
                                                            "ssim": "ssim_ema"})]
    methods += [Method(f"ours (seed {s})", by[f"ours_seed{s}"], k) for s in ctx.seeds]
    methods += [Method("ours, Gaussian upsampling λ 1.8", by["ours_gaussian"], k),
                Method("ours, variance stop", by["ours_variance"], k),
                Method("ours, 2 restarts averaged", by["ours_2restarts"], k)]
    base = baseline_rows(ctx, "denoising")
    if base:
        methods += [Method(f"{lab} (baselines.py)", csv=base, keys={"psnr": f"{c}_psnr",
                                                                    "ssim": f"{c}_ssim"})
                    for c, lab in (("noisy", "noisy input"), ("cbm3d", "CBM3D"),
                                   ("nlm", "NLM"), ("tv", "TV"))]
    published = [("DIP, 1800 it.", "psnr", 29.22), ("DIP, EMA", "psnr", 30.43),
                 ("DIP, two runs averaged", "psnr", 31.00), ("CBM3D", "psnr", 31.42),
                 ("NLM", "psnr", 30.26)]
    g = Group("denoising, σ = 25", images, methods,
              ("psnr", "ssim", "stop_iteration", "iterations", "seconds"), published)
    spread = [_mean(_cells(ctx, g, m, "psnr")) for m in methods if m.label.startswith("ours (")]
    full = [v for v, n in spread if v is not MISSING and n == len(images)]
    notes = [f"Seed spread of ours (seeds {', '.join(map(str, ctx.seeds))}; the seed sets the "
             "noise realisation, the init and the code): mean PSNR "
             + (f"{np.mean(full):.2f} ± {np.std(full, ddof=1):.2f} (mean ± std over "
                f"{len(full)} seeds of the per-seed mean)" if len(full) > 1 else
                f"{DASH} (needs two seeds with every image)"),
             "PSNR/SSIM on RGB in [0, 1] against the clean crop; 'stop it.' is the iteration "
             "the stop rule chose (n/a: no stop), 'iterations' those run, 'seconds' the fit time.",
             "Measured baselines: baselines_denoising.csv (noise seed 0: the same noisy images "
             "as the seed-0 runs here)."] + (["TOY: the baselines.py rows are full-image "
                                             "numbers, the runs 64×64 crops."] if ctx.toy else [])
    return write_tables(ctx, "denoising", "Denoising, σ = 25: DIP (Ulyanov et al. 2018) vs "
                        "spectral-bias control (Shi et al. 2022)", runs, [g], notes)


def inpainting_table(ctx):
    runs = inpainting_runs()
    images = run_images(ctx, runs[0])
    k = {m: RUN_KEYS[m] for m in ("psnr", "ssim", "stop_iteration", "seconds")}
    methods = [Method("ours (λ 1.6, ratio stop)", runs[0], k),
               Method("mean fill", runs[0], {"psnr": "psnr_in", "ssim": "ssim_in"})]
    base = baseline_rows(ctx, "inpainting")
    if base:
        methods.append(Method("biharmonic (baselines.py)", csv=base,
                              keys={"psnr": "biharmonic_psnr"}))
    methods += [Method("DIP (published, Table 1)", published=DIP_INPAINT),
                Method("CSC Papyan et al. (published)", published=CSC_INPAINT)]
    g = Group("inpainting, 50 % Bernoulli", images, methods,
              ("psnr", "ssim", "stop_iteration", "seconds"),
              [("DIP (Table 1 mean)", "psnr", 33.48)],
              {i: INPAINT_NAMES.get(i, i) for i in images})
    notes = ["Images in the column order of DIP's Table 1; file names mapped to its names "
             + ", ".join(f"{a} → {b}" for a, b in INPAINT_NAMES.items()) + ".",
             "PSNR over the whole image; the published means cover all 11 images."]
    return write_tables(ctx, "inpainting", "Inpainting, 50 % Bernoulli mask (DIP Table 1)",
                        runs, [g], notes)


def sr_table(ctx):
    runs = sr_runs()
    by = {r.name: r for r in runs}
    pub = {("Set5", 4): [("bicubic", 28.43), ("DIP", 29.90), ("SRResNet", 32.10)],
           ("Set14", 4): [("bicubic", 26.05), ("DIP", 27.00), ("SRResNet", 28.53)]}
    groups = []
    for f in (4, 8):
        for s in ("Set5", "Set14"):
            dip, ours = by[f"sr_x{f}_{s}_dip"], by[f"sr_x{f}_{s}_ours"]
            keys = {"y_psnr": "y_psnr", "seconds": "seconds"}
            groups.append(Group(f"{s}, ×{f}", run_images(ctx, dip), [
                Method("bicubic", dip, {"y_psnr": "y_psnr_bicubic"}),
                Method("DIP", dip, keys), Method("ours (λ 1.4)", ours, keys)],
                ("y_psnr", "seconds"),
                [(f"{lab} (DIP Table 2)", "y_psnr", v) for lab, v in pub.get((s, f), [])]))
    notes = ["Y-PSNR: BT.601 Y channel, 4-pixel border removed (DIP's evaluation); bicubic = "
             "Pillow bicubic upscaling of the same LR image.",
             "ours = DIP's recipe with every conv Lipschitz-bounded (λ 1.4); nothing else "
             "changed. No published ×8 anchors are quoted."]
    return write_tables(ctx, "super_resolution", "Super-resolution ×4 / ×8, Set5 and Set14",
                        runs, groups, notes)


def deblocking_table(ctx):
    runs = deblocking_runs()
    groups = []
    for run in runs:
        m = ("psnr", "ssim", "psnr_b")
        groups.append(Group(run.name.replace("deblock_", "").replace("_q", ", q = "),
                            run_images(ctx, run), [
            Method("JPEG input", run, {k: k + "_in" for k in m}),
            Method("ours", run, {**{k: k for k in m}, "stop_iteration": "stop_iteration",
                                 "seconds": "seconds"})],
            (*m, "stop_iteration", "seconds")))
    notes = ["classic5 is grayscale; LIVE1 is compressed, restored and scored on the BT.601 Y "
             "channel. PSNR-B with 8×8 blocks."]
    return write_tables(ctx, "deblocking", "JPEG deblocking: classic5 q 10/20/30, LIVE1 q 10",
                        runs, groups, notes)


def enhancement_table(ctx):
    runs = enhancement_runs()
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
    md += _md(["image", "iterations", "seconds", "input, base (100 it.), enhanced"], rows) + [""]
    md += experiments_lines(ctx, runs)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([["image", "iterations", "seconds",
                                                     "side_by_side"], *rows])
    return (atomic_write_text(ctx.out / "enhancement.csv", buf.getvalue()),
            atomic_write_text(ctx.out / "enhancement.md", "\n".join(md) + "\n"))


TABLES = {"denoising": denoising_table, "inpainting": inpainting_table,
          "super_resolution": sr_table, "deblocking": deblocking_table,
          "enhancement": enhancement_table}


# ----------------------------------------------------------------------------- figures
def _plt():
    from utils.plots import plt  # Agg backend, imported only when figures are made
    return plt


def _save(fig, path):
    from utils.plots import save_figure
    return save_figure(fig, path, dpi=100)


def _peak(log):
    i = int(np.nanargmax(log["psnr_gt"]))
    return int(log["iteration"][i]), float(log["psnr_gt"][i])


def _fbc_panel(ax, log, title):
    colors = _plt().cm.viridis(np.linspace(0, 0.9, 5))
    for b in range(5):
        ax.plot(log["iteration"], log[f"fbc{b + 1}"], color=colors[b], label=f"band {b + 1}")
    it, p = _peak(log)
    ax.axvline(it, color="k", ls="--", lw=1, label=f"peak PSNR {p:.2f} dB at {it}")
    ax.set(xlabel="iteration", ylabel="FBC", ylim=(0, 1.05), title=title)
    ax.legend(fontsize=7, loc="lower right")


def _psnr_panel(ax, curves, title):
    for label, log in curves:
        ax.plot(log["iteration"], log["psnr_gt"], lw=1, label=label)
    ax.set(xlabel="iteration", ylabel="PSNR to ground truth (dB)", title=title)
    ax.legend(fontsize=7)


def _curve_rows(fig_name, sweep):
    return [[fig_name, lab, run.name, *_peak(log), int(log["iteration"][-1]),
             float(log["psnr_gt"][-1])] for lab, run, log in sweep]


def replay_ratio_stop(ctx, run, log):
    """The iteration the ratio rule (the run's window and ε) picks on a logged ratio series."""
    from utils.stopping import RatioStop
    rec = record(ctx, run, (run_images(ctx, run) or [""])[0]) or {}
    h = rec.get("hyperparameters", {})
    rule = RatioStop(h.get("stop_window", 100), h.get("stop_eps", 0.01))
    for it, r in zip(log["iteration"], log["ratio"]):
        if bool(rule.update(int(it), torch.tensor([r]))[0]):
            return int(rule.stop_iteration[0])
    return None


def make_figures(ctx):
    """The figures from whatever figure runs exist; OUT/figures.md and .csv index them."""
    plt = _plt()
    fig_runs, lam, sig, arch = figure_runs(ctx.toy)
    logs = {r.name: read_log(ctx, r) for r in [*fig_runs.values(), *lam.values(), *sig.values(),
                                               *arch.values()]}
    made, rows = [], []

    def sweep(d, fmt):
        return [(fmt(k), r, logs[r.name]) for k, r in d.items() if logs[r.name] is not None]

    dip, ours = logs["fig_dip"], logs["fig_ours"]
    if dip is not None or ours is not None:
        pair = [(lab, log) for lab, log in (("DIP: hourglass, no control", dip),
                                            ("ours: decoder, λ 1.4", ours)) if log is not None]
        fig, axes = plt.subplots(1, len(pair), figsize=(6 * len(pair), 3.6), squeeze=False)
        for ax, (lab, log) in zip(axes[0], pair):
            _fbc_panel(ax, log, lab)
        made.append(("fig_fbc_dip_vs_ours.png", "FBC of the five bands, DIP vs ours, peak-PSNR "
                     "iteration marked", _save(fig, ctx.out / "fig_fbc_dip_vs_ours.png")))
        rows += _curve_rows("fbc", [(lab, fig_runs[k], logs[fig_runs[k].name]) for lab, k in
                                    (("DIP", "dip"), ("ours", "ours"))
                                    if logs[fig_runs[k].name] is not None])
    for name, d, fmt, what in (
            ("fig_lambda_sweep.png", lam, lambda k: f"λ {k}", "PSNR vs iteration per λ"),
            ("fig_gaussian_sigma_sweep.png", sig, lambda k: f"σ {k}",
             "PSNR vs iteration per Gaussian σ list (λ 1.8)")):
        s = sweep(d, fmt)
        if s:
            fig, ax = plt.subplots(figsize=(6, 3.6))
            _psnr_panel(ax, [(lab, log) for lab, _, log in s], what)
            made.append((name, what, _save(fig, ctx.out / name)))
            rows += _curve_rows(name[4:-4], s)
    s = sweep(arch, str)
    if s:
        fig, axes = plt.subplots(1, 1 + len(s), figsize=(4.5 * (1 + len(s)), 3.4))
        _psnr_panel(axes[0], [(lab, log) for lab, _, log in s], "PSNR, no control")
        for ax, (lab, _, log) in zip(axes[1:], s):
            _fbc_panel(ax, log, f"FBC: {lab}")
        made.append(("fig_architectures.png", "architecture ablation: PSNR and FBC (convnet "
                     "runs at full resolution: slow)",
                     _save(fig, ctx.out / "fig_architectures.png")))
        rows += _curve_rows("architectures", s)
    if ours is not None:
        stop = replay_ratio_stop(ctx, fig_runs["ours"], ours)
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(ours["iteration"], ours["psnr_gt"], color="tab:blue", label="PSNR")
        ax2 = ax.twinx()
        ax2.plot(ours["iteration"], ours["ratio"], color="tab:orange", lw=1,
                 label="blur/sharpness")
        ax.set(xlabel="iteration", ylabel="PSNR (dB)")
        ax2.set_ylabel("blurriness / sharpness")
        last_it, last = int(ours["iteration"][-1]), float(ours["psnr_gt"][-1])
        peak_it, peak = _peak(ours)
        if stop is not None:
            at = float(ours["psnr_gt"][np.searchsorted(ours["iteration"], stop)])
            ax.axvline(stop, color="k", ls="--", lw=1, label=f"ratio stop at {stop}")
            text = (f"stop {stop}: {at:.2f} dB; at {last_it}: {last:.2f} dB "
                    f"(Δ {at - last:+.2f}); peak {peak:.2f} dB at {peak_it}")
        else:
            at, text = None, f"the ratio rule did not fire within {last_it} iterations"
        ax.set_title(text, fontsize=8)
        h1, l1 = ax.get_legend_handles_labels()
        h2, l2 = ax2.get_legend_handles_labels()
        ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower right")
        made.append(("fig_auto_stop.png", "the ratio stop on the no-stop run (the rule replayed "
                     "on its logged ratio): " + text, _save(fig, ctx.out / "fig_auto_stop.png")))
        rows.append(["auto_stop", "ratio stop", fig_runs["ours"].name, stop, at, last_it, last])
    panels = montage_panels(ctx)
    if panels:
        from utils.plots import montage
        montage([a for a, _ in panels], [t for _, t in panels], ctx.out / "fig_montage.png",
                cols=min(len(panels), 4))
        made.append(("fig_montage.png", "degraded inputs and outputs of every task run so far",
                     ctx.out / "fig_montage.png"))
    runs = list({r.name: r for r in [*fig_runs.values(), *lam.values(), *sig.values(),
                                     *arch.values()]}.values())
    md = meta_lines(ctx, runs, "Figures") + missing_lines(ctx, runs, "figures") + [""]
    fi = ctx.images(None)
    md += [f"Figure image: {fi[0].stem if fi else 'the embedded default'}.", ""]
    md += _md(["figure", "what"], [(f"![{n}]({n})", w) for n, w, _ in made]) + [""]
    md += ["## Numbers", ""] + _md(["figure", "curve", "run", "peak it. / stop it.",
                                    "peak PSNR / PSNR at stop", "last it.", "last PSNR"], [
        [r[0], r[1], r[2]] + [DASH if v is None else f"{v:.2f}" if isinstance(v, float) else v
                              for v in r[3:]] for r in rows]) + [""]
    md += experiments_lines(ctx, runs)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(
        [["figure", "curve", "run", "peak_or_stop_iteration", "psnr_at_it", "last_iteration",
          "last_psnr"], *rows])
    atomic_write_text(ctx.out / "figures.csv", buf.getvalue())
    atomic_write_text(ctx.out / "figures.md", "\n".join(md) + "\n")
    return [p for _, _, p in made]


def montage_panels(ctx):
    """(image, title) pairs: the degraded input and the output of the first finished image of
    each task (its first experiment that has one)."""
    from utils.imageio import load_image
    spec = [("denoising", ["ours_seed%d" % s for s in ctx.seeds] + ["fig_ours"], "noisy"),
            ("inpainting", ["inpainting"], "masked"),
            ("super-resolution ×4", ["sr_x4_Set5_ours", "sr_x4_Set5_dip"], "bicubic"),
            ("deblocking", ["deblock_classic5_q10", "deblock_LIVE1_q10"], "jpeg"),
            ("enhancement", ["enhancement"], None)]
    out = []
    for task, names, degraded in spec:
        for name in names:
            d = ctx.out / "runs" / name
            done = sorted(p.parent for p in d.glob("*/summary.json")) if d.is_dir() else []
            if not done:
                continue
            f = done[0]
            pair = ([(f / f"{degraded}.png", f"{task}: {degraded}"),
                     (f / "output.png", f"{task}: {name}")] if degraded else
                    [(f / "output.png", f"{task}: base"),
                     (f / "enhanced.png", f"{task}: enhanced")])
            if all(p.exists() for p, _ in pair):
                out += [(load_image(p).array, t) for p, t in pair]
                break
    return out


# ----------------------------------------------------------------------------- main
def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--only", action="append", choices=[*TASKS, "figures"],
                   help="this part only (repeatable); default: all")
    p.add_argument("--images", nargs="+", help="N (the first N images of every set) or image "
                   "names (file stems)")
    p.add_argument("--out", default="results/paper", help="output folder")
    p.add_argument("--data-dir", help="the paper's images (default $DIP_DATA_DIR, ./dataset)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                   help="seeds of 'ours' (denoising); the first seeds every other run")
    p.add_argument("--figure-image", default=FIG_IMAGE, help="the image of the figure runs "
                   "(default F16; else the first denoising image)")
    p.add_argument("--toy", action="store_true", help="toy scale for CPU tests: tiny nets, "
                   "64×64 crops, 6 iterations, one image")
    p.add_argument("--no-run", action="store_true", help="no fits: tables and figures from "
                   "the runs that exist")
    p.add_argument("--dry-run", action="store_true", help="print the runs, their commands and "
                   "GPU-minute bounds, then exit")
    return p


def main(argv=None):
    """Run the selected parts, then write their tables and figures; returns 0, or 1 when a run
    failed (its rows then read '—')."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    ctx = Context(args, argv)
    only = args.only or [*TASKS, "figures"]
    runs = all_runs(only, args.seeds, args.toy)
    if args.dry_run:
        plan(runs, ctx)
        return 0
    if ctx.data_dir is None:
        print(f"no data folder (--data-dir, ${dataset.DATA_ENV}, ./dataset): every run uses its "
              "script's embedded image; `python -m dataset.fetch all` gets the paper's images")
    ctx.out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    if args.toy:  # tiny tensors: one thread is faster, and immune to a loaded CPU
        torch.set_num_threads(1)
    status = 0
    try:
        if not args.no_run:
            for run in runs:
                status = max(status, 1 if execute(run, ctx) else 0)
        for part in only:
            paths = make_figures(ctx) if part == "figures" else TABLES[part](ctx)
            print(f"{part}: wrote " + ", ".join(str(p) for p in paths))
    finally:
        torch.set_num_threads(threads)
    return status


if __name__ == "__main__":
    sys.exit(main())
