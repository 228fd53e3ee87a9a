"""Running the experiments: each run is its task script called in-process
(``utils.cli.main(task, argv)``) with ``--crop32`` (the authors' centre crop) and ``--full`` (the
paper's configuration on any device), one output folder ``OUT/runs/<experiment>/<image>/``.
Runs are resumable: the script skips an image whose summary.json holds the same hyperparameters.
"""
from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

import dataset
from models import NETS
from paper.budget import finished, ran, work
from paper.published import INPAINT_NAMES
from tasks import get_task
from utils.cli import build_parser, given_options, main as task_main
from utils.config import recorded_as_read, resolve_config
from utils.device import fit_deadline
from utils.imageio import list_images

MS_PER_IT = 4.0          # GPU cost assumed by --dry-run (decoder, 512×512, one member)
FIG_IMAGE = "image_F16_512rgb"
# toy scale: the stop rules get the smallest window (ratio 1, variance 2) and a huge ε so that
# they fire (and their code path runs) within 6 iterations
TOY = ["--quick", "--crop", "64", "--iters", "6", "--log-every", "2", "--stop-eps", "1e9"]
# a toy run's mark in its record: no paper-scale run fits a 64² crop for 6 iterations
TOY_MARK = {"crop": int(TOY[TOY.index("--crop") + 1]), "iters": int(TOY[TOY.index("--iters") + 1])}
# numeric modes of the fit (``reproduce.py --mode``; benchmarks/parity.py compares them): the
# default is PyTorch's (cuDNN runs fp32 convolutions in TF32 on CUDA), 'fp32' is strict fp32
MODES = {"tf32": (), "fp32": ("--no-tf32",), "bf16": ("--amp", "bf16"),
         "tf32-compile": ("--compile",), "bf16-compile": ("--amp", "bf16", "--compile")}
IMAGE_ORDER = {"inpainting/bernoulli": list(INPAINT_NAMES)}   # the papers' row order


def default_out(toy: bool) -> Path:
    """reproduce.py's output folder: ``results/paper`` (committed), or for toy runs the
    git-ignored ``results/toy`` (toy records must never land beside the paper's)."""
    return Path("results/toy" if toy else "results/paper")


def is_toy(rec: dict) -> bool:
    """Whether a run's record (summary.json) is of the toy scale."""
    h = rec.get("hyperparameters", {})
    return all(h.get(k) == v for k, v in TOY_MARK.items())


def command_line(script, argv) -> str:
    """The command as a user would type it; the data folder is named, not its path, and an
    absolute path is reduced to its file name (no path of a machine goes into a committed
    table)."""
    env = "DIP_DATA_DIR=<the images> " if os.environ.get(dataset.DATA_ENV) else ""
    argv = [Path(a).name if os.path.isabs(a) else a for a in argv]
    return f"{env}python {script} {shlex.join(argv)}".strip()


