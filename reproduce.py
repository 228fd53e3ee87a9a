"""Reproduce the experiments of Deep Image Prior (Ulyanov et al., CVPR 2018) and of the
spectral-bias paper (Shi et al., IJCV 2022) with this code, then write tables and figures.

    python reproduce.py                          # every experiment, then the tables and figures
    python reproduce.py --only denoising         # one task (repeatable); or --only figures
    python reproduce.py --images 2               # the first 2 images of every set
    python reproduce.py --images kodim01 house   # these images only (file stems)
    python reproduce.py --dry-run                # the plan: every run, its command, GPU minutes
    python reproduce.py --no-run                 # tables and figures from the runs that exist
    python reproduce.py --toy                    # the same code path at toy scale, in results/toy

On a lent GPU (a few minutes at a time), in priority order, never starting an image that cannot
finish in the budget, then one archive of what to commit; back home, unpack and commit:

    python reproduce.py --budget-s 500 --pack $OUT/pack.tar.gz
    python reproduce.py --unpack pack.tar.gz     # then git add the files it names, and commit

(``python -m paper.lease`` wraps this in a whole lease: first contact, the speed table, these
runs and a report, in one command.)

The parts live in paper/: the experiment list (experiments.py; every registered task has one,
its script's defaults on its protocol unless listed there), the runner (runner.py), the tables
(tables.py) and the figures (figures.py), compared with paper/published.py.  Each experiment is
one task script called in-process with one stated setting and one output folder
``OUT/runs/<experiment>/<image>/``, with the authors' centre crop (``--crop32``) and the paper's
configuration (``--full``) on any device; runs are resumable.  Tables (``OUT/<task>.md`` and
``.csv``) and figures (``OUT/fig_*.png``, indexed in ``OUT/figures.md``) are rebuilt from the
runs' summary.json and log.csv files; a result that does not exist yet reads "—" with the
command that produces it.  No hyperparameter is tuned on the ground truth.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import shlex
import sys
from pathlib import Path

import torch

import dataset
from paper.experiments import all_runs
from paper.budget import Budget, device_name
from paper.figures import make_figures, pictures
from paper.pack import PackError, write_pack
from paper.unpack import read_manifest, unpack
from paper.runner import FIG_IMAGE, MODES, Context, execute, plan
from paper.tables import make_table
from utils.args import integer, seconds
from utils.device import command_process
from utils.outdir import read_record
from tasks import all_tasks


def build_parser(parts):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", choices=parts,
                   help="this part only (repeatable); default: all")
    p.add_argument("--images", nargs="+", help="N (the first N images of every set) or image "
                   "names (file stems)")
    p.add_argument("--out", help="output folder (default results/paper; with --toy the "
                   "git-ignored results/toy)")
    p.add_argument("--data-dir", help="the paper's images (default $DIP_DATA_DIR, ./dataset)")
    p.add_argument("--seeds", type=integer(0), nargs="+", default=[0, 1],
                   help="seeds of 'ours' (denoising); the first seeds every other run "
                   "(default 0 1)")
    p.add_argument("--figure-image", default=FIG_IMAGE, help="the image of the figure runs "
                   "(default F16; else the first denoising image)")
    p.add_argument("--toy", action="store_true", help="toy scale for CPU tests: tiny nets, "
                   "64×64 crops, 6 iterations, one image")
    p.add_argument("--no-run", action="store_true", help="no fits: tables and figures from "
                   "the runs that exist")
    p.add_argument("--dry-run", action="store_true", help="print the runs, their commands and "
                   "GPU-minute bounds, then exit")
    p.add_argument("--mode", choices=list(MODES), default="tf32", help="numeric mode of every "
                   "fit: tf32 is PyTorch's default (TF32 convolutions on CUDA), fp32 strict; "
                   "use another only where benchmarks/parity.py found it within 0.1 dB "
                   "(default tf32)")
    p.add_argument("--budget-s", type=seconds, help="seconds: run the pending runs in priority "
                   "order, never starting an image that cannot finish in the time left")
    p.add_argument("--pack", metavar="FILE", help="write one archive (≤ 16 MiB) of the tables, "
                   "figures and run records to commit (rewritten after each run); the runs "
                   "draw no per-image plots (--no-plots: the archive keeps none)")
    p.add_argument("--unpack", metavar="FILE", help="write an archive of --pack into --out, "
                   "then rebuild the tables and figures (no fits) with the scale, images, seeds "
                   "and mode of the command that packed it")
    return p


def main(argv=None):
    """Run the selected parts, then write their tables and figures; returns 0, or 1 when a run
    failed (its rows then read '—').  From the command line (``argv`` None) denormals are
    flushed and freed memory kept in the process first, as the task scripts do
    (``utils.device.command_process``)."""
    if argv is None:
        command_process()
    argv = list(sys.argv[1:] if argv is None else argv)
    tasks = all_tasks()
    parts = [*tasks, "figures"]
    parser = build_parser(parts)
    args = parser.parse_args(argv)
    if args.unpack:   # its tables are of the packed runs: their scale, selection and folder
        try:
            adopt_packed(args, parser, read_manifest(args.unpack).get("command", ""))
        except PackError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        args.no_run = True
    try:
        ctx = Context(args, argv)
        if args.pack:
            writable_file(args.pack)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    only = args.only or parts
    runs = all_runs(tasks, only, args.seeds, args.toy)
    unknown, held = ctx.unknown_names(runs)
    if unknown:
        where = f"the selected sets of {ctx.data_dir}" if ctx.data_dir else \
            "any set: there is no data folder"
        names = ", ".join(held[:12]) + (", ..." if len(held) > 12 else "")
        print(f"error: --images {' '.join(unknown)}: no such image in {where}"
              + (f" (they hold {names})" if held else ""), file=sys.stderr)
        return 2
    if ctx.data_dir is None and not args.unpack:   # before the plan: its counts are then 1
        print(f"no data folder (--data-dir, ${dataset.DATA_ENV}, ./dataset): every run uses its "
              "script's embedded image; `python -m dataset.fetch all` gets the paper's images")
    if args.dry_run:
        plan(runs, ctx)
        return 0
    if args.unpack:
        try:
            written, meta = unpack(args.unpack, ctx.out)
        except PackError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        pngs = sorted(str(p) for p in written if p.suffix == ".png" and "runs" in p.parts)
        print(f"unpacked {len(written)} files into {ctx.out}; " + (
            "toy scale: not the paper's, not to commit" if args.toy else "commit them (the run "
            "PNGs are git-ignored: " + (f"git add -f {' '.join(pngs)}" if pngs else "none") + ")"))
        ctx.command = meta.get("command", ctx.command)   # the tables name the runs' command
        if meta.get("dropped"):   # rebuilt from what is left, the figures would be worse
            print(f"warning: {args.unpack}: the pack left out {', '.join(meta['dropped'])}; "
                  "its figures are kept as they came, not rebuilt")
            only = [p for p in only if p != "figures"]
    try:
        ctx.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"error: {ctx.out}: cannot be the output folder ({e.strerror or e})",
              file=sys.stderr)
        return 2
    threads = torch.get_num_threads()
    if args.toy:  # tiny tensors: one thread is faster, and immune to a loaded CPU
        torch.set_num_threads(1)
    budget = None
    if args.budget_s is not None and not args.no_run:
        budget = Budget(args.budget_s, device_name(), finished_records(ctx.out))
    status = 0
    try:
        if not args.no_run:
            # a kill at the command's limit keeps what has finished: the pack is rewritten
            # after each call that finished an image (budgeted) or after each run
            repack = (lambda: _pack(args.pack, ctx, tasks, quiet=True)) if args.pack else None
            for run in runs:
                status = max(status, 1 if execute(run, ctx, budget, repack) else 0)
                if repack is not None and budget is None:
                    status = max(status, repack())
        for part in only:
            paths = make_figures(ctx, tasks) if part == "figures" else make_table(ctx,
                                                                                   tasks[part])
            print(f"{part}: wrote " + ", ".join(str(p) for p in paths))
        if args.pack:
            status = max(status, _pack(args.pack, ctx, tasks))
    finally:
        torch.set_num_threads(threads)
    return status


def finished_records(out):
    """The summary.json records under ``out/runs`` (the budget's rates of earlier sessions)."""
    return [r for f in (out / "runs").glob("*/*/summary.json") if (r := read_record(f.parent))]


def adopt_packed(args, parser, command: str):
    """Take the scale, images, seeds and mode of the command that packed the runs (a value
    given here that differs is named in a warning), and its parts unless ``--only`` is given;
    without ``--out`` the folder is then that scale's default."""
    packed = packed_options(command, parser)
    if packed is None:      # no command, or one this version cannot read: the options given
        return
    show = lambda v: " ".join(map(str, v)) if isinstance(v, list) else str(v)  # noqa: E731
    for k in ("toy", "images", "seeds", "mode", "figure_image"):
        mine, theirs = getattr(args, k), getattr(packed, k)
        if mine != parser.get_default(k) and mine != theirs:
            print(f"warning: --{k.replace('_', '-')} {show(mine)} not used: the pack's runs "
                  f"were made with {show(theirs)}", file=sys.stderr)
        setattr(args, k, theirs)
    args.only = args.only or packed.only


def packed_options(command: str, parser):
    """The options of the reproduce.py command a pack names (``PACK.json``), or None."""
    words = shlex.split(command)
    at = next((i for i, w in enumerate(words) if w.endswith("reproduce.py")), None)
    if at is None:
        return None
    try:
        with contextlib.redirect_stderr(io.StringIO()):   # a later version's option: unread
            return parser.parse_args(words[at + 1:])
    except SystemExit:
        return None


def writable_file(path):
    """Raise ValueError where ``path`` cannot be a file: a folder, or under a file (checked
    before any fit; nothing is made)."""
    p = Path(path).absolute()
    if p.is_dir():
        raise ValueError(f"--pack {path}: is a folder; name the archive's file")
    above = next(a for a in p.parents if a.exists())
    if not above.is_dir():
        raise ValueError(f"--pack {path}: {above} is a file, not a folder")


def _pack(path, ctx, tasks, quiet=False) -> int:
    try:
        f, n, size = write_pack(path, ctx.out, ctx.command, pictures(ctx, tasks))
    except (PackError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not quiet:
        print(f"pack: {f} ({n} files, {size / 2**20:.2f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
