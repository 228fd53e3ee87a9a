"""What a task is, and how one image of it is fitted and scored.

A task script declares its config block (the paper's values, each entry with its help as a
trailing comment), its presets, and ``make_problem(image, cfg) -> Problem``, which builds the
degradation and data term (utils/physics.py) from a loaded image and the resolved configuration;
``TASK = Task(...)`` registers it (the registry is ``tasks.py`` at the top of the repository).
The command line (utils/cli.py), the Python API (``tasks.restore``) and the paper's experiments
(reproduce.py) fit through ``fit_problem``; they and the classic baselines (baselines.py) score
through ``score``, so a number means the same thing wherever it is printed.
"""
from __future__ import annotations

import inspect
import math
import os
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch

from models import build_net, code_shape, make_input
from utils.config import (FROM_FILE, SYNTHETIC, Preset, block_help, fit_config, net_kwargs,
                          width_flags)
from utils.device import native_bf16, resolve_device
from utils.estimate import padded_multiple, say
from utils.fit import fit
from utils.imageio import (ImageError, LoadedImage, center_crop_multiple, pad_to_multiple,
                           to_array, to_tensor)
from utils.members import choose_lambda, dropped_compile, lambdas
from utils.metrics import psnr, ssim
from utils.tiles import fit_tiled, tile_plan, tiled


@dataclass
class Problem:
    """One degraded image, ready to fit."""
    data_term: object                   # utils.physics.DataTerm, observation (1, C, h, w)
    out_hw: tuple                       # network output size (padded)
    region: tuple                       # the image's part restored, top-left of the output
    target: torch.Tensor | None = None  # ground truth (1, C, H, W) in output space, padded
    inputs: dict = field(default_factory=dict)     # name -> (H, W, C) array to save
    baseline: dict = field(default_factory=dict)   # metrics of the degraded input
    evaluate: Callable | None = None    # (H, W, C) output -> dict of metrics
    finish: Callable | None = None      # (output (H, W, C), out dir, save) -> extra metrics
    present: Callable | None = None     # output as fitted (H, W, C) -> the image the user gets
    #                                     (a colour JPEG's Y + chroma; enhancement's enhanced)
    like: LoadedImage | None = None     # mode/bit depth/alpha to save outputs with
    observed: np.ndarray | None = None  # the degraded image, (h, w, C) unpadded (baselines)
    notes: list = field(default_factory=list)      # warnings for the user (one line each)
    # ((tile, tile_overlap), utils.tiles.tile_plan's answer) once found: not given, kept
    tiling: tuple | None = field(default=None, repr=False, compare=False)


