"""A time budget for ``reproduce.py --budget-s S``: which pending images fit in the time left.

A GPU lease is short (a 10-minute command, 30 minutes a session), so a budgeted invocation runs
the pending runs in priority order (``paper.experiments.PRIORITY``) and never starts an image it
cannot finish in the time left.  The cost of an image is its work, ``iters`` × members ×
pixels / 512² (every iteration counted: early stops only make it shorter), times a rate in
seconds per unit of work of its kind (net, measures every k iterations, numeric mode):

- measured in this invocation: the wall time of a call (image loading, writing and compilation
  included) over the work its finished images actually ran (their records' ``iterations``),
  the largest seen for the kind, × 1.2 (the first image of a kind is fitted alone, to measure
  it; a failed call measures nothing);
- else from finished records of the same device and kind (their ``seconds`` over the work they
  ran, the largest, × 1.2, plus ``OVERHEAD_S`` per image);
- else a prior of ``PRIOR_MS`` per iteration of one member at 512², × 2, plus ``OVERHEAD_S``
  (and ``COMPILE_S`` for a compiled fit).
"""
from __future__ import annotations

import time
from pathlib import Path

from PIL import Image

from utils.members import lambdas
from utils.outdir import read_record

PRIOR_MS = {"decoder": 4.0, "hourglass": 5.0, "convnet": 40.0}  # ms/it, one member at 512²
UNIT = 512 * 512
MARGIN = 1.2          # on a measured rate
PRIOR_MARGIN = 2.0    # on the prior
OVERHEAD_S = 10.0     # per image, where the rate does not include it (CUDA init, autotuning)
COMPILE_S = 120.0     # more per image for torch.compile, until a rate is measured


def members(cfg: dict) -> int:
    """Fits in one image's batch: restarts × λ candidates (``--lambda auto``)."""
    return max(int(cfg.get("restarts", 1) or 1), 1) * len(lambdas(cfg))


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


def finished(folder: Path, hyperparameters: dict) -> dict | None:
    """The record of an image folder whose summary.json is a finished fit with these
    hyperparameters, or None (the script's own check also compares the pixels; an image
    replaced under the same name is refitted, and its cost was not counted)."""
    rec = read_record(folder)
    ok = rec is not None and rec.get("status") == "ok"
    return rec if ok and rec.get("hyperparameters") == hyperparameters else None


def kind(cfg: dict) -> tuple:
    """What sets the cost of an iteration besides its size: the net, how often the measures
    run, the numeric mode, and whether the convs are Lipschitz-controlled (σ_max of every conv
    at every forward: on CUDA an eigendecomposition per 128×128 Gram matrix)."""
    lam = cfg.get("ln_lambda")
    controlled = lam == "auto" or bool(float(lam or 0))
    return (cfg.get("net", "decoder"), int(cfg.get("log_every", 1)), cfg.get("amp", "none"),
            bool(cfg.get("compile")), bool(cfg.get("tf32", True)), controlled)


def ran(rec: dict) -> float:
    """The work a finished record ran: its iterations × members × pixels / 512²."""
    h = rec.get("hyperparameters") or {}
    size = rec.get("size") or [512, 512]
    return (rec.get("iterations") or 0) * members(h) * size[0] * size[1] / UNIT


class Budget:
    """Seconds left, and the rate of each kind (seconds per unit of work) on this device."""

    def __init__(self, seconds: float, device: str, records=()):
        self.deadline = time.monotonic() + seconds
        self.measured: dict[tuple, float] = {}
        self.recorded: dict[tuple, float] = {}
        for rec in records:  # finished fits of earlier invocations on this device
            w = ran(rec)
            if rec.get("device") == device and w > 0 and rec.get("seconds"):
                k = kind(rec.get("hyperparameters") or {})
                self.recorded[k] = max(self.recorded.get(k, 0.0), rec["seconds"] / w)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def estimate(self, cfg: dict, units: float) -> float:
        """Seconds one image of ``units`` work and configuration ``cfg`` takes, a bound."""
        k = kind(cfg)
        if k in self.measured:
            return MARGIN * self.measured[k] * units
        extra = OVERHEAD_S + (COMPILE_S if cfg.get("compile") else 0.0)
        if k in self.recorded:
            return MARGIN * self.recorded[k] * units + extra
        ms = PRIOR_MS.get(k[0], max(PRIOR_MS.values()))
        return PRIOR_MARGIN * ms / 1e3 * units + extra

    def affordable(self, cfg: dict, costs: list[float]) -> int:
        """How many of the images (in order, of work ``costs``) fit in the time left."""
        left, n = self.left(), 0
        for units in costs:
            need = self.estimate(cfg, units)
            if need > left:
                break
            left -= need
            n += 1
        return n

    def measure(self, cfg: dict, seconds: float, units: float):
        """Record a call's wall time for the ``units`` of work it ran (the largest rate of the
        kind is kept)."""
        if units > 0:
            k = kind(cfg)
            self.measured[k] = max(self.measured.get(k, 0.0), seconds / units)

    def known(self, cfg: dict) -> bool:
        return kind(cfg) in self.measured


def device_name() -> str:
    """The name the fit records as ``device`` (``utils.device.device_name``) for the default
    device of the runs."""
    from utils.device import device_name as name, resolve_device
    return name(resolve_device("auto"))
