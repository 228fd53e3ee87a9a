"""Python API: restore one image from a notebook or a program.

    from utils.api import restore
    result = restore("noisy_photo.png", task="denoising")          # the image is the observation
    result.image.save("clean.png")                                  # same type as the input
    result = restore(clean_array, task="denoising", observed=False, sigma=25, iters=3000)
    print(result.metrics["psnr"], result.stop_iteration)

The hyperparameters are those of the task script's config block (``iters``, ``ln_lambda``,
``upsample``, ``lr``, ``stop``, ...); without a GPU the script's CPU quick preset applies unless
``full=True``.  Ulyanov et al. CVPR 2018; Shi et al. IJCV 2022.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from utils.imageio import LoadedImage, load_image, to_array
from utils.metrics import psnr, ssim
from utils.task import build_parser, fit_problem, resolve_config

TASKS = ("denoising", "inpainting", "deblocking", "super_resolution", "enhancement")


@dataclass
class Restored:
    image: object          # the restored image, in the type of the input
    array: np.ndarray      # the same as float32 (H, W, C) in [0, 1]
    metrics: dict          # PSNR/SSIM to ground truth when known (observed=False)
    stop_iteration: int | None
    history: dict          # per-iteration measures (see utils.fit.FitResult.history)
    fit: object            # the full utils.fit.FitResult


def _as_loaded(image) -> tuple[LoadedImage, str, object]:
    """Turn a path, PIL image, numpy array or tensor into a LoadedImage; remember the type."""
    if isinstance(image, (str, Path)):
        return load_image(image), "path", None
    if isinstance(image, Image.Image):
        a = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image)
        return _as_loaded(a)[0], "pil", image.mode
    if isinstance(image, torch.Tensor):
        t = image.detach().float().cpu()
        t = t[0] if t.dim() == 4 else t
        a = t.permute(1, 2, 0).numpy()
        return LoadedImage(array=np.ascontiguousarray(a), alpha=None,
                           mode="L" if a.shape[-1] == 1 else "RGB", bit_depth=8, path=None,
                           name="tensor"), "tensor", image.dim()
    a = np.asarray(image)
    kind = a.dtype
    f = a.astype(np.float32) / (255.0 if a.dtype == np.uint8 else
                                65535.0 if a.dtype == np.uint16 else 1.0)
    f = f[..., None] if f.ndim == 2 else f
    return LoadedImage(array=np.clip(f, 0, 1), alpha=None, mode="L" if f.shape[-1] == 1 else
                       "RGB", bit_depth=16 if a.dtype == np.uint16 else 8, path=None,
                       name="array"), "numpy", (kind, a.ndim)


def _as_type(a: np.ndarray, kind: str, info):
    if kind == "tensor":
        t = torch.from_numpy(a).permute(2, 0, 1)
        return t[None] if info == 4 else t
    if kind == "numpy":
        dtype, ndim = info
        out = a[..., 0] if ndim == 2 else a
        if dtype == np.uint8:
            return (out * 255).round().astype(np.uint8)
        if dtype == np.uint16:
            return (out * 65535).round().astype(np.uint16)
        return out.astype(dtype if np.issubdtype(dtype, np.floating) else np.float32)
    u8 = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8)


def restore(image, task: str = "denoising", observed: bool = True, mask=None,
            full: bool = False, quiet: bool = True, **hyperparameters) -> Restored:
    """Restore ``image`` with ``task``.  ``observed=True``: the image is the degraded
    observation (a real noisy photo, JPEG, low-resolution image, or with ``mask`` holes);
    ``observed=False``: apply the task's synthetic degradation and report PSNR/SSIM."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r} ({' | '.join(TASKS)})")
    script = importlib.import_module(task)
    spec = script.TASK
    unknown = set(hyperparameters) - set(spec.config)
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) for {task}: {sorted(unknown)}")
    args = build_parser(spec).parse_args([])
    args.observed, args.full, args.quiet = observed, full, quiet
    if mask is not None:
        args.mask = str(mask)
    for k, v in hyperparameters.items():
        setattr(args, k, list(v) if isinstance(v, tuple) else v)
    cfg, _ = resolve_config(spec, args)
    err = spec.validate(cfg, args) if spec.validate else None
    if err:
        raise ValueError(err)
    img, kind, info = _as_loaded(image)
    problem = spec.make_problem(img, cfg, args)
    channels = problem.data_term.observation.shape[1]
    res, _ = fit_problem(problem, cfg, channels, dict(quiet=quiet))
    h, w = problem.region
    out = res.output.mean(0, keepdim=True)[..., :h, :w]
    metrics = {}
    if problem.target is not None:
        gt = problem.target[..., :h, :w]
        metrics = {"psnr": float(psnr(out, gt)[0]), "ssim": float(ssim(out, gt)[0]),
                   **problem.baseline}
    arr = to_array(out)
    return Restored(image=_as_type(arr, kind, info), array=arr, metrics=metrics,
                    stop_iteration=res.stop_iteration[0], history=res.history, fit=res)


__all__ = ["restore", "Restored", "TASKS"]
