"""The command line every task script shares: options from the config block, data discovery,
the per-image loop around ``utils.task.fit_problem``, outputs and the summary table.

    python denoising.py [--image PATH] [--quick | --full] [--ENTRY VALUE ...]

Exit codes: 0 ok, 1 an image failed during its fit or its outputs could not be written, 2 bad
input (options, files, masks), 3 out of GPU memory, 130 interrupted (Ctrl-C or SIGTERM).

Inputs are sacred: every option is checked (``utils.config.check_config``), every input file
loaded and every path the run writes compared with every path it reads (``utils.outdir``)
before anything is written.  In a run over several images, a bad file gets its one-line error
and a row in the summary, the others are fitted, and the exit status is 2 at the end.  Each
image's outputs are written to a hidden folder and moved into place when complete, all or
nothing (``utils.outdir.staged``).  Under ``torchrun`` the images are split across ranks and rank
0 writes the one summary.  An image already finished asking the same question (pixels,
hyperparameters, the other files read, every output still there: ``utils.outputs``) is skipped
(resumable); an interrupted one is fitted again (and an interrupted refit of a finished one
is not saved: its result and summary row stand), except the tiles of a tiled fit it had
finished (``utils.tiles.TileStore``, ``.NAME.tiles/``: removed once the outputs are written).
The summary tables hold the rows of every run on the output folder, merged under a lock.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import torch

import dataset
from utils.config import (ALIASES, AUTO, RUN_OPTIONS, UNWARMED, check_config, choices,
                          fit_options, network_options, number_or_auto, resolve_config)
from utils.device import command_process, resolve_device
from utils.estimate import fitted_pixels, printer
from utils.imageio import ImageError, LoadedImage, list_images, load_image
from utils.outdir import (WriteError, check_clashes, clean_leftovers, make_out_dir,
                          remove_if_empty, staged, unique_names)
from utils.outputs import (failed_row, fingerprints, finished_row, finished_record, image_line,
                           interruption, replaced_result, skip_note, write_outputs,
                           write_summary)
from utils.tables import cell, fmt
from utils.task import Task, fit_problem, tile_stops
from utils.tiles import store_for, tiled

CHOICES = choices()


def _add(group, name, value, help, quick=None):
    """``quick``: the task's CPU quick preset, whose value of ``name`` the help names too."""
    q = f"; CPU quick preset: {quick[name]}" if quick and name in quick else ""
    if q and name == "crop":    # the preset's quick check; an image of yours is fitted whole
        q += " for the demo and the paper's images"
    text = f"{help} [{value}{q}]".replace("%", "%%")     # argparse formats help with %
    kw = dict(dest=name, default=None, help=text)
    if name in CHOICES:
        kw["choices"] = CHOICES[name]
    if isinstance(value, bool):
        kw["action"] = argparse.BooleanOptionalAction
    elif isinstance(value, (tuple, list)):
        kw.update(nargs="+", type=type(value[0]) if value else float)
    else:
        kw["type"] = number_or_auto if name in AUTO else str if value is None else type(value)
    group.add_argument("--" + name.replace("_", "-"), *ALIASES.get(name, []), **kw)


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
        _add(g, name, value, help, task.quick)
    h = p.add_argument_group(f"hyperparameters (the config block of {task.script})")
    for name, value in task.config.items():
        _add(h, name, value, task.help.get(name, ""), task.quick)
    lib = p.add_argument_group("the loop and the networks (library defaults)")
    for name, (value, help) in {**fit_options(),
                                **network_options(task.config.get("net"))}.items():
        if name not in task.config and name not in RUN_OPTIONS:
            _add(lib, name, value, help, task.quick)
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
                    found = dataset.find_image(data_dir, image, task.data_groups)
                except ValueError as e:  # an ambiguous name
                    raise ImageError(image, str(e))
            if found is None:
                stem = Path(image.strip("/").lower().rpartition("/")[2]).stem
                known = sorted((r["path"] for r in dataset.manifest()      # the task's first
                                if Path(r["path"]).stem.lower() == stem),
                               key=lambda p: not p.startswith(task.data_groups))
                if not known:
                    raise
                group = known[0].split("/")[0]
                where = f"not in {data_dir}" if data_dir else "no data folder found"
                raise ImageError(image, f"a paper image ({known[0]}), but {where}: get it with "
                                 f"`python -m dataset.fetch {group}`, or give --data-dir")
            paths = [found]   # named, so the line says which file the name is
            return (*_load_all(paths), f"{image}: the paper's {found.relative_to(data_dir)}")
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


