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

import difflib
import importlib
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from utils.config import check_config, choices, flag, options, resolve_config
from utils.estimate import fitted_pixels, printer
from utils.imageio import ImageError, to_array
from utils.inmemory import MaskInMemory, from_memory, to_memory
from utils.task import Task, fit_problem, oracle_free_metrics, score
from utils.tiles import TileStore, store_for, tiled

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
    config: dict | None = None   # the configuration resolved (amp: the mode used, never auto)
    # the net's output as fitted, float32 (H, W, C): what ``array`` shows it as where they differ
    # (enhancement: the smooth base, not the enhanced image; a colour JPEG: its Y, not its RGB)
    fitted: np.ndarray | None = None

    def __repr__(self):      # the fields in a line (the arrays' text would fill a screen)
        h, w, c = self.array.shape
        return (f"Restored({type(self.image).__name__} {w}x{h}x{c}, metrics={self.metrics}, "
                f"stop_iteration={self.stop_iteration})")


def in_python(text: str, spec: Task) -> str:
    """A message of the command line's, with its options spelled as ``restore()`` takes them:
    ``--iters`` → ``iters``, ``--crop N`` → ``crop=N``, ``--device cuda`` → ``device="cuda"``,
    ``--lambda`` → ``ln_lambda``, ``--full`` → ``preset="full"``.  A value is taken with its
    flag where it is ``N``, ``FILE``, a number, ``auto`` or one of the option's choices."""
    opts, known = options(spec), choices()
    names = {flag(n): n for n in opts}
    names.update({"--full": 'preset="full"', "--quick": 'preset="quick"'})
    names.update({f"--no-{flag(n)[2:]}": f"{n}=False" for n, (v, _) in opts.items()
                  if isinstance(v, bool)})                    # --no-use-ema → use_ema=False

    def spelled(m):
        name, value = names.get(m.group(1)), m.group(2)
        if name is None:
            return m.group(0)
        if not value or name not in opts:     # a bare option, or --full / --quick
            return name + (f" {value}" if value else "")
        if value in ("N", "FILE") or re.fullmatch(r"-?[0-9.]+", value):
            return f"{name}={value}"
        if value in known.get(name, ()) or value == "auto" or (
                name == "device" and re.fullmatch(r"cpu|cuda(:[0-9]+)?", value)):
            return f'{name}="{value}"'
        return f"{name} {value}"
    value = r"[A-Za-z0-9](?:[A-Za-z0-9._:]*[A-Za-z0-9])?"
    return re.sub(rf"(--[a-z][a-z0-9-]*)(?: ({value}))?", spelled, text)


def prepare_problem(image, task, observed: bool = True, mask=None, preset: str = "auto",
                    quiet: bool = True, **hyperparameters):
    """What ``restore`` fits, before the fit: ``(Problem, resolved cfg, like, LoadedImage)``,
    the options checked as the command line's (a ValueError or TypeError names the problem).
    benchmarks/robustness.py scores the classic baselines on the very same degraded image."""
    spec = task if isinstance(task, Task) else get_task(task)
    opts = options(spec)
    unknown = sorted(set(hyperparameters) - set(opts))
    if "plots" in hyperparameters:
        raise ValueError("plots is an option of the command line: restore() draws no figures")
    if unknown:
        near = [m for u in unknown for m in difflib.get_close_matches(u, opts, 1)]
        raise ValueError(f"unknown hyperparameter(s) for {spec.name}: {unknown}"
                         + (f" (did you mean {', '.join(near)}?)" if near else ""))
    given = dict(hyperparameters, observed=observed, quiet=quiet)
    if mask is not None:
        if "mask" not in spec.config:
            raise ValueError(f"{spec.name} takes no mask")
        given["mask"] = str(mask) if isinstance(mask, (str, Path)) else MaskInMemory(mask)
    try:
        cfg, notice = resolve_config(spec, given, preset, whole=True)
        err = check_config(spec, cfg)
    except ValueError as e:     # e.g. device="cuda" without a GPU
        err = str(e)
    if err:
        raise ValueError(in_python(err, spec)) from None
    lines = (notice or "").splitlines()
    for note in (n for n in lines if n.startswith("note: ")):   # an option not used: a warning
        warnings.warn(in_python(note[len("note: "):], spec), stacklevel=3)
    notice = "\n".join(n for n in lines if not n.startswith("note: "))
    if notice and not quiet:
        print(in_python(notice, spec))
    img, like = from_memory(image)
    try:
        return spec.problem(img, cfg), cfg, like, img
    except ImageError as e:     # the task's own check of its inputs, in restore()'s words
        raise ImageError(e.path, in_python(e.problem, spec)) from None


