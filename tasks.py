"""The task registry and the Python API.

Every script at the top of this repository that declares ``TASK = Task(...)`` is a task: the
command line (``python <task>.py``), ``restore`` below, the paper's experiments (reproduce.py),
the classic baselines (baselines.py) and the tests find it here, so a new task is one new file
(README, "Adding a task").

    from tasks import restore
    r = restore("noisy_photo.png", task="denoising")            # the image is the observation
    r.image.save("denoised.png")                                 # same type as the input
    r = restore(clean_array, task="denoising", observed=False, sigma=25)
    print(r.metrics["psnr"], r.stop_iteration)

Ulyanov, Vedaldi, Lempitsky, "Deep Image Prior", CVPR 2018; Shi, Mettes, Maji, Snoek, "On
Measuring and Controlling the Spectral Bias of the Deep Image Prior", IJCV 2022.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from utils.config import options, resolve_config
from utils.imageio import LoadedImage, load_image, quantise, to_array
from utils.task import Task, fit_problem, score

ROOT = Path(__file__).resolve().parent
_DECLARES = re.compile(r"^TASK = Task\(", re.M)


def _declared() -> list[str]:
    """Module names of the scripts that declare a task."""
    return [p.stem for p in sorted(ROOT.glob("*.py"))
            if _DECLARES.search(p.read_text(encoding="utf-8"))]


def all_tasks() -> dict[str, Task]:
    """``{name: Task}`` of every task script, in the papers' order (``Task.order``)."""
    tasks = [importlib.import_module(name).TASK for name in _declared()]
    return {t.name: t for t in sorted(tasks, key=lambda t: (t.order, t.name))}


def task_names() -> list[str]:
    return list(all_tasks())


def get_task(name: str) -> Task:
    """The task declared by ``<name>.py``."""
    if name not in _declared():
        raise ValueError(f"unknown task {name!r} ({' | '.join(task_names())})")
    return importlib.import_module(name).TASK


# ----------------------------------------------------------------------------- the API
@dataclass
class Restored:
    image: object          # the restored image, in the type of the input
    array: np.ndarray      # the same as float32 (H, W, C) in [0, 1]
    metrics: dict          # PSNR/SSIM to ground truth when known (observed=False)
    stop_iteration: int | None
    history: dict          # per-iteration measures (see utils.fit.FitResult.history)
    fit: object            # the full utils.fit.FitResult
    observed: np.ndarray | None = None   # the degraded image the fit saw (after any crop)


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
        if dtype in (np.uint8, np.uint16):
            return quantise(out, 255 if dtype == np.uint8 else 65535)
        return out.astype(dtype if np.issubdtype(dtype, np.floating) else np.float32)
    u8 = quantise(a)
    return Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8)


def restore(image, task="denoising", observed: bool = True, mask=None, preset: str = "auto",
            quiet: bool = True, full: bool | None = None, **hyperparameters) -> Restored:
    """Restore ``image`` with ``task`` (a name or a ``Task``).

    observed=True: the image is the degraded observation (a real noisy photo, JPEG,
    low-resolution image, or with ``mask`` holes); observed=False: apply the task's synthetic
    degradation and report PSNR/SSIM.  preset: ``auto`` (the script's CPU quick preset without
    a GPU, as the command line does), ``quick`` or ``full`` (the paper's configuration).
    Keyword arguments are the task's config entries (``iters``, ``ln_lambda``, ``lr``, ...);
    ``full=True`` is the older spelling of ``preset="full"``.
    """
    if full is not None:
        preset = "full" if full else preset
    spec = task if isinstance(task, Task) else get_task(task)
    unknown = set(hyperparameters) - set(options(spec))
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) for {spec.name}: {sorted(unknown)}")
    given = dict(hyperparameters, observed=observed, quiet=quiet)
    if mask is not None:
        if "mask" not in spec.config:
            raise ValueError(f"{spec.name} takes no mask")
        given["mask"] = str(mask)
    cfg, _ = resolve_config(spec, given, preset)
    err = spec.validate(cfg) if spec.validate else None
    if err:
        raise ValueError(err)
    img, kind, info = _as_loaded(image)
    problem = spec.make_problem(img, cfg)
    res, _ = fit_problem(problem, cfg)
    h, w = problem.region
    arr = to_array(res.output.mean(0, keepdim=True)[..., :h, :w])
    metrics = {**problem.baseline, **score(problem, arr)} if problem.target is not None else {}
    return Restored(image=_as_type(arr, kind, info), array=arr, metrics=metrics,
                    stop_iteration=res.stop_iteration[0], history=res.history, fit=res,
                    observed=problem.observed)


__all__ = ["restore", "Restored", "all_tasks", "get_task", "task_names"]