def names_files(image) -> bool:
    """Whether ``--image`` names the user's own files (a path, folder or glob: restored whole by
    the quick preset), not a paper image by name (the preset's quick check of its centre)."""
    if not image:
        return False
    try:
        list_images(image)
    except ImageError:
        return False
    return True


def clean_notice(task: Task, cfg: dict, own: bool) -> str | None:
    """The line for a user's own images (``own``: :func:`names_files`) fitted as the paper's
    experiments are (not ``--observed``): each is taken as the clean image, degraded first and
    scored against; a scored task only (enhancement degrades nothing)."""
    if not own or cfg["observed"] or not task.metrics:
        return None
    return (f"your images are taken as clean: {task.name} degrades each one first and scores "
            "the result against it (the paper's experiments); --observed restores an image "
            "that is already degraded as it is")


def preflight(task: Task, images, cfg) -> tuple[list, list, list]:
    """The task's other inputs of each image (a mask), checked before any work:
    (usable images, ImageErrors, for each usable image every path its run reads)."""
    good, bad, reads = [], [], []
    named = {str(Path(v)) for v in cfg.values() if isinstance(v, (str, Path))}    # options
    for img in images:
        try:
            extra = list(task.reads(img, cfg)) if task.reads else []
        except ImageError as e:
            bad.append(e)
            continue
        found = [Path(p).name for p in extra if str(p) not in named]    # beside the image
        if found and speaks_for_all():
            print(f"note: {img.name}: reads {', '.join(found)} too (found beside it)")
        good.append(img)
        reads.append([Path(p) for p in [img.path, *extra] if p is not None])
    # a file another image reads (its NAME_mask.png in the same folder) is not an image to fit
    others = {p.resolve() for r in reads for p in r[1:]}
    keep = [k for k, img in enumerate(good) if img.path is None or
            Path(img.path).resolve() not in others]
    bad = [e for e in bad if Path(e.path).resolve() not in others]
    return [good[k] for k in keep], bad, [reads[k] for k in keep]


def run_one(task: Task, img: LoadedImage, cfg: dict, out_root: Path, reads=(), rest=(),
            **fit_overrides):
    """Fit one image and write its outputs to ``out_root/<name>/`` (all of them or, on a write
    error, none: ``utils.outdir.staged``); ``reads``: the fingerprints of the other files it
    reads (``fingerprints``); ``rest``: the images still to fit after it, for the estimate line
    (printed unless ``quiet``); returns (summary row, FitResult)."""
    problem = task.problem(img, cfg)
    problem.like = problem.like or img
    for note in problem.notes:
        print(f"warning: {note}", file=sys.stderr)
    on_rate = None if fit_overrides.get("quiet", cfg.get("quiet")) else printer(
        cfg.get("stop", "none") != "none", fitted_pixels(img.array.shape, cfg),
        sum(fitted_pixels(o.array.shape, cfg) for o in rest), len(rest))
    store = image_tiles(out_root, img, problem, cfg, reads) if tiled(problem, cfg) else None
    res, config = fit_problem(problem, cfg, on_rate=on_rate, tile_store=store, **fit_overrides)
    if res.interrupted and finished_record(out_root / img.name):   # not replaced by a partial
        tiles = res.selection.get("tiles") or []
        where = interruption(res.iterations, tile_stops(res.selection) if tiles else None)
        kept = "; the tiles it finished are kept: this command again resumes" * any(
            not i.get("interrupted") for i in tiles)
        return failed_row(img.name, "interrupted", f"{where}, not saved: its folder keeps its "
                          f"finished result, and summary.md its row{kept}"), res
    with staged(out_root, img.name) as folder:
        summary = write_outputs(folder, task, img, cfg, problem, res, config, reads)
    if store is not None and not res.interrupted:   # finished: its tiles go (another
        store.remove()                                  # question's stay, as at a skip)
    return summary, res


def tiles_folder(out_root, name: str) -> Path:
    """Where the command line keeps an image's finished tiles (``utils.tiles.store_for``)."""
    return Path(out_root) / f".{name}.tiles"


