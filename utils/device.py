"""Where a fit runs: the device (``resolve_device``, ``device_name``, ``cpu_model``), cuDNN's
settings for the length of one fit (``cudnn_settings``), denormals flushed in a command's
process (``flush_denormals``) and freed memory kept (``keep_freed_memory``; both through
``command_process``), a process-wide deadline for fits (``fit_deadline``), which
``reproduce.py --budget-s`` sets at the end of a GPU lease, and the numeric mode ``--amp auto``
means on this machine (``resolve_amp``: native bf16 on a CPU that has it, measured by
``cpu_mode_probe``).
"""
from __future__ import annotations

import contextlib
import ctypes
import math
import os
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
            raise ValueError(f"--device {device}: no CUDA GPU is available here (use --device auto "
                             "or --device cpu)")
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


def cpu_words() -> str:
    """This CPU for a record's device line: model, cores, the vector code ATen runs (AVX2,
    AVX512, ...) and how it computes bf16 -- what moves a CPU run's speed and its rounding."""
    cap = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", lambda: "?")()
    return (f"{cpu_model()}, {os.cpu_count()} cores, ATen's vector code: {cap}, "
            f"native bf16: {bf16_units()}")


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


# Denormal floats flushed to zero in a command's process (the task scripts, reproduce.py,
# benchmarks.speed, benchmarks.cpu_modes; not benchmarks.robustness, whose table measures
# restore() as a caller's process runs it).  Intel CPUs compute denormals in microcode:
# inpainting's fp32 quick preset made enough of them to run 2.3x slower over its first 60
# iterations on a Xeon, and every output measured was bit for bit the same with the flush
# (python -m benchmarks.process_settings --setting denormals, results/denormals.md).  False:
# IEEE gradual underflow.
FLUSH_DENORMALS = True


def flushed_share(n: int = 1 << 16) -> float:
    """The share of a parallel elementwise op's outputs computed with denormals flushed: 1 when
    every torch thread flushes them, 0 when none.  (A thread starts in the floating-point mode of
    the thread that created it and keeps it: ``torch.set_flush_denormal`` changes the calling
    thread only, so it reaches torch's worker threads only when called before they start.)"""
    tiny = torch.full((n,), 0x00400000, dtype=torch.int32).view(torch.float32)  # 5.9e-39
    return float(((tiny * 2) == 0).float().mean())


def flush_denormals() -> float:
    """Flush denormal floats to zero in this process for good, where ``FLUSH_DENORMALS`` says
    so: a command calls it first, before torch's worker threads start, so that they inherit it.
    Returns :func:`flushed_share` (1.0: every thread flushes; less: workers started before)."""
    if FLUSH_DENORMALS:
        torch.set_flush_denormal(True)
    return flushed_share()


