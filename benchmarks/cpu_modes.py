"""Is bf16 as good as fp32 on this CPU, and how much faster?  The verdict ``--amp auto`` needs.

    python -m benchmarks.cpu_modes [--tasks denoising ...] [--images camera chelsea]
                                   [--seeds 0 1] [--out results/cpu_modes.md]

The candidate is the mode ``--amp auto`` would choose for a task whose parity is verified
(``utils.device.resolve_amp``: bf16 convolutions, channels-last where the probe finds it faster,
on a CPU with native bf16).  Each task's quick preset runs on the robustness grid's crops
(``benchmarks.robustness.settings``: the preset's centre crop of a gray and a colour
``skimage.data`` image, each seed) twice, in fp32 and in the candidate, the two in alternating
order from case to case (so that a machine's drift is shared); per run the task's measure
(PSNR; super-resolution Y-PSNR; enhancement: the PSNR of the fit to its input) and the seconds
per iteration.  Verdict per task (fixed before any run): the candidate may be the default where
the mean |ΔPSNR| ≤ 0.1 dB and the worst ≤ 0.3 dB; it then goes into ``utils.config.BF16_PARITY``.

On a CPU without native bf16 the candidate is fp32 itself: the benchmark then checks that
``--amp auto`` gives outputs identical to ``--amp none`` (a short fit of each task), which is
the promise that nothing changes there, and writes that verdict.
"""
from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.robustness import TARGETS, grid_parser, image, settings
from tasks import all_tasks, restore
from utils.atomic import atomic_write_text
from utils.config import BF16_PARITY
from utils.device import cpu_model, native_bf16, resolve_amp
from utils.imageio import to_tensor
from utils.metrics import psnr
from utils.tables import csv_text, markdown

IMAGES, SEEDS = ("camera", "chelsea"), (0, 1)
MEAN_DB, WORST_DB = 0.1, 0.3     # the parity the candidate must keep (fixed before any run)
CHECK_ITERS = 20                 # the identity check's fits on a CPU without native bf16


def measure_of(task, r) -> float:
    """The task's measure of a run (enhancement, which has no ground truth: the PSNR of the
    base layer to its input)."""
    if task.name not in TARGETS:
        return float(psnr(to_tensor(r.array), to_tensor(r.observed))[0])
    return float(r.metrics[TARGETS[task.name][0]])


def run(task, name, seed, amp, channels_last, **extra):
    """One quick-preset run in a mode (``extra``: other options, e.g. a test's tiny net):
    (measure, seconds per iteration, result)."""
    r = restore(image(name), task=task.name, observed=False, preset="quick", amp=amp,
                channels_last=channels_last, **settings(task, seed, extra))
    return measure_of(task, r), 1 / r.fit.its_per_sec, r


def parity(tasks, images, seeds, amp, channels_last, log=print, **extra) -> list[list]:
    """Rows (task, image, seed, fp32 measure, candidate measure, Δ, fp32 s/it, candidate s/it,
    speed-up) of every case, the two modes in alternating order."""
    rows, k = [], 0
    for task in tasks:
        for name in images:
            for seed in seeds:
                modes = [("none", False), (amp, channels_last)]
                got = {}
                for mode in (modes if k % 2 == 0 else modes[::-1]):
                    got[mode[0]] = run(task, name, seed, *mode, **extra)[:2]
                k += 1
                (p32, t32), (pc, tc) = got["none"], got[amp]
                rows.append([task.name, name, seed, p32, pc, pc - p32, t32, tc, t32 / tc])
                log(f"{task.name} {name} seed {seed}: fp32 {p32:.2f} dB {t32:.3f} s/it, {amp} "
                    f"{pc:.2f} dB {tc:.3f} s/it ({t32 / tc:.2f}×)", flush=True)
    return rows


def identity(tasks, images, log=print) -> list[list]:
    """Rows (task, image, identical, max |difference|) of short fits with --amp auto and none."""
    rows = []
    for task in tasks:
        for name in images:
            outs = [run(task, name, 0, amp, False, iters=CHECK_ITERS)[2].array
                    for amp in ("auto", "none")]
            diff = float(np.abs(outs[0] - outs[1]).max())
            rows.append([task.name, name, "yes" if diff == 0 else "NO", f"{diff:.3g}"])
            log(f"{task.name} {name}: --amp auto vs none, max |difference| {diff:.3g}", flush=True)
    return rows


def verdicts(rows) -> list[list]:
    out = []
    for name in dict.fromkeys(r[0] for r in rows):
        d = np.array([r[5] for r in rows if r[0] == name])
        up = np.array([r[8] for r in rows if r[0] == name])
        ok = np.abs(d).mean() <= MEAN_DB and np.abs(d).max() <= WORST_DB
        out.append([name, f"{d.mean():+.3f}", f"{np.abs(d).mean():.3f}", f"{np.abs(d).max():.3f}",
                    f"{np.median(up):.2f}×", "yes: add it to BF16_PARITY" if ok else "NO",
                    "yes" if name in BF16_PARITY else "no"])
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    tasks = all_tasks()
    args = grid_parser(__doc__, IMAGES, SEEDS, "results/cpu_modes.md").parse_args(argv)
    chosen = [tasks[n] for n in args.tasks]
    amp, channels_last, why = resolve_amp("auto", torch.device("cpu"), verified=True)
    out = Path(args.out)
    md = ["# The numeric mode of CPU fits: bf16 against fp32", "",
          f"- device: CPU {cpu_model()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, torch {torch.__version__}, ATen capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: "
          f"{'yes' if native_bf16() else 'no'}",
          f"- command: `{' '.join(['python -m benchmarks.cpu_modes', *argv])}`",
          f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
          f"- the candidate `--amp auto` would choose for a verified task: {why}", ""]
    if amp == "none":
        rows = identity(chosen, args.images)
        md += [f"No bf16 to measure on this CPU: `--amp auto` is fp32. Check that nothing "
               f"changed: a {CHECK_ITERS}-iteration quick-preset fit of each task with `--amp "
               "auto` and with `--amp none` (seed 0), the outputs compared.", ""]
        md += markdown(["task", "image", "identical", "max |difference|"], rows)
        csv = csv_text(["task", "image", "identical", "max_abs_difference"], rows)
    else:
        rows = parity(chosen, args.images, args.seeds, amp, channels_last)
        header = ["task", "image", "seed", "fp32", amp, "delta_db", "fp32_s_per_it",
                  f"{amp}_s_per_it", "speed_up"]
        md += ["## Verdict per task", "", f"The candidate may be the default where the mean "
               f"|ΔPSNR| ≤ {MEAN_DB} dB and the worst ≤ {WORST_DB} dB; speed-up: fp32's "
               "seconds per iteration over the candidate's (median over the task's runs).", ""]
        md += markdown(["task", "mean Δ (dB)", "mean |Δ|", "worst |Δ|", "speed-up",
                        "parity kept", "in BF16_PARITY"], verdicts(rows))
        md += ["", "## Every run", ""]
        md += markdown(header, [[*r[:3], *(f"{v:.3f}" for v in r[3:8]), f"{r[8]:.2f}"]
                                for r in rows])
        csv = csv_text(header, rows)
    atomic_write_text(out, "\n".join(md) + "\n")
    atomic_write_text(out.with_suffix(".csv"), csv)
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