def image_tiles(out_root, img, problem, cfg, reads):
    """The store of the tiles of this image's fit asking this question (:func:`tiles_folder`)."""
    return store_for(tiles_folder(out_root, img.name), problem, cfg, img.pixels_sha256, reads)


def forget_own_tiles(task, img, cfg, out_root, reads) -> None:
    """At a skip: the tiles kept for this (finished) question go; another question's stay."""
    with contextlib.suppress(Exception):   # no problem to key: nothing of ours to know
        store = tiles_folder(out_root, img.name).is_dir() and image_tiles(
            out_root, img, task.problem(img, cfg), cfg, reads)
        if store and store.holds_own():
            store.remove()


def _distributed(on_gpu: bool):
    """(rank, world size) under torchrun (torch.distributed initialised: NCCL where the fits run
    on GPUs, each rank on its own, gloo on CPU), or (0, 1) for a plain run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist
    if not dist.is_initialized():
        if on_gpu:   # NCCL's object collectives use the current device: else all on cuda:0
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if on_gpu else "gloo")
    return dist.get_rank(), world


def _fit_one(task, img, cfg, out_root, quiet, reads=(), rest=()):
    """(row, exit status, device or None, stop now) of one image; prints its line.  No row
    (None) for a fit interrupted over a finished result, in the fit or around it (its problem
    being built, its outputs written): that result's row stands."""
    try:
        summary, res = run_one(task, img, cfg, out_root, reads, rest, quiet=quiet)
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
        row = failed_row(img.name, "interrupted", "interrupted before its outputs were written")
        return None if finished_record(out_root / img.name) else row, 130, None, True
    except Exception as e:  # one image failing must not lose the others' work
        print(f"error: {img.name}: {type(e).__name__}: {cell(e)}", file=sys.stderr)
        return failed_row(img.name, "failed", f"{type(e).__name__}: {e}"), 1, None, False
    if res.interrupted and "error" in summary:   # not saved: its earlier result and row stand
        print(f"{img.name}: {summary['error']}", file=sys.stderr)
        return None, 130, res.device, True
    print(f"{img.name}: " + image_line(summary))
    if res.interrupted:
        print("interrupted: outputs so far are written and marked interrupted", file=sys.stderr)
        return summary, 130, res.device, True
    return summary, 0, res.device, False


def _fit_all(task, images, cfg, out_root, rank, world, quiet, others=None):
    """Fit this rank's share of the images (``others``: {name: the other files its run
    reads}); returns ({index: row}, status, device): an image interrupted over its finished
    result has no row here (the summary keeps that result's)."""
    rows, status, device = {}, 0, str(resolve_device(cfg["device"]))
    for idx in range(rank, len(images), world):
        img = images[idx]
        try:
            reads = fingerprints((others or {}).get(img.name, ()))
        except OSError as e:   # the mask went away since the checks
            rows[idx] = failed_row(img.name, "bad input", f"cannot read its inputs ({e})")
            print(f"error: {img.name}: cannot read its inputs ({e})", file=sys.stderr)
            status = max(status, 2)
            continue
        rec = finished_record(folder := out_root / img.name)     # read once for the three
        if (done := finished_row(rec, folder, cfg, img, reads)) is not None:
            rows[idx] = done
            forget_own_tiles(task, img, cfg, out_root, reads)
            print(f"{img.name}: already finished, skipped" + skip_note(rec, folder, cfg))
            continue
        note = replaced_result(rec, folder, cfg, img, reads, task.name)
        if note:
            print(f"note: {img.name}: {note}", file=sys.stderr)
        rest = images[idx + world::world]
        row, code, dev, stop = _fit_one(task, img, cfg, out_root, quiet, reads, rest)
        rows.update({idx: row} if row is not None else {})
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
    """argparse with a one-line error (its usage block is for --help), said once under torchrun
    (by rank 0; every rank exits 2)."""

    def error(self, message):
        self.exit(2, f"error: {cell(message)} (see python {self.prog} --help)\n"
                  if speaks_for_all() else None)