class Context:
    """Options of one invocation: output folder, images, scale, and the command line."""

    def __init__(self, args, argv):
        """Raises ValueError for a data folder that does not exist and for ``--images 0``."""
        self.out = Path(args.out) if args.out else default_out(args.toy)
        self.toy, self.seeds = args.toy, args.seeds
        self.data_dir = dataset.resolve_data_dir(args.data_dir)
        if self.data_dir is not None and not self.data_dir.is_dir():   # named, so explicit
            named = "--data-dir" if args.data_dir else f"${dataset.DATA_ENV}"
            if args.data_dir or not (args.unpack or args.no_run):
                raise ValueError(f"{named} {self.data_dir}: no such folder")
            self.data_dir = None    # tables from records: no image is read
        imgs = args.images or (["1"] if args.toy else None)
        self.limit = int(imgs[0]) if imgs and len(imgs) == 1 and imgs[0].isdigit() else None
        if self.limit == 0:
            raise ValueError("--images 0: give a number of images per set (at least 1) or "
                             "image names")
        self.names = None if imgs is None or self.limit is not None else {n.lower() for n in imgs}
        self.figure_name = args.figure_image
        if self.data_dir is not None and self.figure_name != FIG_IMAGE and \
                self.figure_image(exact=True) is None:     # a name given: not a silent other
            raise ValueError(f"--figure-image {self.figure_name}: no such image in the "
                             f"denoising set of {self.data_dir}")
        self.mode = getattr(args, "mode", "tf32")
        self.args, self.argv = args, argv
        self.command = command_line("reproduce.py", argv)

    def images(self, group, named: bool = True):
        """Image paths of a group (first N / named; ``named`` False: not by name), or None when
        there is no data folder (the scripts then use their embedded skimage image)."""
        if self.data_dir is None:
            return None
        if group is None:   # the figure runs: on the figure image, if it is selected
            f = self.figure_image()
            if f is None:
                return None
            return [] if named and self.names and f.stem.lower() not in self.names else [f]
        paths = dataset.task_images(self.data_dir, group)
        order = IMAGE_ORDER.get(group)
        if order:
            paths.sort(key=lambda p: order.index(p.stem) if p.stem in order else len(order))
        if self.names is not None and named:
            paths = [p for p in paths if p.stem.lower() in self.names]
        return paths[:self.limit] if self.limit else paths

    def unknown_names(self, runs) -> tuple[list[str], list[str]]:
        """The ``--images`` names that no selected run's set holds, and the names they hold."""
        if self.names is None:
            return [], []
        held = {p.stem for run in runs for p in (self.images(run.group, named=False) or [])}
        return sorted(self.names - {h.lower() for h in held}), sorted(held)

    def figure_image(self, exact: bool = False):
        """The figure runs' image: ``--figure-image``, else (the default F16 missing) the first
        denoising image; with ``exact`` the named one or None."""
        paths = dataset.task_images(self.data_dir, "denoising") if self.data_dir else []
        named = [p for p in paths if p.stem.lower() == self.figure_name.lower()]
        return (named or ([] if exact else paths) or [None])[0]

    def run_argv(self, run):
        """The task script's command line for a run (without the images), each option once."""
        return last_wins(self._run_argv(run))

    def _run_argv(self, run):
        argv = ["--crop32", "--quiet", "--out", str(self.out / "runs" / run.name)]
        argv += ["--no-plots"] if self.args.pack else []    # a pack does not keep them
        argv += ["--seed", str(self.seeds[0])] if "--seed" not in run.args else []
        argv += list(run.args) + list(MODES[self.mode])
        if self.toy:
            net = run.args[run.args.index("--net") + 1] if "--net" in run.args else \
                get_task(run.script).config["net"]
            argv += TOY + [a for k, v in NETS[net].toy.items()
                           for a in (f"--{k.replace('_', '-')}", str(v))]
            argv += ["--stop-window", "2" if "variance" in run.args else "1"]
        else:
            argv.insert(0, "--full")
        return argv

    def rerun_hint(self, part):
        """The command that produces the missing results of a part."""
        a = self.args
        opts = [f"--only {part}"]
        opts += [f"--out {shlex.quote(str(self.out))}"] if self.out != default_out(a.toy) else []
        opts += [f"--images {' '.join(a.images)}"] if a.images else []
        opts += ["--seeds " + " ".join(map(str, a.seeds))] if a.seeds != [0, 1] else []
        opts += ["--toy"] if a.toy else []
        opts += [f"--mode {self.mode}"] if self.mode != "tf32" else []
        return f"python reproduce.py {' '.join(opts)}"


def execute(run, ctx, budget=None, after_call=None):
    """Run one experiment in-process; returns the script's exit status.  With a ``budget``
    (``paper.budget.Budget``) only its pending images that fit in the time left are fitted, and
    ``after_call()`` follows each call that finished one."""
    paths = ctx.images(run.group)
    if paths == []:
        print(f"[{run.name}] no images selected, skipped")
        return 0
    if budget is not None:
        return _execute_budgeted(run, ctx, budget, paths, after_call)
    return _call(run, ctx, paths)


def _call(run, ctx, paths):
    """The task script in-process on ``paths`` (None: its embedded images); its exit status."""
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
        status = task_main(get_task(run.script), ctx.run_argv(run) + image)
    if status:
        print(f"[{run.name}] exit status {status}", file=sys.stderr)
    return status


