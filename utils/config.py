"""A task's configuration: its config block, the library options around it, and presets.

The config block at the top of a task script is the one source of a task's values and of
their help: the trailing comment of each entry is its ``--help`` text (``block_help``).
Options the block does not list keep the library's default and help, defined once beside the
code that uses them: the loop's in ``utils.fit.FitConfig`` (field metadata), the networks' in
``models.nets`` (``net_options``, ``OPTION_HELP``), the framework's in ``RUN_OPTIONS`` below.

``resolve_config`` applies, in this order: the block; each conditional preset whose ``when``
matches (e.g. DIP's ×8 super-resolution recipe); the quick preset (``preset='quick'``, or
``'auto'`` without a GPU), which thus wins over a conditional one (a quick ×8 run stays quick);
what the user gave (command line or keyword arguments); then the library defaults of whatever
is still unset.  Ulyanov et al. CVPR 2018; Shi et al. IJCV 2022.
"""
from __future__ import annotations

import argparse
import ast
import io
import json
import math
import tokenize
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from models import INPUTS, NETS, OPTION_CHOICES, OPTION_HELP, net_options
from utils.device import native_bf16, resolve_amp, resolve_device
from utils.fit import FIT_CHOICES, FitConfig
from utils.imageio import MIN_SIZE

# entries of every task beside its block: (default, help)
RUN_OPTIONS = {
    "observed": (False, "the image IS the degraded observation: no synthetic degradation, "
                        "no ground truth"),
    "crop32": (False, "centre-crop to a multiple of 32 like the authors (default: "
                      "reflect-pad, and crop the output back to the input's size)"),
    "tile": (0, "fit an image larger than N×N in N×N tiles (a multiple of 32), each by its own "
                "net, blended (utils/tiles.py); 0: one net for the whole image"),
    "tile_overlap": (32, "pixels by which neighbouring tiles overlap (their outputs are blended "
                         "there)"),
    "plots": (True, "draw each image's fbc.png, psnr_ratio.png and montage.png (about 0.6 s an "
                    "image on a CPU; --no-plots: not drawn, nor by a rerun that finds it done)"),
}
ALIASES = {"ln_lambda": ["--lambda"]}   # other spellings of an option on the command line
# numbers that may also be "auto" (chosen from the observation): --lambda for every task, the
# others for the tasks that list them in Task.auto_options
AUTO = ("ln_lambda", "sigma")
UNWARMED = "of the untrained net's first output"   # the short-average note (said again last)
NOT_RECORDED = ("quiet", "plots")   # presentation only: not part of a run's hyperparameters
PRESET_CHOICES = ("auto", "quick", "full")
# the tasks whose bf16 fits were measured as good as fp32 and faster on a CPU with native bf16
# (``python -m benchmarks.cpu_modes``: a loss of at most 0.1 dB on average and 0.3 dB in the
# worst run over its grid, ≤ 0.9× fp32's time per iteration): ``--amp auto`` chooses bf16 there
# (utils.device.resolve_amp), task -> what was measured.  **None today** (results/cpu_modes.md,
# AMD EPYC with avx512_bf16, 2026-12-05, with the centred bf16 convolutions of
# models.layers.centred_conv; the demo image, astronaut, seed 0: 28.14 dB against fp32's 28.12,
# seed 1: 27.34 against 28.10): denoising lost 3.50 dB in one run of 8 (retina, seed 1:
# a fit that found another course; the same bf16 fit with 1 thread instead of 2 gave 38.96, above
# fp32's 38.03), deblocking 0.34 dB (hubble_deep_field, where fp32 with another thread count
# moved 0.23), and inpainting lost 0.57 dB on average (worst 2.74: more than fp32 with another
# thread count moved its runs, 0.12, less than fp32 in the channels-last layout did, 1.20, worst
# 6.55: the per-run bound cannot tell bf16 from a reordering of fp32's sums).  On a Xeon with
# AMX (results/cpu_modes_denoising_amx.md, 32 runs, 2026-12-06, with the quick preset's
# stop_min_gain and stop_decide_at_end) denoising's bf16 kept the mean (Δ +0.15 dB, 95 % interval
# −0.02 … +0.32) and lost 0.99 dB in its worst run (brick seed 6, where fp32 with 1 thread instead
# of 2 lost 0.57: the fit's own sensitivity to rounding); deblocking's
# (results/cpu_modes_deblocking_amx.md, 8 runs) lost 0.20 dB on average and 1.02 in its worst run
# (hubble_deep_field seed 0) where the null moved 0.06 / 0.15: a real loss, not the fit's chaos.
# Read with the same bounds, denoising's null (fp32 with 1 thread instead of 2) misses both: mean
# loss 0.14, worst 4.74, 6 of 32 runs over 0.3 dB where bf16 has 3 (the reports' last column).
# ``--amp bf16`` forces bf16 all the same.
BF16_PARITY: dict = {}


