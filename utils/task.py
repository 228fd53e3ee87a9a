"""What every task script shares: command line from the config block, data discovery, the
per-image loop around ``utils.fit.fit``, outputs and the summary table.

A task script declares its hyperparameters (a dict at the top), a CPU quick preset, and a
``make_problem(image, cfg)`` that builds the degradation and data term (utils/physics.py); this
module does the rest, identically for every task.
"""
from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import dataset
from models import build_net, code_shape, make_input
from utils.fit import FitConfig, fit, resolve_device
from utils.imageio import (ImageError, LoadedImage, atomic_write_text, center_crop_multiple,
                           list_images, load_image, pad_to_multiple, save_image, to_array,
                           to_tensor)
from utils.metrics import psnr, ssim
from utils.plots import fbc_figure, psnr_ratio_figure

NET_OPTIONS = ("ln_lambda", "upsample", "gaussian_sigmas", "norm", "norm_lambda", "pad",
               "channels", "channels_down", "channels_up", "channels_skip", "scales", "gain")
FIT_OPTIONS = tuple(FitConfig.__dataclass_fields__)
ALIASES = {"ln_lambda": "--lambda"}
HELP = {
    "net": "decoder | hourglass | convnet", "input": "input code: fourier | noise | meshgrid",
    "input_channels": "channels of the input code z", "input_var": "scale of the code",
    "ln_lambda": "Lipschitz bound λ of every conv (0 = no control)",
    "upsample": "nearest | bilinear | deconv | gaussian",
    "gaussian_sigmas": "σ per Gaussian upsampling stage", "norm": "mean_only | batch | "
    "lipschitz_batch | none", "channels": "decoder width", "iters": "iterations",
    "lr": "Adam learning rate", "stop": "stopping rule: ratio | variance | none",
    "stop_window": "n of the ratio rule (evaluations)", "stop_eps": "ε of the ratio rule",
    "log_every": "measures every k iterations", "seed": "seed of the noise, init and code",
    "device": "auto | cpu | cuda", "restarts": "independent fits of each image, fitted as one "
    "batch; the output is their average (DIP: +0.6 dB for two)",
    "crop": "centre crop (pixels) applied before anything; 0 = whole image",
}


@dataclass
class Problem:
    """One degraded image, ready to fit."""
    data_term: object                   # utils.physics.DataTerm, observation (1, C, h, w)
    out_hw: tuple                       # network output size (padded)
    region: tuple                       # true image size inside the output
    target: torch.Tensor | None = None  # ground truth (1, C, H, W) in output space, padded
    inputs: dict = field(default_factory=dict)     # name -> (H, W, C) array to save
    baseline: dict = field(default_factory=dict)   # metrics of the degraded input
    evaluate: Callable | None = None    # (H, W, C) output -> dict of metrics
    finish: Callable | None = None      # (output (H, W, C), out dir, save) -> extra metrics
    like: LoadedImage | None = None     # mode/bit depth/alpha to save outputs with


@dataclass
class Task:
    name: str
    config: dict
    quick: dict
    make_problem: Callable              # (LoadedImage, cfg dict) -> Problem
    data_groups: tuple = ("denoising",)
    defaults: tuple = ("astronaut",)    # embedded skimage.data images when no data is found
    validate: Callable | None = None    # (cfg, args) -> error message or None; may adjust cfg
    add_arguments: Callable | None = None


def _type_of(v):
    if isinstance(v, bool):
        return None
    return type(v) if v is not None else float


