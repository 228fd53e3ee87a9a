"""Classic (non-DIP) baselines of the paper tables, on the CPU, and the shared evaluation harness.

The harness fixes, for every task, the test images, the degradation (with its seed) and the
score, so that a later DIP run that takes its inputs from :func:`cases` and scores with
:func:`score` produces rows comparable with the baselines here:

* ``denoising``: the 9 images of ``denoising/``, sigma = 25, PSNR / SSIM on RGB;
* ``super_resolution``: Set5 and Set14, x4 and x8, Y-PSNR with a 4-pixel border;
* ``deblocking``: classic5 (gray) at q = 10, 20, 30 and LIVE1 (colour, scored on Y) at q = 10,
  PSNR / SSIM / PSNR-B;
* ``inpainting``: the 11 grayscale images of DIP's Table 1, 50 % Bernoulli mask, PSNR.

Every image is first centre-cropped to a multiple of 32, as the authors do.

    python baselines.py [--only TASK] [--images N] [--force] [--out results/paper]

writes ``<out>/baselines_<task>.md`` and ``.csv`` per task; a task whose CSV exists is skipped
unless ``--force``.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import io
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dataset import resolve_data_dir, task_images
from utils.imageio import atomic_write_text, center_crop_multiple, load_image, to_tensor
from utils.metrics import psnr, psnr_b, rgb_to_y, ssim, y_psnr
from utils.physics import (add_gaussian_noise, bernoulli_mask, bicubic_upscale, jpeg_compress,
                           pil_downscale)

try:
    import bm3d
except ImportError:  # optional: CBM3D is reported as "not available"
    bm3d = None

TASKS = ("denoising", "super_resolution", "deblocking", "inpainting")
CROP = 32
SIGMA = 25            # noise level, 0-255 scale
NOISE_SEED = 0        # add_gaussian_noise(x, SIGMA, seed=NOISE_SEED) on the (C, H, W) array
MASK_RATE, MASK_SEED = 0.5, 100   # bernoulli_mask(h, w, rate, seed): the authors' masks
TV_WEIGHT = 0.08      # one weight for all images, fixed a priori (not tuned on ground truth)
NLM_H = 0.8           # h = NLM_H * sigma
NLM_ARGS = dict(patch_size=5, patch_distance=6, fast_mode=True)
SR_SETS, SR_FACTORS = ("Set5", "Set14"), (4, 8)
JPEG_SETS = {"classic5": (10, 20, 30), "LIVE1": (10,)}
SR_BORDER, JPEG_BLOCK = 4, 8
SLOW_S = 600          # a method over this many CPU seconds gets a note in its table

# inpainting/bernoulli file stems -> the names of DIP's Table 1 (column order of the paper)
INPAINT_NAMES = {"barbara": "Barbara", "boat": "Boat", "house": "House", "Lena512": "Lena",
                 "peppers256": "Peppers", "Cameraman256": "C.man", "couple": "Couple",
                 "fingerprint": "Finger", "hill": "Hill", "man": "Man", "montage": "Montage"}
_T1 = list(INPAINT_NAMES.values())
DIP_INPAINT = dict(zip(_T1, [32.22, 33.06, 39.16, 36.16, 33.05, 29.8, 32.52, 32.84, 32.77,
                             32.20, 34.54]))
CSC_INPAINT = dict(zip(_T1, [28.14, 31.44, 34.58, 35.04, 31.11, 27.90, 31.18, 31.34, 32.35,
                             31.92, 28.05]))

# published means, per (set, setting) group of a task
PUBLISHED = {
    "denoising": {("denoising", "sigma=25"): [
        ("DIP, 1800 it", 29.22), ("DIP, EMA", 30.43), ("DIP, two runs averaged", 31.00),
        ("CBM3D", 31.42), ("NLM", 30.26)]},
    "super_resolution": {
        ("Set5", "x4"): [("bicubic", 28.43), ("DIP", 29.90), ("SRResNet", 32.10)],
        ("Set14", "x4"): [("bicubic", 26.05), ("DIP", 27.00), ("SRResNet", 28.53)]},
    "deblocking": {},
    "inpainting": {("bernoulli", "p=0.5"): [("DIP", 33.48),
                                            ("CSC (Papyan et al.)", round(np.mean(list(CSC_INPAINT.values())), 2))]},
}


# ----------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One test image of a task: the ground truth, the observation and how it was made.

    Arrays are float32 (H, W, C) in [0, 1]. ``observed`` is the network's input data: the noisy
    image, the LR image (``factor`` times smaller), the decoded JPEG, or the masked image
    (``mask`` (H, W, 1) bool, True = known pixel).
    """
    task: str
    set: str
    setting: str
    image: str
    clean: np.ndarray
    observed: np.ndarray
    mask: np.ndarray | None = None
    factor: int | None = None