@dataclass(frozen=True)
class Preset:
    """Values that replace the block's when the configuration matches ``when`` (all entries
    equal); the quick preset has no condition and is applied by ``preset``."""
    values: dict
    when: dict = field(default_factory=dict)

    def applies(self, cfg: dict) -> bool:
        return all(cfg.get(k) == v for k, v in self.when.items())


def block_help(path, name: str = "config") -> dict:
    """``{entry: help}`` from the trailing comments of ``name = dict(...)`` in a source file.

    The comment on the line where an entry's value ends is its help; an entry without one gets
    none (tests/test_config.py requires every entry of every task to have one)."""
    src = Path(path).read_text(encoding="utf-8")
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT and tok.line[:tok.start[1]].strip():
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    for node in ast.parse(src).body:
        if (isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name
                                                 for t in node.targets)
                and isinstance(node.value, ast.Call)):
            return {kw.arg: comments.get(kw.value.end_lineno, "")
                    for kw in node.value.keywords if kw.arg}
    return {}


def fit_options() -> dict:
    """The loop's options: ``{name: (default, help)}`` from ``FitConfig``."""
    return {f.name: (f.default, f.metadata.get("help", "")) for f in fields(FitConfig)}


def network_options(net: str | None = None) -> dict:
    """Every registered network's options, ``{name: (default, help)}``: the defaults of ``net``
    first, then those of the other nets (each net fills in its own at resolution)."""
    out = {}
    for name in ([net] if net in NETS else []) + list(NETS):
        for k, v in net_options(name).items():
            out.setdefault(k, (v, OPTION_HELP.get(k, "")))
    return out


def choices() -> dict:
    """The allowed values of every option that has a fixed set."""
    return {"net": tuple(NETS), "input": INPUTS, **OPTION_CHOICES, **FIT_CHOICES}


def options(task) -> dict:
    """Every option of ``task``: ``{name: (default, help)}``, block entries first."""
    helps = task.help
    out = {k: (v, helps.get(k, "")) for k, v in task.config.items()}
    for extra in (RUN_OPTIONS, fit_options(), network_options(task.config.get("net"))):
        for k, v in extra.items():
            out.setdefault(k, v)
    return out


def width_flags(net: str) -> str:
    """The options that set the width of ``net``, as the command line spells them."""
    return ", ".join(flag(k) for k in NETS[net].width)


