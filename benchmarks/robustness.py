"""Does every task's CPU quick preset work on every image?  Each registered task's quick preset
on a grid of images × seeds, through the Python API (``tasks.restore``, synthetic degradation,
``preset='quick'``), one preset per task and no per-image tuning.

    python -m benchmarks.robustness [--tasks denoising ...] [--seeds 0 1 2] [--images camera ...]
                                    [--out results/robustness.md] [--resume]

Images (``skimage.data``, so that anyone can rerun it): camera (gray, edges and texture), moon
(gray, smooth), chelsea (colour, fur), coffee (colour, smooth); the quick preset takes their
128×128 centre.  Each run's gain is measured against the task's own baseline, with a target:
denoising ≥ +3 dB over the noisy input, inpainting ≥ +5 dB over the mean fill, deblocking ≥ the
JPEG input, super-resolution ≥ bicubic − 0.5 dB (Y-PSNR), deblurring ≥ the blurred input,
enhancement: more detail (MLV sharpness, Bahrami & Kot 2014) than the input; every run ≤ 180 s
on this project's 2-core CPU.  Beside it, the task's classic method (``CLASSIC``: CBM3D for
denoising, biharmonic inpainting, Richardson-Lucy, bicubic) on the very same degraded image
(``tasks.prepare_problem``, scored by ``utils.task.score``): how far the quick preset is from
what a second of a classic method gives.  The classic numbers are computed for every row, also
for rows read back by ``--resume`` (they need no fit).  Writes a Markdown table (and a CSV beside it) with every run, the
worst case per task and whether the targets hold.  The CSV is rewritten after every run, so an
interrupted grid goes on with ``--resume`` (the runs already in the CSV are kept, not rerun).
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tasks import all_tasks, restore
from utils.args import integer
from utils.cli import build_parser, given_options
from utils.device import cpu_model
from utils.atomic import atomic_write_text
from utils.classic import METHODS, available
from utils.config import resolve_config
from utils.imageio import to_tensor
from utils.stopping import sharpness
from utils.tables import csv_text, fmt, markdown
from utils.task import score

IMAGES = ("camera", "moon", "chelsea", "coffee")
MAX_SECONDS = 180
# task -> (the measure, its baseline key, the least gain allowed, how the gain reads)
TARGETS = {"denoising": ("psnr", "psnr_in", 3.0, "dB over the noisy input"),
           "inpainting": ("psnr", "psnr_in", 5.0, "dB over the mean fill"),
           "deblocking": ("psnr", "psnr_in", 0.0, "dB over the JPEG input"),
           "super_resolution": ("y_psnr", "y_psnr_bicubic", -0.5, "dB over bicubic (Y-PSNR)"),
           "deblurring": ("psnr", "psnr_in", 0.0, "dB over the blurred input")}


# task -> the classic method its quick preset is compared with (utils.classic.METHODS)
CLASSIC = {"denoising": "cbm3d", "inpainting": "biharmonic", "super_resolution": "bicubic",
           "deblurring": "richardson_lucy"}


def settings(task, seed, overrides=None) -> dict:
    """The run's options: the seed and the quick preset's centre crop, named (``restore()``
    restores an image whole: this grid is the preset's quick check of the crop)."""
    return {"seed": seed, "crop": task.quick.get("crop", 0), **(overrides or {})}


def classic(task, name, seed, overrides=None):
    """(method label, its measure on the run's degraded image), or None (no classic method,
    or its package missing)."""
    method = CLASSIC.get(task.name)
    if method is None or not available(method):
        return None
    from tasks import prepare_problem
    problem, cfg, _, _ = prepare_problem(image(name), task, observed=False, preset="quick",
                                         **settings(task, seed, overrides))
    est = np.clip(METHODS[method][0](problem, cfg), 0, 1)
    return METHODS[method][1], score(problem, est)[TARGETS[task.name][0]]


def image(name) -> np.ndarray:
    from skimage import data
    x = getattr(data, name)()
    if not (isinstance(x, np.ndarray) and (x.ndim == 2 or x.ndim == 3 and x.shape[2] in (3, 4))):
        raise SystemExit(f"error: skimage.data.{name}() is not one 2-D image "
                         f"(shape {getattr(x, 'shape', type(x).__name__)})")
    return x


NOT_IMAGES = ("data_dir", "download_all", "file_hash", "lbp_frontal_face_cascade_filename",
              "lfw_subset", "stereo_motorcycle")   # skimage.data's names that are no image


def skimage_name(name: str) -> str:
    """An argparse type: the name of an image of ``skimage.data`` (one 2-D image, gray or
    colour; a 3-D stack such as cells3d fails when loaded)."""
    from skimage import data
    if name not in data.__all__ or name in NOT_IMAGES:
        raise argparse.ArgumentTypeError(f"{name!r} is not an image of skimage.data (e.g. "
                                         f"{', '.join(IMAGES)}, astronaut)")
    return name


def run(task, name, seed, overrides=None):
    """One quick-preset run: (gain, its reading, seconds, restores)."""
    x = image(name)
    t0 = time.perf_counter()
    r = restore(x, task=task.name, observed=False, preset="quick",
                **settings(task, seed, overrides))
    seconds = time.perf_counter() - t0
    if task.name == "enhancement":  # the detail layer: sharpness of the enhanced image vs input
        # the (cropped) input the fit saw, and the enhanced image restore() gives
        s_in, s_out = (float(sharpness(to_tensor(a))[0]) for a in (r.observed, r.array))
        return s_out / s_in - 1, f"sharpness {s_in:.3f} → {s_out:.3f}", seconds, r.fit.restores[0]
    key, base, _, _ = TARGETS[task.name]
    got, ref = r.metrics[key], r.metrics[base]
    return got - ref, f"{ref:.2f} → {got:.2f}", seconds, r.fit.restores[0]


CSV_HEADER = ["task", "image", "seed", "reading", "gain", "seconds", "restores", "target_met",
              "classic", "classic_value"]


def csv_row(r):
    return [*r[:4], f"{r[4]:.4f}", f"{r[5]:.1f}", r[6], r[7], r[8] or "",
            "" if r[9] is None else f"{r[9]:.4f}"]


def read_rows(path) -> dict:
    """The runs of an earlier (interrupted) grid, by (task, image, seed); none if no CSV.  A CSV
    written before the classic columns existed reads with them empty (filled in by ``main``)."""
    import csv
    if not Path(path).exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        try:
            return {(d["task"], d["image"], int(d["seed"])):
                    [d["task"], d["image"], int(d["seed"]), d["reading"], float(d["gain"]),
                     float(d["seconds"]), int(d["restores"]), d["target_met"],
                     d.get("classic") or None,
                     float(d["classic_value"]) if d.get("classic_value") else None]
                    for d in csv.DictReader(f)}
        except (KeyError, ValueError) as e:
            raise SystemExit(f"error: {path}: not a benchmarks.robustness CSV ({type(e).__name__}"
                             f": {e})") from None


def ours(r) -> float:
    """The quick preset's measure of a row (the right side of its reading ``base → ours``)."""
    return float(r[3].split("→")[1].split()[0])


def vs_classic(r) -> float | None:
    """ours − the classic method's measure (dB), or None without a classic method."""
    return None if r[9] is None else ours(r) - r[9]


def target_of(task):
    if task.name == "enhancement":
        return 0.0, "relative gain of sharpness"
    _, _, least, what = TARGETS[task.name]
    return least, what


def report(rows, tasks, order, argv) -> list[str]:
    """The Markdown lines: worst case per task, then every run."""
    worst = {}
    for r in rows:
        w = worst.get(r[0])
        if w is None or r[4] < w[0]:
            least, what = target_of(tasks[r[0]])
            worst[r[0]] = (r[4], f"{r[1]} seed {r[2]}", what, least)
    header = ["task", "image", "seed", "baseline → ours", "gain", "seconds", "restores",
              "target met"]
    summary = []
    for name in order:
        mine = [r for r in rows if r[0] == name]
        g, where, what, least = worst[name]
        gaps = [vs_classic(r) for r in mine if r[9] is not None]
        versus = (f"{np.mean(gaps):+.2f} (worst {min(gaps):+.2f}) vs {mine[0][8]}" if gaps
                  else "—")
        summary.append([name, f"{g:+.2f} ({where})", f"{np.mean([r[4] for r in mine]):+.2f}",
                        f"≥ {least:+.1f} {what}", versus, f"{max(r[5] for r in mine):.0f}",
                        f"{sum(r[7] == 'yes' for r in mine)}/{len(mine)}"])
    md = ["# Robustness of the CPU quick presets", "",
          f"- device: CPU {cpu_model()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}",
          f"- command: `{' '.join(['python -m benchmarks.robustness', *argv])}`",
          f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}; total "
          f"{sum(r[5] for r in rows) / 60:.0f} min of fitting",
          "- each run: `tasks.restore(image, task, observed=False, preset='quick', seed=s, "
          "crop=c)` on the image's c×c centre, c the preset's crop (128; enhancement: 256) "
          "or the command's `--set crop=`; a run meets the targets when it gains at least the "
          f"target and takes at most {MAX_SECONDS} s (a time to meet, not a limit: no run is "
          "cut short)", "",
          "## Worst case per task", ""]
    md += markdown(["task", "worst gain (where)", "mean gain", "target",
                    "ours − classic (dB, mean)", "max seconds", "runs meeting the targets"],
                   summary)
    md += ["", "ours − classic: the quick preset's measure minus the task's classic method's on "
           "the same degraded image (denoising: CBM3D with σ known; super-resolution: bicubic, "
           "Y-PSNR); negative: the classic method is better.", "", "## Every run", ""]
    md += markdown(header + ["classic (ours − classic)"],
                   [[fmt(v, h) if h != "gain" else f"{v:+.2f}" for v, h in zip(r, header)]
                    + ["—" if r[9] is None else f"{r[8]} {r[9]:.2f} ({vs_classic(r):+.2f})"]
                    for r in rows])
    return md