def restore(image, task="denoising", observed: bool = True, mask=None, preset: str = "auto",
            quiet: bool = True, full: bool | None = None, tiles_folder=None,
            **hyperparameters) -> Restored:
    """Restore ``image`` with ``task`` (a name or a ``Task``).

    observed=True: the image is the degraded observation (a real noisy photo, JPEG,
    low-resolution image, or with ``mask`` holes); observed=False: apply the task's synthetic
    degradation and report PSNR/SSIM.  preset: ``auto`` (the script's CPU quick preset without
    a GPU, as the command line does), ``quick`` or ``full`` (the paper's configuration); the
    quick preset restores the image whole, at its own size (super-resolution: cut to a
    multiple of the factor first; its centre crop is the command
    line's quick check of the demo and paper images: give ``crop=N`` for the centre only);
    the quick presets of denoising, deblocking, inpainting and deblurring fit an image larger
    than 128×128 in blended 128×128 tiles, each by its own net (``tile=0``: one net for the
    whole image; utils/tiles.py).  tiles_folder: a folder where a tiled fit keeps each tile as
    it finishes; the same call made again after an interrupt (Ctrl-C, a closed session) fits
    only the tiles left; the folder is removed once the image is restored (one call at a time
    per folder; one holding other files is refused).
    quiet=False: the notices, the estimate line and the progress bar.  mask (inpainting): a
    path, or a mask in memory (a bool array, True = known pixel; an array, tensor or PIL image,
    white = known), checked as a mask file is.
    Keyword arguments are the task's config entries (``iters``, ``ln_lambda``, ``lr``, ...),
    checked like the command line's options; ``full=True`` is the older spelling of
    ``preset="full"``.

    The image: a path, PIL image, numpy array or torch tensor; the restored image comes back in
    the same type, dtype, layout and range (utils/inmemory.py has the rules: uint8 by 255,
    uint16 by 65535, floats in [0, 1], other integers by their range; anything else is a
    TypeError or ValueError, never a white or black image).
    """
    if full is not None:
        preset = "full" if full else preset
    spec = task if isinstance(task, Task) else get_task(task)
    problem, cfg, like, img = prepare_problem(image, spec, observed, mask, preset, quiet,
                                              **hyperparameters)
    mask_notes = cfg["mask"].image.notes if isinstance(cfg.get("mask"), MaskInMemory) else []
    for note in img.notes + mask_notes + problem.notes:
        warnings.warn(in_python(note, spec), stacklevel=2)
    on_rate = None if quiet else printer(cfg["stop"] != "none", fitted_pixels(img.array.shape,
                                                                           cfg),
                                         words=lambda line: in_python(line, spec))
    store = None
    if tiles_folder is not None:
        TileStore.check_folder(tiles_folder)
        if tiled(problem, cfg):
            reads = [str(p) for p in spec.reads(img, cfg)] if spec.reads else []   # a mask
            store = store_for(tiles_folder, problem, cfg, img.pixels_sha256, reads)
    res, _ = fit_problem(problem, cfg, on_rate=on_rate, tile_store=store)
    if res.interrupted:     # Ctrl-C stops the caller too (the fit itself returns what it did)
        raise KeyboardInterrupt
    if store is not None:
        store.remove()
    h, w = problem.region
    arr = to_array(res.final()[..., :h, :w])
    metrics = {**problem.baseline, **score(problem, arr)} if problem.target is not None else \
        dict(problem.baseline)
    metrics.update(oracle_free_metrics(problem, res))
    fitted = arr
    if problem.like is not None:    # the alpha the task gives its outputs (deblocking's gray: none)
        like = replace(like, alpha=problem.like.alpha)
    if problem.present is not None:   # what the user gets (a colour JPEG's Y + its chroma,
        arr = np.asarray(problem.present(arr), np.float32)      # enhancement's enhanced image)
    return Restored(image=to_memory(arr, like), array=arr, metrics=metrics,
                    stop_iteration=res.stop_iteration[res.chosen[0] if res.chosen else 0],
                    history=res.history, fit=res,
                    observed=problem.observed, config=cfg, fitted=fitted)


__all__ = ["restore", "prepare_problem", "Restored", "all_tasks", "get_task", "task_names"]