def resolve_config(task, given: dict | None = None, preset: str = "auto", whole: bool = False):
    """The configuration of one run: ``(cfg, notice)``, notice the lines about the quick preset
    and the numeric mode (or None).

    given: the entries the user set (command line or keyword arguments); preset: ``auto``
    (the quick preset without a GPU), ``quick`` or ``full`` (the block's values on any device);
    whole: the images are the user's own (``--image PATH``, ``restore()``), restored whole by the
    quick preset too: its centre crop is for the embedded demo and the paper images' quick check
    only (a ``crop`` the user gives still applies).  ``amp='auto'`` becomes the mode used
    (``utils.device.resolve_amp``), so that the record names it; a CPU fit in bf16 takes the
    quick preset's ``quick_bf16`` values too (the faster convolutions spent on quality).  The
    quick preset's width is the chosen net's (``NetSpec.width``: the hourglass's
    ``channels_down``/``channels_up``, the others' ``channels``); a ValueError refuses a given
    option of another net than the chosen one (``--channels`` with the hourglass).
    """
    if preset not in PRESET_CHOICES:
        raise ValueError(f"preset must be one of {', '.join(PRESET_CHOICES)}, got {preset!r}")
    given = dict(given or {})
    cfg = {k: v for k, (v, _) in RUN_OPTIONS.items()}
    cfg.update(task.config)
    for p in task.presets:
        if p.applies({**cfg, **given}):
            cfg.update(p.values)
    notice = None
    device = given.get("device", cfg.get("device", "auto"))
    dev = resolve_device(device)
    cpu = dev.type == "cpu"
    # the numeric mode first: the quick preset depends on it (quick_bf16)
    amp, channels_last, amp_why = given.get("amp", cfg.get("amp", "auto")), None, None
    if amp == "auto":
        amp, channels_last, amp_why = resolve_amp("auto", dev, verified=task.name in BF16_PARITY)
    net = given.get("net", cfg.get("net", "decoder"))
    if net in NETS:   # (an unknown net is check_config's error)
        others = set(network_options()) - set(net_options(net))
        unused = [flag(k) for k in given if k in others]
        if unused:
            raise ValueError(f"{', '.join(unused)}: not an option of the {net} net (its width: "
                             f"{width_flags(net)})")
    if preset == "quick" or (preset == "auto" and cpu and task.quick):
        quick = dict(task.quick)
        if cpu and amp == "bf16":
            quick.update(task.quick_bf16)
        if net in NETS:   # the preset's width, of another net, as the chosen net's width
            other = {w for n in NETS.values() for w in n.width} - set(NETS[net].width)
            width = [quick.pop(k) for k in list(quick) if k in other]   # (the preset's order)
            if width:       # (a width per level: its widest)
                w = max(width[0]) if isinstance(width[0], (tuple, list)) else width[0]
                quick.update(dict.fromkeys(NETS[net].width, w))
        crop = quick.pop("crop", 0) if whole else None
        cfg.update(quick)
        why = ("--quick" if preset == "quick" else
               "no GPU found" if device == "auto" else "CPU device")
        # the values the run uses: the user's own where given (named so), the preset's elsewhere
        values = ", ".join(f"{k}={given[k]} (yours)" if k in given else f"{k}={v}"
                           for k, v in quick.items())
        if whole:
            where = ("" if not crop or "crop" in given else
                     f" on your whole image (--crop {crop}: the {crop}×{crop} centre of a "
                     "larger one only)")
            t = given.get("tile", quick.get("tile"))
            where += (f", in {t}×{t} tiles where it is larger (--tile 0: one net for all of "
                      "it)" if t else "")
        else:
            c = quick.get("crop")
            where = (f": each image's {c}×{c} centre, a quick check (--image PATH restores "
                     "your own image whole)" if c and "crop" not in given else "")
        kind = " (bf16)" if cpu and amp == "bf16" and task.quick_bf16 else ""
        notice = (f"{why}: using the CPU quick preset{kind} ({values}){where}; --full for the "
                  "paper's configuration")
    cfg.update(given)
    for k, v in net_options(cfg.get("net", "decoder")).items():
        cfg.setdefault(k, v)
    for k, (v, _) in fit_options().items():
        cfg.setdefault(k, v)
    if cfg.get("amp") == "auto":
        cfg["amp"] = amp
        if channels_last is not None and "channels_last" not in given:
            cfg["channels_last"] = channels_last
        if cpu and native_bf16():     # elsewhere nothing changed: no line about it
            notice = "\n".join(filter(None, [notice, f"--amp auto: {amp_why}"]))
    # the synthetic degradation's options given where they are not used (check_config then
    # sets an observed image's to None, once their values are checked)
    keys, why = ((task.synthetic, "the image is observed, degraded already (the option sets "
                  "the synthetic degradation only)") if cfg.get("observed") else
                 (task.from_file, "the mask given (--mask) replaces the synthetic one")
                 if cfg.get("mask") is not None else ((), ""))
    said = [f"{flag(k)} {given[k]}" for k in keys if given.get(k) not in (None, "auto")]
    if said:
        notice = "\n".join(filter(None, [notice, f"note: {', '.join(said)} not used: {why}"]))
    w, n = cfg.get("exp_weight", 0.99), cfg.get("iters")
    if (cfg.get("use_ema") and not cfg.get("ema_warmup") and "iters" in given
            and isinstance(n, int) and isinstance(w, float) and 0 < w < 1 and w ** n > 0.05):
        # the average starts at the untrained net's output: a short fit returns much of it
        notice = "\n".join(filter(None, [notice, (
            f"note: --iters {n}: the result, the moving average of outputs (--exp-weight {w}), "
            f"still holds {w ** n:.0%} {UNWARMED} at the last "
            "iteration: --ema-warmup lets it go early (or more --iters, or --no-use-ema)")]))
    return cfg, notice