def to_u8(a):
    """float (H, W, C) in [0, 1] -> uint8 (H, W, C), or (H, W) for C = 1 (as Pillow wants)."""
    u = np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)
    return u[..., 0] if u.ndim == 3 and u.shape[2] == 1 else u


def from_u8(u):
    """uint8 (H, W[, C]) -> float32 (H, W, C) in [0, 1]."""
    a = np.asarray(u, np.float32) / 255
    return a[..., None] if a.ndim == 2 else a


def load_cropped(path):
    """The image as float32 (H, W, C), centre-cropped to a multiple of 32 (the authors' crop)."""
    return np.ascontiguousarray(center_crop_multiple(load_image(path).array, CROP))


def noisy_image(clean, sigma=SIGMA, seed=NOISE_SEED):
    """clean + N(0, (sigma/255)^2), clipped; noise drawn in the authors' (C, H, W) layout."""
    return np.ascontiguousarray(add_gaussian_noise(clean.transpose(2, 0, 1), sigma, seed).transpose(1, 2, 0))


def cases(task, data_dir=None, limit=None):
    """The test cases of ``task`` (see the module doc), the first ``limit`` images per set."""
    data_dir = resolve_data_dir(data_dir)
    if data_dir is None:
        raise FileNotFoundError("no image folder: set DIP_DATA_DIR or run python -m dataset.fetch")

    def paths(group, key=None):
        found = task_images(data_dir, group)
        if not found:
            raise FileNotFoundError(f"no images of {group} under {data_dir}")
        return (sorted(found, key=key) if key else found)[:limit]

    if task == "denoising":
        for p in paths("denoising"):
            x = load_cropped(p)
            yield Case(task, "denoising", f"sigma={SIGMA}", p.stem, x, noisy_image(x))
    elif task == "super_resolution":
        for s in SR_SETS:
            for f in SR_FACTORS:
                for p in paths(f"super_resolution/{s}"):
                    x = load_cropped(p)  # 32 is a multiple of both factors
                    yield Case(task, s, f"x{f}", p.stem, x, from_u8(pil_downscale(to_u8(x), f)), factor=f)
    elif task == "deblocking":
        for s, qualities in JPEG_SETS.items():
            for q in qualities:
                for p in paths(f"deblocking/{s}"):
                    x = load_cropped(p)
                    yield Case(task, s, f"q={q}", p.stem, x, from_u8(jpeg_compress(to_u8(x), q)))
    elif task == "inpainting":
        order = list(INPAINT_NAMES)  # rows in the column order of DIP's Table 1
        for p in paths("inpainting/bernoulli", key=lambda p: (
                order.index(p.stem) if p.stem in order else len(order), p.stem)):
            x = load_cropped(p)
            m = bernoulli_mask(*x.shape[:2], rate=MASK_RATE, seed=MASK_SEED).transpose(1, 2, 0)
            yield Case(task, "bernoulli", f"p={MASK_RATE}", INPAINT_NAMES.get(p.stem, p.stem),
                       x, x * m, mask=m)
    else:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")