def with_classic(row, task, overrides):
    """Fill in a row's classic method and measure where they are missing."""
    if row[9] is None:
        got = classic(task, row[1], row[2], overrides)
        row[8], row[9] = got if got else (None, None)


def grid_parser(doc: str, images, seeds, out: str) -> argparse.ArgumentParser:
    """The options of a grid of tasks × images × seeds (this benchmark's and cpu_modes')."""
    names = list(all_tasks())
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", choices=names, default=names, metavar="TASK",
                   help=f"the tasks (default: all: {' '.join(names)})")
    p.add_argument("--images", nargs="+", type=skimage_name, default=list(images),
                   metavar="NAME", help=f"skimage.data images (default: {' '.join(images)})")
    p.add_argument("--seeds", nargs="+", type=integer(0), default=list(seeds),
                   help=f"seeds of each task × image (default: {' '.join(map(str, seeds))})")
    p.add_argument("--out", default=out, help=f"the report, and its CSV beside it (default "
                   f"{out}, committed: a run without --resume replaces it; give another file "
                   "for a trial)")
    p.add_argument("--set", nargs="+", default=[], metavar="ENTRY=VALUE",
                   help="try a change of the quick presets, for every task: lr=0.002, or a switch "
                        "as use_ema / no_use_ema")
    return p