# Freed memory kept by the process (glibc's malloc) in a command's process, like the flush above.
# By default glibc gives the top of its heap back to the system once more than its trim threshold
# is free, and serves large blocks with fresh mmaps; a fit frees and reallocates the same
# activations every iteration, so each iteration faults in (and the kernel zeroes) tens of MB
# again: the quick denoising preset on a 2-core EPYC spent 14 s of 67 s in the kernel (5.2 M page
# faults).  Kept, the same fit took 54 s, bit for bit the same output (benchmarks.process_settings
# --setting heap, results/heap*.md).  The process then holds its peak heap until it exits, and
# that peak is higher (fragments): DIP_KEEP_FREED_MEMORY=0 in the environment turns it off.
KEEP_FREED_MEMORY = True
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3           # glibc's mallopt parameters
# blocks up to 256 MiB from the heap (a 64-channel activation of a 1000×1000 image is 256 MB),
# up to 1 GiB free at its top kept.  Larger blocks still have their own mmaps: kept in the heap,
# they fragment it (an 800×800 fit: peak memory +53 % with blocks up to 1 GiB, +37 to +44 % up to
# 256 MiB, at the same speed-up; results/heap_800.md)
_MMAP_KEPT, _TRIM_KEPT = 256 << 20, 1 << 30
KEEP_ENV = "DIP_KEEP_FREED_MEMORY"
_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")
_MALLOC_TUNABLES = ("glibc.malloc.trim_threshold", "glibc.malloc.mmap_threshold")


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory in this process for good, where
    ``KEEP_FREED_MEMORY`` says so: blocks up to 256 MiB come from the heap instead of their own
    mmap (``M_MMAP_THRESHOLD``), and up to 1 GiB free at its top stays mapped
    (``M_TRIM_THRESHOLD``).
    Nothing is done without glibc, with ``DIP_KEEP_FREED_MEMORY=0`` in the environment, or where
    the environment sets malloc's thresholds (the user's choice).  Returns whether the settings
    were applied."""
    env = os.environ
    users = (any(k in env for k in _MALLOC_ENV)
             or any(t in env.get("GLIBC_TUNABLES", "") for t in _MALLOC_TUNABLES))
    if (not KEEP_FREED_MEMORY or env.get(KEEP_ENV) == "0" or users
            or platform.libc_ver()[0] != "glibc"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    # the mmap threshold first: setting either one ends glibc's dynamic threshold, and the trim
    # threshold alone would leave the mmap threshold at 128 KiB, far worse than the default
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_KEPT) and mallopt(_M_TRIM_THRESHOLD, _TRIM_KEPT))


def command_process() -> float:
    """The settings of a command's own process (the task scripts, reproduce.py, the CPU
    benchmarks; a caller of ``restore()`` keeps its own): denormals flushed
    (:func:`flush_denormals`) and freed memory kept (:func:`keep_freed_memory`).  Call it first,
    before any torch work.  Returns :func:`flushed_share`."""
    keep_freed_memory()
    return flush_denormals()


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




# ---------------------------------------------------------------- the numeric mode on a CPU
def _cpu_flags() -> list:
    """The flags of /proc/cpuinfo (empty where there is none)."""
    try:
        return next((line.split(":", 1)[1].split() for line in open("/proc/cpuinfo")
                     if line.startswith("flags")), [])
    except OSError:
        return []


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX tiles): ATen's own checks
    where this torch has them, else the flags of /proc/cpuinfo.  Elsewhere oneDNN emulates bf16
    (one bf16 convolution took 185× fp32's time on an AVX2-only EPYC: benchmarks_avx2.md)."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, n, None) for n in ("_is_avx512_bf16_supported",
                                              "_is_amx_tile_supported")]
    if all(callable(c) for c in checks):
        return any(bool(c()) for c in checks)
    flags = _cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_units() -> str:
    """How this CPU computes bf16, for reports: ``"AMX"`` (tile units; oneDNN's fastest
    bf16 convolutions), ``"AVX512-BF16"`` (dot-product instructions), or ``"none"`` (emulated).
    The two native kinds differ in speed: a denoising quick-preset step in bf16 took 0.72× fp32's
    time on an EPYC with AVX512-BF16 and 0.64-0.65× on a Xeon with AMX (results/benchmarks.md,
    results/benchmarks_amx.md)."""
    if not native_bf16():
        return "none"
    amx = getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", None)
    return "AMX" if (amx() if callable(amx) else "amx_bf16" in _cpu_flags()) else "AVX512-BF16"


# the quick presets' decoder (64 channels) at a 96² output: the probe is one fit step of the
# net itself, because a single conv misjudges the layout (measured on an EPYC with avx512_bf16:
# in one conv bf16 without channels-last was as fast as with it, in the decoder's step
# channels-last took 0.8× its time, and the whole fit 0.85×)
PROBE = dict(channels=64, size=96, repeats=3, rounds=2)


def _time_step(amp: bool, channels_last: bool) -> float:
    """Seconds of one forward and backward of the probe decoder in a mode (the best of
    ``repeats``, after one that warms oneDNN's kernel cache)."""
    from models.nets import build_net, code_shape      # models import this module
    torch.manual_seed(0)
    net = build_net("decoder", 32, 3, channels=PROBE["channels"], ln_lambda=0.0)
    z = torch.rand(1, 32, *code_shape(net, PROBE["size"], PROBE["size"]))
    if channels_last:
        net, z = net.to(memory_format=torch.channels_last), \
            z.contiguous(memory_format=torch.channels_last)
    best = math.inf
    for _ in range(PROBE["repeats"] + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            y = net(z)
        y.float().square().mean().backward()
        best = min(best, time.perf_counter() - t0)
    return best


_PROBED: dict = {}


def cpu_mode_probe() -> dict:
    """``{(amp, channels_last): seconds}`` of one fit step of a small decoder in each mode on
    this CPU (measured once per process, in about a second, the modes in turn for
    ``rounds`` rounds so that they share the machine's drift; only where :func:`native_bf16`
    holds)."""
    if not _PROBED:
        with torch.random.fork_rng(devices=[]):
            for _ in range(PROBE["rounds"]):
                for amp in ("none", "bf16"):
                    for cl in (False, True):
                        t = _time_step(amp == "bf16", cl)
                        _PROBED[amp, cl] = min(_PROBED.get((amp, cl), math.inf), t)
    return dict(_PROBED)


FASTER = 0.9   # a mode replaces fp32 only when it takes less than this fraction of its time
# fp32 on a CPU with native bf16 in the channels-last layout (True) or as configured (False).
# Off: measured on an EPYC with avx512_bf16 (python -m benchmarks.cpu_modes --layout,
# results/cpu_modes.md, 2026-12-05) it took 0.89-0.93x the contiguous layout's time per
# iteration in whole quick-preset fits (0.7x in the probe's bare decoder step), and its runs moved
# like any reordering of the sums does: mean Δ to the contiguous fp32 +1.96 dB for denoising,
# -0.07 deblocking, -1.20 inpainting (worst -6.55, cell): the parity bound bf16 must pass, which
# a default fp32 layout must pass too, fails.  Kept as a switch, fixed per kind of CPU rather
# than timed, so that a command's numbers never depend on the machine's load.
FP32_CHANNELS_LAST = False


def resolve_amp(amp: str, dev: torch.device, verified: bool = True) -> tuple[str, bool | None, str]:
    """The numeric mode ``--amp`` means on ``dev``: ``(amp used, channels-last or None for the
    configured one, why)``; never ``auto``.

    ``auto``: on CUDA fp32 (with cuDNN's TF32, as before); on a CPU without native bf16, fp32
    exactly as before; on one with it, bf16 convolutions (channels-last where that is faster)
    when :func:`cpu_mode_probe` finds them faster than fp32 and the task's parity with fp32 is
    ``verified`` (``benchmarks/cpu_modes.py``: a mean loss ≤ 0.1 dB, the worst ≤ 0.3 dB), else
    fp32, in the layout configured (contiguous by default: the authors' arithmetic), or in the
    channels-last layout where ``FP32_CHANNELS_LAST`` says so (off: not faster enough, and no
    parity, measured).  That layout is fixed per kind of CPU, not timed, so that a run's numbers
    never depend on the machine's load (two processes of one command must agree); bf16 is chosen
    only where it beats fp32 in its layout.  ``--amp none`` is fp32 in the layout configured.
    The loss, σ_max, the measures and the stop rules stay fp32 in every mode (utils/fit.py)."""
    if amp != "auto":
        return amp, None, f"--amp {amp}"
    if dev.type != "cpu":
        return "none", None, "fp32 on CUDA (cuDNN's TF32 unless --no-tf32)"
    if not native_bf16():
        return "none", None, "fp32: this CPU has no native bf16"
    cl32 = True if FP32_CHANNELS_LAST else None      # None: the layout configured
    layout = " in the channels-last layout (--no-channels-last: contiguous)" if cl32 else ""
    if not verified:
        return ("none", cl32, f"fp32{layout}: this CPU has native bf16, but bf16 fits are not "
                              "verified as good as fp32's for this task (python -m "
                              "benchmarks.cpu_modes); --amp bf16 forces them")
    t = cpu_mode_probe()
    fp32_t = t["none", bool(cl32)]
    mode = min((m for m in t if m[0] == "bf16"), key=t.get)
    if t[mode] > FASTER * fp32_t:
        return ("none", cl32, f"fp32{layout}: bf16 convolutions are not faster on this CPU")
    cl = ", channels-last" if mode[1] else ""
    return "bf16", mode[1], (f"bf16 convolutions{cl} (this CPU's native bf16, "
                             f"{fp32_t / t[mode]:.1f}× fp32 in a decoder's step); --amp none "
                             "for fp32")