# ----------------------------------------------------------------------------- scores
def _y(a):
    """(1, 1, H, W) luma of an (H, W, C) array (BT.601, studio range); gray is used as it is."""
    t = to_tensor(a).double()
    return rgb_to_y(t) if t.shape[1] == 3 else t


def score(case, est):
    """The task's metrics of an estimate (float (H, W, C)) against ``case.clean``, as a dict."""
    est = np.clip(est, 0, 1)
    x, y = to_tensor(est).double(), to_tensor(case.clean).double()
    if case.task == "denoising":
        return {"psnr": psnr(x, y).item(), "ssim": ssim(x, y).item()}
    if case.task == "super_resolution":
        return {"ypsnr": y_psnr(x, y, border=SR_BORDER).item()}
    if case.task == "deblocking":  # colour: on the Y channel
        x, y = _y(est), _y(case.clean)
        return {"psnr": psnr(x, y).item(), "ssim": ssim(x, y).item(),
                "psnr_b": psnr_b(x, y, block=JPEG_BLOCK).item()}
    if case.task == "inpainting":
        return {"psnr": psnr(x, y).item()}
    raise ValueError(case.task)


# ----------------------------------------------------------------------------- baselines
def identity(case):
    """The degraded input itself (noisy image, JPEG image)."""
    return case.observed


def cbm3d(case, sigma=SIGMA):
    """CBM3D (bm3d.bm3d_rgb, opponent colour space, 'np' profile), sigma known; BM3D for gray."""
    if bm3d is None:
        raise RuntimeError("the bm3d package is not installed")
    z = case.observed.astype(np.float64)
    if z.shape[2] == 3:
        out = bm3d.bm3d_rgb(z, sigma / 255)
    else:
        out = bm3d.bm3d(z[..., 0], sigma / 255)[..., None]
    return np.asarray(out, np.float32)


def nl_means(case, sigma=SIGMA):
    """skimage non-local means: h = 0.8 sigma, sigma known, 5x5 patches, 13x13 search, fast mode."""
    from skimage.restoration import denoise_nl_means
    s = sigma / 255
    out = denoise_nl_means(case.observed, h=NLM_H * s, sigma=s, channel_axis=-1, **NLM_ARGS)
    return np.asarray(out, np.float32).reshape(case.observed.shape)


def tv_chambolle(case, weight=TV_WEIGHT):
    """skimage total-variation denoising (Chambolle), one weight for all images."""
    from skimage.restoration import denoise_tv_chambolle
    return np.asarray(denoise_tv_chambolle(case.observed, weight=weight, channel_axis=-1), np.float32)


def bicubic(case):
    """Pillow bicubic upscaling of the LR image."""
    return from_u8(bicubic_upscale(to_u8(case.observed), case.factor))


def mean_fill(case):
    """Holes filled with the mean of the known pixels (per channel)."""
    m = np.broadcast_to(case.mask, case.observed.shape)
    mean = (case.observed * m).sum((0, 1)) / m.sum((0, 1))
    return np.where(m, case.observed, mean).astype(np.float32)


def biharmonic(case):
    """skimage.restoration.inpaint_biharmonic of the unknown pixels."""
    from skimage.restoration import inpaint_biharmonic
    out = inpaint_biharmonic(case.observed, ~case.mask[..., 0], channel_axis=-1)
    return np.asarray(out, np.float32)


# method name -> (function, label in the tables)
BASELINES = {
    "denoising": {"noisy": (identity, "noisy input"), "cbm3d": (cbm3d, "CBM3D"),
                  "nlm": (nl_means, "NLM"), "tv": (tv_chambolle, "TV")},
    "super_resolution": {"bicubic": (bicubic, "bicubic")},
    "deblocking": {"jpeg": (identity, "JPEG input")},
    "inpainting": {"mean_fill": (mean_fill, "mean fill"), "biharmonic": (biharmonic, "biharmonic")},
}
METRICS = {"denoising": ("psnr", "ssim"), "super_resolution": ("ypsnr",),
           "deblocking": ("psnr", "ssim", "psnr_b"), "inpainting": ("psnr",)}