def set_overrides(task, items) -> dict:
    """The ``--set`` entries as options, typed as ``task``'s command line types them."""
    flags = []
    for item in items:
        k, eq, v = item.partition("=")
        flags += [f"--{k.replace('_', '-')}", *([v] if eq else [])]
    return given_options(build_parser(task).parse_args(flags))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    tasks = all_tasks()
    p = grid_parser(__doc__, IMAGES, (0, 1, 2), "results/robustness.md")
    p.add_argument("--threads", type=integer(1), help="torch CPU threads (default: torch's)")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs already in the CSV beside --out and run only the others")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = set_overrides(tasks[args.tasks[0]], args.set)   # typed by the first task
    for name in args.tasks:     # before any run: an entry a task's net has not (--set channels=
        try:                    # with super-resolution's hourglass) is an error, not a lost grid
            resolve_config(tasks[name], overrides, "quick")
        except ValueError as e:
            p.error(f"--set, for {name}: {e}")
    out = Path(args.out)
    csv_path = out.with_suffix(".csv")
    done = read_rows(csv_path) if args.resume else {}
    rows = []
    for name in args.tasks:
        task = tasks[name]
        least, _ = target_of(task)
        for img in args.images:
            for seed in args.seeds:
                if (name, img, seed) in done:
                    rows.append(done[name, img, seed])
                    with_classic(rows[-1], task, overrides)
                    continue
                gain, reading, seconds, restores = run(task, img, seed, overrides)
                ok = gain >= least and seconds <= MAX_SECONDS
                rows.append([name, img, seed, reading, gain, seconds, restores,
                             "yes" if ok else "NO", None, None])
                with_classic(rows[-1], task, overrides)
                print(f"{name} {img} seed {seed}: {reading} (gain {gain:+.2f}), {seconds:.0f} s, "
                      f"{restores} restores{'' if ok else '  <-- target missed'}", flush=True)
                atomic_write_text(csv_path, csv_text(CSV_HEADER, [csv_row(r) for r in rows]))
    md = report(rows, tasks, args.tasks, argv)
    atomic_write_text(out, "\n".join(md) + "\n")
    atomic_write_text(csv_path, csv_text(CSV_HEADER, [csv_row(r) for r in rows]))
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