# The allowed values of the numeric options, checked for every task before any work (the command
# line and restore() alike); a float must also be finite.  (test, what is allowed)
MAX_RESTARTS = 64
_POSITIVE_INT = (lambda v: v >= 1, "an integer >= 1")
_NATURAL = (lambda v: v >= 0, "an integer >= 0")
_POSITIVE = (lambda v: v > 0, "a number > 0")
_NON_NEGATIVE = (lambda v: v >= 0, "a number >= 0")
RANGES = {
    **dict.fromkeys(("iters", "log_every", "stop_window", "stop_patience",
                     "sync_every", "channels", "channels_down", "channels_up", "input_channels",
                     "scales"), _POSITIVE_INT),
    **dict.fromkeys(("seed", "mask_seed", "channels_skip", "backtrack_every", "backtrack_recover",
                     "lr_warmup", "tile_overlap"), _NATURAL),
    "tile": (lambda v: v == 0 or (v >= 64 and v % 32 == 0),
             "0 (no tiles) or a multiple of 32, at least 64"),
    "crop": (lambda v: v == 0 or v >= MIN_SIZE,
             f"0 (the whole image) or an integer >= {MIN_SIZE}"),
    **dict.fromkeys(("lr", "input_var", "stop_eps", "backtrack_db", "norm_lambda"), _POSITIVE),
    **dict.fromkeys(("ln_lambda", "reg_noise_std", "act_slope", "detail_gain"),
                    _NON_NEGATIVE),
    # the noise level on the 0-255 scale: beyond 255 the clipped observation is binary noise
    "sigma": (lambda v: 0 <= v <= 255, "a number in [0, 255] (the 0-255 scale)"),
    # a hard cap (the members are one batch: 64 of the 128-channel decoder at 512² need about
    # 137 GB); the memory the members need is checked against the device's once the image's
    # size is known (utils.task.check_memory)
    "restarts": (lambda v: 1 <= v <= MAX_RESTARTS, f"an integer in 1..{MAX_RESTARTS}"),
    "exp_weight": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "holdout": (lambda v: 0 < v < 0.5, "a fraction in (0, 0.5)"),
    "stop_min_gain": (lambda v: 0 <= v < 1, "a fraction in [0, 1)"),
    "gaussian_sigmas": (lambda v: len(v) > 0 and all(x > 0 for x in v), "numbers > 0"),
}


def number_or_auto(text: str):
    """The command line's type of the ``AUTO`` options: a number, or ``auto``."""
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number or auto, got {text!r}") from None


def flag(name: str) -> str:
    """The command-line spelling of an option in messages: its alias where it has one
    (``ln_lambda`` is ``--lambda``)."""
    return ALIASES.get(name, ["--" + name.replace("_", "-")])[0]


def _typed(name, value, default):
    """``value`` in the type of the option's default, or a ValueError naming the option."""
    opt = flag(name)
    if name in AUTO and value == "auto":
        return value
    if isinstance(default, bool):
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{opt} must be true or false, got {value!r}")
        return bool(value)
    if isinstance(default, int):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float)) \
                or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"{opt} must be an integer, got {value!r}")
        return int(value)
    if isinstance(default, float):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
            raise ValueError(f"{opt} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{opt} must be a finite number, got {value}")
        return float(value)
    if isinstance(default, (tuple, list)):
        items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        return tuple(_typed(name, v, default[0] if default else 0.0) for v in items)
    return value