KEYS = ("set", "setting", "image")


def available(task, method):
    """False where a baseline's package is missing (then its cells read 'not available')."""
    return not (method == "cbm3d" and bm3d is None)


def run_task(task, data_dir=None, limit=None, methods=None, log=print):
    """Run the baselines of ``task`` on its cases.

    Returns (rows, columns, seconds): one row per case with the KEYS and ``<method>_<metric>``
    values (None where a method is not available), the value columns in order, and the total
    seconds spent per method.
    """
    methods = list(methods or BASELINES[task])
    columns = [f"{m}_{k}" for m in methods for k in METRICS[task]]
    rows, seconds = [], {m: 0.0 for m in methods}
    for case in cases(task, data_dir, limit):
        row = {"set": case.set, "setting": case.setting, "image": case.image}
        for m in methods:
            if not available(task, m):
                row.update({f"{m}_{k}": None for k in METRICS[task]})
                continue
            t0 = time.perf_counter()
            est = BASELINES[task][m][0](case)
            seconds[m] += time.perf_counter() - t0
            row.update({f"{m}_{k}": v for k, v in score(case, est).items()})
        rows.append(row)
        log(f"  {task} {case.set} {case.setting} {case.image}: "
            + ", ".join(f"{c}={row[c]:.4g}" for c in columns if row[c] is not None))
    return rows, columns, seconds


# ----------------------------------------------------------------------------- tables
def group_means(rows, columns):
    """One row per (set, setting), in order of appearance: image = 'mean', n = number of images,
    the mean of every column over the images that have a value (None if none has)."""
    out = {}
    for r in rows:
        out.setdefault((r["set"], r["setting"]), []).append(r)
    means = []
    for (s, st), rs in out.items():
        m = {"set": s, "setting": st, "image": "mean", "n": len(rs)}
        for c in columns:
            vals = [r[c] for r in rs if r.get(c) is not None]
            m[c] = float(np.mean(vals)) if vals else None
        means.append(m)
    return means


def _fmt(v, col, missing="n/a"):
    if v is None:
        return missing
    if isinstance(v, str):
        return v
    return f"{v:.4f}" if col.endswith("ssim") else f"{v:.2f}"


def _md_table(header, lines):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def write_table(out_dir, task, rows, columns, meta, *, title=None, labels=None, published=None,
                notes=(), missing="not available"):
    """Write ``<out_dir>/baselines_<task>.csv`` and ``.md``; return the two paths.

    CSV: columns set, setting, image, then ``columns``; per-image rows, then one ``mean`` row per
    (set, setting); values to 4 decimals, empty where missing. Markdown: a header with ``meta``
    (device, software, seeds, command, date, ...), ``notes``, a table of means next to
    ``published`` ({(set, setting): [(label, value)]}), and the per-image tables.
    ``labels`` maps a column to its Markdown header (default: the column name).
    """
    out_dir = Path(out_dir)
    labels = labels or {}
    published = published or {}
    means = group_means(rows, columns)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([*KEYS, *columns])
    for r in [*rows, *means]:
        w.writerow([r[k] for k in KEYS] + ["" if r.get(c) is None else
                                            (r[c] if isinstance(r[c], str) else f"{r[c]:.4f}")
                                            for c in columns])
    csv_path = atomic_write_text(out_dir / f"baselines_{task}.csv", buf.getvalue())

    head = [labels.get(c, c) for c in columns]
    md = [f"# {title or 'Baselines: ' + task}", "", _md_table(["", ""], [(k, v) for k, v in meta.items()]), ""]
    if notes:
        md += [f"- {n}" for n in notes] + [""]
    md += ["## Means", "", _md_table(
        ["set", "setting", "n", *head, "published (mean)"],
        [(m["set"], m["setting"], m["n"], *(_fmt(m[c], c, missing) for c in columns),
          "; ".join(f"{lab} {val:.2f}" for lab, val in published.get((m["set"], m["setting"]), []))
          or "—") for m in means]), ""]
    for m in means:
        rs = [r for r in rows if (r["set"], r["setting"]) == (m["set"], m["setting"])]
        md += [f"## {m['set']}, {m['setting']}", "", _md_table(
            ["image", *head], [(r["image"], *(_fmt(r[c], c, missing) for c in columns))
                               for r in [*rs, m]]), ""]
    md_path = atomic_write_text(out_dir / f"baselines_{task}.md", "\n".join(md))
    return csv_path, md_path