@dataclass
class Task:
    """A registered task: a name, its config block and presets, ``make_problem``, where its
    images are, and how the paper evaluates it.

    protocol: the paper's evaluation, ``((data group, {entry: value}), ...)``: each group of
        images with the settings it is scored at (default: each data group, the block's values).
    baselines: classic methods compared in baselines.py: names in ``utils.classic.METHODS``.
    metrics: the summary keys its tables report.
    validate: ``cfg -> message`` for a value the task cannot use (None when fine); the options
        every task shares are checked before it (``utils.config.check_config``).
    reads: ``(image, cfg) -> paths`` of the other files the task reads for an image (a mask),
        checked before any work (an ``ImageError`` for a bad one) and protected from the run's
        writes.
    auto_options: the options other than ``ln_lambda`` (``--lambda auto``, every task) that
        this task can choose itself when given ``auto`` (denoising: ``sigma``).
    """
    name: str
    config: dict
    make_problem: Callable              # (LoadedImage, cfg dict) -> Problem
    quick: dict = field(default_factory=dict)
    # the quick preset's values that replace ``quick``'s when a CPU fit runs in bf16 (a native-bf16
    # CPU's faster convolutions spent on quality: benchmarks/cpu_preset.py)
    quick_bf16: dict = field(default_factory=dict)
    presets: tuple = ()                 # conditional Presets (utils.config.Preset)
    data_groups: tuple = ()
    defaults: tuple = ("astronaut",)    # embedded skimage.data images when no data is found
    validate: Callable | None = None
    reads: Callable | None = None
    auto_options: tuple = ()            # options besides ln_lambda that may be "auto"
    synthetic: tuple = ()   # options of the synthetic degradation only: None with --observed
    from_file: tuple = ()   # of them, those a file the image's run reads replaces: None then
    protocol: tuple = ()
    baselines: tuple = ()
    metrics: tuple = ("psnr", "ssim")   # the columns of its tables
    order: int = 99                     # place in listings (the papers' order)
    help: dict = field(default_factory=dict)
    about: str = ""

    def __post_init__(self):
        self.presets = tuple(p if isinstance(p, Preset) else Preset(**p) for p in self.presets)
        SYNTHETIC.update(self.synthetic)      # for the questions of observed fits (asked)
        FROM_FILE.update(self.from_file)
        source = inspect.getsourcefile(self.make_problem)
        if source and not self.help:
            self.help = block_help(source)
        if source and not self.about:
            doc = inspect.getmodule(self.make_problem).__doc__ or ""
            self.about = doc.strip().splitlines()[0] if doc.strip() else self.name
        if not self.protocol:
            self.protocol = tuple((g, {}) for g in self.data_groups)

    def problem(self, img, cfg: dict) -> Problem:
        """``make_problem(img, cfg)``, with a note for the user where ``tile`` is set but a hole
        of the mask or an observed pixel's footprint is too wide for tiles, so that one net fits
        it, or the overlap is widened (``utils.tiles.tile_plan``)."""
        problem = self.make_problem(img, cfg)
        _cut_alpha(problem, img, cfg)
        note = tile_plan(problem, cfg)[1] if tiled(problem, cfg) else None
        c, (h, w) = int(cfg.get("crop") or 0), img.array.shape[:2]
        if c and h <= c and w <= c and (h, w) != (c, c):
            problem.notes.insert(0, f"--crop {c}: the image is {w}x{h}, no larger, so it is "
                                    "fitted whole")
        if note:
            problem.notes.append(note)
        if cfg.get("amp") == "bf16" and resolve_device(cfg.get("device", "auto")).type == "cpu" \
                and not native_bf16():     # asked for: said, since it is far slower, not refused
            problem.notes.append("--amp bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), "
                                 "so oneDNN emulates it, 10 to 185 times slower than fp32 here; "
                                 "--amp auto runs fp32")
        return problem

    @property
    def script(self) -> str:
        return f"{self.name}.py"


def prepare(img: LoadedImage, cfg: dict, multiple: int = 32, min_size: int = 64):
    """The ``crop`` entry's centre crop, then the authors' centre crop (``crop32``) or a
    reflect pad to the next multiple (the output is cropped back to the exact input size).
    Returns (image, padded image, region (h, w))."""
    a = _cropped(img.array, cfg, img, multiple)
    region = a.shape[:2]
    padded, _ = pad_to_multiple(a, padded_multiple(region, multiple, min_size))
    return a, padded, region


