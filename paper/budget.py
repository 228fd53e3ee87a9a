"""A time budget for ``reproduce.py --budget-s S``: which pending images fit in the time left.

A GPU lease is short (a 10-minute command, 30 minutes a session), so a budgeted invocation runs
the pending runs in priority order (``paper.experiments.PRIORITY``) and never starts an image it
cannot finish in the time left.  The cost of an image is its work, iterations × members ×
pixels, times a rate in seconds per unit of work:

- measured in this invocation: the wall time of the run's call over the work it fitted (image
  loading, writing and compilation included) of the net's latest call, × 1.2 (the first image
  of a net is fitted alone, to measure it);
- else from finished records of the same device and net (``seconds`` of the fit, × 1.2, plus
  ``OVERHEAD_S`` per image);
- else a prior of ``PRIOR_MS`` per iteration of one member at 512², × 2, plus ``OVERHEAD_S``
  (and ``COMPILE_S`` for a compiled fit).

Early stops end most fits sooner than their ``iters``, so the estimate is an upper bound.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image

PRIOR_MS = {"decoder": 4.0, "hourglass": 5.0, "convnet": 40.0}  # ms/it, one member at 512²
UNIT = 512 * 512
MARGIN = 1.2          # on a measured rate
PRIOR_MARGIN = 2.0    # on the prior
OVERHEAD_S = 10.0     # per image, where the rate does not include it (CUDA init, autotuning)
COMPILE_S = 120.0     # more per image for torch.compile, until a rate is measured
LAMBDA_AUTO_MEMBERS = 5


def members(cfg: dict) -> int:
    """Fits in one image's batch: restarts × λ candidates (``--lambda auto``)."""
    lam = LAMBDA_AUTO_MEMBERS if str(cfg.get("ln_lambda")) == "auto" else 1
    return max(int(cfg.get("restarts", 1) or 1), 1) * lam


def fitted_pixels(path, cfg: dict) -> int:
    """Pixels of the fitted image: the file's size after the centre crop (``crop32``: to
    multiples of 32; ``crop``: at most crop × crop); 512² for the embedded image."""
    if path is None:
        h = w = 512
    else:
        with Image.open(path) as im:
            w, h = im.size
    if cfg.get("crop"):
        h, w = min(h, int(cfg["crop"])), min(w, int(cfg["crop"]))
    if cfg.get("crop32"):
        h, w = max(h // 32 * 32, 32), max(w // 32 * 32, 32)
    return h * w


def work(path, cfg: dict) -> float:
    """Iterations × members × pixels / 512²."""
    return cfg["iters"] * members(cfg) * fitted_pixels(path, cfg) / UNIT


def compile_overhead(cfg: dict) -> float:
    """Seconds a compiled fit may add to an image before its rate is measured."""
    return COMPILE_S if cfg.get("compile") else 0.0


def finished(folder: Path, hyperparameters: dict) -> bool:
    """An image folder whose summary.json is a finished fit with these hyperparameters (the
    script's own check also compares the pixels; an image replaced under the same name is
    refitted, and its cost was not counted)."""
    try:
        rec = json.loads((folder / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return rec.get("status") == "ok" and rec.get("hyperparameters") == hyperparameters


class Budget:
    """Seconds left, and the rate of each net (seconds per unit of work) on this device."""

    def __init__(self, seconds: float, device: str, records=()):
        self.deadline = time.monotonic() + seconds
        self.device = device
        self.measured: dict[str, float] = {}
        self.recorded: dict[str, float] = {}
        for rec in records:  # finished fits of earlier invocations on this device
            if rec.get("device") != device or not rec.get("iterations"):
                continue
            h = rec.get("hyperparameters") or {}
            size = rec.get("size") or [512, 512]
            w = rec["iterations"] * members(h) * size[0] * size[1] / UNIT
            net = h.get("net", "decoder")
            if w > 0:
                self.recorded[net] = max(self.recorded.get(net, 0.0), rec["seconds"] / w)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def estimate(self, net: str, units: float, extra: float = 0.0) -> float:
        """Seconds one image of ``units`` work takes, an upper bound; ``extra`` seconds are
        added where the rate was not measured here (``compile_overhead``)."""
        if net in self.measured:
            return MARGIN * self.measured[net] * units
        if net in self.recorded:
            return MARGIN * self.recorded[net] * units + OVERHEAD_S + extra
        ms = PRIOR_MS.get(net, max(PRIOR_MS.values()))
        return PRIOR_MARGIN * ms / 1e3 * units + OVERHEAD_S + extra

    def affordable(self, net: str, costs: list[float], extra: float = 0.0) -> int:
        """How many of the images (in order, of work ``costs``) fit in the time left."""
        left, n = self.left(), 0
        for units in costs:
            need = self.estimate(net, units, extra)
            if need > left:
                break
            left -= need
            n += 1
        return n

    def measure(self, net: str, seconds: float, units: float):
        """Record a call's wall time for ``units`` of fitted work (the latest call's rate: the
        first call of a net also pays CUDA's start and the autotuning, once)."""
        if units > 0:
            self.measured[net] = seconds / units


def device_name() -> str:
    """The name the fit records as ``device`` (``utils.fit.device_name``) for the default
    device of the runs."""
    from utils.fit import device_name as name, resolve_device
    return name(resolve_device("auto"))