# ----------------------------------------------------------------------------- metadata
def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_meta(command, seconds, limit):
    import scipy
    import skimage
    soft = (f"Python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
            f"scipy {scipy.__version__}, scikit-image {skimage.__version__}, "
            f"bm3d {getattr(bm3d, '__version__', None) or _dist_version('bm3d') if bm3d else 'not installed'}")
    return {
        "device": f"CPU: {cpu_model()} ({os.cpu_count()} logical cores), torch threads "
                  f"{torch.get_num_threads()}; no GPU",
        "software": soft,
        "seeds": f"noise: add_gaussian_noise(x, {SIGMA}, seed={NOISE_SEED}) drawn on the (C,H,W) array; "
                 f"inpainting mask: bernoulli_mask(H, W, rate={MASK_RATE}, seed={MASK_SEED})",
        "images": "all" if limit is None else f"first {limit} per set (--images {limit})",
        "command": f"`{command}`",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall time per method": ", ".join(f"{m} {s:.1f} s" for m, s in seconds.items()),
    }


def _dist_version(name):
    from importlib.metadata import version
    try:
        return version(name)
    except Exception:
        return "?"


PROTOCOL = {
    "denoising": [
        f"Images centre-cropped to a multiple of {CROP}. Noisy = clip(x + N(0, ({SIGMA}/255)^2)), "
        f"seed {NOISE_SEED}. PSNR and SSIM (Gaussian window 11, sigma 1.5) on RGB in [0, 1].",
        "CBM3D: bm3d.bm3d_rgb(noisy, sigma_psd=25/255), profile 'np', opponent colour space (sigma known).",
        f"NLM: skimage denoise_nl_means(h={NLM_H}*sigma, sigma=25/255 (known), patch_size=5, "
        "patch_distance=6, fast_mode=True, channel_axis=-1).",
        f"TV: skimage denoise_tv_chambolle(weight={TV_WEIGHT}, channel_axis=-1), one weight fixed a priori "
        "for all images (no tuning on ground truth).",
        "Published: DIP (Ulyanov et al. 2018) and the DIP / CBM3D / NLM means of Shi et al. (IJCV 2022).",
    ],
    "super_resolution": [
        f"HR centre-cropped to a multiple of {CROP} (so of 4 and 8). LR = Pillow LANCZOS downscale of "
        "the uint8 HR (utils.physics.pil_downscale); bicubic = Pillow BICUBIC upscale.",
        f"Y-PSNR: BT.601 Y channel (studio range), {SR_BORDER}-pixel border cropped, for x4 and x8. "
        "Set14's bridge is grayscale and is scored as it is (no Y conversion).",
        "Published x4 means: DIP paper (Ulyanov et al. 2018), Table 2; no x8 anchors given here.",
    ],
    "deblocking": [
        f"Images centre-cropped to a multiple of {CROP}. JPEG = Pillow round trip of the uint8 image "
        "(quality q, optimize=True, progressive=True, Pillow's default 4:2:0 chroma subsampling for colour).",
        f"Scores of the JPEG input itself: PSNR, SSIM and PSNR-B (block {JPEG_BLOCK}); classic5 is "
        "grayscale, LIVE1 is scored on the BT.601 Y channel (studio range).",
    ],
    "inpainting": [
        f"Images centre-cropped to a multiple of {CROP} (a no-op: all are 256 or 512 square). "
        f"Mask: bernoulli_mask(H, W, rate={MASK_RATE}, seed={MASK_SEED}), identical to the authors' "
        "mask files; 50 % of the pixels are dropped.",
        "Mean fill: holes = mean of the known pixels. Biharmonic: skimage inpaint_biharmonic. "
        "PSNR over the whole image.",
        "Published per image: DIP, Table 1 of Ulyanov et al. (2018), and Papyan et al.'s CSC row of "
        "the same table; the CSC mean is computed here from its row.",
    ],
}