def _cropped(a: np.ndarray, cfg: dict, img, multiple: int = 32) -> np.ndarray:
    """(H, W[, C]) ``a`` (the image's pixels, or its alpha) after the ``crop`` entry's centre
    crop and the authors' ``crop32``."""
    c = int(cfg.get("crop") or 0)
    cropped = bool(c and (a.shape[0] > c or a.shape[1] > c))
    if cropped:
        top, left = max((a.shape[0] - c) // 2, 0), max((a.shape[1] - c) // 2, 0)
        a = a[top:top + c, left:left + c]
    if cfg.get("crop32"):
        if min(a.shape[:2]) < multiple:   # nothing would be left of it
            h, w = a.shape[:2]
            after = " after --crop" if cropped else ""
            raise ImageError(_where(img), f"--crop32 needs an image at least {multiple}x"
                             f"{multiple}, this one is {w}x{h}{after}; without --crop32 it is "
                             "padded instead")
        a = center_crop_multiple(a, multiple)
    return a


def _cut_alpha(problem: Problem, img, cfg: dict) -> None:
    """Where the output is a part of the image (a crop; super-resolution's multiple of the
    factor), its alpha is cut as the pixels were, not resized to it (``attach_alpha``)."""
    if img.alpha is None or not (problem.like is None or problem.like is img):
        return      # a task's own choice (deblocking's gray outputs have none) stands
    a = _cropped(img.alpha, cfg, img)[:problem.region[0], :problem.region[1]]
    if a.shape == tuple(problem.region) != img.alpha.shape:
        problem.like = replace(img, alpha=a)


def _where(img) -> object:
    """How an error names an image: its file, else its name."""
    return "image" if img is None else (img.path or img.name)


# What one member (one net of one fit) costs in memory, per output pixel and per channel of the
# net's width, at fp32: measured on the CPU (one thread) as the growth of the process's peak RSS
# (ru_maxrss) over 3 iterations of fit_problem with the decoder on a 256² colour image, as
# members were added: 2 -> 4 members at 64 channels, 222 MiB per member (55 bytes per pixel and
# channel); 1 -> 2 members at 128 channels, 524 MiB (65).  Activations and their gradients
# dominate, so the cost scales with pixels × width; the hourglass (128/128) used 38 % more in
# all than the decoder for one member and is counted at the same rate (a lower bound there).
MEMBER_BYTES_PER_PIXEL_CHANNEL = 64


def net_width(cfg: dict) -> int:
    """The widest layer of the configured net: the largest of its channel options."""
    widths = []
    for k in ("channels", "channels_down", "channels_up", "channels_skip"):
        v = net_kwargs(cfg).get(k) if "net" in cfg else cfg.get(k)
        widths += [int(x) for x in (v if isinstance(v, (tuple, list)) else [v])
                   if isinstance(x, (int, float))]
    return max(widths, default=128)


def memory_estimate(cfg: dict, out_hw) -> int:
    """Bytes the members of one fit need (``MEMBER_BYTES_PER_PIXEL_CHANNEL`` × output pixels ×
    the net's width × restarts × the λs of ``--lambda auto``)."""
    members = max(int(cfg.get("restarts", 1)), 1) * len(lambdas(cfg))
    return (members * int(out_hw[0]) * int(out_hw[1]) * net_width(cfg)
            * MEMBER_BYTES_PER_PIXEL_CHANNEL)


def available_memory(device) -> tuple[int | None, str]:
    """(bytes free for a fit on ``device``, what they are): the device's free memory on CUDA,
    the RAM available (MemAvailable) on the CPU; None where it cannot be told."""
    dev = torch.device(device)
    if dev.type == "cuda":
        try:
            # free on the device, plus what this process's allocator holds but does not use
            # (an earlier image's fit): both are this fit's to take
            cached = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
            return int(torch.cuda.mem_get_info(dev)[0] + cached), f"free on {dev}"
        except Exception:   # no driver answer: nothing to compare with
            return None, str(dev)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "RAM available"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "RAM available"
    except (ValueError, OSError, AttributeError):
        return None, "RAM"


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def check_memory(problem: Problem, cfg: dict) -> None:
    """An ImageError naming the image when its fit would not fit in memory
    (:func:`memory_estimate` against :func:`available_memory`), before any net is built."""
    need = memory_estimate(cfg, problem.out_hw)
    have, what = available_memory(resolve_device(cfg.get("device", "auto")))
    if have is None or need <= have:
        return
    restarts, groups = max(int(cfg.get("restarts", 1)), 1), len(lambdas(cfg))
    h, w = problem.out_hw
    members = f"{restarts} restart(s)" + (f" × {groups} λs of --lambda auto" if groups > 1
                                          else "")
    raise ImageError(_where(problem.like), f"the fit needs about {_gb(need)} ({members} × "
                     f"{w}x{h} px × {net_width(cfg)} channels × "
                     f"{MEMBER_BYTES_PER_PIXEL_CHANNEL} bytes), more than the {_gb(have)} "
                     f"{what}: use fewer --restarts, --crop N or a narrower net "
                     f"({width_flags(cfg.get('net', 'decoder'))})")


def make_nets(cfg: dict, out_channels: int, out_hw) -> tuple[list, torch.Tensor]:
    """``restarts`` nets and their codes for each λ (:func:`lambdas`), member (λ j, restart k)
    at row ``j · restarts + k`` and seeded with ``seed + 1000 k`` (the members of one restart
    differ only in λ); the global random state is left as it was."""
    nets, codes = [], []
    restarts = max(int(cfg.get("restarts", 1)), 1)
    for lam in lambdas(cfg):
        kw = net_kwargs(cfg)
        if lam != kw.get("ln_lambda"):   # no control among the auto λs: an infinite bound,
            kw["ln_lambda"] = lam or math.inf   # so that every member has the same layers
        n, c = _nets(cfg, kw, restarts, out_channels, out_hw)
        nets += n
        codes.append(c)
    return nets, torch.cat(codes)


def _nets(cfg, kw, restarts, out_channels, out_hw):
    nets, codes = [], []
    for k in range(restarts):
        seed = cfg["seed"] + 1000 * k
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = build_net(cfg["net"], cfg["input_channels"], out_channels, **kw)
        h, w = code_shape(net, *out_hw)
        g = torch.Generator().manual_seed(seed)
        codes.append(make_input(cfg["input"], cfg["input_channels"], h, w, var=cfg["input_var"],
                                generator=g))
        nets.append(net)
    return nets, torch.cat(codes)


def fit_problem(problem: Problem, cfg: dict, observers=(), on_rate=None, tile_store=None,
                **fit_overrides):
    """Fit ``restarts`` independent nets (for each λ of ``--lambda auto``) to the problem as one
    batch; returns (``utils.fit.FitResult``, the ``FitConfig`` used).  observers, on_rate: see
    ``utils.fit.Fit``.  An ImageError, before any net is built, when the members would not fit
    in memory (:func:`check_memory`).  With ``tile`` set and an image larger than a tile, each
    tile is fitted so and the results blended (``utils.tiles.fit_tiled``), unless a hole of the
    mask is too wide for a tile (``utils.tiles.hole_note``) or an observed pixel reads more than
    half a tile (``utils.tiles.seam_overlap``, which also widens a too narrow overlap): one net,
    the note in its warnings; ``Task.problem`` puts it in the problem's notes, which the callers
    show before the fit);
    ``tile_store``: a ``utils.tiles.TileStore`` keeping the finished tiles (resumable)."""
    if not tiled(problem, cfg):
        return _fit_whole(problem, cfg, observers, on_rate, **fit_overrides)
    overlap, note = tile_plan(problem, cfg)
    if overlap is None:
        res, config = _fit_whole(problem, cfg, observers, on_rate, **fit_overrides)
    else:
        lines = None if fit_overrides.get("quiet", cfg.get("quiet")) else say
        res, config = fit_tiled(problem, dict(cfg, tile_overlap=overlap), lambda p, rate:
                                _fit_whole(p, cfg, observers, rate, **fit_overrides), on_rate,
                                lines, tile_store)
        # every tile kept from an earlier run: no fit here to hand its configuration on
        config = config or _fit_config(cfg, fit_overrides)
    res.warnings += [note] if note else []
    return res, config


def _fit_config(cfg: dict, fit_overrides: dict):
    """The ``FitConfig`` of a fit of ``cfg``: ``--lambda auto`` tracks the held-out loss."""
    if len(lambdas(cfg)) > 1:
        fit_overrides = dict(fit_overrides, track_heldout=True)
    return fit_config(cfg, **fit_overrides)


def _fit_whole(problem: Problem, cfg: dict, observers=(), on_rate=None, **fit_overrides):
    check_memory(problem, cfg)
    nets, codes = make_nets(cfg, problem.data_term.observation.shape[1], problem.out_hw)
    n = len(nets)
    # a copy, so that the fit (which moves its term to the device) leaves the problem's alone;
    # the same observation for every member (masks and kernels broadcast)
    y = problem.data_term.observation
    term = problem.data_term.with_buffers(
        **({"observation": y.expand(n, -1, -1, -1).contiguous()} if n > 1 else {}))
    target = problem.target.expand(n, *problem.target.shape[1:]) if problem.target is not None \
        else None
    groups = lambdas(cfg)
    config = _fit_config(cfg, fit_overrides)
    res = fit(nets if n > 1 else nets[0], codes, term, config, target=target,
              region=problem.region, observers=observers, on_rate=on_rate)
    if len(groups) > 1:
        choose_lambda(res, groups, config.stop_window)
    if config.compile and dropped_compile(res.warnings):   # the record says what ran: eager
        config = replace(config, compile=False)
    return res, config


def oracle_free_metrics(problem: Problem, res) -> dict:
    """What a fit says about itself without the ground truth (and, where the ground truth is
    known, how its members differ):

    - ``heldout_loss``: the mean of (A x − y)² over the held-out pixels for the result x (no
      PSNR estimate is derived from it: on a 128² crop, loss − σ² missed the true MSE by 4 dB,
      from the few held-out pixels and the clipping of y at 0 and 1, README);
    - ``lambda_chosen`` with ``--lambda auto``;
    - with several members averaged: ``uncertainty_mean``, the mean per-pixel standard deviation
      across them (grey levels, 0-255; the map is :func:`uncertainty_map`), and with the ground
      truth ``psnr_members`` (each member alone) and ``psnr_spread`` (their max − min).
    """
    out = {}
    if res.holdout is not None:
        term = problem.data_term        # on the CPU, like the result: the fit used a copy
        with torch.no_grad():
            ax = term(res.final())
        r = (ax - term.observation) ** 2
        m = res.holdout.expand_as(r)
        out["heldout_loss"] = float((r * m).sum() / m.sum())
    if "lambda" in res.selection:
        out["lambda_chosen"] = res.selection["lambda"]
    tiles = res.selection.get("tiles")
    if tiles:     # each tile's own stop (None: it ran to the end) and, with auto, its own λ
        out["tiles"] = res.selection.get("tile_count", len(tiles))
        # the overlap fitted with: --tile-overlap, or what a blur or SR's downsampling widened it to
        out["tile_overlap"] = res.selection["tile_overlap"]
        out["tile_stops"] = tile_stops(res.selection)
        if any("lambda" in i for i in tiles):
            out["lambda_chosen"] = " / ".join(i.get("lambda", "-") for i in tiles)
    members = _members(res, problem.region)
    if len(members) > 1:
        out["uncertainty_mean"] = float(255 * members.std(0).mean())
        if problem.target is not None:
            gt = problem.target[..., :problem.region[0], :problem.region[1]]
            each = [float(psnr(x[None], gt)[0]) for x in members]
            out["psnr_members"] = " / ".join(f"{v:.2f}" for v in each)
            out["psnr_spread"] = max(each) - min(each)
    return out


def tile_stops(selection: dict) -> str:
    """``tile_stops`` of a tiled fit (its ``selection``: ``tiles``, ``tile_count``), tile by
    tile: the iteration its stop rule ended it at, ``-`` where it ran to the end, ``interrupted
    after N``, or ``not fitted`` (an interruption came first)."""
    found = {i.get("tile", k): i for k, i in enumerate(selection["tiles"])}
    return " / ".join("not fitted" if i is None else f"interrupted after {i['iterations']}"
                      if i.get("interrupted") else str(i["stop_iteration"] or "-")
                      for i in map(found.get, range(selection.get("tile_count", len(found)))))


def _members(res, region) -> torch.Tensor:
    """The outputs averaged into the result, cropped to the image: (K, C, h, w)."""
    t = res.output if res.chosen is None else res.output[res.chosen]
    return t[..., :region[0], :region[1]]


def uncertainty_map(res, region, full_scale: float = 0.1) -> np.ndarray | None:
    """(h, w, 1) per-pixel standard deviation across the averaged members (mean over the
    channels), divided by ``full_scale`` (a deviation of 0.1, about 26 grey levels, is white)
    and clipped to [0, 1]; None for a single member."""
    members = _members(res, region)
    if len(members) < 2:
        return None
    std = members.std(0).mean(0)
    return (std / full_scale).clamp(0, 1)[..., None].numpy()


def score(problem: Problem, output: np.ndarray, tag: str = "") -> dict:
    """The task's metrics of an output (h, w, C) at the true image size: PSNR and SSIM to the
    ground truth (when known) and the task's own (``evaluate``, untagged outputs only)."""
    out = {}
    if problem.target is not None:
        gt = problem.target[..., :problem.region[0], :problem.region[1]]
        t = to_tensor(output)
        out[f"psnr{tag}"] = float(psnr(t, gt)[0])
        out[f"ssim{tag}"] = float(ssim(t, gt)[0])
    if problem.evaluate and not tag:
        out.update(problem.evaluate(output))
    return out


def _peak(res, m: int):
    """The best logged PSNR to the ground truth of member ``m`` (the oracle's peak, at
    ``best_iteration``), or None without a ground truth or a log (or in tiles)."""
    if "tiles" in res.selection:    # its columns are the tiles', not the members'
        return None
    col = res.history.get("psnr_gt")
    if col is None or not len(col) or not np.isfinite(col[:, m]).any():
        return None
    return float(np.nanmax(col[:, m]))


def member_metrics(problem: Problem, res, m: int, run_on: bool) -> dict:
    """One member's own numbers: its scores at the stop (or end) and of its moving average, its
    stop and oracle iterations, the oracle's peak (the best logged PSNR); with ``run_on`` the
    scores of its last output (at ``iters``, after the stop); with ``--lambda auto`` its λ and
    held-out loss at its stop (what chose the λ)."""
    h, w = problem.region
    crop = lambda t: to_array(t[m:m + 1, :, :h, :w])  # noqa: E731
    out = {**score(problem, crop(res.output)), **score(problem, crop(res.ema_output), "_ema"),
           "stop_iteration": res.stop_iteration[m], "best_iteration": res.best_iteration[m],
           "psnr_peak": _peak(res, m), **res.selection.get("members", {}).get(m, {})}
    if run_on:
        out.update(score(problem, crop(res.last_output), "_last"))
    return out


def runs_on(config) -> bool:
    """Whether a fit went on after its stop (``FitConfig.run_on`` with a stop rule)."""
    return bool(config.run_on and config.stop != "none")


def course_metrics(problem: Problem, res, config) -> dict:
    """The course of the result where the fit saw all of it (no stop, or ``run_on``): the
    oracle's peak PSNR of a one-fit result (its iteration is ``best_iteration``; an average of
    fits has no logged peak: see ``members``) and, with ``run_on``, the PSNR of the last output
    (the average of the averaged fits' last outputs)."""
    run_on = runs_on(config)
    if not (run_on or config.stop == "none") or problem.target is None:
        return {}
    h, w = problem.region
    single = (len(res.chosen) if res.chosen else res.output.shape[0]) == 1 \
        and "tiles" not in res.selection     # a tiled result's log is its tiles'
    out = {"psnr_peak": _peak(res, res.chosen[0] if res.chosen else 0)} if single else {}
    if run_on:
        last = to_array(res.final("last_output")[..., :h, :w])
        out["psnr_last"] = score(problem, last, "_last")["psnr_last"]
    return out