def build_parser(task: Task) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"{task.name}.py", description=f"Deep Image Prior {task.name} (Ulyanov et al. 2018) "
        "with spectral-bias control (Shi et al. 2022). Defaults are the paper's values; every "
        "entry of the config block can be overridden.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data and outputs")
    g.add_argument("--image", help="a file, a folder or a glob of your own images (default: "
                   "the paper's images from the data directory)")
    g.add_argument("--data-dir", help=f"the paper's images (default ${dataset.DATA_ENV}, "
                   "then ./dataset)")
    g.add_argument("--out", default=f"results/{task.name}", help="output folder")
    g.add_argument("--quick", action="store_true", help="the CPU quick preset (automatic "
                   "without a GPU)")
    g.add_argument("--full", action="store_true", help="the paper's configuration on any device")
    g.add_argument("--crop32", action="store_true", help="centre-crop to a multiple of 32 like "
                   "the authors (default: reflect-pad and crop the output back)")
    g.add_argument("--observed", action="store_true", help="the image IS the degraded "
                   "observation: apply no synthetic degradation (no ground truth)")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.add_argument("--amp", choices=["none", "bf16"], default="none",
                   help="bf16 autocast for the convolutions")
    g.add_argument("--compile", action="store_true", help="torch.compile the network")
    g.add_argument("--oracle", action="store_true", help="report the best-PSNR-to-GT output "
                   "(uses the ground truth: for figures only)")
    if task.add_arguments:
        task.add_arguments(g)
    h = p.add_argument_group("hyperparameters (the config block)")
    for key, val in task.config.items():
        flags = ["--" + key.replace("_", "-")] + ([ALIASES[key]] if key in ALIASES else [])
        kw = dict(dest=key, default=None, help=HELP.get(key, key) + f" [{val}]")
        if isinstance(val, bool):
            kw["action"] = argparse.BooleanOptionalAction
        elif isinstance(val, (tuple, list)):
            kw.update(nargs="+", type=type(val[0]) if val else float)
        else:
            kw["type"] = _type_of(val)
        h.add_argument(*flags, **kw)
    return p


def resolve_config(task: Task, args) -> tuple[dict, str | None]:
    """The config block, then the quick preset (CPU or --quick, unless --full), then the
    command line.  Returns the config and a one-line notice about the preset."""
    cfg = dict(task.config)
    device = resolve_device(args.device or cfg.get("device", "auto"))
    notice = None
    if (args.quick or device.type == "cpu") and not args.full:
        cfg.update(task.quick)
        why = "--quick" if args.quick else ("no GPU found" if args.device in (None, "auto") and
                                            cfg.get("device", "auto") == "auto" else "CPU device")
        notice = (f"{why}: using the CPU quick preset "
                  f"({', '.join(f'{k}={v}' for k, v in task.quick.items())}); --full for the "
                  "paper's configuration")
    for key in task.config:
        v = getattr(args, key, None)
        if v is not None:
            cfg[key] = tuple(v) if isinstance(task.config[key], tuple) else v
    return cfg, notice


def _embedded(task: Task):
    from skimage import data
    out = []
    for name in task.defaults:
        a = getattr(data, name)()
        a = a.astype(np.float32) / 255.0
        if a.ndim == 2:
            a = a[..., None]
        out.append(LoadedImage(array=a, alpha=None, mode="L" if a.shape[-1] == 1 else "RGB",
                               bit_depth=8, path=None, name=name))
    return out


def collect_images(task: Task, args) -> tuple[list, str | None]:
    """Load every input up front (so a bad file fails before any work or output)."""
    data_dir = dataset.resolve_data_dir(args.data_dir)
    if args.image:
        try:
            paths = list_images(args.image)
        except ImageError:
            # not a path: a paper image by name (e.g. kodim01, image_F16_512rgb)
            found = None
            if data_dir is not None and not any(c in args.image for c in "*?["):
                try:
                    found = dataset.find_image(data_dir, args.image)
                except ValueError as e:  # an ambiguous name
                    raise ImageError(args.image, str(e))
            if found is None:
                raise
            paths = [found]
        return [load_image(p) for p in paths], None
    if args.data_dir and not Path(args.data_dir).is_dir():
        raise ImageError(args.data_dir, "no such directory")
    paths = []
    if data_dir is not None:
        for group in task.data_groups:
            paths += dataset.task_images(data_dir, group)
    if paths:
        return [load_image(p) for p in paths], None
    notice = (f"no paper images found (--data-dir, ${dataset.DATA_ENV}, ./dataset); using "
              f"skimage.data {', '.join(task.defaults)} — get the paper's images with "
              f"`python -m dataset.fetch {task.data_groups[0].split('/')[0]}`")
    return _embedded(task), notice


