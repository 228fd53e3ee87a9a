"""Where a fit runs: the device (``resolve_device``, ``device_name``, ``cpu_model``), cuDNN's
settings for the length of one fit (``cudnn_settings``), and a process-wide deadline for fits
(``fit_deadline``), which ``reproduce.py --budget-s`` sets at the end of a GPU lease.
"""
from __future__ import annotations

import contextlib
import platform
import time

import torch


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N``; anything else, or a CUDA
    device this machine does not have, is a ``ValueError`` naming ``--device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ValueError(f"--device {device}: no CUDA GPU is available here (use --device "
                             "auto or cpu)")
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"--device {device}: this machine has {n} CUDA device(s), "
                             f"cuda:0..cuda:{n - 1}")
    return dev


def device_name(dev: torch.device) -> str:
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"


def cpu_model() -> str:
    """The processor's model name (for the tables' device lines)."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def cudnn_settings(dev: torch.device, tf32: bool):
    """cuDNN's autotuner for the fit's fixed shapes and TF32 switch, restored afterwards."""
    cudnn = torch.backends.cudnn
    before = cudnn.benchmark, cudnn.allow_tf32
    cudnn.benchmark = before[0] or dev.type == "cuda"
    cudnn.allow_tf32 = before[1] and tf32   # True leaves PyTorch's setting; False: strict
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.allow_tf32 = before


class DeadlineReached(KeyboardInterrupt):
    """A fit ran past the deadline of ``fit_deadline``: it stops like an interrupt (the result
    so far, marked interrupted)."""


_DEADLINE: list = [None]   # time.monotonic() after which fits stop (fit_deadline)


@contextlib.contextmanager
def fit_deadline(when: float | None):
    """Fits run in the block stop at their first host sync after ``time.monotonic()`` passes
    ``when`` and return what they did, marked interrupted: ``reproduce.py --budget-s`` guards
    the end of a GPU lease with it, since its estimates of a fit's time can be wrong."""
    old, _DEADLINE[0] = _DEADLINE[0], when
    try:
        yield
    finally:
        _DEADLINE[0] = old


def past_deadline() -> bool:
    """Whether the deadline of an enclosing ``fit_deadline`` has passed."""
    return _DEADLINE[0] is not None and time.monotonic() > _DEADLINE[0]