def run_and_write(task, out_dir, data_dir=None, limit=None, command="", log=print):
    """Run a task's baselines and write its table; return the CSV path."""
    t0 = time.time()
    rows, columns, seconds = run_task(task, data_dir, limit, log=log)
    labels = {f"{m}_{k}": f"{lab} {k.replace('_', '-').upper().replace('YPSNR', 'Y-PSNR')}"
              for m, (_, lab) in BASELINES[task].items() for k in METRICS[task]}
    notes = list(PROTOCOL[task])
    if task == "inpainting":
        for r in rows:
            r["dip_published"] = DIP_INPAINT.get(r["image"])
            r["csc_published"] = CSC_INPAINT.get(r["image"])
        columns += ["dip_published", "csc_published"]
        labels.update(dip_published="DIP (published)", csc_published="CSC Papyan (published)")
    missing = [lab for m, (_, lab) in BASELINES[task].items() if not available(task, m)]
    if missing:
        notes.append(f"Not available (package not installed): {', '.join(missing)}.")
    slow = {BASELINES[task][m][1]: s for m, s in seconds.items() if s > SLOW_S}
    notes += [f"{lab} took {s / 60:.1f} min of CPU here, over the {SLOW_S // 60}-min budget; it is "
              "kept on all images so that its mean stays comparable with the published one "
              "(the table is computed once: reruns skip it unless --force)." for lab, s in slow.items()]
    meta = run_meta(command, seconds, limit)
    meta["wall time"] = f"{time.time() - t0:.0f} s"
    title = {"denoising": f"Denoising, sigma = {SIGMA}: classic baselines",
             "super_resolution": "Super-resolution x4 / x8: bicubic baseline",
             "deblocking": "JPEG deblocking: the JPEG input",
             "inpainting": "Inpainting, 50 % Bernoulli mask: classic baselines"}[task]
    csv_path, _ = write_table(out_dir, task, rows, columns, meta, title=title, labels=labels,
                              published=PUBLISHED[task], notes=notes)
    return csv_path


def _command():
    env = " ".join(f"{k}={shlex.quote(os.environ[k])}" for k in ("PYTHONPATH", "DIP_DATA_DIR")
                   if os.environ.get(k))
    return f"cd {Path.cwd()} && {env + ' ' if env else ''}python {shlex.join(sys.argv)}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=TASKS, action="append", help="run this task only (repeatable)")
    ap.add_argument("--images", type=int, default=None, help="first N images per set only")
    ap.add_argument("--force", action="store_true", help="recompute tables whose CSV exists")
    ap.add_argument("--out", default="results/paper", help="output folder (default results/paper)")
    ap.add_argument("--data-dir", default=None, help="image folder (default $DIP_DATA_DIR)")
    args = ap.parse_args(argv)
    command = _command()
    for task in args.only or TASKS:
        path = Path(args.out) / f"baselines_{task}.csv"
        if path.exists() and not args.force:
            print(f"{task}: {path} exists, skipped (--force to recompute)")
            continue
        print(f"{task}: running")
        print(f"{task}: wrote {run_and_write(task, args.out, args.data_dir, args.images, command)}")


if __name__ == "__main__":
    main()