def prepare(img: LoadedImage, cfg: dict, crop32: bool, multiple: int = 32, min_size: int = 64):
    """Quick-preset crop, then the authors' centre crop (--crop32) or a reflect pad to the next
    multiple (the output is cropped back to the exact input size)."""
    a = img.array
    c = int(cfg.get("crop") or 0)
    if c and (a.shape[0] > c or a.shape[1] > c):
        top, left = max((a.shape[0] - c) // 2, 0), max((a.shape[1] - c) // 2, 0)
        a = a[top:top + c, left:left + c]
    if crop32:
        a = center_crop_multiple(a, multiple)
    region = a.shape[:2]
    m = multiple
    if min(region) < min_size:  # the decoder needs a code of at least 2×2
        m = max(m, min_size)
    padded, _ = pad_to_multiple(a, m)
    return a, padded, region


def net_for(cfg, in_ch, out_ch):
    opts = {k: cfg[k] for k in NET_OPTIONS if k in cfg}
    if opts.get("ln_lambda") == 0:
        opts["ln_lambda"] = None
    if cfg["net"] == "hourglass":
        opts.pop("channels", None)
    else:
        for k in ("channels_down", "channels_up", "channels_skip"):
            opts.pop(k, None)
    return build_net(cfg["net"], in_ch, out_ch, **opts)


def fit_problem(problem: Problem, cfg: dict, channels: int, fit_kw: dict):
    """Build ``restarts`` nets and codes (seeded) and fit them as one batch."""
    n = max(int(cfg.get("restarts", 1)), 1)
    nets, codes = [], []
    for k in range(n):
        seed = cfg["seed"] + 1000 * k
        torch.manual_seed(seed)
        net = net_for(cfg, cfg["input_channels"], channels)
        h, w = code_shape(net, *problem.out_hw)
        g = torch.Generator().manual_seed(seed)
        codes.append(make_input(cfg["input"], cfg["input_channels"], h, w, var=cfg["input_var"],
                                generator=g))
        nets.append(net)
    term = problem.data_term
    if n > 1:  # the same observation for every restart (masks and kernels broadcast)
        term = copy.copy(term)
        term._buffers = dict(term._buffers,
                             observation=term.observation.expand(n, -1, -1, -1).contiguous())
    target = problem.target.expand(n, *problem.target.shape[1:]) if problem.target is not None \
        else None
    config = FitConfig(**{k: cfg[k] for k in FIT_OPTIONS if k in cfg}, **fit_kw)
    res = fit(nets if n > 1 else nets[0], torch.cat(codes), term, config, target=target,
              region=problem.region)
    return res, config


def _csv_text(header, rows):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _fmt(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return "" if v is None else str(v)


def write_summary(out: Path, task: str, rows: list[dict], device: str, command: str):
    keys = list(dict.fromkeys(k for r in rows for k in r))
    def numeric(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    # the mean of each numeric column over the images that have it (failed images have none)
    num = [k for k in keys if all(numeric(r[k]) for r in rows if r.get(k) is not None)
           and any(numeric(r.get(k)) for r in rows)]
    mean = {k: float(np.nanmean([r[k] for r in rows if numeric(r.get(k))]))
            for k in num if k not in ("iterations",)}
    mean["image"] = "mean"
    table = rows + ([mean] if len(rows) > 1 else [])
    atomic_write_text(out / "summary.csv", _csv_text(keys, [[r.get(k, "") for k in keys]
                                                            for r in table]))
    md = [f"# {task}: summary", "", f"device: {device} · torch {torch.__version__} · "
          f"command: `{command}`", "", "| " + " | ".join(keys) + " |",
          "|" + "---|" * len(keys)]
    md += ["| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |" for r in table]
    atomic_write_text(out / "summary.md", "\n".join(md) + "\n")
    return table


def run_one(task: Task, img: LoadedImage, cfg: dict, args, out_root: Path, fit_kw: dict):
    problem = task.make_problem(img, cfg, args)
    problem.like = problem.like or img
    channels = problem.data_term.observation.shape[1]
    res, config = fit_problem(problem, cfg, channels, fit_kw)
    out = out_root / img.name
    protect = [img.path] if img.path else []
    crop = lambda t: to_array(t[..., :problem.region[0], :problem.region[1]])  # noqa: E731
    members = res.output.shape[0]
    final = crop(res.output.mean(0, keepdim=True))          # average of the restarts
    ema = crop(res.ema_output.mean(0, keepdim=True))
    for name, arr in problem.inputs.items():
        save_image(out / f"{name}.png", arr, like=problem.like, protect=protect)
    save_image(out / "output.png", final, like=problem.like, protect=protect)
    save_image(out / "output_ema.png", ema, like=problem.like, protect=protect)
    save = lambda name, arr: save_image(out / f"{name}.png", arr, like=problem.like,  # noqa
                                        protect=protect)
    extra = problem.finish(final, out, save) if problem.finish else {}
    h = res.history
    cols = ["loss", "psnr_obs", "psnr_gt", "psnr_ema", "fbc1", "fbc2", "fbc3", "fbc4", "fbc5",
            "ratio"]
    rows = [[int(h["iteration"][i])] + [f"{h[c][i, m]:.6g}" for c in cols] + ([m] if members > 1
                                                                              else [])
            for i in range(len(h["iteration"])) for m in range(members)]
    atomic_write_text(out / "log.csv", _csv_text(["iteration"] + cols + (["member"] if members > 1
                                                                         else []), rows))
    stop_it = res.stop_iteration[0]
    if len(h["iteration"]):
        fbc_figure(h, out / "fbc.png", title=f"{task.name} · {img.name}: FBC to the observation")
        psnr_ratio_figure(h, out / "psnr_ratio.png", stop_iteration=stop_it,
                          title=f"{task.name} · {img.name}")
    metrics = dict(problem.baseline)
    if problem.target is not None:
        gt = problem.target[..., :problem.region[0], :problem.region[1]]
        for tag, arr in (("", final), ("_ema", ema)):
            t = to_tensor(arr)
            metrics[f"psnr{tag}"] = float(psnr(t, gt)[0])
            metrics[f"ssim{tag}"] = float(ssim(t, gt)[0])
    if problem.evaluate:
        metrics.update(problem.evaluate(final))
    metrics.update(extra)
    summary = dict(image=img.name, **metrics,
                   stop_iteration=stop_it if members == 1 else str(res.stop_iteration),
                   best_iteration=res.best_iteration[0], iterations=res.iterations,
                   seconds=round(res.seconds, 2), its_per_sec=round(res.its_per_sec, 3),
                   device=res.device)
    record = dict(summary, warnings=res.warnings, interrupted=res.interrupted,
                  hyperparameters=cfg, fit=config.__dict__, torch=torch.__version__,
                  size=list(problem.region))
    atomic_write_text(out / "summary.json", json.dumps(record, indent=2, default=str) + "\n")
    return summary, res


def check_out_dir(out: Path, images):
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ImageError(out, f"output directory cannot be written ({e.strerror or e})")
    for img in images:
        if img.path is not None and Path(img.path).resolve().parent == (out / img.name).resolve():
            raise ImageError(img.path, "--out would write next to and over the input image")


def _distributed():
    """(rank, world size) under torchrun (torch.distributed initialised: NCCL on GPUs, gloo on
    CPU), or (0, 1) for a plain run."""
    import os
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _finished(out: Path, cfg: dict):
    """The summary row of an image already fitted with the same hyperparameters, or None."""
    f = out / "summary.json"
    if not f.exists():
        return None
    try:
        rec = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    same = json.loads(json.dumps(cfg, default=str)) == rec.get("hyperparameters")
    keep = ("warnings", "interrupted", "hyperparameters", "fit", "torch", "size")
    return {k: v for k, v in rec.items() if k not in keep} if same else None


def main(task: Task, argv=None) -> int:
    """Parse, validate, load every input, then fit each image (this rank's share under torchrun;
    images already finished with the same hyperparameters are skipped).  Exit codes: 0 ok,
    1 an image failed during its fit, 2 bad input, 3 out of memory, 130 interrupted."""
    parser = build_parser(task)
    args = parser.parse_args(argv)
    cfg, notice = resolve_config(task, args)
    problem = task.validate(cfg, args) if task.validate else None
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        images, data_notice = collect_images(task, args)
        out_root = Path(args.out)
        check_out_dir(out_root, images)
    except ImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rank, world = _distributed()
    if world > 1 and torch.cuda.is_available():
        import os
        cfg["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    for line in (notice, data_notice):
        if line and rank == 0:
            print(line)
    fit_kw = dict(quiet=args.quiet or world > 1, amp=args.amp, compile=args.compile,
                  oracle=args.oracle)
    command = " ".join([f"{task.name}.py"] + list(argv if argv is not None else sys.argv[1:]))
    rows, status, device = {}, 0, str(resolve_device(cfg["device"]))
    for idx in range(rank, len(images), world):
        img = images[idx]
        done = _finished(out_root / img.name, cfg)
        if done is not None:
            rows[idx] = done
            print(f"{img.name}: already finished, skipped")
            continue
        try:
            summary, res = run_one(task, img, cfg, args, out_root, fit_kw)
        except ImageError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except torch.cuda.OutOfMemoryError:
            h, w = img.array.shape[:2]
            msg = (f"out of GPU memory for a {w}x{h} image; try --device cpu, --crop N or fewer "
                   "--restarts")
            print(f"error: {img.name}: {msg}", file=sys.stderr)
            rows[idx], status = {"image": img.name, "error": msg}, 3
            continue
        except Exception as e:  # one image failing must not lose the others' work
            print(f"error: {img.name}: {type(e).__name__}: {e}", file=sys.stderr)
            rows[idx], status = {"image": img.name, "error": f"{type(e).__name__}: {e}"}, \
                max(status, 1)
            continue
        rows[idx] = summary
        device = res.device
        shown = {k: v for k, v in summary.items() if k in ("psnr_in", "psnr", "ssim",
                                                             "stop_iteration", "seconds")}
        print(f"{img.name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in shown.items()))
        if res.interrupted:
            status = 130
            print("interrupted: outputs so far are written", file=sys.stderr)
            break
    if world > 1:  # rank 0 gathers every rank's rows and writes the one summary
        import torch.distributed as dist
        gathered = [None] * world
        dist.all_gather_object(gathered, (rows, status, device))
        dist.barrier()
        rows = {k: v for r, _, _ in gathered for k, v in r.items()}
        status = max(s for _, s, _ in gathered)
        device = gathered[0][2]
        dist.destroy_process_group()
        if rank != 0:
            return status
    ordered = [rows[i] for i in sorted(rows)]
    if ordered:
        table = write_summary(out_root, task.name, ordered, device, command)
        if len(table) > 1:
            m = table[-1]
            print("mean: " + ", ".join(f"{k} {_fmt(m[k])}" for k in ("psnr_in", "psnr", "ssim")
                                        if k in m))
        print(f"results: {out_root}/summary.md")
    return status