def plan(task: Task, args, cfg) -> tuple[list, list, Path, list, str | None, dict]:
    """Everything checked before any work: (images to fit, bad inputs, output root, folders
    created, data notice, {image name: the other files its run reads}).  ImageError when nothing
    can be fitted or the outputs would clash with an input."""
    images, bad, notice = collect_images(task, args.image, args.data_dir)
    images, bad_extra, reads = preflight(task, images, cfg)
    bad += bad_extra
    if not images:
        if len(bad) == 1:
            raise bad[0]
        for e in bad if speaks_for_all() else ():
            print(f"error: {e}", file=sys.stderr)
        raise ImageError(args.image, f"none of the {len(bad)} inputs can be used")
    for line in unique_names(images):
        print(f"note: {line}")
    out_root = Path(args.out)
    check_clashes(out_root, {img.name: r for img, r in zip(images, reads)})
    others = {img.name: r[1:] if img.path is not None else r for img, r in zip(images, reads)}
    created = make_out_dir(out_root)
    for d in clean_leftovers(out_root):
        print(f"note: removed {d.name}, left by a write that was killed")
    return images, bad, out_root, created, notice, others


def main(task: Task, argv=None) -> int:
    """Check the configuration, every input and every output path, then fit each image (this
    rank's share under torchrun) and write the summary.  Returns the exit status.  From the
    command line (``argv`` None) the process is the command's own: denormals are flushed in it
    and freed memory kept, first (``utils.device.command_process``); a caller's process keeps its
    own settings."""
    if argv is None:
        command_process()
    args = build_parser(task).parse_args(argv)
    with sigterm_as_interrupt():
        try:
            return _run(task, args, argv)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


def speaks_for_all() -> bool:
    """Whether this process prints what every rank would (not a torchrun worker of rank > 0)."""
    try:
        return int(os.environ.get("WORLD_SIZE") or 1) <= 1 or int(os.environ.get("RANK") or 0) == 0
    except ValueError:      # not torchrun's variables
        return True


def _run(task: Task, args, argv) -> int:
    own = names_files(args.image)
    lead = speaks_for_all()
    try:
        cfg, notice = resolve_config(task, given_options(args),
                                     "full" if args.full else "quick" if args.quick else "auto",
                                     whole=own)
        problem = check_config(task, cfg)
    except ValueError as e:
        problem = str(e)
    if problem:
        if lead:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        images, bad, out_root, created, data_notice, others = plan(task, args, cfg)
    except ImageError as e:
        if lead:
            print(f"error: {e}", file=sys.stderr)
        return 2
    for e in bad if lead else ():
        print(f"error: {e}", file=sys.stderr)
    for note in (n for img in images for n in img.notes):
        print(f"warning: {note}", file=sys.stderr)
    on_gpu = resolve_device(cfg["device"]).type == "cuda"    # --device cpu stays on the CPU
    rank, world = _distributed(on_gpu)
    if world > 1 and on_gpu:
        cfg["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    for line in (notice, data_notice, clean_notice(task, cfg, own)):
        if line and rank == 0:
            print(line)
    command = " ".join([task.script] + list(argv if argv is not None else sys.argv[1:]))
    rows, status, device = _fit_all(task, images, cfg, out_root, rank, world,
                                    quiet=cfg["quiet"] or world > 1, others=others)
    if world > 1:
        rows, status, device = _gather(rows, status, device, world)
        if rank != 0:
            return status
    if bad and world > 1:
        # torchrun's launcher turns a worker's non-zero exit (2 included) into its own traceback
        print(f"error: {len(bad)} of {len(bad) + len(images)} inputs could not be used (their "
              "summary rows say why); the other images were fitted, and under torchrun this "
              "exits 0", file=sys.stderr)
    else:
        status = max(status, 2 if bad else 0)
    ordered = [rows[i] for i in sorted(rows)]
    if not any(r.get("status") in ("ok", "interrupted") for r in ordered):
        remove_if_empty(created)     # nothing fitted: nothing is left behind
        return status
    ordered += [failed_row(Path(e.path).name, "bad input", e.problem) for e in bad]
    try:
        m = write_summary(out_root, task.name, ordered, device, command)
    except OSError as e:
        print(f"error: {out_root}: cannot write the summary ({e.strerror or e})", file=sys.stderr)
        return max(status, 1)
    if m is not None:
        scores = [f"{k} {fmt(m[k], k)}" for k in ("psnr_in", "psnr", "ssim")
                  if fmt(m.get(k), k) != ""]
        if scores:     # none without the ground truth (--observed, enhancement)
            print("mean: " + ", ".join(scores) + f" ({m['status']})")
    for line in (notice or "").splitlines():    # said again: the fits' lines scrolled it away
        if UNWARMED in line:
            print(line)
    print(f"results: {out_root}/summary.md")
    return status