def _execute_budgeted(run, ctx, budget, paths, after_call=None):
    """Fit the pending images of a run while the next one fits in the budget's time left: one
    image per call until its kind's rate is measured, then as many as fit (the finished images
    are passed too, so that the run's summary lists them); ``after_call()`` follows every call
    that finished an image."""
    cfg = run_config(run, ctx)
    hyper, folder = recorded_as_read(cfg), ctx.out / "runs" / run.name
    status = 0
    while True:
        pending = pending_images(run, ctx, paths, cfg)
        if not pending:
            return status
        costs = [work(p, cfg) for p, _ in pending]
        n = budget.affordable(cfg, costs)
        if n == 0 or (paths is None and n < len(pending)):
            print(f"[{run.name}] {len(pending)} image(s) pending; the next needs "
                  f"{budget.estimate(cfg, costs[0]):.0f} s, {budget.left():.0f} s left: "
                  "not started")
            return status
        n = n if budget.known(cfg) else 1
        t0 = time.monotonic()
        later = {p for p, _ in pending[n:]}
        with fit_deadline(budget.deadline):   # an estimate that was short stops at the end
            call = _call(run, ctx, None if paths is None else
                         [p for p in paths if p not in later])
        seconds = time.monotonic() - t0
        done = [rec for _, stem in pending if (rec := finished(folder / stem, hyper))]
        status = max(status, call)
        if call or not done:   # failed, or nothing finished: measure nothing, do not loop
            return status
        budget.measure(cfg, seconds, sum(ran(r) for r in done))
        if after_call is not None:
            after_call()


def pending_images(run, ctx, paths, cfg) -> list[tuple]:
    """(path, name) of the run's images without a finished record of this configuration
    (``paths`` None: the script's embedded images, fitted by one call, all or none)."""
    hyper = recorded_as_read(cfg)
    folder = ctx.out / "runs" / run.name
    items = ([(p, p.stem) for p in paths] if paths is not None else
             [(None, n) for n in get_task(run.script).defaults])
    return [(p, stem) for p, stem in items if not finished(folder / stem, hyper)]


def last_wins(argv: list[str]) -> list[str]:
    """A command line with each option given once: where the toy scale or a mode repeats an
    option of the run (``--iters 10000 … --iters 6``), its earlier values go, as the parser would
    drop them; ``--no-X`` and ``--X`` are one option.  The printed and recorded commands then
    read as they act."""
    groups, cur = [], None
    for a in argv:
        if a.startswith("--") or cur is None:
            cur = [a]
            groups.append(cur)
        else:
            cur.append(a)
    key = lambda g: g[0].replace("--no-", "--", 1)     # noqa: E731
    last = {key(g): k for k, g in enumerate(groups)}
    return [a for k, g in enumerate(groups) if last[key(g)] == k for a in g]


def run_config(run, ctx) -> dict:
    """The resolved configuration of a run."""
    task = get_task(run.script)
    args = build_parser(task).parse_args(ctx.run_argv(run))
    cfg, _ = resolve_config(task, given_options(args),
                            "full" if args.full else "quick" if args.quick else "auto")
    return cfg


def image_args(paths) -> str:
    """The ``--image`` of a run's command as a user would type it: its one image, or the folder
    that holds exactly its images (else a comment naming them: reproduce.py links them into one
    folder); nothing for the script's embedded image."""
    if not paths:
        return ""
    one_folder = len({p.parent for p in paths}) == 1 and set(list_images(paths[0].parent)) == \
        set(paths)
    if len(paths) == 1 or one_folder:
        return f" --image {shlex.quote(str(paths[0] if len(paths) == 1 else paths[0].parent))}"
    return "   # images: " + " ".join(p.stem for p in paths)


def plan(runs, ctx):
    """Print every run, its command and an upper bound of its GPU time (no early stop)."""
    total = 0.0
    for run in runs:
        cfg = run_config(run, ctx)
        paths = ctx.images(run.group)
        n = 1 if paths is None else len(paths)
        its = cfg["iters"] * n * max(cfg.get("restarts", 1), 1)
        total += its * MS_PER_IT / 6e4
        print(f"{run.name:24s} {n:3d} images × {cfg['iters']:5d} it. (×{cfg.get('restarts', 1)}) "
              f"≤ {its * MS_PER_IT / 6e4:5.1f} GPU-min   python {run.script}.py "
              f"{shlex.join(ctx.run_argv(run))}{image_args(paths)}")
    print(f"total ≤ {total:.0f} GPU-minutes at {MS_PER_IT} ms/iteration (ratio/variance stops "
          "end most fits earlier; convnet and batched restarts cost more per iteration)")