def check_config(task, cfg: dict) -> str | None:
    """The check of a resolved configuration, before anything is read or written (beside
    ``resolve_config``'s refusal of another net's options): each option's type, range and
    choices, the device, then the task's own ``validate``.  Returns a one-line message naming
    the option and what is allowed, or None; fixes the types in place (an integral float for an
    integer option, an int for a float one)."""
    defaults = {k: v for k, (v, _) in options(task).items()}
    allowed = choices()
    try:
        for name, value in list(cfg.items()):
            default = defaults.get(name)
            if default is not None and value is not None:
                cfg[name] = value = _typed(name, value, default)
            if name in allowed and value not in allowed[name]:
                allowed_ = ", ".join(map(str, allowed[name]))
                return f"{flag(name)} must be one of {allowed_}, got {value!r}"
            if value == "auto" and name in AUTO and name not in ("ln_lambda", *task.auto_options):
                return f"{flag(name)} auto is not offered by {task.script}: give a number"
            if name in RANGES and value not in (None, "auto") and not RANGES[name][0](value):
                return f"{flag(name)} must be {RANGES[name][1]}, got {value!r}"
        if cfg.get("tile") and cfg.get("tile_overlap", 0) * 2 > cfg["tile"]:
            return (f"--tile-overlap must be at most half of --tile ({cfg['tile']}), got "
                    f"{cfg['tile_overlap']}")
        if cfg.get("oracle") and cfg.get("observed"):
            return ("--oracle returns the output closest to the ground truth, and an observed "
                    "image has none: leave out --oracle or --observed")
        resolve_device(cfg.get("device", "auto"))
    except ValueError as e:
        return str(e)
    err = task.validate(cfg) if task.validate else None
    if err is None and cfg.get("observed"):   # unused: recorded as None, and no other question
        cfg.update(dict.fromkeys(k for k in task.synthetic if k in cfg and cfg[k] != "auto"))
    return err


def fit_config(cfg: dict, **overrides) -> FitConfig:
    """The loop's part of a configuration."""
    names = {f.name for f in fields(FitConfig)}
    return FitConfig(**{**{k: v for k, v in cfg.items() if k in names}, **overrides})


def net_kwargs(cfg: dict) -> dict:
    """The chosen network's part of a configuration."""
    return {k: cfg[k] for k in net_options(cfg["net"]) if k in cfg}


def recorded(cfg: dict) -> dict:
    """The hyperparameters a run records (and a rerun compares)."""
    return {k: v for k, v in cfg.items() if k not in NOT_RECORDED}


def recorded_as_read(cfg: dict) -> dict:
    """``recorded(cfg)`` as a summary.json read back holds it (JSON types)."""
    return json.loads(json.dumps(recorded(cfg), default=str))


# the options that set only a synthetic degradation (every Task's ``synthetic``, registered as
# the tasks are made): unused, and no part of the question, where the image is observed; of
# them, FROM_FILE (every Task's ``from_file``) are unused too where the image's run reads a file
# that sets that part of the degradation (inpainting's Bernoulli mask, where a mask file is read)
SYNTHETIC: set = set()
FROM_FILE: set = set()


def unused_options(hyperparameters: dict, reads=()) -> dict:
    """The options of ``hyperparameters`` that a run of one image does not use, as None: the
    ``SYNTHETIC`` ones of an observed image, the ``FROM_FILE`` ones where the run ``reads``
    another file (``--sigma auto`` is used: it estimates σ)."""
    keys = (SYNTHETIC if hyperparameters.get("observed") else set()) | (FROM_FILE if reads
                                                                         else set())
    return dict.fromkeys(k for k in keys if hyperparameters.get(k) not in (None, "auto"))


def asked(hyperparameters: dict, used, reads=()) -> dict:
    """Hyperparameters as the question they ask, with ``device`` as the kind of device the fit
    ran on (``auto`` as ``used``, the device it chose; ``cuda:1`` as ``cuda``, and so is a GPU's
    name, which a record's ``device`` holds): a rerun with ``--device cpu`` of a fit that
    ``auto`` put on the CPU asks what it asked.  The options the run did not use
    (:func:`unused_options`, ``reads``: the other files it read) are None (a record written
    before they were has their numbers)."""
    d = hyperparameters.get("device")
    kind = str(used if d == "auto" else d).split(":")[0]
    return {**hyperparameters, **unused_options(hyperparameters, reads),
            "device": kind if kind in ("cpu", "cuda", "auto", "None") else "cuda"}


def question_of(cfg: dict, reads=()) -> dict:
    """What a finished record's (or a kept tile's) hyperparameters are compared with, for a run
    that reads the other files ``reads``."""
    return asked(recorded_as_read(cfg), resolve_device(cfg.get("device", "auto")), reads)
