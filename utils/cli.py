"""The command line every task script shares: options from the config block, data discovery,
the per-image loop around ``utils.task.fit_problem``, outputs and the summary table.

    python denoising.py [--image PATH] [--quick | --full] [--ENTRY VALUE ...]

Exit codes: 0 ok, 1 an image failed during its fit or its outputs could not be written, 2 bad
input (options, files, masks), 3 out of GPU memory, 130 interrupted (Ctrl-C or SIGTERM).

Inputs are sacred: every option is checked (``utils.config.check_config``), every input file
loaded and every path the run writes compared with every path it reads (``utils.outdir``)
before anything is written.  In a run over several images, a bad file gets its one-line error
and a row in the summary, the others are fitted, and the exit status is 2 at the end.  Each
image's outputs are written to a hidden folder and moved into place when complete.  Under
``torchrun`` the images are split across ranks and rank 0 writes the one summary; an image
already finished with the same hyperparameters is skipped (resumable); an interrupted one is
fitted again.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

import dataset
from utils.config import (ALIASES, AUTO, RUN_OPTIONS, check_config, choices, fit_options,
                          network_options, number_or_auto, recorded, recorded_as_read,
                          resolve_config)
from utils.fit import resolve_device
from utils.atomic import atomic_write_text
from utils.imageio import (ImageError, LoadedImage, list_images, load_image, save_image, to_array,
                           to_tensor)
from utils.metrics import psnr
from utils.outdir import (WriteError, check_clashes, make_out_dir, remove_if_empty, staged,
                          unique_names)
from utils.plots import fbc_figure, montage, psnr_ratio_figure
from utils.tables import cell, csv_text, fmt, markdown, strict_json
from utils.task import (Task, course_metrics, fit_problem, member_metrics, oracle_free_metrics,
                        runs_on, score, uncertainty_map)

LOG_COLUMNS = ("loss", "psnr_obs", "psnr_gt", "psnr_ema", "fbc1", "fbc2", "fbc3", "fbc4", "fbc5",
               "ratio")
SHOWN = ("psnr_in", "psnr", "ssim", "stop_iteration", "seconds")
CHOICES = choices()


def _flag(name):
    return "--" + name.replace("_", "-")


def _add(group, name, value, help):
    text = f"{help} [{value}]".replace("%", "%%")     # argparse formats help with %
    kw = dict(dest=name, default=None, help=text)
    if name in CHOICES:
        kw["choices"] = CHOICES[name]
    if isinstance(value, bool):
        kw["action"] = argparse.BooleanOptionalAction
    elif isinstance(value, (tuple, list)):
        kw.update(nargs="+", type=type(value[0]) if value else float)
    else:
        kw["type"] = number_or_auto if name in AUTO else str if value is None else type(value)
    group.add_argument(_flag(name), *ALIASES.get(name, []), **kw)


def build_parser(task: Task) -> argparse.ArgumentParser:
    """Every option of the task: the data and outputs, its config block (help: the block's
    comments), then the loop's and the networks' other options (library defaults)."""
    p = Parser(
        prog=task.script, description=f"{task.about} Defaults are the paper's values (the "
        f"config block at the top of {task.script}); every entry can be overridden.")
    g = p.add_argument_group("data and outputs")
    g.add_argument("--image", help="a file, a folder or a glob of your own images, or a paper "
                   "image by name (default: the paper's images from the data directory)")
    g.add_argument("--data-dir", help=f"the paper's images (default ${dataset.DATA_ENV}, then "
                   "./dataset)")
    g.add_argument("--out", default=f"results/{task.name}", help="output folder [%(default)s]")
    presets = g.add_mutually_exclusive_group()
    presets.add_argument("--quick", action="store_true", help="the CPU quick preset "
                         "(automatic without a GPU)")
    presets.add_argument("--full", action="store_true", help="the paper's configuration on "
                         "any device")
    for name, (value, help) in RUN_OPTIONS.items():
        _add(g, name, value, help)
    h = p.add_argument_group(f"hyperparameters (the config block of {task.script})")
    for name, value in task.config.items():
        _add(h, name, value, task.help.get(name, ""))
    lib = p.add_argument_group("the loop and the networks (library defaults)")
    for name, (value, help) in {**fit_options(),
                                **network_options(task.config.get("net"))}.items():
        if name not in task.config and name not in RUN_OPTIONS:
            _add(lib, name, value, help)
    return p


def given_options(args) -> dict:
    """The entries the user set on the command line (lists as tuples)."""
    skip = {"image", "data_dir", "out", "quick", "full"}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items()
            if k not in skip and v is not None}


def _embedded(task: Task):
    from skimage import data
    out = []
    for name in task.defaults:
        a = getattr(data, name)().astype(np.float32) / 255.0
        a = a[..., None] if a.ndim == 2 else a
        out.append(LoadedImage(array=a, mode="L" if a.shape[-1] == 1 else "RGB", name=name))
    return out


def _load_all(paths) -> tuple[list, list]:
    """(loaded images, ImageErrors of the files that cannot be used)."""
    images, bad = [], []
    for p in paths:
        try:
            images.append(load_image(p))
        except ImageError as e:
            bad.append(e)
    return images, bad


def collect_images(task: Task, image, data_dir_arg) -> tuple[list, list, str | None]:
    """Load every input up front: (images, bad files as ImageErrors, notice).  A spec that names
    nothing usable (no such file, an empty folder, an unknown paper image) raises ImageError."""
    data_dir = dataset.resolve_data_dir(data_dir_arg)
    if image:
        try:
            paths = list_images(image)
        except ImageError:
            # not a path: a paper image by name (e.g. kodim01, image_F16_512rgb)
            found = None
            if data_dir is not None and not any(c in image for c in "*?["):
                try:
                    found = dataset.find_image(data_dir, image)
                except ValueError as e:  # an ambiguous name
                    raise ImageError(image, str(e))
            if found is None:
                raise
            paths = [found]
        return (*_load_all(paths), None)
    if data_dir_arg and not Path(data_dir_arg).is_dir():
        raise ImageError(data_dir_arg, "no such directory")
    paths = []
    if data_dir is not None:
        for group in task.data_groups:
            paths += dataset.task_images(data_dir, group)
    if paths:
        return (*_load_all(paths), None)
    notice = (f"no paper images found (--data-dir, ${dataset.DATA_ENV}, ./dataset); using "
              f"skimage.data {', '.join(task.defaults)} — get the paper's images with "
              f"`python -m dataset.fetch {task.data_groups[0].split('/')[0]}`"
              if task.data_groups else f"using skimage.data {', '.join(task.defaults)}")
    return _embedded(task), [], notice


def preflight(task: Task, images, cfg) -> tuple[list, list, list]:
    """The task's other inputs of each image (a mask), checked before any work:
    (usable images, ImageErrors, for each usable image every path its run reads)."""
    good, bad, reads = [], [], []
    for img in images:
        try:
            extra = list(task.reads(img, cfg)) if task.reads else []
        except ImageError as e:
            bad.append(e)
            continue
        good.append(img)
        reads.append([Path(p) for p in [img.path, *extra] if p is not None])
    # a file another image reads (its NAME_mask.png in the same folder) is not an image to fit
    others = {p.resolve() for r in reads for p in r[1:]}
    keep = [k for k, img in enumerate(good) if img.path is None or
            Path(img.path).resolve() not in others]
    bad = [e for e in bad if Path(e.path).resolve() not in others]
    return [good[k] for k in keep], bad, [reads[k] for k in keep]


def write_montage(path, problem, output, metrics):
    """The first input (the degraded image) | the output | the ground truth when known, each
    with its PSNR to the ground truth (the output's is the scored ``metrics['psnr']``)."""
    name, degraded = next(iter(problem.inputs.items()))
    if problem.target is None:
        montage([degraded, output], [name, "output"], path)
        return
    gt = problem.target[..., :problem.region[0], :problem.region[1]]
    if degraded.shape[:2] == tuple(gt.shape[-2:]) and degraded.shape[2] == gt.shape[1]:
        name += f" ({float(psnr(to_tensor(degraded), gt)[0]):.2f} dB)"
    montage([degraded, output, to_array(gt)],
            [name, f"output ({metrics['psnr']:.2f} dB)", "ground truth"], path)


def write_log(path, history, members):
    held = ("heldout",) if np.isfinite(history.get("heldout", np.nan)).any() else ()
    columns = LOG_COLUMNS + held
    rows = [[int(history["iteration"][i])] + [f"{history[c][i, m]:.6g}" for c in columns]
            + ([m] if members > 1 else [])
            for i in range(len(history["iteration"])) for m in range(members)]
    header = ["iteration", *columns] + (["member"] if members > 1 else [])
    atomic_write_text(path, csv_text(header, rows))


def write_outputs(folder: Path, task: Task, img: LoadedImage, cfg: dict, problem, res, config):
    """Every output of one fitted image into ``folder``; returns its summary row."""
    like, protect = problem.like, [img.path] if img.path else []

    def save(name, arr):
        return save_image(folder / f"{name}.png", arr, like=like, protect=protect)

    crop = lambda t: to_array(t[..., :problem.region[0], :problem.region[1]])  # noqa: E731
    final = crop(res.final())          # one fit, the average of restarts, or the chosen λ
    ema = crop(res.final("ema_output"))
    for name, arr in problem.inputs.items():
        save(name, arr)
    save("output", final)
    save("output_ema", ema)
    extra = problem.finish(final, folder, save) if problem.finish else {}
    members = res.output.shape[0]
    write_log(folder / "log.csv", res.history, members)
    first = res.chosen[0] if res.chosen else 0     # the chosen λ's first member
    stop_it = res.stop_iteration[first]
    if len(res.history["iteration"]):
        fbc_figure(res.history, folder / "fbc.png", member=first,
                   title=f"{task.name} · {img.name}: FBC to the observation")
        psnr_ratio_figure(res.history, folder / "psnr_ratio.png", stop_iteration=stop_it,
                          member=first, title=f"{task.name} · {img.name}")
    spread = uncertainty_map(res, problem.region)
    if spread is not None:     # the restarts' per-pixel standard deviation
        save_image(folder / "uncertainty.png", spread, protect=protect)
    metrics = {**problem.baseline, **score(problem, final), **score(problem, ema, "_ema"),
               **course_metrics(problem, res, config), **oracle_free_metrics(problem, res),
               **extra}
    if problem.inputs:   # degraded | output | ground truth (enhancement has its side by side)
        write_montage(folder / "montage.png", problem, final, metrics)
    summary = dict(image=img.name, status="interrupted" if res.interrupted else "ok", **metrics,
                   stop_iteration=stop_it if members == 1 else str(res.stop_iteration),
                   best_iteration=res.best_iteration[first], iterations=res.iterations,
                   restores=res.restores[0] if members == 1 else str(res.restores),
                   seconds=round(res.seconds, 2), its_per_sec=round(res.its_per_sec, 3),
                   device=res.device)
    each = [member_metrics(problem, res, m, runs_on(config))
            for m in range(members)] if members > 1 else []
    record = dict(summary, warnings=res.warnings, interrupted=res.interrupted,
                  **({"members": each} if each else {}), hyperparameters=recorded(cfg),
                  fit=asdict(config), torch=torch.__version__,
                  cuda=torch.version.cuda,
                  size=list(problem.region), inputs=list(problem.inputs),
                  source=dict(path=str(img.path) if img.path else None,
                              pixels_sha256=img.pixels_sha256))
    atomic_write_text(folder / "summary.json", strict_json(record))
    return summary


def run_one(task: Task, img: LoadedImage, cfg: dict, out_root: Path, **fit_overrides):
    """Fit one image and write its outputs to ``out_root/<name>/`` (all of them or, on a write
    error, none: ``utils.outdir.staged``); returns (summary row, FitResult)."""
    problem = task.make_problem(img, cfg)
    problem.like = problem.like or img
    for note in problem.notes:
        print(f"warning: {note}", file=sys.stderr)
    res, config = fit_problem(problem, cfg, **fit_overrides)
    with staged(out_root, img.name) as folder:
        summary = write_outputs(folder, task, img, cfg, problem, res, config)
    return summary, res


def write_summary(out: Path, task: str, rows: list[dict], device: str, command: str):
    """summary.csv and summary.md: one row per image, then their mean."""
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
    atomic_write_text(out / "summary.csv",
                      csv_text(keys, [[r.get(k, "") for k in keys] for r in table]))
    md = [f"# {task}: summary", "", f"device: {device} · torch {torch.__version__} · "
          f"command: `{cell(command)}`", ""]
    md += markdown(keys, [[fmt(r.get(k), k) for k in keys] for r in table])
    atomic_write_text(out / "summary.md", "\n".join(md) + "\n")
    return table


def _distributed():
    """(rank, world size) under torchrun (torch.distributed initialised: NCCL on GPUs, gloo on
    CPU), or (0, 1) for a plain run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def _finished(out: Path, cfg: dict, img: LoadedImage):
    """The summary row of this image (same pixels) already fitted to the end with the same
    hyperparameters, or None (an interrupted fit is not finished; another image that had the
    same name is fitted, and replaces it)."""
    f = out / "summary.json"
    if not f.exists():
        return None
    try:
        rec = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    if rec.get("status") != "ok" or (rec.get("source") or {}).get("pixels_sha256") != \
            img.pixels_sha256:
        return None
    same = recorded_as_read(cfg) == rec.get("hyperparameters")
    keep = ("warnings", "interrupted", "members", "hyperparameters", "fit", "torch", "cuda",
            "size", "inputs", "source")
    return {k: v for k, v in rec.items() if k not in keep} if same else None


def failed_row(name, status: str, message: str) -> dict:
    """The summary row of an image without outputs."""
    return {"image": name, "status": status, "error": message}


def _fit_one(task, img, cfg, out_root, quiet):
    """(row, exit status, device or None, stop now) of one image; prints its line."""
    try:
        summary, res = run_one(task, img, cfg, out_root, quiet=quiet)
    except WriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return failed_row(img.name, "not written", e.problem), 1, None, False
    except ImageError as e:   # an input problem found only now (e.g. a mask after the crop)
        print(f"error: {e}", file=sys.stderr)
        return failed_row(img.name, "bad input", e.problem), 2, None, False
    except torch.cuda.OutOfMemoryError:
        h, w = img.array.shape[:2]
        msg = (f"out of GPU memory for a {w}x{h} image; try --device cpu, --crop N or fewer "
               "--restarts")
        print(f"error: {img.name}: {msg}", file=sys.stderr)
        return failed_row(img.name, "out of memory", msg), 3, None, False
    except KeyboardInterrupt:   # outside the fit (which returns what it did): nothing saved
        print(f"interrupted: {img.name} was not saved", file=sys.stderr)
        return failed_row(img.name, "interrupted", "interrupted before its outputs were "
                          "written"), 130, None, True
    except Exception as e:  # one image failing must not lose the others' work
        print(f"error: {img.name}: {type(e).__name__}: {cell(e)}", file=sys.stderr)
        return failed_row(img.name, "failed", f"{type(e).__name__}: {e}"), 1, None, False
    print(f"{img.name}: " + ", ".join(f"{k} {fmt(summary[k], k)}" for k in SHOWN
                                      if k in summary))
    if res.interrupted:
        print("interrupted: outputs so far are written and marked interrupted", file=sys.stderr)
        return summary, 130, res.device, True
    return summary, 0, res.device, False


def _fit_all(task, images, cfg, out_root, rank, world, quiet):
    """Fit this rank's share of the images; returns ({index: row}, status, device)."""
    rows, status, device = {}, 0, str(resolve_device(cfg["device"]))
    for idx in range(rank, len(images), world):
        img = images[idx]
        done = _finished(out_root / img.name, cfg, img)
        if done is not None:
            rows[idx] = done
            print(f"{img.name}: already finished, skipped")
            continue
        rows[idx], code, dev, stop = _fit_one(task, img, cfg, out_root, quiet)
        status, device = max(status, code), dev or device
        if stop:
            break
    return rows, status, device


def _gather(rows, status, device, world):
    """Rank 0 gathers every rank's rows (torchrun)."""
    import torch.distributed as dist
    gathered = [None] * world
    dist.all_gather_object(gathered, (rows, status, device))
    dist.barrier()
    dist.destroy_process_group()
    return ({k: v for r, _, _ in gathered for k, v in r.items()},
            max(s for _, s, _ in gathered), gathered[0][2])


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a scheduler's kill, ``timeout``) does what Ctrl-C does: the fit stops, the last
    output is saved and the image is marked interrupted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (its usage block is for --help)."""

    def error(self, message):
        self.exit(2, f"error: {cell(message)} (see python {self.prog} --help)\n")


def plan(task: Task, args, cfg) -> tuple[list, list, Path, list, str | None]:
    """Everything checked before any work: (images to fit, bad inputs, output root, folders
    created, data notice).  ImageError when nothing can be fitted or the outputs would clash
    with an input."""
    images, bad, notice = collect_images(task, args.image, args.data_dir)
    images, bad_extra, reads = preflight(task, images, cfg)
    bad += bad_extra
    if not images:
        if len(bad) == 1:
            raise bad[0]
        for e in bad:
            print(f"error: {e}", file=sys.stderr)
        raise ImageError(args.image, f"none of the {len(bad)} inputs can be used")
    for line in unique_names(images):
        print(f"note: {line}")
    out_root = Path(args.out)
    check_clashes(out_root, {img.name: r for img, r in zip(images, reads)})
    return images, bad, out_root, make_out_dir(out_root), notice


def main(task: Task, argv=None) -> int:
    """Check the configuration, every input and every output path, then fit each image (this
    rank's share under torchrun) and write the summary.  Returns the exit status."""
    args = build_parser(task).parse_args(argv)
    with sigterm_as_interrupt():
        try:
            return _run(task, args, argv)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


def _run(task: Task, args, argv) -> int:
    try:
        cfg, notice = resolve_config(task, given_options(args),
                                     "full" if args.full else "quick" if args.quick else "auto")
        problem = check_config(task, cfg)
    except ValueError as e:
        problem = str(e)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        images, bad, out_root, created, data_notice = plan(task, args, cfg)
    except ImageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for e in bad:
        print(f"error: {e}", file=sys.stderr)
    for note in (n for img in images for n in img.notes):
        print(f"warning: {note}", file=sys.stderr)
    rank, world = _distributed()
    if world > 1 and torch.cuda.is_available():
        cfg["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    for line in (notice, data_notice):
        if line and rank == 0:
            print(line)
    command = " ".join([task.script] + list(argv if argv is not None else sys.argv[1:]))
    rows, status, device = _fit_all(task, images, cfg, out_root, rank, world,
                                    quiet=cfg["quiet"] or world > 1)
    if world > 1:
        rows, status, device = _gather(rows, status, device, world)
        if rank != 0:
            return status
    status = max(status, 2 if bad else 0)
    ordered = [rows[i] for i in sorted(rows)]
    if not any(r.get("status") in ("ok", "interrupted") for r in ordered):
        remove_if_empty(created)     # nothing fitted: nothing is left behind
        return status
    ordered += [failed_row(Path(e.path).name, "bad input", e.problem) for e in bad]
    try:
        table = write_summary(out_root, task.name, ordered, device, command)
    except OSError as e:
        print(f"error: {out_root}: cannot write the summary ({e.strerror or e})", file=sys.stderr)
        return max(status, 1)
    if len(table) > 1:
        m = table[-1]
        print("mean: " + ", ".join(f"{k} {fmt(m[k], k)}" for k in ("psnr_in", "psnr", "ssim")
                                    if k in m))
    print(f"results: {out_root}/summary.md")
    return status
